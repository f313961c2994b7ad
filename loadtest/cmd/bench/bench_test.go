package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fakeTarget keeps up with any rate below capacity.
func simulate(s *search, capacity float64) []tried {
	for {
		rate, purpose := s.next()
		if rate == 0 {
			return s.tried
		}
		s.record(rate, rate <= capacity, purpose)
	}
}

func TestSearchRampsThenBisects(t *testing.T) {
	s := newSearch(1000) // the closed-loop probe said 1000 req/s
	got := simulate(s, 1000)
	var rates []float64
	for _, x := range got {
		rates = append(rates, math.Round(x.rate))
	}
	// 250, 500, 750, 900, 1000 pass; 1100 fails; one bisection between 1000 and 1100 (gap 1.1 > 1.07).
	want := []float64{250, 500, 750, 900, 1000, 1100, 1049}
	if len(rates) != len(want) {
		t.Fatalf("rates %v, want %v", rates, want)
	}
	for i := range want {
		if rates[i] != want[i] {
			t.Fatalf("rates %v, want %v", rates, want)
		}
	}
	if lp, ff := s.bounds(); lp != 1000 || math.Round(ff) != 1049 {
		t.Errorf("bounds %v %v", lp, ff)
	}
}

func TestSearchGrowsBeyondTheProbe(t *testing.T) {
	s := newSearch(1000)
	got := simulate(s, 1700) // the open loop does better than the probe
	last := got[len(got)-1]
	if len(got) > s.MaxSteps+s.Bisections {
		t.Fatalf("%d steps, max %d", len(got), s.MaxSteps)
	}
	lp, ff := s.bounds()
	if ff == 0 || lp == 0 || lp > 1700 || ff <= 1700 {
		t.Fatalf("bounds %v %v after %v", lp, ff, got)
	}
	if last.purpose != "bisect" && ff/lp > s.MinGap {
		t.Errorf("no bisection: %v", got)
	}
}

func TestSearchGoesDownWhenTheFirstStepFails(t *testing.T) {
	s := newSearch(1000)
	got := simulate(s, 100)
	if got[0].pass || got[1].purpose != "down" || got[1].rate != 125 || got[2].rate != 62.5 || !got[2].pass {
		t.Fatalf("steps %v", got)
	}
	if got[3].purpose != "bisect" || math.Round(got[3].rate) != 88 {
		t.Errorf("steps %v", got)
	}
	s = newSearch(1000)
	got = simulate(s, 1) // nothing ever passes: three halvings, then stop
	if len(got) != 4 {
		t.Errorf("steps %v", got)
	}
}

func summary(offered, ok uint64, eps, p99 float64) *openSummary {
	return &openSummary{Offered: offered, OKRequests: ok, Events: ok, OfferedEPS: float64(offered) / 4, EPS: eps, P99ms: p99}
}

func TestJudge(t *testing.T) {
	c := defaultCriteria
	if ok, why := c.judge(summary(4000, 4000, 1000, 3)); !ok || why != "kept up" {
		t.Errorf("healthy step judged %v %q", ok, why)
	}
	if ok, why := c.judge(summary(4000, 4000, 1000, 250)); !ok {
		t.Errorf("a step with a 250 ms stall judged %v %q", ok, why)
	}
	if ok, why := c.judge(summary(4000, 4000, 1000, 600)); ok || !strings.Contains(why, "p99 600") {
		t.Errorf("slow step judged %v %q", ok, why)
	}
	queued := summary(4000, 4000, 1000, 300)
	queued.P50ms = 150
	if ok, why := c.judge(queued); ok || why != "p50 150 ms" {
		t.Errorf("queueing step judged %v %q", ok, why)
	}
	s := summary(4000, 3000, 750, 3)
	s.Unsent = 1000
	if ok, why := c.judge(s); ok || !strings.Contains(why, "25.0% failed") || !strings.Contains(why, "achieved 75%") {
		t.Errorf("overloaded step judged %v %q", ok, why)
	}
	if ok, _ := c.judge(&openSummary{}); ok {
		t.Error("an empty step passed")
	}
}

