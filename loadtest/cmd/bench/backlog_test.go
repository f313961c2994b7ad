package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"gonum.org/v1/plot/plotter"

	"github.com/sluice-gateway/sluice/loadtest/internal/promtext"
)

func TestLedgerFromMetrics(t *testing.T) {
	parse := func(text string) promtext.Metrics {
		m, err := promtext.Parse(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	const balanced = `sluice_events_received_total{source="http"} 1000
sluice_events_received_total{source="recovered"} 50
sluice_events_shipped_total{kind="event"} 700
sluice_events_shipped_total{kind="dead_letter"} 10
sluice_events_dropped_total{reason="buffer_full"} 20
sluice_events_dropped_total{reason="wal_write"} 0
sluice_events_refused_total{reason="wal_write"} 20
sluice_events_buffered 300
`
	l := ledgerOf(parse(balanced))
	if !l.Has || l.Received != 1050 || l.Shipped != 710 || l.Dropped != 20 || l.Refused != 20 || l.Buffered != 300 || l.off() != 0 {
		t.Errorf("balanced ledger read as %+v, off %v", l, l.off())
	}
	l = ledgerOf(parse(strings.Replace(balanced, "sluice_events_buffered 300", "sluice_events_buffered 299", 1)))
	if l.off() != 1 {
		t.Errorf("one event unaccounted for: off %v", l.off())
	}
	if l := ledgerOf(parse("sluice_buffer_backlog_records 3\n")); l.Has {
		t.Error("a scrape without the ledger counted as having one")
	}
}

func TestBitmapOrAt(t *testing.T) {
	var b bitmap
	b = b.orAt(bitmap{0b101}, 0)     // requests 0 and 2
	b = b.orAt(bitmap{0b11, 1}, 100) // requests 100, 101 and 164
	for _, i := range []uint64{0, 2, 100, 101, 164} {
		if !b.has(i) {
			t.Errorf("request %d not set", i)
		}
	}
	if b.count() != 5 || b.has(1) || b.has(163) {
		t.Errorf("count %d, has(1) %v, has(163) %v", b.count(), b.has(1), b.has(163))
	}
}

func TestSplitRuns(t *testing.T) {
	xys := plotter.XYs{{X: 0.5}, {X: 1.5}, {X: 2.5}, {X: 60.5}, {X: 61.5}, {X: math.NaN()}, {X: 70.5}}
	got := splitRuns(xys)
	if len(got) != 3 || len(got[0]) != 3 || len(got[1]) != 2 || len(got[2]) != 1 {
		t.Errorf("splitRuns = %v", got)
	}
}

// liveSeconds is n seconds of live load: 2000 answers a second, fast ones,
// and slow answers (a higher histogram bucket) where slow is true.
func liveSeconds(n int, slow func(t int) bool) []secondLine {
	var out []secondLine
	for t := 0; t < n; t++ {
		s := secondLine{T: t, Offered: 2000, Sent: 2000, OK: 2000, P50ms: 1, P99ms: 5, MaxMs: 8, Hist: [][2]uint64{{900, 2000}}}
		if slow(t) {
			s.P99ms, s.MaxMs, s.Hist = 80, 90, [][2]uint64{{900, 1900}, {1700, 100}}
		}
		out = append(out, s)
	}
	return out
}

// fakeBacklog is a backlog scenario second by second: before 0–5 s, build
// 5.5–15.5 s (500 000 records/s), hold to 20.5 s, drain to 70.5 s (net
// 100 000 records/s, 102 000 shipped/s under 2000 live/s), after to 80.5 s.
func fakeBacklog(rss float64) *backlogResult {
	r := &backlogResult{Config: defaultBacklog, RestoreT: 20.5, DrainedT: 70.5, Drained: true, Checks: 81, Stop: "exit status 0"}
	r.Phases = []window{{0, 5.5, "before"}, {5.5, 15.5, "build"}, {15.5, 20.5, "hold"}, {20.5, 70.5, "drain"}, {70.5, 80.5, "after"}}
	var shipped float64
	for t := 1; t <= 80; t++ {
		x := float64(t)
		s := backlogSample{T: x, Up: true, RSSMiB: 40, AnonMiB: 30, HeapMiB: 20, HWMMiB: rss,
			HasCPU: true, HostCores: 1, SluiceCores: 0.5, HarnessCores: 0.1}
		switch {
		case x < 5.5:
			s.Phase = "before"
		case x < 15.5:
			s.Phase, s.Backlog, s.RSSMiB, s.HostCores = "build", 500_000*(x-5.5), rss, 1.5
		case x < 20.5:
			s.Phase, s.Backlog, s.RSSMiB = "hold", 5_000_000, rss-10
		case x < 70.5:
			s.Phase, s.Backlog, s.RSSMiB = "drain", 5_000_000-100_000*(x-20.5), rss-20
			shipped += 102_000
		default:
			s.Phase = "after"
		}
		s.DiskBytes = s.Backlog * 900
		s.Ledger = ledger{Has: true, Received: s.Backlog + shipped, Shipped: shipped, Buffered: s.Backlog}
		r.Samples = append(r.Samples, s)
	}
	r.Before = &openRun{Seconds: liveSeconds(5, func(int) bool { return false }), CPU: cpuUse{LoadgenCores: 0.3}}
	r.LiveStart = 15.5 // the live schedule's second s is the scenario's 15.5+s
	r.Live = &openRun{Seconds: liveSeconds(65, func(t int) bool { return t >= 5 && t < 55 }), CPU: cpuUse{LoadgenCores: 0.3}}
	buildRun := mkStep("batch100", "sluice", "", 50, true, 3, 40, 0).Run
	buildRun.Summary.Events = 5_000_000
	buildRun.CPU.LoadgenCores = 0.2
	r.Rounds = []buildRound{{Run: buildRun, BacklogAfter: 5_000_000}}
	r.Verify = []*verification{
		{Acked: 5_000_000, Found: 5_000_000, Records: 5_140_000, Complete: true},
		{Acked: 140_000, Found: 140_000, Records: 5_140_000, Complete: true},
	}
	r.Final = ledger{Has: true, Received: 5_140_000, Shipped: 5_140_000}
	r.Stats = analyzeBacklog(r)
	return r
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol*math.Abs(want) }

func TestAnalyzeBacklog(t *testing.T) {
	st := fakeBacklog(150).Stats
	if st.BacklogPeak != 5_000_000 || st.DiskPeakBytes != 4.5e9 {
		t.Errorf("peak %v, disk %v", st.BacklogPeak, st.DiskPeakBytes)
	}
	if st.BuildS != 10 || !near(st.BuildRate, 500_000, 0.1) || st.BuildAcked != 5_000_000 {
		t.Errorf("build %v s, %v records/s, %v acked", st.BuildS, st.BuildRate, st.BuildAcked)
	}
	if st.RSSBefore != 40 || st.RSSBuild != 150 || st.RSSHold != 140 || st.RSSDrain != 130 || st.RSSAfter != 40 || st.RSSMax != 150 || st.HWM != 150 {
		t.Errorf("RSS by phase %+v", st)
	}
	// Drain: 4 950 000 records at the first sample after the restore, 50 s.
	if st.BacklogAtStart != 4_950_000 || st.DrainS != 50 || !near(st.DrainMean, 99_000, 0.001) {
		t.Errorf("drain from %v in %v s: mean %v", st.BacklogAtStart, st.DrainS, st.DrainMean)
	}
	if !near(st.DrainSlope, 100_000, 0.001) || !near(st.ShipRate, 102_000, 0.001) {
		t.Errorf("slope %v, ship rate %v", st.DrainSlope, st.ShipRate)
	}
	if !st.Resumed || st.ResumedS != 0.5 {
		t.Errorf("resumed %v after %v s", st.Resumed, st.ResumedS)
	}
	if st.RSSFail || !st.LedgerChecked || !st.LedgerBalanced || st.Acked != 5_140_000 || st.Missing != 0 {
		t.Errorf("verdict inputs %+v", st)
	}
	// Live latency: before and after fast, the drain slow.
	before, hold, drain, after := livePhaseOf(st, "before"), livePhaseOf(st, "hold"), livePhaseOf(st, "drain"), livePhaseOf(st, "after")
	if before.Seconds != 5 || hold.Seconds != 5 || drain.Seconds != 50 || after.Seconds != 10 {
		t.Errorf("live phases: before %d s, hold %d s, drain %d s, after %d s", before.Seconds, hold.Seconds, drain.Seconds, after.Seconds)
	}
	if drain.P99ms <= before.P99ms || after.P99ms != before.P99ms || hold.P99ms != before.P99ms {
		t.Errorf("p99 before %v, hold %v, drain %v, after %v", before.P99ms, hold.P99ms, drain.P99ms, after.P99ms)
	}

	// The rest of the machine: 1 - 0.5 - 0.1 - 0.3 outside the build, 1.5 -
	// 0.5 - 0.1 - 0.2 during it.
	if r := fakeBacklog(150); r.OtherCores != 0.1 || r.OtherBuild != 0.7 {
		t.Errorf("other cores %v, during the build %v", r.OtherCores, r.OtherBuild)
	}

	// A drain that ends mid-second: that second (slow) counts in the drain,
	// not after it.
	r := fakeBacklog(150)
	r.Phases[3].To, r.Phases[4].From = 70.9, 70.9
	r.Live.Seconds[55].P99ms, r.Live.Seconds[55].Hist = 80, [][2]uint64{{900, 1900}, {1700, 100}}
	st2 := analyzeBacklog(r)
	if d, a := livePhaseOf(st2, "drain"), livePhaseOf(st2, "after"); d.Seconds != 51 || a.Seconds != 9 || a.P99ms != before.P99ms {
		t.Errorf("drain ending at 70.9 s: drain %d s, after %d s with p99 %v", d.Seconds, a.Seconds, a.P99ms)
	}

	// At the limit is a failure; so is a peak only VmHWM saw.
	if st := fakeBacklog(200).Stats; !st.RSSFail {
		t.Error("RSS of exactly 200 MiB passed")
	}
	r = fakeBacklog(150)
	r.Samples[len(r.Samples)-1].HWMMiB = 230
	if st := analyzeBacklog(r); !st.RSSFail || st.HWM != 230 {
		t.Errorf("a VmHWM of 230 MiB: fail %v, HWM %v", st.RSSFail, st.HWM)
	}
}

func TestBacklogReport(t *testing.T) {
	res := &results{Started: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC), Command: "go run ./loadtest/cmd/bench -kinds  -scenarios backlog"}
	res.Finished = res.Started.Add(5 * time.Minute)
	res.Backlog = fakeBacklog(150)
	r := buildReport(res)
	for _, want := range []string{
		"## Backlog on disk (scenario `backlog`)",
		"**PASS**: RSS stayed below 200 MiB",
		"| backlog peak | 5000000 records |",
		"| **RSS max** (sampled VmRSS) / **VmHWM** at the end, limit 200 MiB | PASS 150.0 MiB / 150.0 MiB |",
		"| RSS max by phase: before / build / hold / drain / after | 40.0 / 150.0 / 140.0 / 130.0 / 40.0 MiB |",
		"below 1000 after **50.0 s**",
		"| **drain rate**: mean (backlog / drain time), net slope (backlog 90 %→10 %), shipped | **99000**, 100000, 102000 records/s |",
		"| build events: acked / found / **missing** / duplicates / unacked but found | 5000000 / 5000000 / **0** / 0 / 0 |",
		"| **ledger violations** | **0** of 81 scrapes;",
		"![backlog timeline](timeline-backlog.png)",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(r, "## Headline") || strings.Contains(r, "## Every step") {
		t.Error("a backlog-only report has the saturation sections")
	}
	if t.Failed() {
		t.Log(r)
	}

	res.Backlog = fakeBacklog(210)
	res.Backlog.Violations = []ledgerViolation{{T: 12, Phase: "build", Ledger: ledger{Has: true, Received: 10, Shipped: 4, Buffered: 5}}}
	res.Backlog.Verify[1].Missing, res.Backlog.Verify[1].MissingSample = 2, []uint64{7, 9}
	res.Backlog.Stats = analyzeBacklog(res.Backlog)
	r = buildReport(res)
	for _, want := range []string{
		"**FAIL**: RSS reached 210.0 MiB (limit 200 MiB); 2 acknowledged events missing from Kafka; the ledger did not balance at 1 of 81 scrapes.",
		"| **FAIL** 210.0 MiB / 210.0 MiB |",
		"first ledger violation at 12.0 s (build): received 10, shipped 4, dropped 0, refused 0, buffered 5 (off by 1)",
		"scenario backlog FAILED: RSS reached 210.0 MiB",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("failing report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(r)
	}
}

func TestBacklogPlot(t *testing.T) {
	dir := t.TempDir()
	res := &results{Backlog: fakeBacklog(150)}
	names, err := writePlots(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != backlogPlot {
		t.Fatalf("plots %v", names)
	}
	b, err := os.ReadFile(filepath.Join(dir, backlogPlot))
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) || len(b) < 10000 {
		t.Errorf("%s: %d bytes, %v", backlogPlot, len(b), err)
	}
}

func TestVerifyRuns(t *testing.T) {
	cluster, err := startKafka(1)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	mark := func(run string, seq int) string {
		return fmt.Sprintf(`{"id":"x","payload":{"type":"page_view","mark":"%s-%012d"}}`, run, seq)
	}
	// Run a: 2 events a request, 3 requests, requests 0 and 2 acknowledged
	// (events 0, 1, 4, 5): 5 is missing, 1 is there twice, 2 (not
	// acknowledged) is there. Run b: 1 event a request, both acknowledged
	// and there. Two records belong to neither.
	values := []string{mark("aaa", 0), mark("aaa", 1), mark("aaa", 1), mark("aaa", 4), mark("aaa", 2),
		mark("bbb", 0), mark("bbb", 1), mark("ccc", 1), `{"type":"no mark"}`}
	for i, v := range values {
		r := &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(v)}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := verifyRuns(context.Background(), cluster.ListenAddrs(), []markRun{
		{ID: "aaa", PerReq: 2, Slots: 3, SentReqs: 3, Acked: bitmap{0b101}},
		{ID: "bbb", PerReq: 1, Slots: 2, SentReqs: 2, Acked: bitmap{0b11}},
	}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a, b := vs[0], vs[1]
	if a.Offered != 6 || a.Sent != 6 || a.Acked != 4 || a.Found != 3 || a.Missing != 1 || a.Duplicates != 1 || a.UnackedFound != 1 ||
		len(a.MissingSample) != 1 || a.MissingSample[0] != 5 {
		t.Errorf("run a: %+v", a)
	}
	if b.Acked != 2 || b.Found != 2 || b.Missing != 0 || b.Duplicates != 0 || b.UnackedFound != 0 {
		t.Errorf("run b: %+v", b)
	}
	if a.Records != 9 || a.Foreign != 2 || !a.Complete || b.Records != 9 || b.Foreign != 2 {
		t.Errorf("topic: %d records, %d foreign, complete %v", a.Records, a.Foreign, a.Complete)
	}
}

func TestConfigCheck(t *testing.T) {
	base := func() config {
		return config{conns: 1, duration: time.Second, warmup: time.Second, maxTotal: 9 * time.Minute, backlog: defaultBacklog, scenarioRuns: 1}
	}
	c := base()
	c.scenarios = []string{"backlog"} // -kinds "" -scenarios backlog
	if err := c.check(map[string]bool{}); err != nil || c.maxTotal != 29*time.Minute {
		t.Errorf("backlog only: %v, max total %v", err, c.maxTotal)
	}
	c = base()
	c.scenarios = []string{"outage", "backlog"}
	if err := c.check(map[string]bool{"max-total": true}); err != nil || c.maxTotal != 9*time.Minute {
		t.Errorf("an explicit -max-total: %v, max total %v", err, c.maxTotal)
	}
	c = base()
	c.scenarios, c.scenarioRuns = []string{"outage", "slow"}, 3 // 3 × (80 s + 20 s) × 2 + 2 min
	if err := c.check(map[string]bool{}); err != nil || c.maxTotal != 12*time.Minute {
		t.Errorf("three runs of two scenarios: %v, max total %v", err, c.maxTotal)
	}
	c = base()
	c.scenarios, c.scenarioRuns = []string{"outage"}, 0
	if err := c.check(map[string]bool{}); err == nil || !strings.Contains(err.Error(), "-scenario-runs") {
		t.Errorf("-scenario-runs 0: %v", err)
	}
	c = base()
	if err := c.check(nil); err == nil {
		t.Error("no kinds and no scenarios: no error")
	}
	c.kinds, c.scenarios = []string{"single"}, []string{"nope"}
	if err := c.check(nil); err == nil {
		t.Error("an unknown scenario: no error")
	}
	c = base()
	c.scenarios, c.backlog.BuildKind = []string{"backlog"}, "single"
	if err := c.check(nil); err == nil {
		t.Error("a backlog built of single events: no error")
	}
}

func TestSecondsCentredIn(t *testing.T) {
	secs := liveSeconds(10, func(int) bool { return false })
	// [2.7, 5.2): the middles 3.5 and 4.5; 2.5 and 5.5 are outside.
	got := secondsCentredIn(secs, 2.7, 5.2)
	if len(got) != 2 || got[0].T != 3 || got[1].T != 4 {
		t.Errorf("seconds centred in [2.7, 5.2): %v", got)
	}
	if got := secondsCentredIn(secs, 5.5, 5.5); len(got) != 0 {
		t.Errorf("an empty window: %v", got)
	}
	// [2.7, 5.2) overlaps seconds 2, 3, 4 and 5.
	if got := secondsOverlapping(secs, 2.7, 5.2); len(got) != 4 || got[0].T != 2 || got[3].T != 5 {
		t.Errorf("seconds overlapping [2.7, 5.2): %v", got)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"-kinds", "", "-sluice-flags", "--ack enqueue", "-x", "it's"})
	want := `-kinds '' -sluice-flags '--ack enqueue' -x 'it'\''s'`
	if got != want {
		t.Errorf("shellJoin = %s, want %s", got, want)
	}
}
