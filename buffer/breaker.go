package buffer

import (
	"errors"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// BreakerConfig configures the circuit breaker that gates the shipper. The
// zero value of every field means its default.
//
// Every record the sink answers is one outcome: confirmed (a success),
// failed (a failure) or rejected (neither: Kafka answered, the record is
// the problem). The breaker opens on a failure ratio over a rolling window
// rather than on consecutive failures because the sink answers records of
// many partitions in no particular order: one healthy partition's
// confirmations interleaved with another's failures would keep resetting a
// consecutive count, and the rolling window forgets the odd error instead
// of adding errors up over hours. Confirmations count only once a failure
// was seen within the window (they cannot move a closed breaker otherwise,
// and reporting each costs the hot path two locks), so the ratio is over
// the answers since the window's first failure.
type BreakerConfig struct {
	// OpenFor is how long the breaker stays open, the shipper sending
	// nothing while the WAL grows, before it half-opens. Default 5s.
	OpenFor time.Duration
	// ProbeRecords is how many records a half-open breaker lets be in
	// flight. That many confirmed in a row close it; one failure opens it
	// again. Default 10.
	ProbeRecords int
	// Window is the rolling window (ten buckets) outcomes are counted over.
	// Default 10s.
	Window time.Duration
	// The breaker opens when, within Window, at least MinFailures records
	// failed and they are at least FailureRatio of the records answered.
	// Defaults 5 and 0.5.
	MinFailures  int
	FailureRatio float64
	// SilenceTimeout: records in flight with no answer at all for this long
	// open the breaker. The Kafka client retries transient errors itself,
	// so an outage shows as silence rather than as errors. Default 10s.
	SilenceTimeout time.Duration
}

func (c *BreakerConfig) setDefaults() {
	if c.OpenFor <= 0 {
		c.OpenFor = 5 * time.Second
	}
	if c.ProbeRecords <= 0 {
		c.ProbeRecords = 10
	}
	if c.Window <= 0 {
		c.Window = 10 * time.Second
	}
	if c.MinFailures <= 0 {
		c.MinFailures = 5
	}
	if c.FailureRatio <= 0 || c.FailureRatio > 1 {
		c.FailureRatio = 0.5
	}
	if c.SilenceTimeout <= 0 {
		c.SilenceTimeout = 10 * time.Second
	}
}

// breaker wraps gobreaker for the shipper. Outcomes are reported when the
// sink answers, not around a call: a record's answer comes later, from
// another goroutine, and answers of records sent before the breaker opened
// still tell whether Kafka is back.
type breaker struct {
	cfg BreakerConfig
	cb  *gobreaker.CircuitBreaker[struct{}]
	log *slog.Logger

	// Set by the shipper goroutine around the report of a failure. A state
	// change to open only happens inside such a report, on that goroutine,
	// so readyToTrip and onStateChange read them without a lock.
	tripNow     bool      // open whatever the counts say
	cause       string    // what the failure was, for the log line
	lastFailure time.Time // when the shipper last reported a failure

	changedAt   atomic.Int64 // UnixNano of the last state change
	openedAt    atomic.Int64 // UnixNano of the last change to open
	transitions *prometheus.CounterVec
}

func newBreaker(cfg BreakerConfig, log *slog.Logger) *breaker {
	cfg.setDefaults()
	b := &breaker{
		cfg: cfg,
		log: log,
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_kafka_breaker_transitions_total",
			Help: "Circuit breaker state changes, by the state entered.",
		}, []string{"to"}),
	}
	for _, s := range []gobreaker.State{gobreaker.StateClosed, gobreaker.StateHalfOpen, gobreaker.StateOpen} {
		b.transitions.WithLabelValues(s.String())
	}
	b.changedAt.Store(time.Now().UnixNano())
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          "kafka",
		MaxRequests:   uint32(cfg.ProbeRecords),
		Interval:      cfg.Window,
		BucketPeriod:  max(cfg.Window/10, time.Millisecond),
		Timeout:       cfg.OpenFor,
		ReadyToTrip:   b.readyToTrip,
		OnStateChange: b.onStateChange,
	})
	return b
}

func (b *breaker) readyToTrip(c gobreaker.Counts) bool {
	if b.tripNow {
		return true
	}
	answered := float64(c.TotalSuccesses + c.TotalFailures)
	return int(c.TotalFailures) >= b.cfg.MinFailures && float64(c.TotalFailures) >= b.cfg.FailureRatio*answered
}

// onStateChange runs under gobreaker's lock: it must not call the breaker.
func (b *breaker) onStateChange(_ string, from, to gobreaker.State) {
	now := time.Now()
	b.changedAt.Store(now.UnixNano())
	b.transitions.WithLabelValues(to.String()).Inc()
	switch to {
	case gobreaker.StateOpen:
		b.openedAt.Store(now.UnixNano())
		b.log.Warn("circuit breaker open: sending nothing, the WAL keeps the records",
			"from", from.String(), "for", b.cfg.OpenFor, "cause", b.cause)
	case gobreaker.StateHalfOpen:
		b.log.Info("circuit breaker half-open: probing", "probe_records", b.cfg.ProbeRecords)
	case gobreaker.StateClosed:
		b.log.Info("circuit breaker closed: sending again", "from", from.String())
	}
}

// succeeded reports n confirmed records; see BreakerConfig for why they
// are not counted while closed with no recent failure.
func (b *breaker) succeeded(n int) {
	if time.Since(b.lastFailure) > b.cfg.Window && b.cb.State() == gobreaker.StateClosed {
		return
	}
	for range n {
		b.observe(nil)
	}
}

// failed reports a failed record; trip opens the breaker at once.
func (b *breaker) failed(cause string, trip bool) {
	b.lastFailure = time.Now()
	b.tripNow, b.cause = trip, cause
	b.observe(errOutcomeFailed)
	b.tripNow = false
}

// errOutcomeFailed stands for a failed record in gobreaker's counts.
var errOutcomeFailed = errors.New("send failed")

// observe counts one outcome. While open gobreaker refuses it, on purpose:
// the breaker waits out OpenFor whatever arrives meanwhile.
func (b *breaker) observe(err error) {
	_, _ = b.cb.Execute(func() (struct{}, error) { return struct{}{}, err })
}

func (b *breaker) state() gobreaker.State { return b.cb.State() }

// sendable is how many more records may be sent now, with inFlight already
// in flight: any number when closed, up to ProbeRecords in flight when
// half-open, none when open.
func (b *breaker) sendable(inFlight int) int {
	switch b.cb.State() {
	case gobreaker.StateClosed:
		return math.MaxInt
	case gobreaker.StateHalfOpen:
		return max(0, b.cfg.ProbeRecords-inFlight)
	}
	return 0
}

// untilHalfOpen is how long an open breaker stays open.
func (b *breaker) untilHalfOpen() time.Duration {
	opened := time.Unix(0, b.openedAt.Load())
	return max(time.Until(opened.Add(b.cfg.OpenFor)), time.Millisecond)
}

// since is when the breaker entered its current state.
func (b *breaker) since() time.Time { return time.Unix(0, b.changedAt.Load()) }

func (b *breaker) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		b.transitions,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_kafka_breaker_state",
			Help: "The circuit breaker gating the shipper: 0 closed, 1 half-open (probing), 2 open (sending nothing).",
		}, func() float64 { return float64(b.state()) }),
	}
}