func mkStep(kind, target, purpose string, rate float64, pass bool, p50, p99 float64, us float64) *step {
	return &step{Kind: kind, Target: target, Purpose: purpose, Rate: rate, Pass: pass, Reason: map[bool]string{true: "kept up", false: "p99 900 ms"}[pass],
		UsPerEvent: us, Run: &openRun{
			Summary: openSummary{Offered: uint64(rate * 4), OfferedRPS: rate, OfferedEPS: rate * float64(eventsPer(kind)),
				EPS: rate * float64(eventsPer(kind)), P50ms: p50, P99ms: p99, P999ms: p99 * 1.5, MaxMs: p99 * 2},
			CPU: cpuUse{ServerCores: 0.5, LoadgenCores: 0.4}, RSSMaxMiB: 50,
			Seconds: []secondLine{{T: 0, Offered: 10, OK: 10, P50ms: p50, P99ms: p99, MaxMs: p99 * 2, Hist: [][2]uint64{{500, 10}}}},
		}}
}

func fakeResults() *results {
	res := &results{Started: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC), Criteria: defaultCriteria, Conns: 256, WarmupS: 1, StepS: 4,
		Command: "go run ./loadtest/cmd/bench -out x", Machine: machine{Cores: 2, CPUModel: "Test CPU"}}
	res.Finished = res.Started.Add(8 * time.Minute)
	for _, kind := range []string{"single", "batch20"} {
		k := float64(eventsPer(kind))
		noop := &series{Kind: kind, Target: "noop", Probe: &closedProbe{RPS: 100000}, Steps: []*step{
			mkStep(kind, "noop", "ramp", 25000/k, true, 0.2, 1, 7),
			mkStep(kind, "noop", "ramp", 50000/k, true, 0.3, 2, 6),
			mkStep(kind, "noop", "ramp", 75000/k, false, 500, 900, 6),
			mkStep(kind, "noop", "half", 25000/k, true, 0.2, 1.1, 7.5),
		}}
		sl := &series{Kind: kind, Target: "sluice", Probe: &closedProbe{RPS: 20000}, Steps: []*step{
			mkStep(kind, "sluice", "ramp", 5000/k, true, 1, 5, 80),
			mkStep(kind, "sluice", "ramp", 10000/k, true, 2, 8, 60),
			mkStep(kind, "sluice", "ramp", 15000/k, false, 300, 900, 55),
			mkStep(kind, "sluice", "half", 5000/k, true, 1, 4.5, 81),
		}}
		for _, st := range sl.Steps {
			st.Sluice = &sluiceWindow{AcceptedPerS: st.Rate, ShippedPerS: st.Rate, RecordsPerFsync: 10, Drained: true}
		}
		res.Series = append(res.Series, noop, sl)
	}
	run := mkStep("single", "sluice", "", 5000, true, 1, 5, 0).Run
	run.Summary.Slots = 100
	run.Seconds = []secondLine{
		{T: 0, Offered: 5000, OK: 5000, P50ms: 1, P99ms: 4, MaxMs: 6, Hist: [][2]uint64{{900, 4950}, {1200, 50}}},
		{T: 1, Offered: 5000, OK: 4000, Errors: 1000, P50ms: 1, P99ms: 40, MaxMs: 60, Hist: [][2]uint64{{900, 3900}, {1700, 100}}},
		{T: 2, Offered: 5000, OK: 5000, P50ms: 1, P99ms: 5, MaxMs: 7, Hist: [][2]uint64{{900, 5000}}},
	}
	res.Scenarios = []*scenarioResult{{
		Spec: scenarioSpec{Name: "restart", Title: "SIGTERM and restart", Fault: "restart", Duration: 3 * time.Second},
		Rate: 5000, Run: run, Windows: []window{{From: 1.2, To: 1.4, Label: "SIGTERM → ready again"}},
		Verify:  &verification{Offered: 15000, Sent: 14000, Acked: 14000, Found: 14000, Complete: true},
		Restart: &restartInfo{Stop: "exit status 0", Graceful: true, StopS: 0.1, GapS: 0.2},
		Samples: []sluiceSample{{T: 0.5, Up: true, Backlog: 10, Shipped: 100}, {T: 1.5, Up: false}, {T: 2.5, Up: true, Backlog: 0, Shipped: 50}},
		Drained: true, Stop: "exit status 0",
	}}
	sr := res.Scenarios[0]
	sr.Whole = mergeSeconds(run.Seconds, 0, 3)
	sr.Before, sr.During, sr.After = mergeSeconds(run.Seconds, 0, 0.5), mergeSeconds(run.Seconds, 1.2, 1.4), mergeSeconds(run.Seconds, 2.5, 3)
	return res
}

