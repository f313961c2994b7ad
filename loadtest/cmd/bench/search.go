package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// criteria decide whether a target kept up with an offered rate. In an open
// loop an overloaded target's queue grows for the whole step, so its median
// latency climbs with it; a stall of a few hundred milliseconds that the
// target recovers from lifts only the upper percentiles. Hence two latency
// bounds: a p99 that explodes, or a median that shows a standing queue.
type criteria struct {
	MaxFailedFrac float64 `json:"max_failed_fraction"` // non-2xx + errors + unsent, of the offered requests
	MinAchieved   float64 `json:"min_achieved"`        // 2xx events, as a fraction of the offered events
	MaxP99ms      float64 `json:"max_p99_ms"`          // p99 from the intended send time
	MaxP50ms      float64 `json:"max_p50_ms"`          // p50 from the intended send time
}

var defaultCriteria = criteria{MaxFailedFrac: 0.01, MinAchieved: 0.9, MaxP99ms: 500, MaxP50ms: 100}

// judge says whether a step kept up, and if not, why.
func (c criteria) judge(s *openSummary) (bool, string) {
	if s.Offered == 0 {
		return false, "nothing offered"
	}
	var reasons []string
	if f := float64(s.Failed()) / float64(s.Offered); f > c.MaxFailedFrac {
		reasons = append(reasons, fmt.Sprintf("%.1f%% failed", 100*f))
	}
	if s.OfferedEPS > 0 && s.EPS < c.MinAchieved*s.OfferedEPS {
		reasons = append(reasons, fmt.Sprintf("achieved %.0f%% of offered", 100*s.EPS/s.OfferedEPS))
	}
	if s.P99ms > c.MaxP99ms {
		reasons = append(reasons, fmt.Sprintf("p99 %s ms", fmtMs(s.P99ms)))
	}
	if c.MaxP50ms > 0 && s.P50ms > c.MaxP50ms {
		reasons = append(reasons, fmt.Sprintf("p50 %s ms", fmtMs(s.P50ms)))
	}
	if len(reasons) == 0 {
		return true, "kept up"
	}
	r := reasons[0]
	for _, x := range reasons[1:] {
		r += ", " + x
	}
	return false, r
}

// search places the open-loop steps of one series (one target, one body
// kind). It ramps through fractions of a closed-loop estimate of the
// capacity, then grows geometrically, until a step fails; then it bisects
// (geometric mean) between the highest passing and the lowest failing rate.
// If even the first step fails it halves the rate until one passes. Rates are
// requests per second.
type search struct {
	Capacity   float64   // closed-loop estimate, requests per second
	Fractions  []float64 // of Capacity, the ramp's first steps
	Growth     float64   // factor per step after the fractions
	MaxSteps   int       // ramp and downward steps together
	Bisections int       // at most this many bisection steps, on top
	MinGap     float64   // no bisection once failing/passing is below this ratio

	tried []tried
}

type tried struct {
	rate    float64
	pass    bool
	purpose string
}

func newSearch(capacity float64) *search {
	return &search{
		Capacity:   capacity,
		Fractions:  []float64{0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25},
		Growth:     1.2,
		MaxSteps:   9,
		Bisections: 2,
		MinGap:     1.07,
	}
}

func (s *search) record(rate float64, pass bool, purpose string) {
	s.tried = append(s.tried, tried{rate, pass, purpose})
}

// bounds returns the lowest failing rate and the highest passing rate below
// it (0 when there is none). A pass above a failure (noise) is ignored.
func (s *search) bounds() (lastPass, firstFail float64) {
	for _, t := range s.tried {
		if !t.pass && (firstFail == 0 || t.rate < firstFail) {
			firstFail = t.rate
		}
	}
	for _, t := range s.tried {
		if t.pass && (firstFail == 0 || t.rate < firstFail) && t.rate > lastPass {
			lastPass = t.rate
		}
	}
	return lastPass, firstFail
}

// next returns the next rate to try and why, or 0 when the search is over.
func (s *search) next() (float64, string) {
	bis := 0
	for _, t := range s.tried {
		if t.purpose == "bisect" {
			bis++
		}
	}
	lastPass, firstFail := s.bounds()
	if len(s.tried)-bis >= s.MaxSteps && (firstFail == 0 || lastPass == 0) {
		return 0, ""
	}
	switch {
	case firstFail == 0: // still ramping
		i := len(s.tried)
		if i < len(s.Fractions) {
			return s.Capacity * s.Fractions[i], "ramp"
		}
		return s.tried[i-1].rate * s.Growth, "ramp"
	case lastPass == 0: // the lowest rate failed: go down
		down := 0
		for _, t := range s.tried {
			if t.purpose == "down" {
				down++
			}
		}
		if down >= 3 {
			return 0, ""
		}
		return firstFail / 2, "down"
	}
	if bis < s.Bisections && firstFail/lastPass > s.MinGap {
		return math.Sqrt(lastPass * firstFail), "bisect"
	}
	return 0, ""
}

// step is one open-loop step of a series.
type step struct {
	Kind       string        `json:"kind"`
	Target     string        `json:"target"`
	Purpose    string        `json:"purpose"` // ramp, bisect, down, half (50 % of saturation)
	Rate       float64       `json:"rate"`    // offered requests per second
	Run        *openRun      `json:"run"`
	UsPerEvent float64       `json:"server_cpu_us_per_event"`
	Pass       bool          `json:"pass"`
	Reason     string        `json:"reason"`
	Sluice     *sluiceWindow `json:"sluice,omitempty"`
}

