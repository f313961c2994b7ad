package buffer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"
)

var errSinkDown = errors.New("sink down")

// memSink is an in-memory Sink. It records every Send, can fail the next
// sends or the sends of given indices, and can hold acknowledgements until the
// test releases them.
type memSink struct {
	mu        sync.Mutex
	sends     []uint64           // index of every Send, in call order
	failedAt  []bool             // failedAt[i]: sends[i] failed at once
	delivered []delivery         // records acknowledged with nil, in order
	failNext  int                // fail this many of the next sends
	failAt    map[uint64]int     // fail the sends of these indices this many more times
	failures  int                // sends failed so far
	hold      bool               // keep acknowledgements in held until released
	held      []heldAck          // guarded by mu
	maxHeld   int                // most acknowledgements held at once
	changed   chan struct{}      // capacity 1: nudged by every Send
	values    map[uint64]string  // value of every record sent, by index
	failWith  error              // what failed sends fail with; default errSinkDown
	onSend    func(index uint64) // called by Send, on the shipper goroutine, before answering
}

type delivery struct {
	index uint64
	value string
}

type heldAck struct {
	index uint64
	rec   *Record
	done  func(uint64, error)
}

func newMemSink() *memSink {
	return &memSink{failAt: map[uint64]int{}, changed: make(chan struct{}, 1), values: map[uint64]string{}}
}

func (s *memSink) Send(index uint64, rec *Record, done func(uint64, error)) {
	s.mu.Lock()
	s.sends = append(s.sends, index)
	if v, ok := s.values[index]; ok && v != string(rec.Value) {
		panic(fmt.Sprintf("index %d sent as %q and as %q", index, v, rec.Value))
	}
	s.values[index] = string(rec.Value)
	fail := false
	switch {
	case s.failNext > 0:
		s.failNext--
		fail = true
	case s.failAt[index] > 0:
		s.failAt[index]--
		fail = true
	}
	s.failedAt = append(s.failedAt, fail)
	hold := !fail && s.hold
	failWith := cmp.Or(s.failWith, errSinkDown)
	onSend := s.onSend
	switch {
	case fail:
		s.failures++
	case hold:
		s.held = append(s.held, heldAck{index, rec, done})
		s.maxHeld = max(s.maxHeld, len(s.held))
	default:
		s.delivered = append(s.delivered, delivery{index, string(rec.Value)})
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	if onSend != nil {
		onSend(index)
	}
	switch {
	case fail:
		done(index, failWith)
	case !hold:
		done(index, nil)
	}
}

// setFailing makes every next send fail (n < 0), or none (n == 0), or the next n.
func (s *memSink) setFailing(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < 0 {
		n = math.MaxInt
	}
	s.failNext = n
}

// waitFor waits until cond, checked under the sink's lock, holds after a Send.
func (s *memSink) waitFor(t *testing.T, what string, cond func(s *memSink) bool) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		s.mu.Lock()
		ok := cond(s)
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("sink: timed out after %v waiting for %s", waitLimit, what)
		}
	}
}

func (s *memSink) waitSends(t *testing.T, n int) {
	t.Helper()
	s.waitFor(t, fmt.Sprintf("%d sends", n), func(s *memSink) bool { return len(s.sends) >= n })
}

// takeHeld returns the held acknowledgements and stops holding new ones if
// hold is false.
func (s *memSink) takeHeld(hold bool) []heldAck {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held
	s.held = nil
	s.hold = hold
	return h
}

// ack confirms a held record (err nil) or fails it.
func (s *memSink) ack(h heldAck, err error) {
	s.mu.Lock()
	if err == nil {
		s.delivered = append(s.delivered, delivery{h.index, string(h.rec.Value)})
	} else {
		s.failures++
	}
	s.mu.Unlock()
	h.done(h.index, err)
}

func (s *memSink) sent() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sends)
}

func (s *memSink) deliveries() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.delivered)
}

func (s *memSink) deliveredIndices() []uint64 {
	var idx []uint64
	for _, d := range s.deliveries() {
		idx = append(idx, d.index)
	}
	return idx
}

// startShipper starts a Shipper with fast retries and closes it when the test
// ends, before the buffer (cleanups run last in, first out).
func startShipper(t *testing.T, b *Buffer, sink Sink, cfg ShipperConfig) *Shipper {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = time.Millisecond
	}
	if cfg.MaxRetryBackoff == 0 {
		cfg.MaxRetryBackoff = 10 * time.Millisecond
	}
	s := NewShipper(b, sink, cfg)
	t.Cleanup(s.Close)
	return s
}

func drain(t *testing.T, s *Shipper) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
}

func span(first, last uint64) []uint64 {
	var s []uint64
	for i := first; i <= last; i++ {
		s = append(s, i)
	}
	return s
}

func mustReadCheckpoint(t *testing.T, dir string) uint64 {
	t.Helper()
	v, err := readCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitUntil polls cond until it holds. Only for state with no event to wait
// on (background truncation and periodic checkpoints).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		<-tick.C
	}
}