func TestMergeSeconds(t *testing.T) {
	res := fakeResults()
	sr := res.Scenarios[0]
	if sr.Before.Seconds != 1 || sr.During.Seconds != 1 || sr.After.Seconds != 1 || sr.Whole.Seconds != 3 {
		t.Fatalf("phases %+v %+v %+v", sr.Before, sr.During, sr.After)
	}
	if sr.During.Failed != 1000 || sr.During.OK != 4000 || sr.Whole.Offered != 15000 {
		t.Errorf("during %+v whole %+v", sr.During, sr.Whole)
	}
	// 100 of 4000 answers in the slow bucket: p99 is in it, p50 is not.
	if sr.During.P99ms <= sr.Before.P99ms || sr.During.P50ms != sr.Before.P50ms {
		t.Errorf("during p50 %v p99 %v, before p50 %v p99 %v", sr.During.P50ms, sr.During.P99ms, sr.Before.P50ms, sr.Before.P99ms)
	}
	if sr.During.MaxMs != 60 {
		t.Errorf("max %v", sr.During.MaxMs)
	}
}

func TestReport(t *testing.T) {
	res := fakeResults()
	res.Plots = []string{"latency-vs-rate-single.png"}
	again := *res.Scenarios[0]
	again.Repeat = 2
	res.Scenarios = append(res.Scenarios, &again)
	r := buildReport(res)
	for _, want := range []string{
		"| single | 50000 | 10000 | **0.200** |", // saturation = the highest step that kept up
		"| batch20 | 50000 | 10000 | **0.200** |",
		"1.00 / **4.50** / 6.75", // Sluice p50 / p99 / p99.9 at 50 %
		"60.0, 81.0",             // Sluice µs/event at saturation, at 50 %
		"10.0×, 10.8×",           // CPU ratios
		"| restart | 5000 | 1.2–1.4 | 14000 | 14000 | 14000 | **0** | 0 | 0 | 0 | 0 |",
		"| restart #2 | 5000 | 1.2–1.4 |",
		"| restart | 2 |",          // the medians over the runs
		"**75.11** (75.11, 75.11)", // each run's ratio during, and their median
		"![latency-vs-rate-single](latency-vs-rate-single.png)",
		"### batch20 → sluice",
		"**p99 900 ms**",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(r)
	}
	// A run cut short still makes a report.
	empty := &results{Started: res.Started, Finished: res.Finished}
	if r := buildReport(empty); !strings.Contains(r, "## Headline") {
		t.Errorf("empty report: %s", r)
	}
}

func TestPlots(t *testing.T) {
	dir := t.TempDir()
	names, err := writePlots(dir, fakeResults())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 3 {
		t.Fatalf("plots %v", names)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) || len(b) < 10000 {
			t.Errorf("%s: %d bytes, %v", n, len(b), err)
		}
	}
}

func TestFindMarkAndBitmap(t *testing.T) {
	needle := []byte(`"mark":"abc-`)
	v := []byte(`{"id":"x","payload":{"type":"page_view","mark":"abc-000000001234","props":{}}}`)
	if seq, ok := findMark(v, needle); !ok || seq != 1234 {
		t.Errorf("findMark = %d %v", seq, ok)
	}
	if _, ok := findMark([]byte(`{"mark":"abd-000000001234"}`), needle); ok {
		t.Error("another run's mark matched")
	}
	if _, ok := findMark([]byte(`{"mark":"abc-00012"}`), needle); ok {
		t.Error("a short mark matched")
	}
	b := bitmap{0b1011, 1 << 63}
	if b.count() != 4 || !b.has(0) || b.has(2) || !b.has(127) || b.has(128) {
		t.Errorf("bitmap count %d", b.count())
	}
}

func TestScaledSpec(t *testing.T) {
	s := specByName("outage").scaled(0.3)
	if s.Duration != 24*time.Second || s.FaultAt != 10*time.Second || s.FaultFor != 9*time.Second {
		t.Errorf("scaled %+v", s)
	}
	if specByName("healthy").scaled(0.01).Duration != time.Second {
		t.Error("scaled below a second")
	}
}

func TestKeyOrder(t *testing.T) {
	rec := func(key string, part int32, off int64, idx string) *kgo.Record {
		r := &kgo.Record{Key: []byte(key), Partition: part, Offset: off}
		if idx != "" {
			r.Headers = []kgo.RecordHeader{{Key: "sluice-event-id", Value: []byte("x")}, {Key: "sluice-wal-index", Value: []byte(idx)}}
		}
		return r
	}
	var o keyOrder
	for _, r := range []*kgo.Record{
		rec("a", 0, 0, "1"), rec("b", 0, 1, "2"), rec("a", 0, 2, "3"),
		rec("a", 0, 3, "1"),    // a copy of 1: a duplicate, in order
		rec("b", 1, 0, "4"),    // b moved to partition 1
		rec("a", 0, 4, "200"),  // past the bitmap's first growth
		rec("a", 0, 5, "150"),  // first seen after 200: a violation
		rec("b", 1, 1, "5"),    // in order in its new partition
		rec("c", 2, 0, ""),     // no index: counted apart
		rec("c", 2, 1, "9000"), //
	} {
		o.add(r)
	}
	o.finish()
	if o.Checked != 9 || o.NoIndex != 1 || o.Violations != 1 || o.Keys != 3 || o.KeysMoved != 1 {
		t.Errorf("order %+v", o)
	}
	if len(o.Sample) != 1 || !strings.Contains(o.Sample[0], `key "a" partition 0 offset 5: WAL index 150 after 200`) {
		t.Errorf("sample %q", o.Sample)
	}
}

