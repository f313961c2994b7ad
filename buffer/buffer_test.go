package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
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
	dto "github.com/prometheus/client_model/go"
)

// waitLimit bounds every wait in these tests; reaching it is a failure, never
// a way to let time pass.
const waitLimit = 20 * time.Second

var quietLogger = slog.New(slog.DiscardHandler)

// openBuffer opens a Buffer and closes it when the test ends (Close is
// idempotent, so a test may close it earlier).
func openBuffer(t *testing.T, cfg Config) *Buffer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	b, err := Open(cfg)
	if err != nil {
		t.Fatalf("open buffer: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close buffer: %v", err)
		}
	})
	return b
}

// testRecord is record i of the stream tag: its Value is "tag/i".
func testRecord(tag string, i int) Record {
	r := Record{TimeMs: int64(1_700_000_000_000 + i), Key: []byte(tag), Value: fmt.Appendf(nil, "%s/%d", tag, i)}
	binary.BigEndian.PutUint64(r.ID[8:], uint64(i))
	return r
}

// testFrames encodes records from..from+n-1 of the stream tag.
func testFrames(tag string, from, n int) [][]byte {
	frames := make([][]byte, n)
	for i := range n {
		r := testRecord(tag, from+i)
		frames[i] = AppendRecord(nil, &r)
	}
	return frames
}

func testValues(tag string, from, n int) []string {
	v := make([]string, n)
	for i := range n {
		v[i] = fmt.Sprintf("%s/%d", tag, from+i)
	}
	return v
}

type appendResult struct {
	first, last uint64
	err         error
}

// appendWait appends frames and waits for their done callback.
func appendWait(t *testing.T, b *Buffer, frames [][]byte) appendResult {
	t.Helper()
	ch := make(chan appendResult, 1)
	b.Append(frames, func(first, last uint64, err error) { ch <- appendResult{first, last, err} })
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit):
		t.Fatalf("append: done not called within %v", waitLimit)
		return appendResult{}
	}
}

// mustAppend appends records from..from+n-1 of the stream tag as one request
// and checks they got the n indices after the previous last one.
func mustAppend(t *testing.T, b *Buffer, tag string, from, n int) (first, last uint64) {
	t.Helper()
	want := b.LastIndex() + 1
	r := appendWait(t, b, testFrames(tag, from, n))
	if r.err != nil {
		t.Fatalf("append %d records: %v", n, r.err)
	}
	if r.first != want || r.last != want+uint64(n)-1 {
		t.Fatalf("append %d records: got indices [%d, %d], want [%d, %d]", n, r.first, r.last, want, want+uint64(n)-1)
	}
	return r.first, r.last
}

// readValues reads and decodes the WAL's records first..last. Only call it
// while no Shipper runs on b: the WAL has one reader.
func readValues(t *testing.T, b *Buffer, first, last uint64) []string {
	t.Helper()
	var vals []string
	for i := first; i <= last; i++ {
		frame, err := b.read(i)
		if err != nil {
			t.Fatalf("read index %d: %v", i, err)
		}
		var r Record
		if err := DecodeRecord(frame, &r); err != nil {
			t.Fatalf("decode index %d: %v", i, err)
		}
		vals = append(vals, string(r.Value))
	}
	return vals
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
	}
}

func TestOpenNeedsDir(t *testing.T) {
	if b, err := Open(Config{Logger: quietLogger}); err == nil {
		b.Close()
		t.Fatal("Open without a directory succeeded")
	}
}

