package enrich

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-gateway/sluice/buffer"
)

// appendCall is one Append the pipeline made.
type appendCall struct {
	frames [][]byte
	recs   []buffer.Record // decoded from frames, Key and Value copied
	done   func(first, last uint64, err error)
}

// fakeAppender stands in for *buffer.Buffer: it decodes and records every
// frame it gets. By default it calls done at once with err; entered, gate and
// holdDone let a test see a call, hold the worker inside Append, or complete
// the call itself later.
type fakeAppender struct {
	t        testing.TB
	err      error            // given to done when Append calls it
	entered  chan *appendCall // if non-nil, every call is sent here first
	gate     chan struct{}    // if non-nil, Append waits for a token (or its close) before returning
	holdDone bool             // leave done to the test, which gets it through entered

	mu    sync.Mutex
	calls []*appendCall // guarded by mu
}

func (a *fakeAppender) Append(frames [][]byte, done func(first, last uint64, err error)) {
	c := &appendCall{frames: frames, done: done}
	for i, f := range frames {
		if cap(f) != len(f) {
			a.t.Errorf("frame %d: cap %d > len %d, a later append could overwrite the next frame", i, cap(f), len(f))
		}
		var r buffer.Record
		if err := buffer.DecodeRecord(f, &r); err != nil {
			a.t.Errorf("frame %d: %v", i, err)
			continue
		}
		r.Key, r.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
		c.recs = append(c.recs, r)
	}
	a.mu.Lock()
	a.calls = append(a.calls, c)
	a.mu.Unlock()
	if a.entered != nil {
		a.entered <- c
	}
	if a.gate != nil {
		<-a.gate
	}
	if !a.holdDone {
		done(1, uint64(len(frames)), a.err)
	}
}

