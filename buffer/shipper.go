package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// Sink is where the shipper delivers records (Kafka in production).
type Sink interface {
	// Send hands one record to the sink and should not block for long. done
	// must be called exactly once, from any goroutine: with nil once the
	// record is durably stored downstream, or with the error that stopped it,
	// wrapped in ErrRejected, ErrMisconfigured or ErrWithheld when it is one
	// of those (see ErrRetriable). The sink owns rec from the call on.
	Send(index uint64, rec *Record, done func(index uint64, err error))
}

// ShipperConfig configures a Shipper. The zero value of every field means its default.
type ShipperConfig struct {
	// CheckpointInterval is the most often the acknowledged index is persisted;
	// after a crash, re-sent duplicates are bounded by what one interval ships.
	// Default 1s.
	CheckpointInterval time.Duration
	// TruncateInterval is the most often fully acknowledged segment files
	// are deleted from the WAL front (a directory listing and one unlink per
	// segment; no data is copied). Default: CheckpointInterval.
	TruncateInterval time.Duration
	// MaxInFlight caps records handed to the sink and not yet confirmed.
	// Default 4096: enough for 80 000 records/s at 50 ms per produce, and
	// what the Kafka client holds (and keeps retrying, or queues behind a
	// slow broker) while Kafka does not answer. At 16384 that was ~30 MB
	// more live heap during a slow broker, longer GC marks, and a live
	// p99 twice the one before the fault (docs/benchmarks.md).
	MaxInFlight int
	// RetryBackoff is the first wait after a failed send before the failed
	// records are re-read and sent again; it doubles up to MaxRetryBackoff.
	// Defaults 250ms and 10s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// DeadLetter builds the dead-letter record for rec, a record the sink
	// rejected (ErrRejected) even when sent alone; reason says why, for the
	// record's body. The result is sent to the dead-letter topic in rec's
	// place (its DeadLetter flag is set whatever the function left in it)
	// and must be small enough for the sink: keep only a bounded part of
	// rec.Value. Returning nil, or a nil DeadLetter, drops the record,
	// counted in the ledger as dropped with ReasonRejectedBySink. It runs on
	// the shipper goroutine; rec's Key and Value are read-only WAL memory.
	DeadLetter func(rec *Record, reason string) *Record
	// CatchUpRate caps the records per second the shipper reads back from
	// the WAL (after an outage, at start), so catching up cannot take the
	// CPU live requests need; records handed over in memory while it keeps
	// up are never paced. Zero means no cap.
	CatchUpRate float64
	// Breaker configures the circuit breaker that gates sending.
	Breaker BreakerConfig
	// DegradedAfter is how long records may wait in flight without any
	// answer before Status calls the sink degraded. Default 2s.
	DegradedAfter time.Duration
	// DownAfter is how long the sink must have been in trouble (failing,
	// silent, or its breaker not closed) before Status calls it down rather
	// than degraded, so that a short leader election never reads as an
	// outage. Default 10s.
	DownAfter time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the shipper's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

func (c *ShipperConfig) setDefaults() {
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = time.Second
	}
	if c.TruncateInterval <= 0 {
		c.TruncateInterval = c.CheckpointInterval
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4096
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 250 * time.Millisecond
	}
	if c.MaxRetryBackoff <= 0 {
		c.MaxRetryBackoff = 10 * time.Second
	}
	if c.DegradedAfter <= 0 {
		c.DegradedAfter = 2 * time.Second
	}
	if c.DownAfter <= 0 {
		c.DownAfter = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Breaker.setDefaults()
}

// Shipper is the WAL's only reader: it sends records to a Sink in WAL order
// and advances the acknowledged index over their contiguous confirmed prefix.
//
// A circuit breaker gates the sends: open, nothing is sent and the WAL grows;
// half-open, a few records probe the sink. Records the sink rejects are sent
// again alone, since a rejected batch fails all of its records; one rejected
// alone goes to the dead-letter topic (ShipperConfig.DeadLetter), and one
// whose dead letter is rejected too is dropped and counted.
type Shipper struct {
	buf  *Buffer
	sink Sink
	cfg  ShipperConfig
	log  *slog.Logger

	// Owned by the run goroutine.
	next      uint64  // next index to read
	acked     uint64  // every index <= acked is confirmed
	persisted uint64  // acked index last written to the checkpoint
	inFlight  int     // records handed to the sink and not yet settled
	window    []uint8 // slot state of (acked, next), indexed by index % len(window)
	failed    bool    // some record in flight failed; rewind once it settles
	backoff   time.Duration
	tail      *committedBatch // the writer's latest hand-off being consumed

	breaker     *breaker
	breakerWake <-chan time.Time    // fires when an open breaker half-opens
	pace        *rate.Limiter       // CatchUpRate; nil without one
	paceWake    <-chan time.Time    // fires when the catch-up rate allows the next read
	suspects    map[uint64]struct{} // rejected in company: to be sent alone
	rerouted    map[uint64]string   // rejected alone: to be sent as a dead letter, with the reason
	alone       uint64              // index of the record sent alone and not yet answered; 0 if none
	times       []int64             // TimeMs of the record read into each window slot
	readUpTo    uint64              // every index in (acked, readUpTo) has its time in times
	oldestIndex uint64              // the index oldestMs belongs to
	// waitingSince is when in-flight records last heard anything: the
	// last answer, or the send that ended an idle spell.
	waitingSince time.Time
	failing      bool      // the latest answer was a failure
	needResume   bool      // an answer was not a confirmation: tell a Resumer before sending again
	loudAt       time.Time // last error-level log of a misconfigured sink
	loudMuted    int       // such logs suppressed since
	health       sinkHealth

	mu        sync.Mutex // guards completed
	completed []completion
	wake      chan struct{} // capacity 1

	ackedIndex atomic.Uint64 // acked, for readers outside the run goroutine
	inFlightN  atomic.Int64  // inFlight, for readers outside the run goroutine
	oldestMs   atomic.Int64  // TimeMs of the first unacknowledged record; 0 if unknown
	progress   chan struct{} // capacity 1: signalled when acked advances
	stop       chan struct{}
	stopOnce   sync.Once
	done       chan struct{}

	shipped      prometheus.Counter
	walReads     prometheus.Counter
	sendErrors   prometheus.Counter
	corrupt      prometheus.Counter
	deadLettered prometheus.Counter
	collectors   []prometheus.Collector
}

// Window slot state bits.
const (
	slotConfirmed  = 1 << iota // the sink confirmed it, or it was skipped
	slotDeadLetter             // the record is for the dead-letter topic
	slotCorrupt                // the record could not be decoded and was skipped
	slotDropped                // the sink rejected it and its dead letter: dropped
)

// loudLogEvery bounds the error-level logs of a misconfigured sink: once is
// enough to be seen, every record would flood the log.
const loudLogEvery = 30 * time.Second

type completion struct {
	index uint64
	err   error
}

// NewShipper starts shipping buf's records to sink from the persisted
// acknowledged index. Close stops it.
func NewShipper(buf *Buffer, sink Sink, cfg ShipperConfig) *Shipper {
	cfg.setDefaults()
	s := &Shipper{
		buf:      buf,
		sink:     sink,
		cfg:      cfg,
		log:      cfg.Logger.With("component", "shipper"),
		window:   make([]uint8, cfg.MaxInFlight),
		times:    make([]int64, cfg.MaxInFlight),
		suspects: map[uint64]struct{}{},
		rerouted: map[uint64]string{},
		wake:     make(chan struct{}, 1),
		progress: make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		backoff:  cfg.RetryBackoff,
	}
	s.breaker = newBreaker(cfg.Breaker, s.log)
	if cfg.CatchUpRate > 0 {
		// A burst of 50 ms worth keeps reads batched without letting a
		// catch-up take more than its share.
		s.pace = rate.NewLimiter(rate.Limit(cfg.CatchUpRate), max(256, int(cfg.CatchUpRate/20)))
	}
	s.acked = buf.startIndex - 1
	s.persisted = s.acked
	s.next = s.acked + 1
	s.readUpTo = s.next
	s.ackedIndex.Store(s.acked)
	s.registerMetrics()
	go s.run()
	return s
}

func (s *Shipper) registerMetrics() {
	s.shipped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_shipped_records_total",
		Help: "Records confirmed by the sink and past the acknowledged index.",
	})
	s.walReads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_ship_wal_reads_total",
		Help: "Records the shipper read back from the WAL because it was behind the writer's in-memory hand-off (or re-sending).",
	})
	s.sendErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_ship_errors_total",
		Help: "Records the sink failed to deliver; they are re-read from the WAL and sent again.",
	})
	s.corrupt = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_wal_corrupt_records_total",
		Help: "WAL records that failed to decode and were skipped.",
	})
	s.deadLettered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_ship_dead_lettered_total",
		Help: "Records the sink rejected even when sent alone, sent to the dead-letter topic instead.",
	})
	s.collectors = []prometheus.Collector{
		s.shipped, s.walReads, s.sendErrors, s.corrupt, s.deadLettered,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_wal_acked_index",
			Help: "Highest WAL index confirmed by the sink with everything before it.",
		}, func() float64 { return float64(s.ackedIndex.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_buffer_backlog_records",
			Help: "Records in the WAL not yet confirmed by the sink.",
		}, func() float64 { return float64(s.Backlog()) }),
	}
	s.collectors = append(s.collectors, s.breaker.collectors()...)
	s.collectors = append(s.collectors, s.statusCollectors()...)
	if s.cfg.Registerer != nil {
		for _, c := range s.collectors {
			s.cfg.Registerer.MustRegister(c)
		}
	}
}

