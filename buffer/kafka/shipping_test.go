package kafka

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-gateway/sluice/buffer"
)

// These tests run the shipper against the Kafka sink and kfake: the error
// classes end to end, the breaker, and per-key order through faults.

// shipRig is a WAL, its shipper and a Kafka sink on a kfake cluster.
type shipRig struct {
	buf  *buffer.Buffer
	ship *buffer.Shipper
	sink *Sink
}

func newShipRig(t *testing.T, c *kfake.Cluster, cfg buffer.ShipperConfig) *shipRig {
	t.Helper()
	buf, err := buffer.Open(buffer.Config{Dir: t.TempDir(), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// Uncompressed, so a fault can spot a record's bytes in a request; no
	// linger, so records sent alone go out at once.
	sink := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Compression, cfg.Linger = "none", -1 })
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	cfg.RetryBackoff, cfg.MaxRetryBackoff = time.Millisecond, 20*time.Millisecond
	ship := buffer.NewShipper(buf, sink, cfg)
	// Cleanups run last in, first out: shipper, then buffer, then the sink
	// (registered by newSink before them, so it closes after).
	t.Cleanup(func() {
		ship.Close()
		if err := buf.Close(); err != nil {
			t.Errorf("close buffer: %v", err)
		}
	})
	return &shipRig{buf: buf, ship: ship, sink: sink}
}

// appendRecords writes one request's records and returns their indices.
func (r *shipRig) appendRecords(t *testing.T, recs []*buffer.Record) (first, last uint64) {
	t.Helper()
	first, last, err := r.tryAppend(recs)
	if err != nil {
		t.Fatal(err)
	}
	return first, last
}

// tryAppend is appendRecords for goroutines other than the test's.
func (r *shipRig) tryAppend(recs []*buffer.Record) (first, last uint64, err error) {
	frames := make([][]byte, len(recs))
	for i, rec := range recs {
		frames[i] = buffer.AppendRecord(nil, rec)
	}
	type result struct {
		first, last uint64
		err         error
	}
	ch := make(chan result, 1)
	r.buf.Append(frames, func(first, last uint64, err error) { ch <- result{first, last, err} })
	select {
	case res := <-ch:
		if res.err != nil {
			return 0, 0, fmt.Errorf("append: %w", res.err)
		}
		return res.first, res.last, nil
	case <-time.After(waitTimeout):
		return 0, 0, fmt.Errorf("append: no answer within %v", waitTimeout)
	}
}

func (r *shipRig) drain(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := r.ship.Drain(ctx); err != nil {
		t.Fatalf("drain: %v (status %+v)", err, r.ship.Status())
	}
}

// waitFor polls cond: the shipper's state has no event to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// shippedPast waits until the shipper has shipped n records past the WAL's
// last index as of now.
func (r *shipRig) shippedPast(t *testing.T, what string, n uint64) {
	t.Helper()
	target := r.buf.LastIndex() + n
	waitFor(t, what, func() bool { return r.ship.AckedIndex() >= target })
}

func (r *shipRig) waitBreaker(t *testing.T, state string) {
	t.Helper()
	waitFor(t, "the breaker "+state, func() bool { return r.ship.Status().Breaker == state })
}

// walIndex is a consumed record's sluice-wal-index header.
func walIndex(t *testing.T, kr *kgo.Record) uint64 {
	t.Helper()
	v, ok := header(kr, HeaderWALIndex)
	if !ok {
		t.Fatalf("record %s[%d]@%d has no %s", kr.Topic, kr.Partition, kr.Offset, HeaderWALIndex)
	}
	i, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("bad %s %q", HeaderWALIndex, v)
	}
	return i
}

// checkWALOrder fails unless every index in want arrived exactly once and
// each key's records are on one partition with increasing WAL indices in
// offset order.
func checkWALOrder(t *testing.T, got []*kgo.Record, want map[uint64]bool) {
	t.Helper()
	last := map[string]uint64{}
	part := map[string]int32{}
	seen := map[uint64]bool{}
	for _, kr := range got {
		k, i := string(kr.Key), walIndex(t, kr)
		if !want[i] || seen[i] {
			t.Fatalf("wal index %d consumed (wanted %t, seen before %t)", i, want[i], seen[i])
		}
		seen[i] = true
		if p, ok := part[k]; ok && p != kr.Partition {
			t.Fatalf("key %s on partitions %d and %d", k, p, kr.Partition)
		}
		part[k] = kr.Partition
		if i <= last[k] {
			t.Fatalf("key %s: wal index %d at offset %d after %d: out of WAL order", k, i, kr.Offset, last[k])
		}
		last[k] = i
	}
	if len(seen) != len(want) {
		t.Fatalf("%d of %d records consumed", len(seen), len(want))
	}
}