// Many goroutines append at once; every request gets its own contiguous
// index range, the ranges tile 1..N, and each range holds the request's
// frames in order.
func TestAppendConcurrent(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	const goroutines, perGoroutine = 16, 40
	type result struct {
		tag   string
		n     int
		calls atomic.Int32
		appendResult
	}
	results := make([]*result, 0, goroutines*perGoroutine)
	for g := range goroutines {
		for i := range perGoroutine {
			results = append(results, &result{tag: fmt.Sprintf("g%d-r%d", g, i), n: 1 + (g+i)%5})
		}
	}
	var pending, appenders sync.WaitGroup
	pending.Add(len(results))
	for g := range goroutines {
		appenders.Add(1)
		go func() {
			defer appenders.Done()
			for _, r := range results[g*perGoroutine : (g+1)*perGoroutine] {
				b.Append(testFrames(r.tag, 0, r.n), func(first, last uint64, err error) {
					if r.calls.Add(1) == 1 {
						r.appendResult = appendResult{first, last, err}
						pending.Done()
					}
				})
			}
		}()
	}
	waitGroup(t, &appenders, "the appenders")
	waitGroup(t, &pending, "the done callbacks")

	total := 0
	for _, r := range results {
		total += r.n
		if c := r.calls.Load(); c != 1 {
			t.Errorf("%s: done called %d times", r.tag, c)
		}
		if r.err != nil {
			t.Fatalf("%s: %v", r.tag, r.err)
		}
		if got := int(r.last - r.first + 1); r.first == 0 || r.last < r.first || got != r.n {
			t.Errorf("%s: %d frames got indices [%d, %d]", r.tag, r.n, r.first, r.last)
		}
	}
	sorted := slices.Clone(results)
	slices.SortFunc(sorted, func(a, b *result) int { return int(a.first) - int(b.first) })
	next := uint64(1)
	for _, r := range sorted {
		if r.first != next {
			t.Fatalf("%s starts at index %d, want %d: ranges overlap or leave a gap", r.tag, r.first, next)
		}
		next = r.last + 1
	}
	if got := b.LastIndex(); got != uint64(total) || next-1 != uint64(total) {
		t.Fatalf("LastIndex = %d, ranges end at %d, want %d", got, next-1, total)
	}
	for _, r := range results {
		if got, want := readValues(t, b, r.first, r.last), testValues(r.tag, 0, r.n); !slices.Equal(got, want) {
			t.Errorf("%s: indices [%d, %d] hold %q, want %q", r.tag, r.first, r.last, got, want)
		}
	}
}