// Backlog is the number of durable records not yet confirmed by the sink.
func (s *Shipper) Backlog() uint64 {
	last, acked := s.buf.LastIndex(), s.ackedIndex.Load()
	if last < acked {
		return 0
	}
	return last - acked
}

// AckedIndex is the highest index confirmed together with all before it.
func (s *Shipper) AckedIndex() uint64 { return s.ackedIndex.Load() }

func (s *Shipper) run() {
	defer close(s.done)
	checkpoint := time.NewTicker(s.cfg.CheckpointInterval)
	defer checkpoint.Stop()
	// The health tick notices silence (records in flight, no answer) and
	// keeps the state Status reports current while nothing else happens.
	healthTick := time.NewTicker(s.healthInterval())
	defer healthTick.Stop()
	lastTruncate := time.Now()
	var retry <-chan time.Time
	for {
		s.collect()
		if s.failed && s.inFlight == 0 {
			s.rewind()
			retry = time.After(s.backoff)
			s.backoff = min(2*s.backoff, s.cfg.MaxRetryBackoff)
		}
		if retry == nil && !s.failed {
			if err := s.fill(); err != nil {
				s.log.Error("read wal", "index", s.next, "err", err)
				retry = time.After(s.backoff)
			}
		}
		s.publish(time.Now())
		select {
		case <-s.stop:
			s.collect()
			s.saveCheckpoint()
			return
		case <-s.wake:
		case <-s.buf.appended:
		case <-retry:
			retry = nil
		case <-s.breakerWake:
			s.breakerWake = nil
		case <-s.paceWake:
			s.paceWake = nil
		case now := <-healthTick.C:
			s.checkSilence(now)
		case <-checkpoint.C:
			s.saveCheckpoint()
			if time.Since(lastTruncate) >= s.cfg.TruncateInterval {
				lastTruncate = time.Now()
				s.truncate()
			}
		}
	}
}