// stallRun is a 6 s scenario run with its fault window over seconds 3-5: a
// 1000-request second at fast each, but second stallAt (if >= 0) is slow,
// and the sample after it shows a WAL fsync over 51.2 ms if fsyncStall.
func stallRun(fast, slow uint64, stallAt int, fsyncStall bool) *scenarioResult {
	sr := &scenarioResult{
		Spec:    scenarioSpec{Name: "slow", Fault: "slow", Duration: 6 * time.Second, FaultAt: 3 * time.Second, FaultFor: 3 * time.Second},
		Run:     &openRun{},
		Windows: []window{{From: 3, To: 6}},
	}
	var slowFsyncs float64
	for t := range 6 {
		b := fast
		if t == stallAt {
			b = slow
		}
		sr.Run.Seconds = append(sr.Run.Seconds, secondLine{T: t, Offered: 1000, OK: 1000, MaxMs: 100, Hist: [][2]uint64{{b, 1000}}})
		if t == stallAt && fsyncStall {
			slowFsyncs++
		}
		sr.Samples = append(sr.Samples, sluiceSample{T: float64(t) + 0.95, Up: true, SlowFsyncs: slowFsyncs})
	}
	before, during, _ := phaseSpans(sr.Windows[0], 6)
	sr.Before = mergeSeconds(sr.Run.Seconds, before[0], before[1])
	sr.During = mergeSeconds(sr.Run.Seconds, during[0], during[1])
	return sr
}

// A disk stall in the during window moves its p99; left out of both
// windows, the ratio is the Kafka fault's own. Without a stall the two
// ratios agree.
func TestStallFreeRatio(t *testing.T) {
	stalled := stallRun(900, 1700, 4, true)
	if r, _, ok := stalled.pRatios(); !ok || r <= 1.5 {
		t.Fatalf("ratio during %v (%v), want the stall's", r, ok)
	}
	c, sb, sd, ok := stalled.stallFreeRatio()
	if !ok || c != 1 || sb != 0 || sd != 2 {
		t.Errorf("stall-free ratio %v, stalls %d/%d (%v); want 1, 0/2 (the stall's second and the one before)", c, sb, sd, ok)
	}
	// A slow second without a disk stall is the fault's: it stays.
	slowOnly := stallRun(900, 1700, 4, false)
	if c, _, sd, ok := slowOnly.stallFreeRatio(); !ok || sd != 0 || c <= 1.5 {
		t.Errorf("without a disk stall the ratio left %v (stalls %d)", c, sd)
	}
	// A counter that falls (a restarted Sluice) is a new baseline, not a stall.
	restarted := stallRun(900, 900, -1, false)
	restarted.Samples[2].SlowFsyncs = 3
	restarted.Samples[3].SlowFsyncs = 0
	if got := restarted.diskStallSeconds(); len(got) != 2 || !got[1] || !got[2] {
		t.Errorf("stall seconds %v, want the second the rising sample covers and the one before (2 and 1)", got)
	}
}

// The pooled p99 is over every run's window requests together: one run's
// slow second is 1/3 of the during requests pooled, above the 99th
// percentile either way here, and the before windows are all fast.
func TestPooledP99(t *testing.T) {
	runs := []*scenarioResult{stallRun(900, 900, -1, false), stallRun(900, 900, -1, false), stallRun(900, 1700, 4, false)}
	b, d, ok := pooledP99(runs)
	if !ok || b != runs[0].Before.P99ms || d != runs[2].During.P99ms {
		t.Errorf("pooled %v → %v (%v), want %v → %v", b, d, ok, runs[0].Before.P99ms, runs[2].During.P99ms)
	}
	if _, _, ok := pooledP99([]*scenarioResult{{Spec: scenarioSpec{Name: "healthy"}}}); ok {
		t.Error("a run without a window pooled")
	}
}