func TestAppendNoFrames(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	called := false
	b.Append(nil, func(first, last uint64, err error) {
		called = true
		if first != 0 || last != 0 || err != nil {
			t.Errorf("done(%d, %d, %v), want done(0, 0, nil)", first, last, err)
		}
	})
	if !called {
		t.Fatal("Append with no frames did not call done before returning")
	}
	if got := b.LastIndex(); got != 0 {
		t.Fatalf("LastIndex = %d after an empty append, want 0", got)
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	mustAppend(t, b, "a", 0, 3)
	mustAppend(t, b, "b", 0, 1)
	mustAppend(t, b, "c", 0, 4)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBuffer(t, Config{Dir: dir})
	if got := b.LastIndex(); got != 8 {
		t.Fatalf("LastIndex after reopen = %d, want 8", got)
	}
	want := slices.Concat(testValues("a", 0, 3), testValues("b", 0, 1), testValues("c", 0, 4))
	if got := readValues(t, b, 1, 8); !slices.Equal(got, want) {
		t.Fatalf("after reopen the WAL holds %q, want %q", got, want)
	}
	mustAppend(t, b, "d", 0, 2) // checks the indices continue at 9
}

func TestOpenLockedDir(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	b2, err := Open(Config{Dir: dir, Logger: quietLogger})
	if err == nil {
		b2.Close()
		t.Fatal("a second Open of a directory in use succeeded")
	}
	if !strings.Contains(err.Error(), "another process") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open: %q, want an error naming %s and saying another process uses it", err, dir)
	}
	mustAppend(t, b, "still-works", 0, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBuffer(t, Config{Dir: dir}) // the lock is released by Close
	if got := b.LastIndex(); got != 1 {
		t.Fatalf("LastIndex = %d, want 1", got)
	}
}

// A failed Open releases the directory lock.
// An unreadable checkpoint must not stop the gateway from starting: the
// shipper falls back to the whole WAL, which can only duplicate.
func TestOpenBadCheckpoint(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	mustAppend(t, b, "r", 0, 5)
	b.Close()
	if err := os.WriteFile(filepath.Join(dir, checkpointFile), []byte("not a number\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b = openBuffer(t, Config{Dir: dir})
	sink := newMemSink()
	drain(t, startShipper(t, b, sink, ShipperConfig{}))
	if got := sink.deliveredIndices(); !slices.Equal(got, span(1, 5)) {
		t.Fatalf("delivered %v, want 1..5", got)
	}
}

func TestAppendAfterStop(t *testing.T) {
	tests := map[string]func(*Buffer){
		"StopWrites": func(b *Buffer) { b.StopWrites() },
		"Close":      func(b *Buffer) { b.Close() },
	}
	for name, stop := range tests {
		t.Run(name, func(t *testing.T) {
			b := openBuffer(t, Config{Dir: t.TempDir()})
			mustAppend(t, b, "before", 0, 2)
			stop(b)
			stop(b) // idempotent
			for range 2 {
				if r := appendWait(t, b, testFrames("after", 0, 1)); !errors.Is(r.err, ErrClosed) || r.first != 0 || r.last != 0 {
					t.Fatalf("Append after %s: done(%d, %d, %v), want done(0, 0, ErrClosed)", name, r.first, r.last, r.err)
				}
			}
			if got := b.LastIndex(); got != 2 {
				t.Fatalf("LastIndex = %d, want 2", got)
			}
		})
	}
}

func TestStopWritesKeepsWALReadable(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	mustAppend(t, b, "x", 0, 3)
	b.StopWrites()
	if got, want := readValues(t, b, 1, 3), testValues("x", 0, 3); !slices.Equal(got, want) {
		t.Fatalf("after StopWrites the WAL reads %q, want %q", got, want)
	}
	for range 2 {
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	b.StopWrites() // after Close: a no-op, not a panic
}

// StopWrites returns only once every request queued before it is committed
// and its done callback has run.
func TestStopWritesCommitsQueued(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	const n = 200
	var ok, failed atomic.Int32
	for i := range n {
		b.Append(testFrames("q", i, 1), func(_, _ uint64, err error) {
			if err != nil {
				failed.Add(1)
				return
			}
			ok.Add(1)
		})
	}
	b.StopWrites()
	if ok.Load() != n || failed.Load() != 0 {
		t.Fatalf("after StopWrites %d appends succeeded and %d failed, want %d and 0", ok.Load(), failed.Load(), n)
	}
	if got := b.LastIndex(); got != n {
		t.Fatalf("LastIndex = %d, want %d", got, n)
	}
}

// A failed write reopens the log: the failed request gets an error, nothing
// durable is lost, and the next append takes the next index.
func TestWriteFailureReopens(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir, Registerer: prometheus.NewRegistry()})
	mustAppend(t, b, "before", 0, 3)

	b.failWrite.Store(true)
	if r := appendWait(t, b, testFrames("lost", 0, 2)); r.err == nil {
		t.Fatalf("append on a failing log: done(%d, %d, nil), want an error", r.first, r.last)
	}
	if got := testutil.ToFloat64(b.metrics.writeErrors); got != 1 {
		t.Errorf("sluice_wal_write_errors_total = %v, want 1", got)
	}
	if got := b.LastIndex(); got != 3 {
		t.Fatalf("LastIndex after the failed write = %d, want 3", got)
	}

	mustAppend(t, b, "after", 0, 2) // checks it gets indices 4 and 5
	want := slices.Concat(testValues("before", 0, 3), testValues("after", 0, 2))
	if got := readValues(t, b, 1, 5); !slices.Equal(got, want) {
		t.Fatalf("the WAL holds %q, want %q", got, want)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBuffer(t, Config{Dir: dir})
	if got := readValues(t, b, 1, b.LastIndex()); !slices.Equal(got, want) {
		t.Fatalf("after reopen the WAL holds %q, want %q", got, want)
	}
}

// Requests that queue while a commit is under way go into the next commit
// together: one fsync for many records.
func TestGroupCommit(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := openBuffer(t, Config{Dir: t.TempDir(), Registerer: reg})
	const appenders = 32

	// Holding the WAL lock stalls the writer in its first commit, so every
	// append below is queued before any later commit starts; no timing involved.
	b.mu.Lock()
	var pending, sent sync.WaitGroup
	pending.Add(appenders)
	var failed atomic.Int32
	for i := range appenders {
		sent.Add(1)
		go func() {
			defer sent.Done()
			b.Append(testFrames("gc", i, 1), func(_, _ uint64, err error) {
				if err != nil {
					failed.Add(1)
				}
				pending.Done()
			})
		}()
	}
	waitGroup(t, &sent, "the appenders to queue their requests")
	b.mu.Unlock()
	waitGroup(t, &pending, "the done callbacks")
	if failed.Load() != 0 {
		t.Fatalf("%d appends failed", failed.Load())
	}

	h := gatherHistogram(t, reg, "sluice_wal_group_commit_records")
	if h.GetSampleSum() != appenders {
		t.Errorf("group commits wrote %v records, want %d", h.GetSampleSum(), appenders)
	}
	// The first commit takes what had queued when the writer woke; the
	// second takes all the rest.
	if n := h.GetSampleCount(); n < 1 || n > 2 {
		t.Errorf("%d group commits for %d queued appends, want 1 or 2", n, appenders)
	}
	ones := uint64(0)
	for _, bk := range h.GetBucket() {
		if bk.GetUpperBound() == 1 {
			ones = bk.GetCumulativeCount()
		}
	}
	if ones == h.GetSampleCount() {
		t.Errorf("every group commit wrote one record; want a batch of more")
	}
	if got := testutil.ToFloat64(b.metrics.appendedRecords); got != appenders {
		t.Errorf("sluice_wal_appended_records_total = %v, want %d", got, appenders)
	}
}

// Close unregisters the buffer's metrics, so a restart in the same process
// can register them on the same registry again.
func TestMetricsUnregisterOnClose(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	for run := 1; run <= 3; run++ {
		b := openBuffer(t, Config{Dir: dir, Registerer: reg}) // panics if still registered
		_, last := mustAppend(t, b, "m", run, 2)
		vals := gatherValues(t, reg)
		if got := vals["sluice_wal_last_index"]; got != float64(last) {
			t.Errorf("run %d: sluice_wal_last_index = %v, want %d", run, got, last)
		}
		if got := vals["sluice_buffer_disk_bytes"]; got <= 0 {
			t.Errorf("run %d: sluice_buffer_disk_bytes = %v, want > 0", run, got)
		}
		if got := vals["sluice_wal_appended_records_total"]; got != 2 {
			t.Errorf("run %d: sluice_wal_appended_records_total = %v, want 2", run, got)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if left := gatherValues(t, reg); len(left) != 0 {
			t.Fatalf("run %d: after Close the registry still holds %v", run, left)
		}
	}
}

func gatherHistogram(t *testing.T, reg *prometheus.Registry, name string) *dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatalf("no metric %s registered", name)
	return nil
}

// gatherValues maps each registered unlabelled counter and gauge to its value.
func gatherValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := make(map[string]float64)
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			vals[mf.GetName()] = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			vals[mf.GetName()] = m.GetGauge().GetValue()
		default:
			vals[mf.GetName()] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	return vals
}

// When the reopen after a failed write fails too, the old log is never used
// again: appends fail fast (no corrupt index is handed out), and once the
// directory can be opened again the next append reopens it and continues.
func TestBrokenLogFailsFastThenRecovers(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	mustAppend(t, b, "r", 0, 3)
	// A START and an END file at once make tidwall/wal refuse to open.
	bogus := []string{filepath.Join(dir, "00000000000000000001.START"), filepath.Join(dir, "00000000000000000001.END")}
	for _, p := range bogus {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	b.reopenEvery = time.Hour
	b.mu.Unlock()
	b.failWrite.Store(true)
	if r := appendWait(t, b, testFrames("x", 0, 1)); r.err == nil {
		t.Fatal("append with a failing write succeeded")
	}
	b.mu.RLock()
	broken := b.broken
	b.mu.RUnlock()
	if !broken {
		t.Fatal("log not marked broken after a failed reopen")
	}
	if r := appendWait(t, b, testFrames("x", 0, 1)); !errors.Is(r.err, errWALUnavailable) {
		t.Fatalf("append on a broken log: %v, want errWALUnavailable", r.err)
	}
	if _, err := b.read(1); !errors.Is(err, errWALUnavailable) {
		t.Fatalf("read on a broken log: %v, want errWALUnavailable", err)
	}
	for _, p := range bogus {
		os.Remove(p)
	}
	b.mu.Lock()
	b.reopenEvery = 0
	b.mu.Unlock()
	if first, last := mustAppend(t, b, "after", 0, 2); first != 4 || last != 5 {
		t.Fatalf("append after recovery got %d..%d, want 4..5", first, last)
	}
	for i := uint64(1); i <= 5; i++ {
		if _, err := b.read(i); err != nil {
			t.Fatalf("read %d after recovery: %v", i, err)
		}
	}
}
