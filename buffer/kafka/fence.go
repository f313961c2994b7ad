package kafka

import (
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// sendFence keeps one key's records in WAL order across a failure.
//
// When a batch fails, franz-go fails every record buffered for its
// partition, and the shipper re-sends them from the WAL once all in flight
// have settled. A record sent in between (the shipper learns of failures
// through promises, a little later) would land in Kafka ahead of the failed
// ones of its key. So the first failure raises the fence: records not yet
// written are cancelled (their context is done: franz-go fails an unwritten
// batch whose first record's context is done), and new sends are refused,
// both with buffer.ErrWithheld, until the shipper has taken the failures in
// and calls Resume.
//
// The promise comes too late on its own: franz-go fails the partition's
// buffer, then calls promises from another goroutine, and a record sent
// meanwhile starts a fresh batch that a new producer epoch lets through. So
// the fence rises on what franz-go does synchronously when it fails a
// written batch, before promises and before it writes anything else: it
// fails its producer id, and logs it (fenceLogger). The promise stays as
// the last resort, for failures that do not go through the producer id.
//
// What it cannot stop is a batch already written when the failure comes.
// franz-go pipelines up to five produce requests per broker; a broker
// refuses a batch that does not follow the last one it appended
// (OUT_OF_ORDER_SEQUENCE_NUMBER), but takes the first batch it sees of a
// producer on a partition whatever its sequence (Kafka 2.5+). So when that
// first batch is rejected, the one pipelined behind it can land first.
// kgo.MaxProduceRequestsInflightPerBroker(1) would close this too, at a
// cost in throughput; retriable errors never get here (franz-go retries
// them itself, in order).
type sendFence struct {
	mu     sync.Mutex
	raised bool
	done   chan struct{} // closed when raised; the Done of records admitted before
}

func newSendFence() *sendFence { return &sendFence{done: make(chan struct{})} }

// admit says whether a record may be produced now, and returns the channel
// its context is done on.
func (f *sendFence) admit() (<-chan struct{}, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done, !f.raised
}

// raise holds back every record not yet written, until resume.
func (f *sendFence) raise() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.raised {
		return
	}
	f.raised = true
	close(f.done)
}

// resume lets records through again.
func (f *sendFence) resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.raised {
		f.raised = false
		f.done = make(chan struct{})
	}
}

// logProducerIDFailed is what franz-go (v1.22) logs at info level, on the
// goroutine handling the produce response, when it fails a written batch
// and with it the producer id. Only this moment will do: the epoch bump
// that follows happens at the next produce, which is the shipper's re-send.
// TestSinkFenceRisesWithFailedBatch fails if the message changes.
const logProducerIDFailed = "producer ID failed due to a produce error"

// fenceLogger passes franz-go's logs on at the inner logger's level and
// raises the fence on logProducerIDFailed. It asks franz-go for info-level
// logs to see them; those are rare (per connection, per error).
type fenceLogger struct {
	inner kgo.Logger
	fence *sendFence
}

func (l fenceLogger) Level() kgo.LogLevel { return max(l.inner.Level(), kgo.LogLevelInfo) }

func (l fenceLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if strings.HasPrefix(msg, logProducerIDFailed) {
		l.fence.raise()
	}
	if level <= l.inner.Level() {
		l.inner.Log(level, msg, keyvals...)
	}
}
