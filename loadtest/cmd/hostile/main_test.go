package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/hist"
	"github.com/sluice-gateway/sluice/loadtest/internal/loadgenout"
)

func TestGzipBomb(t *testing.T) {
	b, err := gzipBomb(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 4<<10 {
		t.Errorf("a 1 MiB bomb compresses to %d bytes, want a few KiB", len(b))
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil || n != 1<<20 {
		t.Fatalf("bomb inflates to %d bytes (%v), want 1 MiB", n, err)
	}
}

func TestRequests(t *testing.T) {
	h := string(hugeHeaderRequest(1 << 20))
	if len(h) < 1<<20 || !strings.HasPrefix(h, "POST /v1/beacon HTTP/1.1\r\n") || !strings.HasSuffix(h, "\r\n\r\n{\"type\":\"a\"}") {
		t.Errorf("huge-header request malformed (%d bytes)", len(h))
	}
	if r := string(bombRequest([]byte("xyz"))); !strings.Contains(r, "Content-Length: 3\r\n") || !strings.HasSuffix(r, "\r\n\r\nxyz") {
		t.Errorf("bomb request %q", r)
	}
}

func TestParseAttacks(t *testing.T) {
	got, err := parseAttacks(" deep,bomb,deep ,")
	if err != nil || strings.Join(got, ",") != "deep,bomb" {
		t.Errorf("parseAttacks = %v, %v; want [deep bomb]", got, err)
	}
	if got, err := parseAttacks(strings.Join(allAttacks, ",")); err != nil || len(got) != 4 {
		t.Errorf("all attacks: %v, %v", got, err)
	}
	for _, bad := range []string{"", " , ", "bomb,nuke"} {
		if _, err := parseAttacks(bad); err == nil {
			t.Errorf("parseAttacks(%q) accepted", bad)
		}
	}
}

func TestPlan(t *testing.T) {
	var names []string
	for _, w := range plan(1, 3) {
		names = append(names, w.name)
	}
	want := "control 1a,control 1b,calm 1,hostile 1,calm 2,hostile 2,calm 3,hostile 3"
	if got := strings.Join(names, ","); got != want {
		t.Errorf("plan(1, 3) = %s, want %s", got, want)
	}
	p := plan(0, 2)
	if len(p) != 4 || p[0].hostile || !p[1].hostile || p[1].round != 1 || p[3].round != 2 || p[0].control {
		t.Errorf("plan(0, 2) = %+v", p)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{1.84, 1.26, 1.66}, 1.66}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := slices.Clone(c.in)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("median reordered its input: %v", c.in)
		}
	}
}

// window builds a result whose measured seconds hold n requests of latency ms
// each, with p99 reported as p99.
func window(w windowPlan, p99 float64, n uint64, ms float64) result {
	var h hist.Histogram
	h.Record(time.Duration(ms * 1e6))
	sparse := h.Sparse()
	sparse[0][1] = n
	return result{windowPlan: w, sum: &loadgenout.OpenSummary{P99ms: p99},
		secs: []loadgenout.Second{{Type: "second", Hist: sparse, MaxMs: ms}}}
}

func TestSummarize(t *testing.T) {
	p := plan(1, 3)
	// control 2 → 3 ms; calm 2, 4, 2 ms vs hostile 4, 4, 5 ms.
	rs := []result{
		window(p[0], 2, 1000, 2), window(p[1], 3, 1000, 2),
		window(p[2], 2, 1000, 2), window(p[3], 4, 1000, 2),
		window(p[4], 4, 1000, 2), window(p[5], 4, 1000, 2),
		window(p[6], 2, 990, 1), window(p[7], 5, 1000, 2),
	}
	// A slow tail in the last calm window: 10 of 4 990 calm requests at
	// 20 ms stay under 1 %, while 100 of 3 100 hostile ones are over it.
	rs[6].secs = append(rs[6].secs, window(p[6], 0, 10, 20).secs...)
	rs[7].secs = append(rs[7].secs, window(p[7], 0, 100, 20).secs...)
	s := summarize(rs)
	if s.calmWindows != 5 || s.hostileWindows != 3 {
		t.Errorf("windows: %d calm, %d hostile; want 5, 3", s.calmWindows, s.hostileWindows)
	}
	if !slices.Equal(s.roundRatios, []float64{2, 1, 2.5}) || s.medianRatio != 2 {
		t.Errorf("round ratios %v, median %v; want [2 1 2.5], 2", s.roundRatios, s.medianRatio)
	}
	if !slices.Equal(s.controlRatios, []float64{1.5}) || s.controlRatio != 1.5 {
		t.Errorf("control ratios %v, median %v; want [1.5], 1.5", s.controlRatios, s.controlRatio)
	}
	if s.calmP99 < 1.9 || s.calmP99 > 2.1 {
		t.Errorf("pooled calm p99 %.3f ms, want ~2", s.calmP99)
	}
	if s.hostileP99 < 19 || s.hostileP99 > 20.1 {
		t.Errorf("pooled hostile p99 %.3f ms, want ~20", s.hostileP99)
	}
	if s.pooledRatio < 9 || s.pooledRatio > 11 {
		t.Errorf("pooled ratio %.2f, want ~10", s.pooledRatio)
	}
}

func TestParseLoadgen(t *testing.T) {
	out := []byte(`{"type":"second","t":0,"warmup":true,"hist":[[5,1]]}
not json
{"type":"second","t":1,"hist":[[7,2]],"max_ms":0.5}
{"type":"second","t":2,"hist":[[8,3]]}
{"type":"summary","p99_ms":1.5,"sent":5}
`)
	s, secs, err := parseLoadgen(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.P99ms != 1.5 || s.Sent != 5 || len(secs) != 2 || secs[0].T != 1 || secs[1].Hist[0][1] != 3 {
		t.Errorf("parseLoadgen: %+v, %+v", s, secs)
	}
	if _, _, err := parseLoadgen([]byte(`{"type":"second","t":1}`)); err == nil {
		t.Error("no summary accepted")
	}
}

func TestStatusOf(t *testing.T) {
	for in, want := range map[string]string{"HTTP/1.1 413 Request Entity Too Large\r\n": "413", "HTTP/1.1 431": "431", "garbage here": "?", "": "?"} {
		if got := statusOf([]byte(in)); got != want {
			t.Errorf("statusOf(%q) = %q, want %q", in, got, want)
		}
	}
}