// series is the saturation search of one target with one body kind.
type series struct {
	Kind   string       `json:"kind"`
	Target string       `json:"target"`
	Probe  *closedProbe `json:"closed_loop_probe"`
	Steps  []*step      `json:"steps"`
	Note   string       `json:"note,omitempty"`
}

// saturation is the highest passing step below the lowest failing one: the
// highest rate the target sustained.
func (s *series) saturation() *step {
	var firstFail float64
	for _, st := range s.Steps {
		if st.Purpose != "half" && !st.Pass && (firstFail == 0 || st.Rate < firstFail) {
			firstFail = st.Rate
		}
	}
	var best *step
	for _, st := range s.Steps {
		if st.Pass && (firstFail == 0 || st.Rate < firstFail) && (best == nil || st.Rate > best.Rate) {
			best = st
		}
	}
	return best
}

// half is the step at 50 % of the saturation rate.
func (s *series) half() *step {
	for _, st := range s.Steps {
		if st.Purpose == "half" {
			return st
		}
	}
	return nil
}

// peakEPS is the most events per second any step achieved (an overloaded
// open-loop step still shows what the target could push through).
func (s *series) peakEPS() float64 {
	var p float64
	for _, st := range s.Steps {
		p = max(p, st.Run.Summary.EPS)
	}
	return p
}

// target is what a series loads: the no-op server or a Sluice.
type target interface {
	name() string
	url() string
	pid() int
	// before runs before each step (Sluice: wait until the backlog drained).
	before(ctx context.Context) error
	// hooks measure inside the step's window; finish collects it afterwards.
	hooks() (windowHooks, func(ctx context.Context) *sluiceWindow)
}

type seriesConfig struct {
	loadgenBin string
	conns      int
	warmup     time.Duration
	duration   time.Duration
	halfFor    time.Duration // the measured window of the 50 % step
	timeout    time.Duration
	probeFor   time.Duration
	crit       criteria
	deadline   time.Time // no new step starts after it
	rawDir     string
}

// runSeries probes the target's capacity closed-loop, then searches its
// open-loop saturation and measures a step at half of it.
func runSeries(ctx context.Context, sc *seriesConfig, kind string, t target, eventsPerReq int) (*series, error) {
	se := &series{Kind: kind, Target: t.name()}
	if err := t.before(ctx); err != nil {
		return se, err
	}
	probe, err := runProbe(ctx, sc.loadgenBin, t.url(), kind, 64, sc.probeFor)
	if err != nil {
		return se, fmt.Errorf("closed-loop probe: %w", err)
	}
	se.Probe = probe
	logf("%s %s: closed-loop probe %.0f req/s (%.0f events/s), p99 %.2f ms", kind, t.name(), probe.RPS, probe.EPS, probe.P99ms)
	s := newSearch(max(probe.RPS, 10))
	runStep := func(rate float64, purpose string) (*step, error) {
		if err := t.before(ctx); err != nil {
			return nil, err
		}
		h, finish := t.hooks()
		d := sc.duration
		if purpose == "half" && sc.halfFor > 0 {
			d = sc.halfFor
		}
		r, err := runOpen(ctx, sc.loadgenBin, openArgs{
			url: t.url(), kind: kind, rate: rate, duration: d, warmup: sc.warmup,
			timeout: sc.timeout, conns: sc.conns,
		}, t.pid(), h)
		if err != nil {
			return nil, err
		}
		st := &step{Kind: kind, Target: t.name(), Purpose: purpose, Rate: rate, Run: r}
		if finish != nil {
			st.Sluice = finish(ctx)
		}
		if r.Summary.Events > 0 {
			st.UsPerEvent = round3(r.CPU.ServerCPUs * 1e6 / float64(r.Summary.Events))
		}
		st.Pass, st.Reason = sc.crit.judge(&r.Summary)
		logf("%s %s %-6s %8.0f req/s (%8.0f ev/s): got %8.0f ev/s  p50 %s  p99 %s  p999 %s ms  %s  server %.2f cores %.1f µs/ev  loadgen %.2f  other %.2f cores  lag p99 %.2f ms",
			kind, t.name(), purpose, rate, rate*float64(eventsPerReq), r.Summary.EPS,
			fmtMs(r.Summary.P50ms), fmtMs(r.Summary.P99ms), fmtMs(r.Summary.P999ms), st.Reason,
			r.CPU.ServerCores, st.UsPerEvent, r.CPU.LoadgenCores, r.CPU.OtherCores, r.Summary.LagP99ms)
		return st, nil
	}
	for {
		rate, purpose := s.next()
		if rate == 0 {
			break
		}
		if time.Now().After(sc.deadline) {
			se.Note = "the search stopped early: the saturation budget ran out"
			logf("%s %s: %s", kind, t.name(), se.Note)
			break
		}
		st, err := runStep(rate, purpose)
		if err != nil {
			return se, err
		}
		s.record(rate, st.Pass, purpose)
		se.Steps = append(se.Steps, st)
	}
	if sat := se.saturation(); sat != nil {
		st, err := runStep(sat.Rate/2, "half")
		if err != nil {
			return se, err
		}
		se.Steps = append(se.Steps, st)
	} else if se.Note == "" {
		se.Note = "no step kept up: no saturation rate"
	}
	return se, nil
}

func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
