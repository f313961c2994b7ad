package gateway

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/sluice-gateway/sluice/enrich"
)

func gzipped(t *testing.T, b []byte) string {
	t.Helper()
	return gzippedF(string(b))
}

// gzippedF compresses s (for tests and fuzz seeds).
func gzippedF(s string) string {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write([]byte(s))
	zw.Close()
	return buf.String()
}

func TestGzipBodies(t *testing.T) {
	tests := map[string]struct {
		encoding, body string
		wantCode       int
		wantBody       string
		wantRecords    int
	}{
		"gzip NDJSON": {
			encoding: "gzip", body: gzipped(t, []byte("{\"type\":\"a\"}\n{\"type\":\"b\"}\n")), wantCode: 204, wantRecords: 2,
		},
		"GZIP in upper case": {
			encoding: "GZIP", body: gzipped(t, []byte(`{"type":"a"}`)), wantCode: 204, wantRecords: 1,
		},
		"a decompression bomb gets 413": {
			// 8 MiB of zeros is a few KiB compressed; the cap is 64 KiB.
			encoding: "gzip", body: gzipped(t, make([]byte, 8<<20)), wantCode: 413, wantBody: "decompressed body exceeds",
		},
		"not gzip at all": {
			encoding: "gzip", body: `{"type":"a"}`, wantCode: 400, wantBody: "gzip:",
		},
		"truncated gzip": {
			encoding: "gzip", body: gzipped(t, []byte(`{"type":"a"}`))[:15], wantCode: 400, wantBody: "gzip:",
		},
		"identity": {encoding: "identity", body: `{"type":"a"}`, wantCode: 204, wantRecords: 1},
		"brotli":   {encoding: "br", body: `{"type":"a"}`, wantCode: 415, wantBody: "send gzip"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := newTestGateway(t, Config{MaxBodyBytes: 64 << 10}, enrich.Config{}, newFakeWAL())
			r := g.do(t, "POST", "/v1/beacon", "application/json", tc.body, map[string]string{"Content-Encoding": tc.encoding})
			if r.code != tc.wantCode || !strings.Contains(r.body, tc.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", r.code, r.body, tc.wantCode, tc.wantBody)
			}
			if n := len(g.wal.records()); n != tc.wantRecords {
				t.Errorf("%d records, want %d", n, tc.wantRecords)
			}
		})
	}
}

func TestGunzipCappedAllocatesAtMostTheCap(t *testing.T) {
	bomb := []byte(gzipped(t, make([]byte, 64<<20)))
	if _, err := gunzipCapped(bomb, 1<<20); !errors.Is(err, errDecompressedTooLarge) {
		t.Fatal(err)
	}
	var before, after runtimeMem
	before.read()
	for range 3 {
		gunzipCapped(bomb, 1<<20)
	}
	after.read()
	if grown := after.totalAlloc - before.totalAlloc; grown > 3*8<<20 {
		t.Errorf("three 64 MiB bombs allocated %d MiB, want a few MiB each at most", grown>>20)
	}
}
