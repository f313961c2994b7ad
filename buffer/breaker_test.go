package buffer

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"
)

func newTestBreaker(t *testing.T, cfg BreakerConfig) *breaker {
	t.Helper()
	return newBreaker(cfg, quietLogger)
}

func checkBreakerState(t *testing.T, b *breaker, want gobreaker.State, when string) {
	t.Helper()
	if got := b.state(); got != want {
		t.Fatalf("%s: breaker %s, want %s", when, got, want)
	}
}

// The breaker opens only when enough records failed and they are a large
// enough share of the answers, so a few errors among many confirmations do
// not stop shipping.
func TestBreakerOpensOnFailureRatio(t *testing.T) {
	b := newTestBreaker(t, BreakerConfig{OpenFor: time.Hour, MinFailures: 5, FailureRatio: 0.5})
	for range 4 {
		b.failed("boom", false)
	}
	checkBreakerState(t, b, gobreaker.StateClosed, "4 failures, fewer than MinFailures")
	b.succeeded(10)
	b.failed("boom", false) // 5 of 15 failed
	checkBreakerState(t, b, gobreaker.StateClosed, "5 failures of 15 answers")
	for range 4 {
		b.failed("boom", false) // up to 9 of 19
	}
	checkBreakerState(t, b, gobreaker.StateClosed, "9 failures of 19 answers")
	b.failed("boom", false) // 10 of 20: the ratio is reached
	checkBreakerState(t, b, gobreaker.StateOpen, "10 failures of 20 answers")
	if got := b.sendable(0); got != 0 {
		t.Errorf("open breaker lets %d records be sent, want 0", got)
	}
	if got := testutil.ToFloat64(b.transitions.WithLabelValues("open")); got != 1 {
		t.Errorf("transitions{to=open} = %v, want 1", got)
	}
}

// Confirmations before the window's first failure do not count: the ratio
// is over the answers since then (documented on BreakerConfig).
func TestBreakerRatioSinceFirstFailure(t *testing.T) {
	b := newTestBreaker(t, BreakerConfig{OpenFor: time.Hour, MinFailures: 5, FailureRatio: 0.5})
	b.succeeded(1000)
	for range 4 {
		b.failed("boom", false)
	}
	b.succeeded(3) // 4 failures, 3 confirmations since the first
	checkBreakerState(t, b, gobreaker.StateClosed, "4 failures")
	b.failed("boom", false)
	checkBreakerState(t, b, gobreaker.StateOpen, "5 failures of 8 answers since the first failure")
}

func TestBreakerTripsAtOnceWhenAsked(t *testing.T) {
	b := newTestBreaker(t, BreakerConfig{OpenFor: time.Hour})
	b.succeeded(100)
	b.failed("not authorized", true)
	checkBreakerState(t, b, gobreaker.StateOpen, "one failure reported with trip")
	// Later failures in the same window need the ratio again: trip is per report.
	b2 := newTestBreaker(t, BreakerConfig{OpenFor: time.Hour})
	b2.failed("x", true)
	b2.failed("x", false)
	checkBreakerState(t, b2, gobreaker.StateOpen, "after a trip")
}

// waitHalfOpen waits for an open breaker's OpenFor to pass: the state change
// is gobreaker's, on its clock.
func waitHalfOpen(t *testing.T, b *breaker) {
	t.Helper()
	waitUntil(t, "the breaker to half-open", func() bool { return b.state() == gobreaker.StateHalfOpen })
}

// Half-open, the breaker lets ProbeRecords records be in flight; that many
// confirmed close it, one failure opens it again.
func TestBreakerHalfOpenProbes(t *testing.T) {
	cfg := BreakerConfig{OpenFor: 20 * time.Millisecond, ProbeRecords: 3}
	t.Run("probes succeed", func(t *testing.T) {
		b := newTestBreaker(t, cfg)
		b.failed("down", true)
		if d := b.untilHalfOpen(); d <= 0 || d > cfg.OpenFor {
			t.Errorf("untilHalfOpen = %v right after opening, want in (0, %v]", d, cfg.OpenFor)
		}
		waitHalfOpen(t, b)
		for inFlight, want := range []int{3, 2, 1, 0} {
			if got := b.sendable(inFlight); got != want {
				t.Errorf("half-open with %d in flight: sendable %d, want %d", inFlight, got, want)
			}
		}
		if got := b.sendable(7); got != 0 {
			t.Errorf("half-open with 7 in flight: sendable %d, want 0", got)
		}
		b.succeeded(2)
		checkBreakerState(t, b, gobreaker.StateHalfOpen, "2 of 3 probes confirmed")
		b.succeeded(1)
		checkBreakerState(t, b, gobreaker.StateClosed, "3 of 3 probes confirmed")
		if got := b.sendable(1 << 20); got != math.MaxInt {
			t.Errorf("closed breaker: sendable %d, want unlimited", got)
		}
		for _, to := range []string{"open", "half-open", "closed"} {
			if got := testutil.ToFloat64(b.transitions.WithLabelValues(to)); got != 1 {
				t.Errorf("transitions{to=%s} = %v, want 1", to, got)
			}
		}
	})
	t.Run("a probe fails", func(t *testing.T) {
		b := newTestBreaker(t, cfg)
		b.failed("down", true)
		waitHalfOpen(t, b)
		b.succeeded(2)
		b.failed("still down", false)
		checkBreakerState(t, b, gobreaker.StateOpen, "a probe failed")
	})
}

// Failures older than the window no longer count: errors spread thinly over
// hours never add up to an open breaker.
func TestBreakerForgetsFailuresOutsideWindow(t *testing.T) {
	const window = 100 * time.Millisecond
	b := newTestBreaker(t, BreakerConfig{OpenFor: time.Hour, Window: window, MinFailures: 5})
	for range 4 {
		b.failed("blip", false)
	}
	// Not a synchronisation: the window is the subject of the test.
	time.Sleep(2 * window)
	for range 4 {
		b.failed("blip", false)
	}
	checkBreakerState(t, b, gobreaker.StateClosed, "4 failures, then 4 more a window later")
	b.failed("blip", false)
	checkBreakerState(t, b, gobreaker.StateOpen, "5 failures within one window")
}

func TestBreakerStateGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newTestBreaker(t, BreakerConfig{OpenFor: 20 * time.Millisecond, ProbeRecords: 1})
	reg.MustRegister(b.collectors()...)
	gauge := func() float64 { return gatherValues(t, reg)["sluice_kafka_breaker_state"] }
	if got := gauge(); got != 0 {
		t.Errorf("closed: sluice_kafka_breaker_state = %v, want 0", got)
	}
	b.failed("down", true)
	if got := gauge(); got != 2 {
		t.Errorf("open: sluice_kafka_breaker_state = %v, want 2", got)
	}
	waitHalfOpen(t, b)
	if got := gauge(); got != 1 {
		t.Errorf("half-open: sluice_kafka_breaker_state = %v, want 1", got)
	}
}

func TestBreakerConfigDefaults(t *testing.T) {
	var c BreakerConfig
	c.setDefaults()
	want := BreakerConfig{OpenFor: 5 * time.Second, ProbeRecords: 10, Window: 10 * time.Second,
		MinFailures: 5, FailureRatio: 0.5, SilenceTimeout: 10 * time.Second}
	if c != want {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	c = BreakerConfig{FailureRatio: 1.5}
	c.setDefaults()
	if c.FailureRatio != 0.5 {
		t.Errorf("FailureRatio 1.5 becomes %v, want the default 0.5", c.FailureRatio)
	}
}