// Calls returns the calls so far, after checking that no frame changed since
// it was handed over (the buffer may hold frames until they are written).
func (a *fakeAppender) Calls() []*appendCall {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, c := range a.calls {
		for j, f := range c.frames {
			var r buffer.Record
			if err := buffer.DecodeRecord(f, &r); err != nil {
				a.t.Fatalf("call %d frame %d changed after Append: %v", i, j, err)
			}
			if j < len(c.recs) && !bytes.Equal(r.Value, c.recs[j].Value) {
				a.t.Fatalf("call %d frame %d changed after Append", i, j)
			}
		}
	}
	return append([]*appendCall(nil), a.calls...)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newPipeline starts a pipeline over a and closes it when the test ends.
func newPipeline(t *testing.T, a Appender, cfg Config) *Pipeline {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	p := New(a, cfg)
	t.Cleanup(p.Close)
	return p
}

// doneChan returns a Batch.Done that reports on the returned channel.
func doneChan() (func(error), chan error) {
	ch := make(chan error, 1)
	return func(err error) { ch <- err }, ch
}

func mustEvent(t *testing.T, raw string) Event {
	t.Helper()
	ev, reason := Validate([]byte(raw))
	if reason != "" {
		t.Fatalf("Validate(%s): %s", raw, reason)
	}
	return ev
}

func decodeValue(t *testing.T, r *buffer.Record) map[string]any {
	t.Helper()
	return decodeJSON(t, r.Value)
}

func TestPipelineBatch(t *testing.T) {
	app := &fakeAppender{t: t}
	proxies, err := ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, app, Config{Workers: 2, TrustedProxies: proxies})

	receivedAt := time.Date(2024, 6, 1, 12, 30, 15, 987654321, time.UTC)
	done, doneCh := doneChan()
	b := &Batch{
		Meta: Meta{
			ReceivedAt:    receivedAt,
			RemoteAddr:    netip.MustParseAddr("::ffff:10.1.2.3"),
			XForwardedFor: "203.0.113.50, 198.51.100.7, 10.9.9.9",
			UserAgent:     iPhoneUA,
			Origin:        "https://app.example",
			Referer:       "https://app.example/home",
			Source:        "ios-web",
		},
		Events: []Event{
			mustEvent(t, `{"type":"first","user_id":"u-1","anonymous_id":"a-1","sent_at":"2024-06-01T12:30:14Z"}`),
			mustEvent(t, `{"type":"second","anonymousId":"a-2"}`),
			mustEvent(t, `{"type":"third"}`),
		},
		Invalid: []Invalid{
			{Raw: []byte(`{"type":5}`), Reason: `"type" (or "event") must be a string`},
			{Raw: []byte("[\"\xff\"]"), Reason: "invalid UTF-8"},
		},
		Done: done,
	}
	if err := p.Submit(b); err != nil {
		t.Fatal(err)
	}
	if err := <-doneCh; err != nil {
		t.Fatalf("Done(%v), want nil", err)
	}

	calls := app.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d Append calls, want 1 per batch", len(calls))
	}
	recs := calls[0].recs
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}

	wantTypes := []string{"first", "second", "third"}
	wantKeys := []string{"u-1", "a-2", ""} // "" is the event id
	var prev uuid.UUID
	for i := range recs {
		r := &recs[i]
		id := uuid.UUID(r.ID)
		if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
			t.Errorf("record %d: id %s is not a UUIDv7 (version %d, variant %s)", i, id, id.Version(), id.Variant())
		}
		if bytes.Compare(id[:], prev[:]) <= 0 {
			t.Errorf("record %d: id %s does not sort after %s", i, id, prev)
		}
		prev = id
		if r.TimeMs != receivedAt.UnixMilli() {
			t.Errorf("record %d: TimeMs %d, want %d", i, r.TimeMs, receivedAt.UnixMilli())
		}
		v := decodeValue(t, r)
		if v["id"] != id.String() {
			t.Errorf("record %d: envelope id %v, record id %s", i, v["id"], id)
		}
		if want := "2024-06-01T12:30:15.987654321Z"; v["received_at"] != want {
			t.Errorf("record %d: received_at %v, want %s", i, v["received_at"], want)
		}
		c, _ := v["context"].(map[string]any)
		want := map[string]any{
			"ip": "198.51.100.7", "user_agent": iPhoneUA,
			"ua": map[string]any{
				"browser": "Safari", "browser_version": "17.4", "os": "iOS", "os_version": "17.4", "device": "mobile",
			},
			"origin": "https://app.example", "referer": "https://app.example/home", "source": "ios-web",
		}
		if fmt.Sprint(c) != fmt.Sprint(want) {
			t.Errorf("record %d: context\n got %v\nwant %v", i, c, want)
		}

		if i < len(b.Events) { // events first, in order
			if r.DeadLetter {
				t.Errorf("record %d: an event flagged DeadLetter", i)
			}
			if v["type"] != wantTypes[i] {
				t.Errorf("record %d: type %v, want %s", i, v["type"], wantTypes[i])
			}
			wantKey := wantKeys[i]
			if wantKey == "" {
				wantKey = id.String()
			}
			if string(r.Key) != wantKey {
				t.Errorf("record %d: key %q, want %q", i, r.Key, wantKey)
			}
			var payload json.RawMessage
			if err := json.Unmarshal(r.Value, &struct {
				Payload *json.RawMessage `json:"payload"`
			}{&payload}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(payload, b.Events[i].Raw) {
				t.Errorf("record %d: payload %s, want the raw event %s", i, payload, b.Events[i].Raw)
			}
			continue
		}
		inv := b.Invalid[i-len(b.Events)]
		if !r.DeadLetter {
			t.Errorf("record %d: a dead letter not flagged DeadLetter", i)
		}
		if string(r.Key) != id.String() {
			t.Errorf("record %d: dead-letter key %q, want the event id %s", i, r.Key, id)
		}
		if v["reason"] != inv.Reason {
			t.Errorf("record %d: reason %v, want %q", i, v["reason"], inv.Reason)
		}
		if want := strings.ToValidUTF8(string(inv.Raw), "\ufffd"); v["raw"] != want {
			t.Errorf("record %d: raw %q, want %q", i, v["raw"], want)
		}
	}
	if v := decodeValue(t, &recs[0]); v["sent_at"] != "2024-06-01T12:30:14Z" || v["user_id"] != "u-1" || v["anonymous_id"] != "a-1" {
		t.Errorf("record 0: sent_at/user_id/anonymous_id %v/%v/%v", v["sent_at"], v["user_id"], v["anonymous_id"])
	}
}