// keyedRecords is n records over keys, round robin, with a marker value at
// position poison (-1 for none). Any goroutine may call it.
func keyedRecords(keys []string, n, poison int) []*buffer.Record {
	recs := make([]*buffer.Record, n)
	for i := range n {
		k := keys[i%len(keys)]
		v := seqValue(k, i)
		if i == poison {
			v = "POISON-" + v
		}
		recs[i] = &buffer.Record{ID: uuid.Must(uuid.NewV7()), TimeMs: time.Now().UnixMilli(), Key: []byte(k), Value: []byte(v)}
	}
	return recs
}

// produceCarries matches produce requests carrying marker in any record.
// (Recent produce versions name topics by id, so the fault's Topic selects
// the topic; a request carrying the marker elsewhere fails the topic's
// records in it too, which only makes them suspects sent again alone.)
func produceCarries(marker string) func(kmsg.Request) bool {
	return func(kreq kmsg.Request) bool {
		req, ok := kreq.(*kmsg.ProduceRequest)
		if !ok {
			return false
		}
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				if bytes.Contains(rp.Records, []byte(marker)) {
					return true
				}
			}
		}
		return false
	}
}

func deadLetterWithReason(rec *buffer.Record, reason string) *buffer.Record {
	return &buffer.Record{ID: rec.ID, TimeMs: rec.TimeMs, Key: rec.Key, Value: []byte(reason + " | " + string(rec.Value))}
}

// A record Kafka refuses (INVALID_RECORD on every request carrying it) takes
// its batch down with it; the shipper finds it by sending the rejected
// records alone, dead-letters it with the reason, and ships every other
// record once, in per-key WAL order. When the dead-letter topic refuses it
// too, it is dropped and counted, and shipping still ends.
func TestShipperDeadLettersWhatKafkaRejects(t *testing.T) {
	for _, dlqRefuses := range []bool{false, true} {
		t.Run(fmt.Sprintf("dead-letter topic refuses: %t", dlqRefuses), func(t *testing.T) {
			const n, poison = 200, 97
			c := newCluster(t)
			faults := []kfake.Fault{{Keys: []kmsg.Key{kmsg.Produce}, Topic: testTopic, Err: kerr.InvalidRecord,
				Count: -1, When: produceCarries("POISON")}}
			if dlqRefuses {
				faults = append(faults, kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: testDLQ, Err: kerr.InvalidRecord,
					Count: -1, When: produceCarries("POISON")})
			}
			defer c.Fault(faults...).Remove()
			r := newShipRig(t, c, buffer.ShipperConfig{DeadLetter: deadLetterWithReason})
			recs := keyedRecords([]string{"k0", "k1", "k2", "k3", "k4"}, n, poison)
			// The first records ship before the poison: a broker takes any
			// sequence number in the first batch it sees of a producer, so
			// a batch pipelined behind a rejected first one would land
			// ahead of it (see sendFence).
			r.appendRecords(t, recs[:20])
			r.drain(t)
			for i := 20; i < n; i += 20 {
				r.appendRecords(t, recs[i:i+20])
			}
			r.drain(t)

			want := map[uint64]bool{}
			for i := range uint64(n) {
				if i != poison {
					want[i+1] = true
				}
			}
			checkWALOrder(t, consume(t, c.ListenAddrs(), n-1, testTopic), want)
			snap := r.buf.Ledger().Snapshot()
			if dlqRefuses {
				if endOffsetSum(t, newConsumer(t, c.ListenAddrs()), testDLQ) != 0 {
					t.Errorf("the dead-letter topic holds records although it refuses the poison")
				}
				if snap["dropped/"+buffer.ReasonRejectedBySink] != 1 || snap["shipped/event"] != n-1 {
					t.Errorf("ledger %v, want 1 dropped as %s and %d shipped", snap, buffer.ReasonRejectedBySink, n-1)
				}
				return
			}
			dl := consume(t, c.ListenAddrs(), 1, testDLQ)[0]
			if !strings.Contains(string(dl.Value), "INVALID_RECORD") || !strings.Contains(string(dl.Value), "POISON-") ||
				walIndex(t, dl) != poison+1 || string(dl.Key) != string(recs[poison].Key) {
				t.Errorf("dead letter %q key %q index %d; want the reason, the original value, key and index %d", dl.Value, dl.Key, walIndex(t, dl), poison+1)
			}
			if id, _ := header(dl, HeaderEventID); id != uuid.UUID(recs[poison].ID).String() {
				t.Errorf("dead letter event id %s, want the original's", id)
			}
			if snap["shipped/dead_letter"] != 1 || snap["shipped/event"] != n-1 || snap["buffered"] != 0 {
				t.Errorf("ledger %v, want 1 dead letter and %d events shipped", snap, n-1)
			}
		})
	}
}

// shipLogRecorder is a slog.Handler that keeps every record's level and message.
type shipLogRecorder struct {
	mu   sync.Mutex
	logs []string
}

