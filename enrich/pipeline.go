package enrich

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gateway/sluice/buffer"
)

// Appender is the buffer's write side (satisfied by *buffer.Buffer).
type Appender interface {
	Append(frames [][]byte, done func(first, last uint64, err error))
}

// Config configures a Pipeline. The zero value of every field means its default.
type Config struct {
	// Workers is the number of enrichment goroutines. Default GOMAXPROCS.
	Workers int
	// QueueSize is how many requests may wait for a worker; past it Submit
	// fails at once with ErrQueueFull. Default 4096.
	QueueSize int
	// TrustedProxies may set X-Forwarded-For. Default none.
	TrustedProxies TrustedProxies
	// IP decides what of the client's address is recorded; applied before
	// anything reaches the WAL. Default: the whole address.
	IP IPAnonymizer
	// Ledger accounts for every event taken in (see buffer.Ledger); nil
	// keeps a private one.
	Ledger *buffer.Ledger
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the pipeline's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

var (
	// ErrQueueFull means the intake queue is full: answer 503 + Retry-After.
	ErrQueueFull = errors.New("intake queue full")
	// ErrClosed means the pipeline is shutting down: answer 503.
	ErrClosed = errors.New("pipeline closed")
	// ErrBufferFull is wrapped by a Done error when the buffer was at its
	// size limit or the disk was full.
	ErrBufferFull = buffer.ErrFull
)

// Batch is one request's events on their way to the buffer.
type Batch struct {
	Meta    Meta
	Events  []Event
	Invalid []Invalid
	// Done, if set, runs once the batch's records are durable in the WAL
	// (err nil) or failed to be written. It runs on the buffer's writer
	// goroutine and must not block.
	Done func(err error)
	// DropWhenFull says the client gets a 2xx even when the buffer refuses
	// the batch for being full (the drop-newest policy): the events then
	// count as dropped, not refused.
	DropWhenFull bool
}

// Pipeline is the bounded intake queue and its worker pool.
type Pipeline struct {
	cfg    Config
	log    *slog.Logger
	buf    Appender
	intake chan *Batch

	closeMu sync.RWMutex // Submit holds R; Close holds W to close intake
	closed  bool         // guarded by closeMu
	workers sync.WaitGroup

	events     *prometheus.CounterVec
	uas        *uaCache
	collectors []prometheus.Collector
}

// New starts the workers. Close stops them.
func New(buf Appender, cfg Config) *Pipeline {
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Ledger == nil {
		cfg.Ledger = buffer.NewLedger()
	}
	p := &Pipeline{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "enrich"),
		buf:    buf,
		intake: make(chan *Batch, cfg.QueueSize),
		uas:    newUACache(4096),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_events_total",
			Help: "Events by outcome: accepted (valid, queued for the WAL), invalid (queued for the dead-letter topic), rejected (the client got an error).",
		}, []string{"outcome"}),
	}
	p.collectors = []prometheus.Collector{
		p.events,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_intake_queue_length",
			Help: "Requests waiting for an enrichment worker.",
		}, func() float64 { return float64(len(p.intake)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_intake_queue_capacity",
			Help: "Requests the intake queue holds before answering 503.",
		}, func() float64 { return float64(cap(p.intake)) }),
	}
	for _, outcome := range []string{"accepted", "invalid", "rejected"} {
		p.events.WithLabelValues(outcome) // exported as 0 before the first event
	}
	if cfg.Registerer != nil {
		for _, c := range p.collectors {
			cfg.Registerer.MustRegister(c)
		}
	}
	for range cfg.Workers {
		p.workers.Add(1)
		go p.work()
	}
	return p
}

// Submit queues b without waiting: it fails with ErrQueueFull when the queue
// is full and ErrClosed after Close. On success b.Done will be called.
func (p *Pipeline) Submit(b *Batch) error {
	p.closeMu.RLock()
	defer p.closeMu.RUnlock()
	n := float64(len(b.Events) + len(b.Invalid))
	if p.closed {
		p.events.WithLabelValues("rejected").Add(n)
		return ErrClosed
	}
	select {
	case p.intake <- b:
		p.cfg.Ledger.Received(len(b.Events) + len(b.Invalid))
		p.events.WithLabelValues("accepted").Add(float64(len(b.Events)))
		p.events.WithLabelValues("invalid").Add(float64(len(b.Invalid)))
		return nil
	default:
		p.events.WithLabelValues("rejected").Add(n)
		return ErrQueueFull
	}
}

// DropNewest accounts for n events dropped on arrival because the buffer is
// full and the policy is drop-newest.
func (p *Pipeline) DropNewest(n int) {
	p.cfg.Ledger.ReceivedDropped(n, buffer.ReasonBufferFull)
}

// CountRejected records events the gateway refused after Submit succeeded
// (for example a failed WAL write).
func (p *Pipeline) CountRejected(n int) {
	p.events.WithLabelValues("rejected").Add(float64(n))
}

