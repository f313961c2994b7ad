package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-gateway/sluice/buffer"
)

func TestClassifyProduceError(t *testing.T) {
	if classifyProduceError(nil) != nil {
		t.Fatal("classifyProduceError(nil) is not nil")
	}
	tests := []struct {
		err  error
		want error
	}{
		// franz-go wraps a record too large for a batch like this.
		{fmt.Errorf("%w (uncompressed_bytes=2000000)", kerr.MessageTooLarge), buffer.ErrRejected},
		{kerr.RecordListTooLarge, buffer.ErrRejected},
		{kerr.InvalidRecord, buffer.ErrRejected},
		{kerr.CorruptMessage, buffer.ErrRejected},

		{kerr.TopicAuthorizationFailed, buffer.ErrMisconfigured},
		{kerr.ClusterAuthorizationFailed, buffer.ErrMisconfigured},
		{kerr.SaslAuthenticationFailed, buffer.ErrMisconfigured},
		{kerr.UnknownTopicOrPartition, buffer.ErrMisconfigured},
		{kerr.InvalidRequiredAcks, buffer.ErrMisconfigured},
		{kerr.InvalidTimestamp, buffer.ErrMisconfigured},
		{fmt.Errorf("dial: %w", x509.UnknownAuthorityError{}), buffer.ErrMisconfigured},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, buffer.ErrMisconfigured},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, buffer.ErrMisconfigured},

		{kerr.NotLeaderForPartition, buffer.ErrRetriable},
		{kerr.NotEnoughReplicas, buffer.ErrRetriable},
		{kerr.RequestTimedOut, buffer.ErrRetriable},
		{kgo.ErrRecordTimeout, buffer.ErrRetriable},
		{kgo.ErrRecordRetries, buffer.ErrRetriable},
		{kgo.ErrClientClosed, buffer.ErrRetriable},
		{context.DeadlineExceeded, buffer.ErrRetriable},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, buffer.ErrRetriable},
		{io.EOF, buffer.ErrRetriable},
	}
	classes := []error{buffer.ErrRejected, buffer.ErrMisconfigured, buffer.ErrRetriable}
	for _, tc := range tests {
		got := classifyProduceError(tc.err)
		if !errors.Is(got, tc.want) {
			t.Errorf("classifyProduceError(%v) = %v, want class %v", tc.err, got, tc.want)
		}
		for _, c := range classes {
			if c != tc.want && errors.Is(got, c) {
				t.Errorf("classifyProduceError(%v) = %v is also in class %v", tc.err, got, c)
			}
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("classifyProduceError(%v) = %v no longer wraps the cause", tc.err, got)
		}
	}
}

// What the Sink's done callback gets for each class of produce error, as a
// broker (kfake) answers them.
func TestSinkClassifiesBrokerErrors(t *testing.T) {
	tests := []struct {
		name  string
		code  *kerr.Error
		count int // produce requests the fault answers; -1 for all
		want  error
	}{
		{"invalid record is rejected", kerr.InvalidRecord, -1, buffer.ErrRejected},
		{"message too large from the broker is rejected", kerr.MessageTooLarge, -1, buffer.ErrRejected},
		{"topic authorization is misconfigured", kerr.TopicAuthorizationFailed, -1, buffer.ErrMisconfigured},
		{"invalid required acks is misconfigured", kerr.InvalidRequiredAcks, -1, buffer.ErrMisconfigured},
		// franz-go retries a leader move itself: the record is delivered.
		// (Each retry waits for a metadata refresh, about 5s: one failure.)
		{"not leader is retried by the client", kerr.NotLeaderForPartition, 1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: testTopic, Err: tc.code, Count: tc.count})
			defer fault.Remove()
			s := newSink(t, c.ListenAddrs(), nil)
			errs := sendAll(t, s, 1, []*buffer.Record{newRecord(t, "k", "v", false)}).wait(waitTimeout)
			if tc.want == nil {
				if errs[1] != nil {
					t.Fatalf("done error %v, want the record delivered after the client's retries", errs[1])
				}
				consume(t, c.ListenAddrs(), 1, testTopic)
				return
			}
			if !errors.Is(errs[1], tc.want) || !errors.Is(errs[1], tc.code) {
				t.Fatalf("done error %v, want %v wrapping %v", errs[1], tc.want, tc.code)
			}
		})
	}
}

// A record larger than a batch fails in the client, before any broker sees
// it: rejected, and the records around it still ship.
func TestSinkOversizeRecordIsRejected(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.BatchMaxBytes = 4096 })
	big := newRecord(t, "k", string(make([]byte, 8192)), false)
	errs := sendAll(t, s, 1, []*buffer.Record{newRecord(t, "k", "a", false), big, newRecord(t, "k", "b", false)}).wait(waitTimeout)
	if !errors.Is(errs[2], buffer.ErrRejected) || !errors.Is(errs[2], kerr.MessageTooLarge) {
		t.Errorf("oversize record: %v, want rejected MESSAGE_TOO_LARGE", errs[2])
	}
	if errs[1] != nil || errs[3] != nil {
		t.Errorf("records around it: %v, %v; want both delivered", errs[1], errs[3])
	}
}

