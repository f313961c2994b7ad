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
