// Package hist is the log-linear latency histogram the load-test tools
// (loadgen, bench) record into.
package hist

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram is a log-linear latency histogram in the HdrHistogram style:
// values below 2^subBits nanoseconds get one bucket each, and every power of
// two above that is split into 2^subBits equal buckets, so any recorded value
// is reported within 1/2^subBits (0.78%) of the truth over the whole int64
// range of a time.Duration, in a fixed 57 KiB array. Recording is an index
// computation and an increment: no allocation, no lock (each connection owns
// one; they are merged at the end).
//
// It is hand-written rather than github.com/HdrHistogram/hdrhistogram-go
// because that library would add a requirement to the root go.mod, which
// this tool must not edit; the API below mirrors the library's (Record,
// ValueAtQuantile, Merge) so swapping it in is mechanical.
type Histogram struct {
	counts   [(64 - subBits) * subCount]uint64
	total    uint64
	sum      float64 // ns
	min, max uint64
}

const (
	subBits  = 7
	subCount = 1 << subBits
)

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1 // v>>shift has subBits+1 bits: [subCount, 2*subCount)
	return (shift+1)*subCount + int(v>>shift) - subCount
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	m := uint64(i%subCount + subCount)
	return (m+1)<<shift - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.total++
	h.sum += float64(v)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

// ValueAtQuantile returns the highest value equivalent (same bucket) to the
// q-th quantile, q in [0, 100], like HdrHistogram; never above the true max.
func (h *Histogram) ValueAtQuantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q / 100 * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }
func (h *Histogram) Count() uint64      { return h.total }

// Atomic is a histogram many goroutines record into (Histogram's buckets).
type Atomic struct {
	counts [len(Histogram{}.counts)]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64 // ns
	max    atomic.Uint64
}

// Record adds one latency.
func (h *Atomic) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Snapshot copies h into a plain Histogram (min is not tracked).
func (h *Atomic) Snapshot() *Histogram {
	var s Histogram
	for i := range h.counts {
		s.counts[i] = h.counts[i].Load()
	}
	s.total, s.sum, s.max = h.total.Load(), float64(h.sum.Load()), h.max.Load()
	return &s
}

// Sparse returns h's non-empty buckets as (bucket index, count) pairs.
func (h *Histogram) Sparse() [][2]uint64 {
	var out [][2]uint64
	for i, c := range h.counts {
		if c > 0 {
			out = append(out, [2]uint64{uint64(i), c})
		}
	}
	return out
}

// AddSparse adds the counts of Sparse's output to h (buckets out of range are
// skipped). Only the counts and the total change: sum, min and max do not.
func (h *Histogram) AddSparse(sparse [][2]uint64) {
	for _, bc := range sparse {
		if int(bc[0]) < len(h.counts) {
			h.counts[bc[0]] += bc[1]
			h.total += bc[1]
		}
	}
}

// SetMax sets the largest value h reports, for a histogram built with
// AddSparse.
func (h *Histogram) SetMax(d time.Duration) { h.max = uint64(d) }