// The sink counts records in flight per partition from franz-go's
// partitioned hook to the promise: while the broker does not answer they
// show there, and every count is back to zero once all are answered.
func TestSinkInFlightPartitions(t *testing.T) {
	c := newCluster(t)
	slow := holdProduces(c)
	s := newSink(t, c.ListenAddrs(), nil)
	var recs []*buffer.Record
	for i := range 60 {
		recs = append(recs, newRecord(t, fmt.Sprintf("user-%d", i%10), fmt.Sprintf("v%d", i), false))
	}
	a := sendAll(t, s, 1, recs)
	slow.waitHeld(t)
	total := func() (n int64, parts int) {
		for _, p := range s.InFlightPartitions() {
			if p.Topic != testTopic || p.Partition < 0 || p.Partition >= testPartitions || p.InFlight < 0 {
				t.Fatalf("bad partition count %+v", p)
			}
			n += p.InFlight
			if p.InFlight > 0 {
				parts++
			}
		}
		return n, parts
	}
	// franz-go partitions records waiting for metadata in a loop that may
	// still run as the first request is held: poll until all are counted.
	deadline := time.Now().Add(waitTimeout)
	for n, _ := total(); n != 60 && time.Now().Before(deadline); n, _ = total() {
		time.Sleep(time.Millisecond)
	}
	if n, parts := total(); n != 60 || parts < 2 {
		t.Errorf("while the broker holds the produce: %d records in flight over %d partitions, want 60 over several", n, parts)
	}
	slow.release()
	requireAllNil(t, a.wait(waitTimeout))
	if n, _ := total(); n != 0 {
		t.Errorf("after every record was answered: %d in flight, want 0", n)
	}
	// A record failed before franz-go partitioned it is never counted.
	s2 := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.BatchMaxBytes = 1024 })
	sendAll(t, s2, 1, []*buffer.Record{newRecord(t, "k", string(make([]byte, 4096)), false)}).wait(waitTimeout)
	for _, p := range s2.InFlightPartitions() {
		if p.InFlight != 0 {
			t.Errorf("oversize record left %+v", p)
		}
	}
}

// slowBroker holds produce requests unanswered, as a hung broker would,
// until release: the client waits rather than failing anything.
type slowBroker struct {
	held     chan struct{} // closed when a produce request is being held
	released chan struct{}
	heldOnce sync.Once
	relOnce  sync.Once
}

// holdProduces makes c hold every produce request until release. Release
// before the test ends: kfake's Close also wakes held requests.
func holdProduces(c *kfake.Cluster) *slowBroker {
	sb := &slowBroker{held: make(chan struct{}), released: make(chan struct{})}
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-sb.released:
			c.DropControl() // answered normally from now on
			return nil, nil, false
		default:
		}
		sb.heldOnce.Do(func() { close(sb.held) })
		c.SleepControl(func() { <-sb.released })
		return nil, nil, false // then the cluster answers it as usual
	})
	return sb
}

func (sb *slowBroker) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-sb.held:
	case <-time.After(waitTimeout):
		t.Fatal("no produce request reached the broker")
	}
}

func (sb *slowBroker) release() { sb.relOnce.Do(func() { close(sb.released) }) }

// The fence rises on franz-go's own log line when it fails a written batch,
// before any promise runs: the moment that keeps a later record from being
// written ahead of the failed ones.
func TestSinkFenceRisesWithFailedBatch(t *testing.T) {
	c := newCluster(t)
	defer c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: testTopic, Err: kerr.InvalidRecord}).Remove()
	fence := newSendFence()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(testTopic),
		kgo.WithLogger(fenceLogger{kgo.BasicLogger(io.Discard, kgo.LogLevelWarn, nil), fence}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	raisedAtPromise := make(chan bool, 1)
	cl.Produce(context.Background(), &kgo.Record{Value: []byte("v")}, func(_ *kgo.Record, err error) {
		_, open := fence.admit()
		if !errors.Is(err, kerr.InvalidRecord) {
			t.Errorf("produce: %v, want INVALID_RECORD", err)
		}
		raisedAtPromise <- !open
	})
	select {
	case raised := <-raisedAtPromise:
		if !raised {
			t.Fatalf("the fence was not raised when the failed record's promise ran: franz-go's %q log line changed?", logProducerIDFailed)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no promise")
	}
}

// After a failure the sink withholds records, cancelling those not yet
// written, until Resume; then it sends again.
func TestSinkWithholdsUntilResume(t *testing.T) {
	c := newCluster(t)
	denied := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: testTopic, Err: kerr.TopicAuthorizationFailed, Count: -1})
	s := newSink(t, c.ListenAddrs(), nil)
	if err := sendAll(t, s, 1, []*buffer.Record{newRecord(t, "k", "a", false)}).wait(waitTimeout)[1]; !errors.Is(err, buffer.ErrMisconfigured) {
		t.Fatalf("denied record: %v, want misconfigured", err)
	}
	denied.Remove()
	if err := sendAll(t, s, 2, []*buffer.Record{newRecord(t, "k", "b", false)}).wait(waitTimeout)[2]; !errors.Is(err, buffer.ErrWithheld) {
		t.Fatalf("record sent after the failure, before Resume: %v, want withheld", err)
	}
	s.Resume()
	requireAllNil(t, sendAll(t, s, 1, []*buffer.Record{newRecord(t, "k", "a", false)}).wait(waitTimeout))
	if got := consume(t, c.ListenAddrs(), 1, testTopic); string(got[0].Value) != "a" {
		t.Errorf("consumed %q, want a", got[0].Value)
	}
}
