package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-gateway/sluice/buffer"
)

const (
	testTopic      = "beacons"
	testDLQ        = "beacons-invalid"
	testPartitions = 6
	// waitTimeout bounds every wait on the cluster; generous for -race on
	// two cores, never reached when things work.
	waitTimeout = 20 * time.Second
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newCluster starts an in-process kfake cluster (three brokers, kfake's
// default) with the gateway's two topics, closed when the test ends.
func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.SeedTopics(testPartitions, testTopic, testDLQ)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake.NewCluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// newSink creates a Sink on brokers and closes it when the test ends (before
// the cluster, since cleanups run last-in first-out).
func newSink(t *testing.T, brokers []string, mutate func(*Config)) *Sink {
	t.Helper()
	cfg := Config{Brokers: brokers, InstanceID: "gw-test-1", Logger: discardLogger()}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx) // a test that closed it already gets a harmless second close
	})
	return s
}

// newRecord builds a record with a fresh UUIDv7 id.
func newRecord(t *testing.T, key, value string, deadLetter bool) *buffer.Record {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return &buffer.Record{ID: id, TimeMs: time.Now().UnixMilli(), DeadLetter: deadLetter, Key: []byte(key), Value: []byte(value)}
}

// acks collects done callbacks. It fails the test if an index is settled
// twice or an index that was never sent is settled.
type acks struct {
	t       *testing.T
	mu      sync.Mutex
	want    map[uint64]bool
	errs    map[uint64]error
	settled chan struct{} // closed when every wanted index is settled
}

func newAcks(t *testing.T, indices []uint64) *acks {
	a := &acks{t: t, want: make(map[uint64]bool, len(indices)), errs: make(map[uint64]error, len(indices)), settled: make(chan struct{})}
	for _, i := range indices {
		a.want[i] = true
	}
	if len(indices) == 0 {
		close(a.settled)
	}
	return a
}

func (a *acks) done(index uint64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.want[index] {
		a.t.Errorf("done called for index %d, which was not sent", index)
		return
	}
	if _, dup := a.errs[index]; dup {
		a.t.Errorf("done called twice for index %d (second err %v)", index, err)
		return
	}
	a.errs[index] = err
	if len(a.errs) == len(a.want) {
		close(a.settled)
	}
}

// count is the number of indices settled so far.
func (a *acks) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.errs)
}

// wait blocks until every index is settled or d passes, and returns a copy
// of the errors.
func (a *acks) wait(d time.Duration) map[uint64]error {
	a.t.Helper()
	select {
	case <-a.settled:
	case <-time.After(d):
		a.t.Fatalf("only %d of %d done callbacks ran within %v", a.count(), len(a.want), d)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[uint64]error, len(a.errs))
	for k, v := range a.errs {
		out[k] = v
	}
	return out
}

// requireAllNil fails unless every settled error is nil.
func requireAllNil(t *testing.T, errs map[uint64]error) {
	t.Helper()
	bad := 0
	for i, err := range errs {
		if err != nil {
			if bad < 5 {
				t.Errorf("index %d: done error %v", i, err)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d records failed", bad, len(errs))
	}
}

// newConsumer is a direct (group-less) consumer of topics from the start.
func newConsumer(t *testing.T, brokers []string, topics ...string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// consume reads exactly n records from topics, from the beginning. It fails
// if fewer arrive within waitTimeout, and checks with the partitions' end
// offsets that the topics hold no more than n records (nothing duplicated).
func consume(t *testing.T, brokers []string, n int, topics ...string) []*kgo.Record {
	t.Helper()
	cl := newConsumer(t, brokers, topics...)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records from %v before %v", len(out), n, topics, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s[%d]: %v", topic, p, err)
		})
		out = append(out, fs.Records()...)
	}
	if len(out) != n {
		t.Fatalf("consumed %d records from %v, want %d", len(out), topics, n)
	}
	if total := endOffsetSum(t, cl, topics...); total != int64(n) {
		t.Fatalf("topics %v hold %d records, want %d", topics, total, n)
	}
	return out
}

// endOffsetSum is the sum of the high watermarks of every partition of
// topics: the number of records they hold (nothing is deleted in these tests).
func endOffsetSum(t *testing.T, cl *kgo.Client, topics ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	offs, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	if err := offs.Error(); err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	var sum int64
	offs.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	return sum
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// sendAll sends recs with indices first, first+1, ... and returns the
// collector of their callbacks.
func sendAll(t *testing.T, s *Sink, first uint64, recs []*buffer.Record) *acks {
	t.Helper()
	idx := make([]uint64, len(recs))
	for i := range recs {
		idx[i] = first + uint64(i)
	}
	a := newAcks(t, idx)
	for i, r := range recs {
		s.Send(idx[i], r, a.done)
	}
	return a
}

func seqValue(key string, seq int) string { return fmt.Sprintf("%s/%06d", key, seq) }