func (l *shipLogRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *shipLogRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.logs = append(l.logs, r.Level.String()+" "+r.Message)
	l.mu.Unlock()
	return nil
}
func (l *shipLogRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *shipLogRecorder) WithGroup(string) slog.Handler      { return l }

func (l *shipLogRecorder) has(prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.logs {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// An authorization failure opens the breaker at once and is logged at error
// level; the records wait in the WAL, and ship in order once it is fixed.
func TestShipperBreakerOnAuthorizationFailure(t *testing.T) {
	c := newCluster(t)
	denied := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: testTopic, Err: kerr.TopicAuthorizationFailed, Count: -1})
	logs := &shipLogRecorder{}
	r := newShipRig(t, c, buffer.ShipperConfig{Logger: slog.New(logs),
		Breaker: buffer.BreakerConfig{OpenFor: 100 * time.Millisecond, ProbeRecords: 5}})
	r.appendRecords(t, keyedRecords([]string{"a", "b", "c"}, 60, -1))
	r.waitBreaker(t, "open")
	st := r.ship.Status()
	if !strings.Contains(st.LastErrorText, "TOPIC_AUTHORIZATION_FAILED") || st.BacklogRecords != 60 || st.State == buffer.SinkUp {
		t.Errorf("status while denied: %+v", st)
	}
	waitFor(t, "the error-level log", func() bool { return logs.has("ERROR the sink refuses records") })

	denied.Remove()
	r.drain(t)
	want := map[uint64]bool{}
	for i := range uint64(60) {
		want[i+1] = true
	}
	checkWALOrder(t, consume(t, c.ListenAddrs(), 60, testTopic), want)
	r.waitBreaker(t, "closed")
}

// One key's events arrive in WAL order, each once, while records for a few
// keys keep flowing through a hung broker (the breaker opens on the
// silence), an authorization outage (records fail, the breaker opens at
// once, they are re-sent from the WAL) and leader moves the client retries.
func TestShipperKeepsPerKeyOrderThroughFaults(t *testing.T) {
	c := newCluster(t)
	r := newShipRig(t, c, buffer.ShipperConfig{
		Breaker: buffer.BreakerConfig{OpenFor: 100 * time.Millisecond, ProbeRecords: 5, SilenceTimeout: 300 * time.Millisecond},
	})
	keys := []string{"alice", "bob", "carol", "dave"}

	// The writer appends a request of 4 records every 2ms until stopped.
	w := startKeyedWriter(t, r, keys, 2*time.Millisecond)
	defer w.halt() // on a failed test, before the cleanups close the buffer

	r.shippedPast(t, "records shipping normally", 50)

	hung := holdProduces(c)
	r.waitBreaker(t, "open")
	hung.release()
	r.waitBreaker(t, "closed")
	r.shippedPast(t, "shipping after the hung broker", 50)

	denied := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: testTopic, Err: kerr.TopicAuthorizationFailed, Count: -1})
	r.waitBreaker(t, "open")
	denied.Remove()
	r.waitBreaker(t, "closed")
	r.shippedPast(t, "shipping after the authorization outage", 50)

	moved := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: testTopic, Err: kerr.NotLeaderForPartition, Count: 2})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := moved.Wait(ctx, 2); err != nil {
		t.Fatalf("leader-move faults not hit: %v", err)
	}
	r.shippedPast(t, "shipping after the leader moves", 50)

	n := r.checkShippedInOrder(t, c, w)
	t.Logf("%d records through a hung broker, an authorization outage and leader moves", n)
}

// checkShippedInOrder halts the writer, drains the shipper and checks every
// record written is in Kafka, each key in WAL order; it returns how many.
func (r *shipRig) checkShippedInOrder(t *testing.T, c *kfake.Cluster, w *keyedWriter) int {
	t.Helper()
	written := w.halt()
	r.drain(t)
	got := consume(t, c.ListenAddrs(), len(written), testTopic)
	checkWALOrder(t, got, written)
	return len(got)
}

// keyedWriter appends a request of one record per key every interval, on
// its own goroutine, until halted.
type keyedWriter struct {
	mu            sync.Mutex
	written       map[uint64]bool
	stop, stopped chan struct{}
	once          sync.Once
}

func startKeyedWriter(t *testing.T, r *shipRig, keys []string, every time.Duration) *keyedWriter {
	w := &keyedWriter{written: map[uint64]bool{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(w.stopped)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			first, last, err := r.tryAppend(keyedRecords(keys, len(keys), -1))
			if err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			w.mu.Lock()
			for i := first; i <= last; i++ {
				w.written[i] = true
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// halt stops the writer, waits for it and returns the indices it wrote; it
// may be called more than once.
func (w *keyedWriter) halt() map[uint64]bool {
	w.once.Do(func() { close(w.stop) })
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written
}