// Records appended concurrently, while the shipper runs, reach the sink once
// each, in WAL order, with the values the appenders wrote.
func TestShipperDeliversInWALOrder(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := openBuffer(t, Config{Dir: t.TempDir(), Registerer: reg})
	sink := newMemSink()
	s := startShipper(t, b, sink, ShipperConfig{Registerer: reg})

	const goroutines, perGoroutine = 8, 25
	var mu sync.Mutex
	want := map[uint64]string{} // index -> value, from the done callbacks
	var pending, appenders sync.WaitGroup
	pending.Add(goroutines * perGoroutine)
	for g := range goroutines {
		appenders.Add(1)
		go func() {
			defer appenders.Done()
			for i := range perGoroutine {
				tag, n := fmt.Sprintf("g%d-r%d", g, i), 1+(g+i)%4
				b.Append(testFrames(tag, 0, n), func(first, last uint64, err error) {
					defer pending.Done()
					if err != nil {
						t.Errorf("append %s: %v", tag, err)
						return
					}
					mu.Lock()
					for j, v := range testValues(tag, 0, n) {
						want[first+uint64(j)] = v
					}
					mu.Unlock()
				})
			}
		}()
	}
	waitGroup(t, &appenders, "the appenders")
	waitGroup(t, &pending, "the done callbacks")
	b.StopWrites()
	drain(t, s)

	last := b.LastIndex()
	if len(want) != int(last) {
		t.Fatalf("%d records appended, LastIndex %d", len(want), last)
	}
	got := sink.deliveries()
	if len(got) != int(last) {
		t.Fatalf("sink got %d records, want %d", len(got), last)
	}
	for i, d := range got {
		if d.index != uint64(i+1) || d.value != want[d.index] {
			t.Fatalf("delivery %d: index %d value %q, want index %d value %q", i, d.index, d.value, i+1, want[uint64(i+1)])
		}
	}
	if n := len(sink.sent()); n != int(last) {
		t.Errorf("%d sends for %d records with no failure", n, last)
	}
	if s.AckedIndex() != last || s.Backlog() != 0 {
		t.Errorf("AckedIndex %d, Backlog %d; want %d and 0", s.AckedIndex(), s.Backlog(), last)
	}
	vals := gatherValues(t, reg)
	if vals["sluice_shipped_records_total"] != float64(last) || vals["sluice_wal_acked_index"] != float64(last) ||
		vals["sluice_buffer_backlog_records"] != 0 || vals["sluice_ship_errors_total"] != 0 {
		t.Errorf("metrics after drain: %v", vals)
	}
}

// After a failed send the shipper re-reads from the WAL the records that were
// not confirmed, in order: every record arrives exactly once, and the only
// extra sends are of records whose send failed.
func TestShipperResendsAfterFailure(t *testing.T) {
	const n = 100
	tests := map[string]struct {
		failNext int
		failAt   map[uint64]int
	}{
		"first send fails":           {failNext: 1},
		"first three sends fail":     {failNext: 3},
		"a middle record fails":      {failAt: map[uint64]int{37: 1}},
		"a middle record fails 5x":   {failAt: map[uint64]int{37: 5}},
		"the last record fails":      {failAt: map[uint64]int{n: 2}},
		"several records fail":       {failAt: map[uint64]int{5: 1, 50: 1, 51: 1, 99: 3}},
		"the first record fails 20x": {failAt: map[uint64]int{1: 20}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := openBuffer(t, Config{Dir: t.TempDir()})
			mustAppend(t, b, "r", 0, n)
			sink := newMemSink()
			sink.failNext = tc.failNext
			wantFailures := tc.failNext
			for i, k := range tc.failAt {
				sink.failAt[i] = k
				wantFailures += k
			}
			s := startShipper(t, b, sink, ShipperConfig{})
			drain(t, s)
			s.Close()

			runs := checkResends(t, sink, n)
			if sink.failures != wantFailures {
				t.Errorf("sink failed %d sends, want %d", sink.failures, wantFailures)
			}
			if got := testutil.ToFloat64(s.sendErrors); got != float64(wantFailures) {
				t.Errorf("sluice_ship_errors_total = %v, want %d", got, wantFailures)
			}
			if s.AckedIndex() != n {
				t.Errorf("AckedIndex = %d, want %d", s.AckedIndex(), n)
			}
			for i, v := range sink.values {
				if want := fmt.Sprintf("r/%d", i-1); v != want {
					t.Errorf("index %d sent as %q, want %q", i, v, want)
				}
			}
			t.Logf("%d failed sends caused %d re-send passes", wantFailures, runs-1)
		})
	}
}

// checkResends checks the re-send contract: the first pass sends 1..n in WAL
// order; every later send is of an index whose previous send failed (a
// confirmed record is never sent again); each re-send pass goes in increasing
// index order; and every index is delivered exactly once. It returns the
// number of passes.
func checkResends(t *testing.T, s *memSink, n uint64) int {
	t.Helper()
	s.mu.Lock()
	sends, failed := slices.Clone(s.sends), slices.Clone(s.failedAt)
	s.mu.Unlock()
	if uint64(len(sends)) < n || !slices.Equal(sends[:n], span(1, n)) {
		t.Fatalf("first pass is not 1..%d: %v", n, sends)
	}
	lastFailed := map[uint64]bool{}
	passes := 1
	for i, idx := range sends {
		if uint64(i) >= n {
			if !lastFailed[idx] {
				t.Fatalf("send %d re-sends index %d, whose previous send succeeded: %v", i, idx, sends)
			}
			if idx <= sends[i-1] {
				passes++
			}
		}
		lastFailed[idx] = failed[i]
	}
	count := map[uint64]int{}
	for _, d := range s.deliveries() {
		count[d.index]++
	}
	for i := uint64(1); i <= n; i++ {
		if count[i] != 1 {
			t.Fatalf("index %d delivered %d times, want once", i, count[i])
		}
	}
	return passes
}