func (p *Pipeline) work() {
	defer p.workers.Done()
	var scratch encodeScratch
	for b := range p.intake {
		p.process(b, &scratch)
	}
}

// encodeScratch is a worker's reusable encoding space. A batch's frames are
// built here, then copied into one allocation of exactly their size: the
// frames stay in memory while they wait for Kafka (the writer's hand-off, the
// producer's buffers), and a grown, half-empty buffer per request doubled
// the gateway's heap under a backlog.
type encodeScratch struct {
	val, arena []byte
	ends       []int
}

// process enriches one batch and hands its records to the buffer in one call,
// so a request's events stay together and in order.
func (p *Pipeline) process(b *Batch, sc *encodeScratch) {
	ctx := Context{
		UserAgent: b.Meta.UserAgent,
		Origin:    b.Meta.Origin,
		Referer:   b.Meta.Referer,
		Source:    b.Meta.Source,
	}
	// The zero Addr (no peer address) would print as "invalid IP".
	if ip := p.cfg.TrustedProxies.ClientIP(b.Meta.RemoteAddr, b.Meta.XForwardedFor); ip.IsValid() {
		ctx.IP = p.cfg.IP.Apply(ip)
	}
	if ctx.UserAgent != "" {
		ctx.UA = p.uas.parse(ctx.UserAgent)
	}
	receivedAt := b.Meta.ReceivedAt
	if receivedAt.IsZero() {
		receivedAt = time.Now()
	}
	ms := receivedAt.UnixMilli()
	n := len(b.Events) + len(b.Invalid)
	val, arena, ends := sc.val[:0], sc.arena[:0], sc.ends[:0]
	for i := range b.Events {
		ev := &b.Events[i]
		id, err := uuid.NewV7()
		if err != nil {
			p.fail(b, fmt.Errorf("event id: %w", err))
			return
		}
		val = appendEnvelope(val[:0], id, receivedAt, ev, &ctx)
		rec := buffer.Record{ID: id, TimeMs: ms, Key: recordKey(ev, id), Value: val}
		arena = buffer.AppendRecord(arena, &rec)
		ends = append(ends, len(arena))
	}
	for i := range b.Invalid {
		id, err := uuid.NewV7()
		if err != nil {
			p.fail(b, fmt.Errorf("event id: %w", err))
			return
		}
		val = appendDeadLetter(val[:0], id, receivedAt, &b.Invalid[i], &ctx)
		rec := buffer.Record{ID: id, TimeMs: ms, DeadLetter: true, Key: appendUUID(nil, id), Value: val}
		arena = buffer.AppendRecord(arena, &rec)
		ends = append(ends, len(arena))
	}
	frames := exactFrames(arena, ends)
	sc.val, sc.arena, sc.ends = val, arena, ends
	done := b.Done
	p.buf.Append(frames, func(_, _ uint64, err error) {
		if err != nil {
			reason := buffer.ReasonWALWrite
			if errors.Is(err, buffer.ErrFull) {
				reason = buffer.ReasonBufferFull
			}
			clientTold := done != nil && !(b.DropWhenFull && reason == buffer.ReasonBufferFull)
			p.cfg.Ledger.NotWritten(n, reason, clientTold)
			if done == nil {
				// --ack=enqueue: the client already has its 2xx, nobody
				// else can report the loss.
				p.log.Error("events lost after a 2xx (--ack=enqueue): the WAL write failed", "events", n, "err", err)
			}
		}
		if done != nil {
			done(err) // the handler is waiting and answers 503 on an error
		}
	})
}

// exactFrames copies the frames encoded back to back in arena (frame i ends
// at ends[i]) into one allocation of their exact size. Nothing writes to it
// again, so the frames can be shared with the WAL writer and the shipper.
func exactFrames(arena []byte, ends []int) [][]byte {
	out := make([]byte, len(arena))
	copy(out, arena)
	frames := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		frames[i] = out[start:end:end]
		start = end
	}
	return frames
}

func (p *Pipeline) fail(b *Batch, err error) {
	p.log.Error("enrich batch", "err", err)
	p.cfg.Ledger.NotWritten(len(b.Events)+len(b.Invalid), buffer.ReasonEnrich, b.Done != nil)
	if b.Done != nil {
		b.Done(err)
	}
}

// recordKey keeps one user's events on one partition, in order: user id, else
// anonymous id, else the event id.
func recordKey(ev *Event, id uuid.UUID) []byte {
	switch {
	case ev.UserID != "":
		return []byte(ev.UserID)
	case ev.AnonymousID != "":
		return []byte(ev.AnonymousID)
	}
	return appendUUID(nil, id)
}

// Close stops taking batches, lets the workers hand every queued batch to the
// buffer, and waits for them. It is idempotent.
func (p *Pipeline) Close() {
	p.closeMu.Lock()
	if !p.closed {
		p.closed = true
		close(p.intake)
	}
	p.closeMu.Unlock()
	p.workers.Wait()
	if p.cfg.Registerer != nil {
		for _, c := range p.collectors {
			p.cfg.Registerer.Unregister(c)
		}
	}
}