// fill reads records from the WAL and sends them until the window is full,
// the reader has caught up with the writer, or the breaker says stop. A
// record to be sent alone waits until nothing else is in flight, and nothing
// follows it until it is answered.
func (s *Shipper) fill() error {
	last := s.buf.LastIndex()
	budget := s.breaker.sendable(s.inFlight)
	for s.next <= last && s.next-s.acked <= uint64(len(s.window)) {
		if s.alone != 0 {
			return nil
		}
		slot := s.next % uint64(len(s.window))
		if s.window[slot]&slotConfirmed != 0 {
			s.next++ // confirmed (or skipped) before a rewind
			continue
		}
		if budget == 0 {
			s.waitForBreaker()
			return nil
		}
		_, suspect := s.suspects[s.next]
		reason, reroute := s.rerouted[s.next]
		lone := suspect || reroute
		if lone && s.inFlight > 0 {
			return nil
		}
		frame, err := s.frameAt(s.next)
		if errors.Is(err, errPaced) {
			return nil
		}
		if err != nil {
			return err
		}
		rec := new(Record)
		if err := DecodeRecord(frame, rec); err != nil {
			// A record that cannot be decoded can never be delivered;
			// skipping it (counted, logged) keeps the rest flowing.
			s.corrupt.Inc()
			s.log.Error("skipping undecodable wal record", "index", s.next, "err", err)
			s.window[slot] = slotConfirmed | slotCorrupt
			s.next++
			// No Sink callback will wake the loop for this record: nudge it,
			// or acked stays behind (and Drain waits) until the next tick.
			s.nudge()
			continue
		}
		s.times[slot] = rec.TimeMs
		s.readUpTo = max(s.readUpTo, s.next+1)
		s.window[slot] = 0
		if rec.DeadLetter {
			s.window[slot] = slotDeadLetter
		}
		if reroute {
			if rec = s.deadLetterFor(rec, reason); rec == nil {
				s.window[slot] = slotConfirmed | slotDropped
				delete(s.rerouted, s.next)
				s.next++
				s.nudge()
				continue
			}
			s.window[slot] = slotDeadLetter
		}
		s.send(s.next, rec)
		budget--
		if lone {
			s.alone = s.next
		}
		s.next++
	}
	return nil
}