// checkAtLeastOnceInOrder checks that every index 1..n was delivered and that
// first deliveries came in WAL order.
func checkAtLeastOnceInOrder(t *testing.T, delivered []uint64, n uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	next := uint64(1)
	for _, i := range delivered {
		if seen[i] {
			continue
		}
		if i != next {
			t.Fatalf("index %d delivered for the first time before %d: %v", i, next, delivered)
		}
		seen[i] = true
		next++
	}
	if next != n+1 {
		t.Fatalf("only indices 1..%d delivered, want 1..%d", next-1, n)
	}
}

// A failure among acknowledgements that arrive out of order: the shipper
// waits for all in-flight records to settle, then re-sends exactly the one
// that failed; the confirmed records after it are not sent again.
func TestShipperResendsFromAckedPrefix(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	mustAppend(t, b, "r", 0, 10)
	sink := newMemSink()
	sink.hold = true
	s := startShipper(t, b, sink, ShipperConfig{})
	sink.waitSends(t, 10)
	if s.Backlog() != 10 || s.AckedIndex() != 0 {
		t.Fatalf("with every ack held: Backlog %d, AckedIndex %d; want 10 and 0", s.Backlog(), s.AckedIndex())
	}
	held := sink.takeHeld(false)
	slices.Reverse(held)
	for _, h := range held { // 10 down to 1; record 4 fails
		var err error
		if h.index == 4 {
			err = errSinkDown
		}
		sink.ack(h, err)
	}
	drain(t, s)
	if got, want := sink.sent(), append(span(1, 10), 4); !slices.Equal(got, want) {
		t.Fatalf("sends %v, want %v", got, want)
	}
}

// Acknowledgements arriving in reverse order, with a small in-flight window
// that wraps many times: each record is sent once, the window is never
// exceeded, and the acknowledged index reaches the end.
func TestShipperOutOfOrderAcks(t *testing.T) {
	const n, window = 300, 8
	b := openBuffer(t, Config{Dir: t.TempDir()})
	mustAppend(t, b, "r", 0, n)
	sink := newMemSink()
	sink.hold = true
	s := startShipper(t, b, sink, ShipperConfig{MaxInFlight: window})

	stop, ackerDone := make(chan struct{}), make(chan struct{})
	go func() { // acknowledges whatever is held, newest first
		defer close(ackerDone)
		for {
			select {
			case <-stop:
				return
			case <-sink.changed:
			}
			held := sink.takeHeld(true)
			for i := len(held) - 1; i >= 0; i-- {
				sink.ack(held[i], nil)
			}
		}
	}()
	drain(t, s)
	close(stop)
	<-ackerDone

	if got := sink.sent(); !slices.Equal(got, span(1, n)) {
		t.Fatalf("sends %v, want 1..%d once each", got, n)
	}
	if sink.maxHeld > window {
		t.Errorf("%d records in flight at once, MaxInFlight is %d", sink.maxHeld, window)
	}
	if s.AckedIndex() != n {
		t.Errorf("AckedIndex = %d, want %d", s.AckedIndex(), n)
	}
}

// No more than MaxInFlight records are handed to the sink unconfirmed, and
// records in flight at Close are sent again by the next shipper.
func TestShipperMaxInFlight(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	mustAppend(t, b, "r", 0, 10)
	sink := newMemSink()
	sink.hold = true
	s := startShipper(t, b, sink, ShipperConfig{MaxInFlight: 4})
	sink.waitSends(t, 4)
	s.Close() // the run goroutine has stopped: no send can follow
	if got := sink.sent(); !slices.Equal(got, span(1, 4)) {
		t.Fatalf("with 4 in flight and none confirmed, sends %v; want 1..4", got)
	}
	if s.AckedIndex() != 0 {
		t.Fatalf("AckedIndex = %d with nothing confirmed", s.AckedIndex())
	}
	for _, h := range sink.takeHeld(false) {
		sink.ack(h, nil) // too late: the shipper has stopped
	}
	if got := mustReadCheckpoint(t, dir); got != 0 {
		t.Fatalf("checkpoint %d, nothing was confirmed before Close", got)
	}

	sink2 := newMemSink()
	drain(t, startShipper(t, b, sink2, ShipperConfig{MaxInFlight: 4}))
	if got := sink2.sent(); !slices.Equal(got, span(1, 10)) {
		t.Fatalf("next shipper sends %v, want 1..10", got)
	}
}