// Without a receive time the pipeline stamps its own; without a peer address,
// the ip is empty rather than the zero Addr's "invalid IP"; without a user
// agent there is no "ua".
func TestPipelineZeroMeta(t *testing.T) {
	app := &fakeAppender{t: t}
	p := newPipeline(t, app, Config{Workers: 1})
	done, doneCh := doneChan()
	before := time.Now()
	if err := p.Submit(&Batch{Events: []Event{mustEvent(t, `{"type":"t"}`)}, Done: done}); err != nil {
		t.Fatal(err)
	}
	if err := <-doneCh; err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	r := &app.Calls()[0].recs[0]
	if r.TimeMs < before.UnixMilli() || r.TimeMs > after.UnixMilli() {
		t.Errorf("TimeMs %d outside [%d, %d]", r.TimeMs, before.UnixMilli(), after.UnixMilli())
	}
	v := decodeValue(t, r)
	at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v["received_at"]))
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(before) || at.After(after) || at.UnixMilli() != r.TimeMs {
		t.Errorf("received_at %s outside [%s, %s] or not TimeMs %d", at, before, after, r.TimeMs)
	}
	want := map[string]any{"ip": ""}
	if c := v["context"]; fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("context %v, want %v", c, want)
	}
}

func TestPipelineUntrustedPeer(t *testing.T) {
	app := &fakeAppender{t: t}
	proxies, _ := ParseTrustedProxies("10.0.0.0/8")
	p := newPipeline(t, app, Config{Workers: 1, TrustedProxies: proxies})
	done, doneCh := doneChan()
	b := &Batch{
		Meta: Meta{
			RemoteAddr:    netip.MustParseAddr("2001:db8::1"),
			XForwardedFor: "198.51.100.7",
			UserAgent:     chromeUA,
		},
		Events: []Event{mustEvent(t, `{"event":"e","type":"track"}`)},
		Done:   done,
	}
	if err := p.Submit(b); err != nil {
		t.Fatal(err)
	}
	<-doneCh
	c := decodeValue(t, &app.Calls()[0].recs[0])["context"].(map[string]any)
	if c["ip"] != "2001:db8::1" {
		t.Errorf("ip %v, want the untrusted peer 2001:db8::1", c["ip"])
	}
	if ua := c["ua"].(map[string]any); ua["browser"] != "Chrome" || ua["device"] != "desktop" {
		t.Errorf("ua %v, want Chrome on a desktop", ua)
	}
}

func TestPipelineEmptyBatch(t *testing.T) {
	app := &fakeAppender{t: t}
	p := newPipeline(t, app, Config{Workers: 1})
	done, doneCh := doneChan()
	if err := p.Submit(&Batch{Done: done}); err != nil {
		t.Fatal(err)
	}
	if err := <-doneCh; err != nil {
		t.Fatal(err)
	}
	if calls := app.Calls(); len(calls) != 1 || len(calls[0].frames) != 0 {
		t.Fatalf("calls %v, want one call without frames", calls)
	}
}

