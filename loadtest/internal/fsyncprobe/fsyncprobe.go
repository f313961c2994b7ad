// Package fsyncprobe measures what an fsync costs on a file system right
// now: 4 KiB appends, each followed by fsync, over and over. That is what one
// group commit of Sluice's WAL costs at best; other processes' writes on the
// same file system show up in it.
package fsyncprobe

import (
	"bytes"
	"os"
	"slices"
	"time"
)

// Result is one probe's latencies.
type Result struct {
	N             int // fsyncs done
	P50, P99, Max time.Duration
	PerSecond     float64 // fsyncs per second
}

// Run appends and fsyncs in a temporary file in dir for d (at most 100000
// times), and removes the file.
func Run(dir string, d time.Duration) (Result, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return Result{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := bytes.Repeat([]byte{'x'}, 4096)
	var lat []time.Duration
	start := time.Now()
	for time.Since(start) < d && len(lat) < 100000 {
		t := time.Now()
		if _, err := f.Write(block); err != nil {
			return Result{}, err
		}
		if err := f.Sync(); err != nil {
			return Result{}, err
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return Result{N: len(lat), P50: q(0.5), P99: q(0.99), Max: lat[len(lat)-1],
		PerSecond: float64(len(lat)) / time.Since(start).Seconds()}, nil
}
