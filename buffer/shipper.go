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
)

// Sink is where the shipper delivers records (Kafka in production).
type Sink interface {
	// Send hands one record to the sink and should not block for long. done
	// must be called exactly once, from any goroutine: with nil once the
	// record is durably stored downstream, or with the error that stopped it.
	// The sink owns rec from the call on.
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
	// Default 16384.
	MaxInFlight int
	// RetryBackoff is the first wait after a failed send before the failed
	// records are re-read and sent again; it doubles up to MaxRetryBackoff.
	// Defaults 250ms and 10s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
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
		c.MaxInFlight = 16384
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 250 * time.Millisecond
	}
	if c.MaxRetryBackoff <= 0 {
		c.MaxRetryBackoff = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Shipper is the WAL's only reader: it sends records to a Sink in WAL order
// and advances the acknowledged index over their contiguous confirmed prefix.
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

	mu        sync.Mutex // guards completed
	completed []completion
	wake      chan struct{} // capacity 1

	ackedIndex atomic.Uint64 // acked, for readers outside the run goroutine
	progress   chan struct{} // capacity 1: signalled when acked advances
	stop       chan struct{}
	stopOnce   sync.Once
	done       chan struct{}

	shipped    prometheus.Counter
	walReads   prometheus.Counter
	sendErrors prometheus.Counter
	corrupt    prometheus.Counter
	collectors []prometheus.Collector
}

// Window slot state bits.
const (
	slotConfirmed  = 1 << iota // the sink confirmed it, or it was skipped
	slotDeadLetter             // the record is for the dead-letter topic
	slotCorrupt                // the record could not be decoded and was skipped
)

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
		wake:     make(chan struct{}, 1),
		progress: make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		backoff:  cfg.RetryBackoff,
	}
	s.acked = buf.startIndex - 1
	s.persisted = s.acked
	s.next = s.acked + 1
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
	s.collectors = []prometheus.Collector{
		s.shipped, s.walReads, s.sendErrors, s.corrupt,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_wal_acked_index",
			Help: "Highest WAL index confirmed by the sink with everything before it.",
		}, func() float64 { return float64(s.ackedIndex.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_buffer_backlog_records",
			Help: "Records in the WAL not yet confirmed by the sink.",
		}, func() float64 { return float64(s.Backlog()) }),
	}
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
		select {
		case <-s.stop:
			s.collect()
			s.saveCheckpoint()
			return
		case <-s.wake:
		case <-s.buf.appended:
		case <-retry:
			retry = nil
		case <-checkpoint.C:
			s.saveCheckpoint()
			if time.Since(lastTruncate) >= s.cfg.TruncateInterval {
				lastTruncate = time.Now()
				s.truncate()
			}
		}
	}
}

// fill reads records from the WAL and sends them until the window is full or
// the reader has caught up with the writer.
func (s *Shipper) fill() error {
	last := s.buf.LastIndex()
	for s.next <= last && s.next-s.acked <= uint64(len(s.window)) {
		slot := s.next % uint64(len(s.window))
		if s.window[slot]&slotConfirmed != 0 {
			s.next++ // confirmed (or skipped) before a rewind
			continue
		}
		frame, ok := s.fromTail(s.next)
		if !ok {
			var err error
			if frame, err = s.buf.read(s.next); err != nil {
				return err
			}
			s.walReads.Inc()
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
			select {
			case s.wake <- struct{}{}:
			default:
			}
			continue
		}
		s.window[slot] = 0
		if rec.DeadLetter {
			s.window[slot] = slotDeadLetter
		}
		s.inFlight++
		s.sink.Send(s.next, rec, s.complete)
		s.next++
	}
	return nil
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
	for _, c := range done {
		if c.index <= s.acked || c.index >= s.next {
			continue // from before a rewind; already settled
		}
		s.inFlight--
		if c.err != nil {
			if !s.failed {
				s.log.Warn("send failed; will re-send from the wal", "index", c.index, "err", c.err)
			}
			s.sendErrors.Inc()
			s.failed = true
			continue
		}
		s.window[c.index%uint64(len(s.window))] |= slotConfirmed
	}
	start := s.acked
	var events, deadLetters, corrupt uint64
	for s.acked+1 < s.next {
		slot := (s.acked + 1) % uint64(len(s.window))
		st := s.window[slot]
		if st&slotConfirmed == 0 {
			break
		}
		switch {
		case st&slotCorrupt != 0:
			corrupt++
		case st&slotDeadLetter != 0:
			deadLetters++
		default:
			events++
		}
		s.window[slot] = 0
		s.acked++
	}
	if s.acked > start {
		s.buf.ledger.settled(events, deadLetters, corrupt)
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
