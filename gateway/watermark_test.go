package gateway

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gateway/sluice/buffer"
	"github.com/sluice-gateway/sluice/enrich"
)

// The buffer's watermarks: below the soft limit everyone is accepted; between
// soft and hard only fire-and-forget clients (pixels, no-cors beacons) are;
// at the hard limit the policy decides for everyone. Every event taken in is
// in the ledger's balance.
func TestBufferWatermarks(t *testing.T) {
	const soft, hard = 800, 1000
	beacon := func(g *testGateway, h map[string]string) response {
		return g.do(t, "POST", "/v1/beacon", "text/plain", `[{"type":"a"},{"type":"b"}]`, h)
	}
	noCORS := map[string]string{"Sec-Fetch-Mode": "no-cors"}
	pixel := func(g *testGateway) response { return g.do(t, "GET", "/v1/pixel.gif?type=pv", "", "", nil) }
	tests := []struct {
		name     string
		used     int64
		whenFull WhenFull
		send     func(*testGateway) response
		code     int
		body     string // substring
		stored   int    // records that reached the WAL
		dropped  uint64
	}{
		{"below soft, retrying client", 100, WhenFullReject, func(g *testGateway) response { return beacon(g, nil) }, 204, "", 2, 0},
		{"above soft, retrying client", soft, WhenFullReject, func(g *testGateway) response { return beacon(g, nil) }, 503, "soft limit", 0, 0},
		{"above soft, sendBeacon (no-cors)", soft, WhenFullReject, func(g *testGateway) response { return beacon(g, noCORS) }, 204, "", 2, 0},
		{"above soft, pixel", soft + 1, WhenFullReject, pixel, 200, "GIF89a", 1, 0},
		{"at hard, reject, sendBeacon", hard, WhenFullReject, func(g *testGateway) response { return beacon(g, noCORS) }, 503, "buffer full", 0, 0},
		{"at hard, reject, pixel", hard, WhenFullReject, pixel, 503, "GIF89a", 0, 0},
		{"at hard, drop-newest, retrying client", hard, WhenFullDropNewest, func(g *testGateway) response { return beacon(g, nil) }, 202, `"dropped":2`, 0, 2},
		{"at hard, drop-newest, pixel", hard + 5, WhenFullDropNewest, pixel, 200, "GIF89a", 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var used atomic.Int64
			used.Store(tc.used)
			wal := newFakeWAL()
			ledger := buffer.NewLedger()
			g := newTestGateway(t, Config{Buffer: BufferLimits{Used: used.Load, Soft: soft, Hard: hard, WhenFull: tc.whenFull}},
				enrich.Config{Ledger: ledger}, wal)
			r := tc.send(g)
			if r.code != tc.code || !strings.Contains(r.body, tc.body) {
				t.Fatalf("got %d %q, want %d with %q", r.code, r.body, tc.code, tc.body)
			}
			if r.code == 503 && r.headers["Retry-After"] == "" {
				t.Error("503 without Retry-After")
			}
			if got := len(wal.records()); got != tc.stored {
				t.Errorf("%d records reached the WAL, want %d", got, tc.stored)
			}
			m := ledger.Snapshot()
			if got := m["dropped/buffer_full"]; got != tc.dropped {
				t.Errorf("dropped{buffer_full} = %v, want %v", got, tc.dropped)
			}
			if rcv, acc := ledger.Balance(); rcv != acc {
				t.Errorf("ledger out of balance: received %d, accounted for %d", rcv, acc)
			}
			if n, err := testutil.GatherAndCount(g.reg, "sluice_buffer_limit_bytes"); err != nil || n != 2 {
				t.Errorf("sluice_buffer_limit_bytes: %d series, %v; want soft and hard", n, err)
			}
		})
	}
}

// A buffer that refuses a write for being full (ErrFull from the WAL, e.g.
// ENOSPC) answers by the policy too: 503 "buffer full" when rejecting, 202
// with the dropped count (and the events in dropped, not refused) otherwise.
func TestBufferFullFromWAL(t *testing.T) {
	for _, policy := range []WhenFull{WhenFullReject, WhenFullDropNewest} {
		t.Run(string(policy), func(t *testing.T) {
			wal := newFakeWAL()
			wal.err = fmt.Errorf("write wal: %w: no space left on device", buffer.ErrFull)
			ledger := buffer.NewLedger()
			g := newTestGateway(t, Config{Buffer: BufferLimits{WhenFull: policy}}, enrich.Config{Ledger: ledger}, wal)
			r := g.do(t, "POST", "/v1/beacon", "application/json", `{"type":"a"}`, nil)
			m := ledger.Snapshot()
			switch policy {
			case WhenFullReject:
				if r.code != 503 || !strings.Contains(r.body, "buffer full") || r.headers["Retry-After"] == "" {
					t.Fatalf("got %d %v %q, want 503 buffer full with Retry-After", r.code, r.headers, r.body)
				}
				if m["refused/buffer_full"] != 1 {
					t.Errorf("refused{buffer_full} = %v, want 1", m["refused/buffer_full"])
				}
			case WhenFullDropNewest:
				if r.code != 202 || !strings.Contains(r.body, `"dropped":1`) {
					t.Fatalf("got %d %q, want 202 with the dropped count", r.code, r.body)
				}
				if m["dropped/buffer_full"] != 1 {
					t.Errorf("dropped{buffer_full} = %v, want 1", m["dropped/buffer_full"])
				}
			}
			if rcv, acc := ledger.Balance(); rcv != acc || rcv != 1 {
				t.Errorf("ledger: received %d, accounted for %d; want 1 and 1", rcv, acc)
			}
		})
	}
}
