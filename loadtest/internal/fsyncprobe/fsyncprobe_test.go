package fsyncprobe

import (
	"os"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	r, err := Run(dir, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.N < 1 || r.P50 > r.P99 || r.P99 > r.Max || r.PerSecond <= 0 {
		t.Errorf("implausible result %+v", r)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("probe file left behind: %v", ents)
	}
}

func TestBatch(t *testing.T) {
	dir := t.TempDir()
	r, err := Batch(dir, make([]byte, 10_000), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.N < 1 || r.P50 > r.P99 || r.P99 > r.Max || r.PerSecond <= 0 {
		t.Errorf("implausible result %+v", r)
	}
	if r.Hist.Count() != uint64(r.N) || r.Hist.Max() != r.Max {
		t.Errorf("histogram of %d latencies up to %v, result %+v", r.Hist.Count(), r.Hist.Max(), r)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("probe file left behind: %v", ents)
	}
	if _, err := Batch(dir, nil, time.Millisecond); err == nil {
		t.Error("an empty batch was accepted")
	}
}
