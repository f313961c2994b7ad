// Package fsyncprobe measures what an fsync costs on a file system right
// now: appends, each followed by fsync, over and over. That is what one
// group commit of Sluice's WAL costs at best; other processes' writes on the
// same file system show up in it.
package fsyncprobe

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/hist"
)

// Result is one probe's latencies.
type Result struct {
	N             int // fsyncs done
	P50, P99, Max time.Duration
	PerSecond     float64 // fsyncs per second
	// Hist holds every latency, for merging several probes.
	Hist *hist.Histogram
}

// Run appends 4 KiB and fsyncs, in a temporary file in dir, for d (at most
// 100000 times), and removes the file.
func Run(dir string, d time.Duration) (Result, error) {
	return Batch(dir, bytes.Repeat([]byte{'x'}, 4096), d)
}

// Batch appends batch with one write(2) and then fsyncs, as tidwall/wal's
// WriteBatch does for one group commit, to a new O_APPEND file in dir, over
// and over for d (at most 100000 times), and removes the file. Latencies
// cover the write and the fsync.
func Batch(dir string, batch []byte, d time.Duration) (Result, error) {
	if len(batch) == 0 {
		return Result{}, errors.New("fsyncprobe: empty batch")
	}
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return Result{}, err
	}
	defer os.Remove(f.Name())
	f.Close()
	if f, err = os.OpenFile(f.Name(), os.O_WRONLY|os.O_APPEND, 0); err != nil {
		return Result{}, err
	}
	defer f.Close()
	var lat []time.Duration
	h := new(hist.Histogram)
	start := time.Now()
	for time.Since(start) < d && len(lat) < 100000 {
		t := time.Now()
		if _, err := f.Write(batch); err != nil {
			return Result{}, err
		}
		if err := f.Sync(); err != nil {
			return Result{}, err
		}
		lat = append(lat, time.Since(t))
		h.Record(lat[len(lat)-1])
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return Result{N: len(lat), P50: q(0.5), P99: q(0.99), Max: lat[len(lat)-1],
		PerSecond: float64(len(lat)) / elapsed.Seconds(), Hist: h}, nil
}