func TestPipelineDoneGetsAppendError(t *testing.T) {
	errDisk := fmt.Errorf("write wal: %w", buffer.ErrFull)
	app := &fakeAppender{t: t, err: errDisk}
	ledger := buffer.NewLedger()
	p := newPipeline(t, app, Config{Workers: 1, Ledger: ledger})
	done, doneCh := doneChan()
	if err := p.Submit(&Batch{Events: []Event{mustEvent(t, `{"type":"t"}`)}, Done: done}); err != nil {
		t.Fatal(err)
	}
	if err := <-doneCh; !errors.Is(err, errDisk) {
		t.Fatalf("Done(%v), want %v", err, errDisk)
	}
	// A batch without Done (--ack=enqueue: the client has its 2xx) counts
	// its events as dropped, since nobody else can report the loss; the one
	// with Done was refused (its client got the error).
	if err := p.Submit(&Batch{Events: []Event{mustEvent(t, `{"type":"t"}`), mustEvent(t, `{"type":"u"}`)}}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if n := len(app.Calls()); n != 2 {
		t.Fatalf("%d Append calls, want 2", n)
	}
	got := ledger.Snapshot()
	want := buffer.LedgerSnapshot{
		"received/http":       3,
		"refused/buffer_full": 1,
		"dropped/buffer_full": 2,
		"buffered":            0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if r, a := ledger.Balance(); r != a {
		t.Errorf("ledger out of balance: received %d, accounted for %d", r, a)
	}
}

// Done runs when the buffer says so, not when Append returns.
func TestPipelineDoneAsync(t *testing.T) {
	app := &fakeAppender{t: t, entered: make(chan *appendCall, 1), holdDone: true}
	p := newPipeline(t, app, Config{Workers: 1})
	done, doneCh := doneChan()
	if err := p.Submit(&Batch{Events: []Event{mustEvent(t, `{"type":"t"}`)}, Done: done}); err != nil {
		t.Fatal(err)
	}
	c := <-app.entered
	p.Close() // the worker has returned from Append: only the test can complete the call
	select {
	case err := <-doneCh:
		t.Fatalf("Done(%v) before the buffer completed the append", err)
	default:
	}
	errWAL := errors.New("wal write failed")
	c.done(7, 7, errWAL)
	if err := <-doneCh; !errors.Is(err, errWAL) {
		t.Fatalf("Done(%v), want %v", err, errWAL)
	}
}

func TestSubmitQueueFull(t *testing.T) {
	app := &fakeAppender{t: t, entered: make(chan *appendCall, 3), gate: make(chan struct{})}
	p := newPipeline(t, app, Config{Workers: 1, QueueSize: 1})
	ev := []Event{mustEvent(t, `{"type":"t"}`)}

	if err := p.Submit(&Batch{Events: ev}); err != nil {
		t.Fatal(err)
	}
	<-app.entered // the only worker is now held inside Append
	if err := p.Submit(&Batch{Events: ev}); err != nil {
		t.Fatalf("second Submit: %v, want it queued", err)
	}
	for range 3 {
		if err := p.Submit(&Batch{Events: ev}); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Submit to a full queue: %v, want ErrQueueFull", err)
		}
	}
	// Room again once the worker takes the queued batch.
	app.gate <- struct{}{}
	<-app.entered
	if err := p.Submit(&Batch{Events: ev}); err != nil {
		t.Fatalf("Submit after the queue drained: %v", err)
	}
	close(app.gate)
	p.Close()
	if n := len(app.Calls()); n != 3 {
		t.Fatalf("%d Append calls, want the 3 accepted batches", n)
	}
}

func TestSubmitAfterClose(t *testing.T) {
	app := &fakeAppender{t: t}
	p := newPipeline(t, app, Config{Workers: 1})
	p.Close()
	called := false
	err := p.Submit(&Batch{Events: []Event{mustEvent(t, `{"type":"t"}`)}, Done: func(error) { called = true }})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
	if called || len(app.Calls()) != 0 {
		t.Fatal("a batch refused by Submit reached the buffer or its Done")
	}
}

// Close hands every queued batch to the Appender before it returns.
func TestCloseDrains(t *testing.T) {
	const queued = 50
	app := &fakeAppender{t: t, entered: make(chan *appendCall, queued+1), gate: make(chan struct{})}
	p := newPipeline(t, app, Config{Workers: 1, QueueSize: queued})
	var dones atomic.Int32
	submit := func(i int) {
		t.Helper()
		b := &Batch{
			Events: []Event{mustEvent(t, fmt.Sprintf(`{"type":"t","user_id":"b%d"}`, i))},
			Done:   func(error) { dones.Add(1) },
		}
		if err := p.Submit(b); err != nil {
			t.Fatalf("Submit %d: %v", i, err)
		}
	}
	submit(0)
	<-app.entered // the worker holds batch 0; the rest wait in the queue
	for i := 1; i <= queued; i++ {
		submit(i)
	}
	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	// Submit fails once Close has begun, yet nothing queued is lost.
	for {
		err := p.Submit(&Batch{Events: []Event{mustEvent(t, `{"type":"late"}`)}})
		if errors.Is(err, ErrClosed) {
			break
		}
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Submit during Close: %v, want ErrQueueFull or ErrClosed", err)
		}
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a worker was still inside Append")
	default:
	}
	close(app.gate)
	<-closed
	calls := app.Calls()
	if len(calls) != queued+1 {
		t.Fatalf("%d batches reached the Appender, want %d", len(calls), queued+1)
	}
	for i, c := range calls { // one worker: FIFO
		if want := fmt.Sprintf("b%d", i); string(c.recs[0].Key) != want {
			t.Fatalf("call %d has key %q, want %q", i, c.recs[0].Key, want)
		}
	}
	if n := dones.Load(); n != queued+1 {
		t.Fatalf("%d Done calls, want %d", n, queued+1)
	}
}