// After Drain and Close the checkpoint holds the last index, and a shipper on
// the reopened buffer sends only what is new.
func TestShipperCheckpointAfterDrain(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	s := startShipper(t, b, newMemSink(), ShipperConfig{CheckpointInterval: time.Hour})
	mustAppend(t, b, "a", 0, 20)
	mustAppend(t, b, "b", 0, 5)
	b.StopWrites()
	drain(t, s)
	s.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustReadCheckpoint(t, dir); got != 25 {
		t.Fatalf("checkpoint after drain and close = %d, want 25", got)
	}
	if _, err := os.Stat(filepath.Join(dir, checkpointFile+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a temporary checkpoint file is left behind: %v", err)
	}

	b = openBuffer(t, Config{Dir: dir})
	sink := newMemSink()
	s = startShipper(t, b, sink, ShipperConfig{})
	if s.AckedIndex() != 25 || s.Backlog() != 0 {
		t.Fatalf("restarted shipper: AckedIndex %d, Backlog %d; want 25 and 0", s.AckedIndex(), s.Backlog())
	}
	mustAppend(t, b, "c", 0, 1)
	drain(t, s)
	// Shipping is in WAL order, so a re-send of 1..25 would have come first.
	if got := sink.deliveries(); len(got) != 1 || got[0] != (delivery{26, "c/0"}) {
		t.Fatalf("restarted shipper delivered %v, want only index 26", got)
	}
}

// A crash (the on-disk state copied while the shipper runs, as kill -9 would
// leave it) re-sends only what was shipped since the last checkpoint.
func TestShipperCrashResendsSinceCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := ShipperConfig{CheckpointInterval: time.Hour}

	// Run 1 ships 10 records and stops cleanly, checkpointing 10.
	b := openBuffer(t, Config{Dir: dir})
	s := startShipper(t, b, newMemSink(), cfg)
	mustAppend(t, b, "run1", 0, 10)
	drain(t, s)
	s.Close()
	b.Close()

	// Run 2 ships 15 more; no checkpoint is due for an hour.
	b = openBuffer(t, Config{Dir: dir})
	sink2 := newMemSink()
	s = startShipper(t, b, sink2, cfg)
	mustAppend(t, b, "run2", 0, 15)
	drain(t, s)
	if got := sink2.deliveredIndices(); !slices.Equal(got, span(11, 25)) {
		t.Fatalf("run 2 delivered %v, want 11..25", got)
	}
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	s.Close()
	b.Close()
	if got := mustReadCheckpoint(t, crashed); got != 10 {
		t.Fatalf("checkpoint at the crash = %d, want 10 (no interval elapsed since run 1)", got)
	}

	// Run 3 starts from the crash image.
	b = openBuffer(t, Config{Dir: crashed})
	sink3 := newMemSink()
	s = startShipper(t, b, sink3, cfg)
	drain(t, s)
	if got := sink3.deliveredIndices(); !slices.Equal(got, span(11, 25)) {
		t.Fatalf("after the crash the shipper re-sent %v, want exactly 11..25 (shipped since the checkpoint)", got)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func countSegments(t *testing.T, dir string) int {
	t.Helper()
	segs, err := segmentFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(segs)
}

func segmentBytesOnDisk(t *testing.T, dir string) int64 {
	t.Helper()
	segs, err := segmentFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, p := range segs {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		total += info.Size()
	}
	return total
}

// With small segments and short intervals the shipper checkpoints on its own
// and removes acknowledged segments at the WAL front, never past the persisted
// checkpoint, and keeps shipping after the whole WAL was acknowledged.
func TestShipperTruncatesWALFront(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir, SegmentBytes: 1024})
	mustAppend(t, b, "a", 0, 150)
	mustAppend(t, b, "b", 0, 150)
	segments := countSegments(t, dir)
	if segments < 10 {
		t.Fatalf("%d segments for 300 records; the test wants many", segments)
	}
	sink := newMemSink()
	s := startShipper(t, b, sink, ShipperConfig{CheckpointInterval: time.Millisecond, TruncateInterval: time.Millisecond})
	drain(t, s)
	waitUntil(t, "the checkpoint to reach 300", func() bool { v, _ := readCheckpoint(dir); return v == 300 })
	// Everything is acknowledged: only the tail segment, which is never
	// deleted, stays.
	waitUntil(t, "the acknowledged segments to be removed", func() bool { return countSegments(t, dir) == 1 })
	if first := b.firstIndex(); first <= 250 || first > 300 {
		t.Errorf("first index %d with only the tail segment left, want in (250, 300]", first)
	}
	// The shipper removes a file, then counts it: wait for the count.
	waitUntil(t, "DiskBytes to match the segment files", func() bool { return b.DiskBytes() == segmentBytesOnDisk(t, dir) })

	mustAppend(t, b, "c", 0, 100)
	drain(t, s)
	waitUntil(t, "the WAL front to pass 300", func() bool { return b.firstIndex() > 300 })
	if first, acked := b.firstIndex(), mustReadCheckpoint(t, dir); first > acked+1 {
		t.Fatalf("WAL truncated to %d, past the checkpoint %d", first, acked)
	}
	checkAtLeastOnceInOrder(t, sink.deliveredIndices(), 400)
	s.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBuffer(t, Config{Dir: dir, SegmentBytes: 1024})
	if first, last := b.firstIndex(), b.LastIndex(); first <= 300 || last != 400 {
		t.Fatalf("reopened WAL spans [%d, %d], want to start past 300 and end at 400", first, last)
	}
	sink = newMemSink()
	s = startShipper(t, b, sink, ShipperConfig{})
	mustAppend(t, b, "d", 0, 1)
	drain(t, s)
	if got := sink.deliveredIndices(); !slices.Equal(got, []uint64{401}) {
		t.Fatalf("after reopen the shipper delivered %v, want only 401", got)
	}
}

func TestShipperDrainEndsWithContext(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	mustAppend(t, b, "r", 0, 3)
	sink := newMemSink()
	sink.hold = true
	s := startShipper(t, b, sink, ShipperConfig{})
	sink.waitSends(t, 3)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Drain(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "3 records left") {
		t.Fatalf("Drain with the sink holding acks: %v, want context.Canceled and 3 records left", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := s.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with the sink holding acks: %v, want context.DeadlineExceeded", err)
	}

	for _, h := range sink.takeHeld(false) {
		sink.ack(h, nil)
	}
	drain(t, s)
}

func TestShipperCloseIdempotent(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	sink := newMemSink()
	sink.hold = true
	s := startShipper(t, b, sink, ShipperConfig{})
	mustAppend(t, b, "r", 0, 2)
	sink.waitSends(t, 2)
	s.Close()
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := s.Drain(ctx); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("Drain after Close with a backlog: %v, want a shipper-stopped error", err)
	}
	for _, h := range sink.takeHeld(false) {
		sink.ack(h, nil) // after Close: ignored, nothing panics
	}
}

