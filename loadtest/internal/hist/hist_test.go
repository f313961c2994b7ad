package hist

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreContiguous(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<16; v++ {
		b := bucketOf(v)
		if b != prev && b != prev+1 {
			t.Fatalf("value %d: bucket %d after %d", v, b, prev)
		}
		if v > bucketHigh(b) || (b > 0 && v <= bucketHigh(b-1)) {
			t.Fatalf("value %d outside bucket %d (high %d)", v, b, bucketHigh(b))
		}
		prev = b
	}
	for _, v := range []uint64{1 << 40, 1<<62 + 12345, 1<<63 - 1} { // durations are int64
		if b := bucketOf(v); b >= len(Histogram{}.counts) || v > bucketHigh(b) {
			t.Fatalf("value %d: bucket %d out of range", v, b)
		}
	}
}

func TestQuantilesWithinResolution(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h, a, b Histogram
	vals := make([]time.Duration, 100000)
	for i := range vals {
		vals[i] = time.Duration(r.ExpFloat64() * float64(2*time.Millisecond))
		h.Record(vals[i])
		if i%2 == 0 {
			a.Record(vals[i])
		} else {
			b.Record(vals[i])
		}
	}
	a.Merge(&b)
	slices.Sort(vals)
	for _, q := range []float64{50, 90, 99, 99.9, 100} {
		idx := int(q/100*float64(len(vals))+0.999999) - 1
		want := vals[idx]
		for _, hh := range []*Histogram{&h, &a} {
			got := hh.ValueAtQuantile(q)
			if got < want || float64(got-want) > float64(want)/subCount+1 {
				t.Errorf("p%v = %v, want %v within %.2f%%", q, got, want, 100.0/subCount)
			}
		}
	}
	if h.Count() != uint64(len(vals)) || h.Max() != vals[len(vals)-1] {
		t.Errorf("count %d max %v", h.Count(), h.Max())
	}
}

func TestAtomicHistMatchesHistogram(t *testing.T) {
	var a Atomic
	var h Histogram
	for i := range 5000 {
		d := time.Duration(i*i) * time.Microsecond / 7
		a.Record(d)
		h.Record(d)
	}
	s := a.Snapshot()
	for _, q := range []float64{50, 99, 99.9, 100} {
		if s.ValueAtQuantile(q) != h.ValueAtQuantile(q) {
			t.Errorf("p%v: %v vs %v", q, s.ValueAtQuantile(q), h.ValueAtQuantile(q))
		}
	}
	var n uint64
	for _, bc := range s.Sparse() {
		n += bc[1]
	}
	if n != 5000 || s.Max() != h.Max() {
		t.Errorf("sparse holds %d values, max %v vs %v", n, s.Max(), h.Max())
	}
}