// frameAt returns the frame at index from the writer's hand-off or the WAL.
func (s *Shipper) frameAt(index uint64) ([]byte, error) {
	if frame, ok := s.fromTail(index); ok {
		return frame, nil
	}
	if s.pace != nil {
		if r := s.pace.Reserve(); r.Delay() > 0 {
			r.Cancel()
			if s.paceWake == nil {
				s.paceWake = time.After(max(r.Delay(), time.Millisecond))
			}
			return nil, errPaced
		}
	}
	frame, err := s.buf.read(index)
	if err != nil {
		return nil, err
	}
	s.walReads.Inc()
	return frame, nil
}

// errPaced stops a fill that reached the catch-up rate; paceWake resumes it.
var errPaced = errors.New("catch-up paced")

func (s *Shipper) send(index uint64, rec *Record) {
	if s.inFlight == 0 {
		s.waitingSince = time.Now() // the clock of silence starts now
		s.resumeSink()
	}
	s.inFlight++
	s.sink.Send(index, rec, s.complete)
}

// resumeSink tells a Resumer sink that every failure is taken in: nothing
// is in flight, and what is sent next is in WAL order again.
func (s *Shipper) resumeSink() {
	if !s.needResume {
		return
	}
	s.needResume = false
	if r, ok := s.sink.(Resumer); ok {
		r.Resume()
	}
}

// nudge wakes the run loop for progress no Sink callback will report.
func (s *Shipper) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// waitForBreaker arms a wake-up for when an open breaker half-opens. A
// half-open breaker with its probes in flight needs none: their answers
// wake the loop.
func (s *Shipper) waitForBreaker() {
	if s.breakerWake == nil && s.breaker.state() == gobreaker.StateOpen {
		s.breakerWake = time.After(s.breaker.untilHalfOpen())
	}
}

// deadLetterFor builds the dead letter that replaces rec, or nil to drop it.
func (s *Shipper) deadLetterFor(rec *Record, reason string) *Record {
	if s.cfg.DeadLetter == nil {
		s.log.Error("record rejected by the sink and no dead-letter builder configured: dropped", "reason", reason)
		return nil
	}
	dl := s.cfg.DeadLetter(rec, reason)
	if dl == nil {
		s.log.Error("record rejected by the sink and the dead-letter builder gave nothing: dropped", "reason", reason)
		return nil
	}
	dl.DeadLetter = true // routes it to the dead-letter topic whatever the builder did
	s.deadLettered.Inc()
	return dl
}