// A checkpoint past the end of the WAL means one of them was replaced; the
// shipper ships the whole WAL rather than skipping anything.
func TestShipperCheckpointPastEnd(t *testing.T) {
	tests := map[string]struct {
		acked   uint64
		records int // in the WAL before the checkpoint is written
	}{
		"empty WAL":          {acked: 1 << 40},
		"WAL with records":   {acked: 1 << 40, records: 7},
		"max uint64":         {acked: 1<<64 - 1, records: 3},
		"one past the end":   {acked: 8, records: 7},
		"at the end, normal": {acked: 7, records: 7},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			b := openBuffer(t, Config{Dir: dir})
			if tc.records > 0 {
				mustAppend(t, b, "old", 0, tc.records)
			}
			b.Close()
			if err := writeCheckpoint(dir, tc.acked); err != nil {
				t.Fatal(err)
			}

			b = openBuffer(t, Config{Dir: dir})
			sink := newMemSink()
			s := startShipper(t, b, sink, ShipperConfig{})
			mustAppend(t, b, "new", 0, 2)
			drain(t, s)
			last := uint64(tc.records + 2)
			want := span(1, last)
			if tc.acked == uint64(tc.records) {
				want = span(last-1, last)
			}
			if got := sink.deliveredIndices(); !slices.Equal(got, want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}
			s.Close()
			if got := mustReadCheckpoint(t, dir); got != last {
				t.Fatalf("checkpoint after Close = %d, want %d", got, last)
			}
		})
	}
}

// A checkpoint before the start of the WAL: the shipper starts at the WAL's
// first record.
func TestShipperCheckpointBeforeStart(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir, SegmentBytes: 256})
	mustAppend(t, b, "r", 0, 40)
	if n, err := b.removeAcked(20); err != nil || n == 0 {
		t.Fatalf("removeAcked(20) = %d, %v; want segments removed", n, err)
	}
	first := b.firstIndex()
	if first <= 5 || first > 21 {
		t.Fatalf("first index %d after removing segments through 20, want in (5, 21]", first)
	}
	b.Close()
	if err := writeCheckpoint(dir, 5); err != nil {
		t.Fatal(err)
	}
	b = openBuffer(t, Config{Dir: dir, SegmentBytes: 256})
	if got := b.firstIndex(); got != first {
		t.Fatalf("FirstIndex after reopen = %d, want %d", got, first)
	}
	sink := newMemSink()
	drain(t, startShipper(t, b, sink, ShipperConfig{}))
	if got := sink.deliveredIndices(); !slices.Equal(got, span(first, 40)) {
		t.Fatalf("delivered %v, want %d..40", got, first)
	}
}

// Records that cannot be decoded are skipped and counted; the rest ship, and
// Drain finishes even when nothing decodable follows them.
func TestShipperSkipsCorruptRecords(t *testing.T) {
	tests := map[string]string{ // r: a record, g: garbage bytes, z: an empty (zeroed) entry
		"in the middle":     "rrrgzrrr",
		"at the head":       "grr",
		"at the tail":       "rrg",
		"only garbage":      "gz",
		"between many good": "rrrrrrrrrrgrrrrrrrrrrzrrrrrrrrrr",
	}
	for name, layout := range tests {
		t.Run(name, func(t *testing.T) {
			b := openBuffer(t, Config{Dir: t.TempDir()})
			var want []uint64
			for i, c := range layout {
				switch c {
				case 'r':
					first, _ := mustAppend(t, b, "r", i, 1)
					want = append(want, first)
				case 'g':
					writeRaw(t, b, []byte("this is not a record frame at all"))
				case 'z':
					writeRaw(t, b, nil)
				}
			}
			sink := newMemSink()
			// No checkpoint tick comes to the rescue within the test.
			s := startShipper(t, b, sink, ShipperConfig{CheckpointInterval: time.Hour})
			drain(t, s)
			if got := sink.deliveredIndices(); !slices.Equal(got, want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}
			bad := strings.Count(layout, "g") + strings.Count(layout, "z")
			if got := testutil.ToFloat64(s.corrupt); got != float64(bad) {
				t.Errorf("sluice_wal_corrupt_records_total = %v, want %d", got, bad)
			}
			if s.AckedIndex() != uint64(len(layout)) {
				t.Errorf("AckedIndex = %d, want %d", s.AckedIndex(), len(layout))
			}
		})
	}
}

// writeRaw writes bytes at the WAL's next index behind the writer's back, as
// a damaged disk would. Call it only while no append is under way.
func writeRaw(t *testing.T, b *Buffer, data []byte) {
	t.Helper()
	next := b.LastIndex() + 1
	b.mu.RLock()
	err := b.wal.Write(next, data)
	b.mu.RUnlock()
	if err != nil {
		t.Fatalf("write raw entry %d: %v", next, err)
	}
	b.lastIndex.Store(next)
}

