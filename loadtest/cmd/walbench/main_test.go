package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	// 10 observations: 4 in (0,1], 4 in (1,2], 2 in (2,4].
	h := histo{bounds: []float64{1, 2, 4}, cum: []uint64{4, 8, 10}, count: 10}
	for _, tc := range []struct{ q, want float64 }{
		{0.2, 0.5},  // rank 2 of 4 in the first bucket, from 0
		{0.5, 1.25}, // rank 5: 1 of 4 into (1,2]
		{0.9, 3},    // rank 9: 1 of 2 into (2,4]
		{1, 4},
	} {
		if got := h.quantile(tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	// The same histogram observed earlier with 4 in the first bucket: the
	// difference holds the later 6 only.
	d := sub(h, histo{bounds: h.bounds, cum: []uint64{4, 4, 4}, count: 4})
	if got := d.quantile(0.5); math.Abs(got-1.75) > 1e-9 {
		t.Errorf("difference's median = %v, want 1.75", got)
	}
	if s := add(add(histo{}, d), d); s.count != 12 || s.cum[1] != 8 || s.quantile(0.5) != d.quantile(0.5) {
		t.Errorf("the sum of d with itself is %+v", s)
	}
	if !math.IsNaN((histo{}).quantile(0.5)) {
		t.Error("an empty histogram has a quantile")
	}
}

// TestRun runs both kinds of round briefly and checks the table.
func TestRun(t *testing.T) {
	var out, progress bytes.Buffer
	cfg := config{dir: t.TempDir(), duration: 60 * time.Millisecond, slice: 20 * time.Millisecond, warmup: 10 * time.Millisecond,
		rounds: 1, callers: []int{1, 8}}
	if err := run(cfg, &out, &progress); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("want a title, a blank line, a header, a rule and 2 rows:\n%s", out.String())
	}
	for i, c := range []string{"1", "8"} {
		cells := strings.Split(lines[4+i], "|")
		if len(cells) != 9 || strings.TrimSpace(cells[1]) != c {
			t.Fatalf("row for C=%s: %q", c, lines[4+i])
		}
		for _, cell := range []string{cells[2], cells[3], cells[5]} {
			if v := strings.TrimSpace(cell); v == "0" || v == "0.0" || v == "NaN" {
				t.Errorf("row for C=%s has %q: %q", c, v, lines[4+i])
			}
		}
	}
	if strings.Count(progress.String(), "\n") != 2 {
		t.Errorf("want one progress line per round and C:\n%s", progress.String())
	}
}