func TestCloseIdempotent(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := New(&fakeAppender{t: t}, Config{Workers: 3, Registerer: reg, Logger: discardLogger()})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(p.Close)
	}
	wg.Wait()
	p.Close()
	// Close unregistered the metrics, so a new pipeline may register them.
	p2 := New(&fakeAppender{t: t}, Config{Workers: 1, Registerer: reg, Logger: discardLogger()})
	p2.Close()
	p2.Close()
}

func TestPipelineMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	app := &fakeAppender{t: t, entered: make(chan *appendCall, 2), gate: make(chan struct{})}
	p := newPipeline(t, app, Config{Workers: 1, QueueSize: 1, Registerer: reg})
	var once sync.Once
	release := func() { once.Do(func() { close(app.gate) }) }
	defer release() // a failed assertion must not leave the worker blocked (and Close hanging)
	events := func(n int) []Event {
		evs := make([]Event, n)
		for i := range evs {
			evs[i] = mustEvent(t, `{"type":"t"}`)
		}
		return evs
	}
	invalid := func(n int) []Invalid { return make([]Invalid, n) }

	if err := p.Submit(&Batch{Events: events(2), Invalid: invalid(1)}); err != nil {
		t.Fatal(err)
	}
	<-app.entered
	if err := p.Submit(&Batch{Events: events(1)}); err != nil {
		t.Fatal(err)
	}
	if err := p.Submit(&Batch{Events: events(4), Invalid: invalid(2)}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Submit: %v, want ErrQueueFull", err)
	}
	p.CountRejected(5) // say the WAL write of an accepted batch failed

	const want = `
# HELP sluice_events_total Events by outcome: accepted (valid, queued for the WAL), invalid (queued for the dead-letter topic), rejected (the client got an error).
# TYPE sluice_events_total counter
sluice_events_total{outcome="accepted"} 3
sluice_events_total{outcome="invalid"} 1
sluice_events_total{outcome="rejected"} 11
# HELP sluice_intake_queue_capacity Requests the intake queue holds before answering 503.
# TYPE sluice_intake_queue_capacity gauge
sluice_intake_queue_capacity 1
# HELP sluice_intake_queue_length Requests waiting for an enrichment worker.
# TYPE sluice_intake_queue_length gauge
sluice_intake_queue_length 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}

	release()
	p.Close()
	if err := p.Submit(&Batch{Events: events(1), Invalid: invalid(1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
	for outcome, want := range map[string]float64{"accepted": 3, "invalid": 1, "rejected": 13} {
		if got := testutil.ToFloat64(p.events.WithLabelValues(outcome)); got != want {
			t.Errorf("sluice_events_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// Many goroutines submit at once (run with -race): every accepted batch
// reaches the buffer in one piece and in order, and the counters add up.
func TestPipelineConcurrentSubmit(t *testing.T) {
	const (
		goroutines = 16
		perG       = 100
	)
	reg := prometheus.NewRegistry()
	app := &fakeAppender{t: t}
	p := newPipeline(t, app, Config{Workers: 4, QueueSize: 8, Registerer: reg})

	var (
		accepted, rejected atomic.Int64 // events
		batches, dones     atomic.Int64
		wg                 sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				n := 1 + (g+i)%3
				b := &Batch{Done: func(err error) {
					if err != nil {
						t.Errorf("Done(%v)", err)
					}
					dones.Add(1)
				}}
				for j := range n {
					raw := fmt.Sprintf(`{"type":"t","user_id":"g%d-b%d","seq":%d}`, g, i, j)
					ev, reason := Validate([]byte(raw))
					if reason != "" {
						t.Errorf("Validate: %s", reason)
						return
					}
					b.Events = append(b.Events, ev)
				}
				b.Invalid = []Invalid{{Raw: []byte("[]"), Reason: "not a JSON object"}}
				switch err := p.Submit(b); {
				case err == nil:
					accepted.Add(int64(n))
					batches.Add(1)
				case errors.Is(err, ErrQueueFull):
					rejected.Add(int64(n + 1))
				default:
					t.Errorf("Submit: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP sluice_events_total Events by outcome: accepted (valid, queued for the WAL), invalid (queued for the dead-letter topic), rejected (the client got an error).
# TYPE sluice_events_total counter
sluice_events_total{outcome="accepted"} %d
sluice_events_total{outcome="invalid"} %d
sluice_events_total{outcome="rejected"} %d
`, accepted.Load(), batches.Load(), rejected.Load())), "sluice_events_total"); err != nil {
		t.Fatal(err)
	}
	p.Close()

	calls := app.Calls()
	if int64(len(calls)) != dones.Load() {
		t.Fatalf("%d Append calls, %d Done calls", len(calls), dones.Load())
	}
	var events int64
	for _, c := range calls {
		key := string(c.recs[0].Key)
		for j, r := range c.recs {
			if j == len(c.recs)-1 {
				if !r.DeadLetter {
					t.Fatalf("batch %s: last record is not the dead letter", key)
				}
				break
			}
			if r.DeadLetter || string(r.Key) != key {
				t.Fatalf("batch %s: record %d (key %q) from another batch", key, j, r.Key)
			}
			var v struct {
				Payload struct{ Seq int } `json:"payload"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatal(err)
			}
			if v.Payload.Seq != j {
				t.Fatalf("batch %s: record %d has seq %d", key, j, v.Payload.Seq)
			}
			events++
		}
	}
	if events != accepted.Load() {
		t.Fatalf("%d events reached the buffer, %d were accepted", events, accepted.Load())
	}
}

func TestUACache(t *testing.T) {
	c := newUACache(2)
	chrome := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	first := c.parse(chrome)
	if first.Name != "Chrome" {
		t.Fatalf("parsed %+v", first)
	}
	if c.c.Len() != 1 {
		t.Fatalf("cache holds %d entries after one parse, want 1", c.c.Len())
	}
	if again := c.parse(chrome); !reflect.DeepEqual(again, first) {
		t.Fatalf("cached parse %+v differs from the first %+v", again, first)
	}
	long := chrome + strings.Repeat(" x", maxCachedUA)
	if got := c.parse(long); got.Name != "Chrome" {
		t.Fatalf("long UA parsed as %+v", got)
	}
	if c.c.Contains(long) {
		t.Fatal("a UA over maxCachedUA was cached")
	}
}

// A batch's frames share one allocation of exactly their size, whatever the
// envelope adds: a grown, half-empty buffer per request doubled the heap
// while records waited for Kafka.
func TestFramesAreExactlySized(t *testing.T) {
	app := &fakeAppender{t: t}
	p := newPipeline(t, app, Config{Workers: 1})
	done, doneCh := doneChan()
	b := &Batch{Meta: Meta{UserAgent: strings.Repeat("Mozilla/5.0 ", 40)}, Done: done}
	for range 50 {
		b.Events = append(b.Events, mustEvent(t, `{"type":"t","anonymous_id":"a"}`))
	}
	b.Invalid = []Invalid{{Raw: []byte(`[1]`), Reason: "not a JSON object"}}
	if err := p.Submit(b); err != nil {
		t.Fatal(err)
	}
	if err := <-doneCh; err != nil {
		t.Fatal(err)
	}
	frames := app.Calls()[0].frames
	total := 0
	for i, f := range frames {
		total += len(f)
		if cap(f) != len(f) {
			t.Fatalf("frame %d has spare capacity %d", i, cap(f)-len(f))
		}
	}
	last := frames[len(frames)-1]
	whole := unsafe.Slice(unsafe.SliceData(frames[0]), total)
	if &whole[total-1] != &last[len(last)-1] {
		t.Fatal("the frames are not one contiguous allocation")
	}
	// The worker reuses its scratch space: the first batch's frames must not
	// live in it.
	before := string(whole)
	done2, doneCh2 := doneChan()
	if err := p.Submit(&Batch{Events: []Event{mustEvent(t, `{"type":"other","anonymous_id":"zzzzzzzz"}`)}, Done: done2}); err != nil {
		t.Fatal(err)
	}
	if err := <-doneCh2; err != nil {
		t.Fatal(err)
	}
	if string(whole) != before {
		t.Fatal("the next batch overwrote the first batch's frames")
	}
}