// A failed WAL write, while the shipper reads, loses nothing that was
// acknowledged to the appender.
func TestShipperAcrossWriteFailure(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	sink := newMemSink()
	s := startShipper(t, b, sink, ShipperConfig{})
	mustAppend(t, b, "before", 0, 5)
	b.failWrite.Store(true)
	if r := appendWait(t, b, testFrames("lost", 0, 3)); r.err == nil {
		t.Fatal("append on a failing log succeeded")
	}
	mustAppend(t, b, "after", 0, 5)
	b.StopWrites()
	drain(t, s)
	checkAtLeastOnceInOrder(t, sink.deliveredIndices(), 10)
	for _, d := range sink.deliveries() {
		if strings.HasPrefix(d.value, "lost") {
			t.Errorf("index %d delivered %q from the failed append", d.index, d.value)
		}
	}
}

// Close unregisters the shipper's metrics, so a new shipper can register them
// on the same registry.
func TestShipperMetricsUnregister(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	for run := 1; run <= 3; run++ {
		b := openBuffer(t, Config{Dir: dir, Registerer: reg})
		bufferOnly := len(gatherValues(t, reg))
		s := startShipper(t, b, newMemSink(), ShipperConfig{Registerer: reg}) // panics if still registered
		mustAppend(t, b, "m", run, 2)
		drain(t, s)
		vals := gatherValues(t, reg)
		if got := vals["sluice_wal_acked_index"]; got != float64(2*run) {
			t.Errorf("run %d: sluice_wal_acked_index = %v, want %d", run, got, 2*run)
		}
		if got := vals["sluice_shipped_records_total"]; got != 2 {
			t.Errorf("run %d: sluice_shipped_records_total = %v, want 2", run, got)
		}
		s.Close()
		if got := len(gatherValues(t, reg)); got != bufferOnly {
			t.Fatalf("run %d: after Close %d metrics registered, want the buffer's %d", run, got, bufferOnly)
		}
		b.Close()
	}
}

// fastBreaker is a breaker that cycles in milliseconds, for tests.
func fastBreaker() BreakerConfig {
	return BreakerConfig{OpenFor: 5 * time.Millisecond, ProbeRecords: 2, MinFailures: 3, SilenceTimeout: time.Hour}
}

func breakerTransitions(s *Shipper, to string) float64 {
	return testutil.ToFloat64(s.breaker.transitions.WithLabelValues(to))
}

// While the sink fails the breaker cycles: open, nothing is sent; half-open,
// at most ProbeRecords records are sent; and once the sink recovers every
// record is delivered exactly once, in WAL order.
func TestShipperBreakerCycles(t *testing.T) {
	const n = 200
	b := openBuffer(t, Config{Dir: t.TempDir()})
	mustAppend(t, b, "r", 0, n)
	sink := newMemSink()
	sink.setFailing(-1)
	cfg := ShipperConfig{Breaker: fastBreaker()}

	// The breaker's state at each send, and how many times it had opened.
	type atSend struct {
		state gobreaker.State
		opens float64
	}
	var mu sync.Mutex
	var states []atSend
	var shipper atomic.Pointer[Shipper]
	sink.onSend = func(uint64) {
		if s := shipper.Load(); s != nil { // nil in the first pass, before it could open
			mu.Lock()
			states = append(states, atSend{s.breaker.state(), breakerTransitions(s, "open")})
			mu.Unlock()
		}
	}
	s := startShipper(t, b, sink, cfg)
	shipper.Store(s)

	waitUntil(t, "the breaker to open three times", func() bool { return breakerTransitions(s, "open") >= 3 })
	mustAppend(t, b, "late", 0, 20) // the WAL grows while the breaker cycles
	sink.setFailing(0)
	drain(t, s)

	if got := sink.deliveredIndices(); !slices.Equal(got, span(1, n+20)) {
		t.Fatalf("delivered %v, want 1..%d exactly once, in order", got, n+20)
	}
	mu.Lock()
	defer mu.Unlock()
	probes := map[float64]int{} // sends in each half-open spell, by the number of opens before it
	for i, st := range states {
		switch st.state {
		case gobreaker.StateOpen:
			t.Fatalf("send %d happened while the breaker was open", i)
		case gobreaker.StateHalfOpen:
			if probes[st.opens]++; probes[st.opens] > cfg.Breaker.ProbeRecords {
				t.Fatalf("send %d: %d sends in one half-open spell, ProbeRecords is %d", i, probes[st.opens], cfg.Breaker.ProbeRecords)
			}
		}
	}
	if len(probes) < 3 {
		t.Errorf("probes sent in %d half-open spells, want at least 3", len(probes))
	}
	if closed := breakerTransitions(s, "closed"); closed < 1 {
		t.Errorf("breaker never closed again after the sink recovered")
	}
}

