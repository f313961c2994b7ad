package buffer

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A shipper that keeps up takes records from the writer's in-memory hand-off
// and never reads the WAL (whose lock the writer holds through every fsync).
func TestShipperUsesInMemoryHandOff(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	sink := newMemSink()
	s := startShipper(t, b, sink, ShipperConfig{})
	for i := range 20 {
		mustAppend(t, b, "h", i*5, 5)
	}
	drain(t, s)
	if got := sink.deliveredIndices(); !slices.Equal(got, span(1, 100)) {
		t.Fatalf("delivered %v, want 1..100", got)
	}
	if n := testutil.ToFloat64(s.walReads); n != 0 {
		t.Errorf("%v records read from the WAL, want 0", n)
	}
	s.fromTail(b.LastIndex() + 1) // drops the last hand-off
	if got := b.tailBytes.Load(); got != 0 {
		t.Errorf("hand-off holds %d bytes after everything shipped", got)
	}
}

// When the hand-off is full the writer skips it, and the shipper reads those
// records from the WAL: same bytes, same order, nothing lost.
func TestShipperFallsBackToWAL(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	b.tailBytes.Store(maxTailBytes) // as if the shipper were far behind
	mustAppend(t, b, "w", 0, 10)
	b.tailBytes.Store(0)
	mustAppend(t, b, "m", 0, 10) // these are handed off
	sink := newMemSink()
	s := startShipper(t, b, sink, ShipperConfig{})
	drain(t, s)
	if got := sink.deliveredIndices(); !slices.Equal(got, span(1, 20)) {
		t.Fatalf("delivered %v, want 1..20", got)
	}
	if n := testutil.ToFloat64(s.walReads); n != 10 {
		t.Errorf("%v records read from the WAL, want 10", n)
	}
	for i, want := range testFrames("w", 0, 10) {
		var rec Record
		if err := DecodeRecord(want, &rec); err != nil {
			t.Fatal(err)
		}
		if got := sink.values[uint64(i+1)]; got != string(rec.Value) {
			t.Errorf("record %d = %q, want %q", i+1, got, rec.Value)
		}
	}
}