// fromTail returns the frame at index from the writer's in-memory hand-offs,
// dropping hand-offs the shipper has passed. false means read the WAL: the
// shipper is behind (or rewound) and the frame was not handed off.
func (s *Shipper) fromTail(index uint64) ([]byte, bool) {
	for {
		if t := s.tail; t != nil {
			switch {
			case index < t.first:
				return nil, false
			case index < t.first+uint64(len(t.frames)):
				return t.frames[index-t.first], true
			}
			s.buf.tailBytes.Add(-t.size)
			s.tail = nil
		}
		select {
		case t := <-s.buf.committed:
			s.tail = &t
		default:
			return nil, false
		}
	}
}

func (s *Shipper) complete(index uint64, err error) {
	s.mu.Lock()
	s.completed = append(s.completed, completion{index, err})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// collect applies the sink's confirmations and advances the acknowledged index.
func (s *Shipper) collect() {
	s.mu.Lock()
	done := s.completed
	s.completed = nil
	s.mu.Unlock()
	confirmed := 0
	for _, c := range done {
		if c.index <= s.acked || c.index >= s.next {
			continue // from before a rewind; already settled
		}
		s.inFlight--
		lone := c.index == s.alone
		if lone {
			s.alone = 0
		}
		if c.err != nil {
			s.needResume = true
		}
		switch {
		case c.err == nil:
			s.window[c.index%uint64(len(s.window))] |= slotConfirmed
			if len(s.suspects) > 0 {
				delete(s.suspects, c.index) // innocent: its batch was at fault
			}
			confirmed++
		case errors.Is(c.err, ErrRejected):
			s.rejected(c.index, c.err, lone)
		case errors.Is(c.err, ErrWithheld):
			s.failed = true // re-sent after the rewind, behind the record that failed
		default:
			s.sendFailed(c.index, c.err)
		}
	}
	if len(done) > 0 {
		s.waitingSince = time.Now() // any answer breaks a silence
	}
	if confirmed > 0 {
		s.failing = false
		s.breaker.succeeded(confirmed)
		s.health.succeeded(s.waitingSince)
	}
	s.advance()
}

// advance moves the acknowledged index over the confirmed prefix.
func (s *Shipper) advance() {
	start := s.acked
	var events, deadLetters, corrupt, dropped uint64
	for s.acked+1 < s.next {
		slot := (s.acked + 1) % uint64(len(s.window))
		st := s.window[slot]
		if st&slotConfirmed == 0 {
			break
		}
		switch {
		case st&slotCorrupt != 0:
			corrupt++
		case st&slotDropped != 0:
			dropped++
		case st&slotDeadLetter != 0:
			deadLetters++
		default:
			events++
		}
		s.window[slot] = 0
		s.acked++
	}
	if s.acked > start {
		s.forgetSettled()
		s.buf.ledger.settled(events, deadLetters, corrupt, dropped)
		s.shipped.Add(float64(s.acked - start))
		s.ackedIndex.Store(s.acked)
		if !s.failed {
			s.backoff = s.cfg.RetryBackoff
		}
		select {
		case s.progress <- struct{}{}:
		default:
		}
	}
}

// forgetSettled drops the lone-send marks of records now acknowledged.
func (s *Shipper) forgetSettled() {
	for i := range s.suspects {
		if i <= s.acked {
			delete(s.suspects, i)
		}
	}
	for i := range s.rerouted {
		if i <= s.acked {
			delete(s.rerouted, i)
		}
	}
}

// sendFailed handles a record the sink could not deliver: it is re-sent
// from the WAL, in order, once everything in flight has settled.
func (s *Shipper) sendFailed(index uint64, err error) {
	if !s.failed {
		s.log.Warn("send failed; will re-send from the wal", "index", index, "class", errorClass(err), "err", err)
	}
	s.sendErrors.Inc()
	s.failed = true
	s.failing = true
	s.health.failed(err.Error())
	misconfigured := errors.Is(err, ErrMisconfigured)
	if misconfigured {
		s.logMisconfigured(index, err)
	}
	s.breaker.failed(err.Error(), misconfigured)
}

// logMisconfigured logs loudly, at most once per loudLogEvery: no retry
// helps, an operator must act, and the backlog grows until they do.
func (s *Shipper) logMisconfigured(index uint64, err error) {
	now := time.Now()
	if now.Sub(s.loudAt) < loudLogEvery {
		s.loudMuted++
		return
	}
	s.log.Error("the sink refuses records for want of authorization or configuration: fix it; the WAL keeps the records and the backlog grows until then",
		"index", index, "err", err, "similar_errors_not_logged", s.loudMuted)
	s.loudAt, s.loudMuted = now, 0
}

// rejected handles a record the sink refused as it is. Refused with others
// it may be innocent (a batch fails as a whole), so it is sent again alone
// after the rewind; refused alone, its dead letter takes its place; a dead
// letter refused alone is dropped, never retried forever.
func (s *Shipper) rejected(index uint64, err error, lone bool) {
	s.health.failed(err.Error())
	if !lone {
		if !s.failed {
			s.log.Warn("record rejected by the sink; sending the unconfirmed records again, suspects alone", "index", index, "err", err)
		}
		s.suspects[index] = struct{}{}
		s.failed = true
		return
	}
	delete(s.suspects, index)
	slot := index % uint64(len(s.window))
	if s.window[slot]&slotDeadLetter != 0 {
		s.log.Error("dead letter rejected by the sink: record dropped", "index", index, "err", err)
		s.window[slot] = slotConfirmed | slotDropped
		delete(s.rerouted, index)
		return
	}
	s.log.Warn("record rejected by the sink when sent alone: sending it to the dead-letter topic", "index", index, "err", err)
	s.rerouted[index] = err.Error() // the reason the dead letter carries
	// Send it again next: nothing after it was sent, it was alone.
	s.next = index
}

// rewind makes the shipper read again, from the WAL and in order, every
// record after the acknowledged prefix that is not yet confirmed. Confirmed
// records keep their slot and are not sent again: a record that keeps failing
// must not re-send thousands of delivered ones on every retry.
func (s *Shipper) rewind() {
	unconfirmed := 0
	for i := s.acked + 1; i < s.next; i++ {
		if s.window[i%uint64(len(s.window))]&slotConfirmed == 0 {
			unconfirmed++
		}
	}
	s.log.Info("re-sending from the wal", "from_index", s.acked+1, "records", unconfirmed, "backoff", s.backoff)
	s.next = s.acked + 1
	s.failed = false
}

func (s *Shipper) saveCheckpoint() {
	if s.acked == s.persisted {
		return
	}
	if err := writeCheckpoint(s.buf.cfg.Dir, s.acked); err != nil {
		s.log.Error("save checkpoint", "acked_index", s.acked, "err", err)
		return
	}
	s.persisted = s.acked
}

// truncate deletes the fully acknowledged segments at the WAL front. It runs
// right after saveCheckpoint, so acked is the persisted index unless the
// checkpoint could not be written (a full disk): then freeing space matters
// more, and a checkpoint behind the WAL's start only makes the next start ship
// from the WAL's first record, as after any crash.
func (s *Shipper) truncate() {
	upTo := s.acked
	t0 := time.Now()
	removed, err := s.buf.removeAcked(upTo)
	if err != nil {
		s.log.Error("remove acknowledged wal segments", "err", err)
	}
	if removed > 0 {
		s.log.Debug("wal segments removed", "segments", removed, "first_index", s.buf.firstIndex(), "took", time.Since(t0))
	}
}

// Drain waits until every record written to the WAL so far is confirmed by the
// sink, or ctx ends. Call it after the buffer stopped taking appends.
func (s *Shipper) Drain(ctx context.Context) error {
	for {
		if s.ackedIndex.Load() >= s.buf.LastIndex() {
			return nil
		}
		select {
		case <-s.progress:
		case <-s.done:
			return errors.New("drain: shipper stopped")
		case <-ctx.Done():
			return fmt.Errorf("drain: %d records left in the wal: %w", s.Backlog(), ctx.Err())
		}
	}
}

// Close stops the shipper and persists the acknowledged index. Records still
// in flight are re-sent by the next start. It is idempotent.
func (s *Shipper) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		<-s.done
		if s.cfg.Registerer != nil {
			for _, c := range s.collectors {
				s.cfg.Registerer.Unregister(c)
			}
		}
		s.log.Info("shipper stopped", "acked_index", s.acked, "backlog", s.Backlog())
	})
}