// A misconfigured sink opens the breaker at the first failure, whatever the
// failure counts, and the error is logged at error level once per
// loudLogEvery however many records fail.
func TestShipperMisconfiguredOpensBreakerAtOnce(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	mustAppend(t, b, "r", 0, 50)
	sink := newMemSink()
	sink.setFailing(-1)
	sink.failWith = fmt.Errorf("%w: TOPIC_AUTHORIZATION_FAILED", ErrMisconfigured)
	logs := &logRecorder{}
	s := startShipper(t, b, sink, ShipperConfig{Logger: slog.New(logs),
		Breaker: BreakerConfig{OpenFor: time.Hour, MinFailures: 1000}})
	waitUntil(t, "the breaker to open", func() bool { return s.breaker.state() == gobreaker.StateOpen })
	sink.waitSends(t, 50)
	waitUntil(t, "the failures to be collected", func() bool { return testutil.ToFloat64(s.sendErrors) == 50 })
	if got := logs.count(slog.LevelError, "the sink refuses records"); got != 1 {
		t.Errorf("%d error-level logs for 50 refused records, want 1 (rate-limited)", got)
	}
	if st := s.Status(); st.Breaker != "open" || !strings.Contains(st.LastErrorText, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("status breaker %q, last error %q; want open and the refusal", st.Breaker, st.LastErrorText)
	}
	if got := len(sink.sent()); got != 50 {
		t.Errorf("%d sends with the breaker open since the first failures, want the first 50 only", got)
	}
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count is how many records at level have a message containing msg.
func (l *logRecorder) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level == level && strings.Contains(r.Message, msg) {
			n++
		}
	}
	return n
}

// rejectingSink answers like a Kafka producer that refuses bad records: a
// batch holding one is rejected whole, every record in it (franz-go fails
// the partition's whole buffer). While holding, sends wait for flush and
// form one batch; otherwise each send is a batch of its own.
type rejectingSink struct {
	mu        sync.Mutex
	hold      bool
	held      []heldAck
	bad       func(rec *Record) bool
	sends     []sentRecord
	delivered []sentRecord
	changed   chan struct{}
}

type sentRecord struct {
	index      uint64
	value      string
	deadLetter bool
}

func newRejectingSink(bad func(*Record) bool) *rejectingSink {
	return &rejectingSink{bad: bad, changed: make(chan struct{}, 1)}
}

func (s *rejectingSink) Send(index uint64, rec *Record, done func(uint64, error)) {
	s.mu.Lock()
	s.sends = append(s.sends, sentRecord{index, string(rec.Value), rec.DeadLetter})
	s.held = append(s.held, heldAck{index, rec, done})
	hold := s.hold
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	if !hold {
		s.flush()
	}
}

// flush answers the held records as one batch.
func (s *rejectingSink) flush() {
	s.mu.Lock()
	batch := s.held
	s.held = nil
	var err error
	for _, h := range batch {
		if s.bad(h.rec) {
			err = fmt.Errorf("%w: INVALID_RECORD", ErrRejected)
		}
	}
	if err == nil {
		for _, h := range batch {
			s.delivered = append(s.delivered, sentRecord{h.index, string(h.rec.Value), h.rec.DeadLetter})
		}
	}
	s.mu.Unlock()
	for _, h := range batch {
		h.done(h.index, err)
	}
}

func (s *rejectingSink) waitHeld(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		s.mu.Lock()
		got := len(s.held)
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("sink holds %d records, want %d", got, n)
		}
	}
}

func (s *rejectingSink) snapshot() (sends, delivered []sentRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sends), slices.Clone(s.delivered)
}

func sentIndices(rs []sentRecord) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.index)
	}
	return out
}

// testDeadLetter builds dead letters the way the enrich envelope does in
// spirit: the reason and the original value.
func testDeadLetter(calls *int) func(*Record, string) *Record {
	return func(rec *Record, reason string) *Record {
		*calls++
		return &Record{ID: rec.ID, TimeMs: rec.TimeMs, Key: rec.Key, Value: []byte("dead:" + reason + ":" + string(rec.Value))}
	}
}

// A batch holding a record Kafka refuses is rejected whole. The shipper
// sends each rejected record again alone, in WAL order: the innocent ones
// are delivered, the culprit goes to the dead-letter topic with the reason,
// or is dropped and counted when even its dead letter is refused. Nothing
// is retried forever: Drain finishes.
func TestShipperRejectedRecords(t *testing.T) {
	const n, culprit = 12, 5
	isCulprit := func(r *Record) bool { return string(r.Value) == fmt.Sprintf("r/%d", culprit-1) }
	tests := map[string]struct {
		bad          func(*Record) bool
		deadLetter   bool // configure a DeadLetter builder
		culpritIsDLQ bool // the culprit is itself a dead letter (an invalid event)
		wantDLQ      bool // the culprit's dead letter lands
		wantDropped  uint64
		wantDLSend   bool // a dead letter of the culprit is sent
	}{
		"dead letter accepted": {bad: isCulprit, deadLetter: true, wantDLQ: true, wantDLSend: true},
		"dead letter refused too": {
			bad:        func(r *Record) bool { return isCulprit(r) || strings.HasPrefix(string(r.Value), "dead:") },
			deadLetter: true, wantDropped: 1, wantDLSend: true,
		},
		"no dead-letter builder":          {bad: isCulprit, wantDropped: 1},
		"the culprit is a dead letter":    {bad: isCulprit, deadLetter: true, culpritIsDLQ: true, wantDropped: 1},
		"the batch, not a record, failed": {bad: onlyFirstBatch()},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := openBuffer(t, Config{Dir: t.TempDir()})
			frames := testFrames("r", 0, n)
			if tc.culpritIsDLQ {
				r := testRecord("r", culprit-1)
				r.DeadLetter = true
				frames[culprit-1] = AppendRecord(nil, &r)
			}
			if r := appendWait(t, b, frames); r.err != nil {
				t.Fatal(r.err)
			}
			sink := newRejectingSink(tc.bad)
			sink.hold = true
			calls := 0
			cfg := ShipperConfig{}
			if tc.deadLetter {
				cfg.DeadLetter = testDeadLetter(&calls)
			}
			s := startShipper(t, b, sink, cfg)
			sink.waitHeld(t, n)
			sink.mu.Lock()
			sink.hold = false // from now on each send is answered alone
			sink.mu.Unlock()
			sink.flush()
			drain(t, s)
			s.Close()

			sends, delivered := sink.snapshot()
			// The batch, then every record again alone in WAL order; the
			// culprit's dead letter right after the culprit.
			want := span(1, n)
			for i := uint64(1); i <= n; i++ {
				want = append(want, i)
				if i == culprit && tc.wantDLSend {
					want = append(want, i)
				}
			}
			if got := sentIndices(sends); !slices.Equal(got, want) {
				t.Fatalf("sends %v, want %v", got, want)
			}
			var wantDelivered []uint64
			for i := uint64(1); i <= n; i++ {
				if i != culprit || tc.wantDropped == 0 {
					wantDelivered = append(wantDelivered, i)
				}
			}
			if got := sentIndices(delivered); !slices.Equal(got, wantDelivered) {
				t.Fatalf("delivered %v, want %v", got, wantDelivered)
			}
			for _, d := range delivered {
				if d.index == culprit && tc.wantDLQ {
					if !d.deadLetter || !strings.Contains(d.value, "rejected by the sink") || !strings.HasSuffix(d.value, ":r/4") {
						t.Errorf("culprit delivered as %+v, want a dead letter with the reason and the original value", d)
					}
				}
			}
			snap := b.Ledger().Snapshot()
			if got := snap["dropped/"+ReasonRejectedBySink]; got != tc.wantDropped {
				t.Errorf("dropped{%s} = %d, want %d", ReasonRejectedBySink, got, tc.wantDropped)
			}
			if r, a := b.Ledger().Balance(); r != a || snap["buffered"] != 0 {
				t.Errorf("ledger: received %d, accounted for %d, buffered %d", r, a, snap["buffered"])
			}
			if tc.culpritIsDLQ && calls != 0 {
				t.Errorf("DeadLetter called %d times for a record that was a dead letter already", calls)
			}
			if wantCount := map[bool]float64{true: 1}[tc.wantDLSend]; testutil.ToFloat64(s.deadLettered) != wantCount {
				t.Errorf("sluice_ship_dead_lettered_total = %v, want %v", testutil.ToFloat64(s.deadLettered), wantCount)
			}
		})
	}
}

// onlyFirstBatch rejects the first batch it is asked about (every record in
// it), as a transient CORRUPT_MESSAGE would, and nothing after it.
func onlyFirstBatch() func(*Record) bool {
	var mu sync.Mutex
	var seen map[string]bool
	first := true
	return func(r *Record) bool {
		mu.Lock()
		defer mu.Unlock()
		if seen == nil {
			seen = map[string]bool{}
		}
		v := string(r.Value)
		if first && seen[v] {
			first = false // a record seen again: the first batch is over
		}
		seen[v] = true
		return first
	}
}

// resumingSink is a memSink that implements Resumer and logs sends, their
// failures and resumes in order.
type resumingSink struct {
	*memSink
	mu     sync.Mutex
	events []string
}

func (r *resumingSink) Send(index uint64, rec *Record, done func(uint64, error)) {
	r.memSink.Send(index, rec, func(i uint64, err error) {
		r.mu.Lock()
		if err != nil {
			r.events = append(r.events, fmt.Sprintf("fail %d", i))
		} else {
			r.events = append(r.events, fmt.Sprintf("ok %d", i))
		}
		r.mu.Unlock()
		done(i, err)
	})
}

func (r *resumingSink) Resume() {
	r.mu.Lock()
	r.events = append(r.events, "resume")
	r.mu.Unlock()
}

// After failures the shipper resumes a Resumer sink once, when nothing is in
// flight, right before the first re-send; never without a failure.
func TestShipperResumesSinkAfterFailures(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	mustAppend(t, b, "r", 0, 5)
	sink := &resumingSink{memSink: newMemSink()}
	sink.failAt[2] = 1
	sink.failAt[4] = 1
	s := startShipper(t, b, sink, ShipperConfig{})
	drain(t, s)
	mustAppend(t, b, "r", 5, 1)
	drain(t, s)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	want := []string{"ok 1", "fail 2", "ok 3", "fail 4", "ok 5", "resume", "ok 2", "ok 4", "ok 6"}
	if !slices.Equal(sink.events, want) {
		t.Fatalf("events %v, want %v", sink.events, want)
	}
}

// Records the sink withheld are sent again after the rewind, and say nothing
// about the sink's health: no breaker failure, no error in the status.
func TestShipperResendsWithheldRecords(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	mustAppend(t, b, "r", 0, 50)
	sink := newMemSink()
	sink.failNext = 40
	sink.failWith = fmt.Errorf("kafka sink: %w", ErrWithheld)
	s := startShipper(t, b, sink, ShipperConfig{Breaker: BreakerConfig{MinFailures: 1, FailureRatio: 0.01, OpenFor: time.Hour}})
	drain(t, s)
	checkResends(t, sink, 50)
	st := s.Status()
	if st.Breaker != "closed" || st.LastError != nil || st.State != SinkUp {
		t.Errorf("after withheld records: %+v, want a closed breaker, no error, up", st)
	}
	if got := testutil.ToFloat64(s.sendErrors); got != 0 {
		t.Errorf("sluice_ship_errors_total = %v for withheld records, want 0", got)
	}
}
