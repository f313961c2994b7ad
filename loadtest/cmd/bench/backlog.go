package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-gateway/sluice/loadtest/internal/procstat"
	"github.com/sluice-gateway/sluice/loadtest/internal/promtext"
	"github.com/sluice-gateway/sluice/loadtest/internal/sluiceproc"
)

// The backlog scenario (issue #4: "the backlog lives on disk"): with every
// Produce failing, build a backlog of millions of events in Sluice's WAL as
// fast as the machine allows (batch requests), then restore Kafka and let it
// drain while live single-event traffic continues. Sluice's memory (VmRSS,
// RssAnon, Go heap), the backlog, the WAL's bytes on disk and the event
// ledger are sampled every second; afterwards every acknowledged event is
// looked for in Kafka.
const backlogScenario = "backlog"

// backlogConfig is the backlog scenario's knobs (bench's -backlog-* flags).
type backlogConfig struct {
	Events       float64       `json:"events"`        // backlog to build, records
	BuildKind    string        `json:"build_kind"`    // body of the build's requests (batchN)
	BuildConns   int           `json:"build_conns"`   // the build's connections
	BuildRate    float64       `json:"build_rate"`    // first build round's offered events/s
	BuildMax     time.Duration `json:"build_max"`     // give up building after this long
	LiveRate     float64       `json:"live_rate"`     // live single events/s, before the outage and while draining
	LiveConns    int           `json:"live_conns"`    // the live load's connections
	Before       time.Duration `json:"before"`        // live load with Kafka healthy, before the outage
	Hold         time.Duration `json:"hold"`          // live load with the full backlog and Kafka still down
	After        time.Duration `json:"after"`         // live load after the drain
	DrainMax     time.Duration `json:"drain_max"`     // longest wait for the drain
	DrainedBelow float64       `json:"drained_below"` // the drain is over when the backlog is below this (live traffic keeps a few records in flight)
	RSSLimitMiB  float64       `json:"rss_limit_mib"` // the scenario fails at this RSS
}

var defaultBacklog = backlogConfig{
	Events: 5_000_000, BuildKind: "batch100", BuildConns: 64, BuildRate: 80_000, BuildMax: 6 * time.Minute,
	LiveRate: 2000, LiveConns: 64, Before: 15 * time.Second, Hold: 5 * time.Second, After: 10 * time.Second,
	DrainMax: 6 * time.Minute, DrainedBelow: 1000, RSSLimitMiB: 200,
}

// backlogSample is one scrape of Sluice's /metrics and /proc during the
// backlog scenario.
type backlogSample struct {
	T            float64 `json:"t"` // seconds since the scenario's start
	Phase        string  `json:"phase"`
	Up           bool    `json:"up"`
	RSSMiB       float64 `json:"rss_mib"`  // VmRSS
	AnonMiB      float64 `json:"anon_mib"` // RssAnon: heap, stacks, anonymous mappings
	FileMiB      float64 `json:"file_mib"` // RssFile: the binary, mapped files
	HWMMiB       float64 `json:"hwm_mib"`  // VmHWM so far
	HeapMiB      float64 `json:"heap_inuse_mib"`
	GoSysMiB     float64 `json:"go_sys_mib"` // go_memstats_sys_bytes: all the Go runtime got from the OS
	Backlog      float64 `json:"backlog"`
	DiskBytes    float64 `json:"disk_bytes"`
	Ledger       ledger  `json:"ledger"`
	SluiceCores  float64 `json:"sluice_cores"`
	HarnessCores float64 `json:"harness_cores"`
	HostCores    float64 `json:"host_cores"`
	HasCPU       bool    `json:"has_cpu"`
}

// ledger is Sluice's event accounting at one scrape, each family summed over
// its labels: received = shipped + dropped + refused + buffered must hold.
type ledger struct {
	Has      bool    `json:"has"` // Sluice exports it
	Received float64 `json:"received"`
	Shipped  float64 `json:"shipped"`
	Dropped  float64 `json:"dropped"`
	Refused  float64 `json:"refused"`
	Buffered float64 `json:"buffered"`
}

func ledgerOf(m promtext.Metrics) ledger {
	return ledger{
		Has:      m.Has("sluice_events_received_total") && m.Has("sluice_events_buffered"),
		Received: m.Sum("sluice_events_received_total"),
		Shipped:  m.Sum("sluice_events_shipped_total"),
		Dropped:  m.Sum("sluice_events_dropped_total"),
		Refused:  m.Sum("sluice_events_refused_total"),
		Buffered: m.Sum("sluice_events_buffered"),
	}
}

// off is received minus what is accounted for (0 when the ledger balances).
func (l ledger) off() float64 {
	return l.Received - (l.Shipped + l.Dropped + l.Refused + l.Buffered)
}

type ledgerViolation struct {
	T      float64 `json:"t"`
	Phase  string  `json:"phase"`
	Ledger ledger  `json:"ledger"`
}

// buildRound is one "loadgen open" run of the build.
type buildRound struct {
	FirstRequest uint64   `json:"first_request"`
	Run          *openRun `json:"run"`
	BacklogAfter float64  `json:"backlog_after"`
}

// livePhase is the live traffic's latency over one phase.
type livePhase struct {
	Name  string     `json:"name"`
	Stats phaseStats `json:"stats"`
}

type backlogResult struct {
	Config  backlogConfig   `json:"config"`
	Started time.Time       `json:"started"` // the scenario's t = 0
	Phases  []window        `json:"phases"`  // before, build, hold, drain, after (scenario seconds)
	Rounds  []buildRound    `json:"build_rounds"`
	Before  *openRun        `json:"live_before"` // live load, Kafka healthy
	Live    *openRun        `json:"live"`        // live load from the hold to the end
	Samples []backlogSample `json:"samples"`

	BeforeStart float64 `json:"live_before_start"` // scenario seconds of the live runs' schedule starts
	LiveStart   float64 `json:"live_start"`
	RestoreT    float64 `json:"restore_t"` // Kafka restored
	DrainedT    float64 `json:"drained_t"` // backlog below DrainedBelow
	Drained     bool    `json:"drained"`
	FaultHits   int     `json:"fault_hits"`

	Verify     []*verification   `json:"verify"` // build, live
	Violations []ledgerViolation `json:"ledger_violations"`
	Checks     int               `json:"ledger_checks"`
	Final      ledger            `json:"ledger_final"` // after the drain, load stopped, backlog 0
	Profiles   []string          `json:"heap_profiles"`
	OtherCores float64           `json:"other_cores"` // outside the build (see otherCores)
	OtherBuild float64           `json:"other_cores_build"`
	Stop       string            `json:"stop"`
	Warnings   []string          `json:"warnings"`
	Err        string            `json:"error,omitempty"`

	Stats backlogStats `json:"stats"`
}

// backlogStats is what the report says, derived from the samples and runs.
type backlogStats struct {
	BacklogPeak    float64     `json:"backlog_peak"`
	DiskPeakBytes  float64     `json:"disk_peak_bytes"`
	BuildS         float64     `json:"build_s"`
	BuildAcked     float64     `json:"build_acked_events"`
	BuildRate      float64     `json:"build_rate"` // backlog growth / build time, records/s
	RSSMax         float64     `json:"rss_max_mib"`
	RSSBefore      float64     `json:"rss_before_mib"`
	RSSBuild       float64     `json:"rss_build_mib"`
	RSSHold        float64     `json:"rss_hold_mib"`
	RSSDrain       float64     `json:"rss_drain_mib"`
	RSSAfter       float64     `json:"rss_after_mib"`
	AnonMax        float64     `json:"anon_max_mib"`
	HeapMax        float64     `json:"heap_max_mib"`
	HWM            float64     `json:"hwm_mib"`
	BacklogAtStart float64     `json:"backlog_at_restore"`
	DrainS         float64     `json:"drain_s"`
	DrainMean      float64     `json:"drain_mean"`  // backlog at restore / drain time, records/s
	DrainSlope     float64     `json:"drain_slope"` // -d(backlog)/dt, least squares over 90 %..10 % of it
	ShipRate       float64     `json:"ship_rate"`   // d(shipped)/dt over the same samples
	ResumedS       float64     `json:"resumed_s"`   // restore to the first shipped event
	Resumed        bool        `json:"resumed"`
	Live           []livePhase `json:"live"`
	RSSFail        bool        `json:"rss_fail"`
	LedgerChecked  bool        `json:"ledger_checked"`
	LedgerBalanced bool        `json:"ledger_balanced"`
	Acked          uint64      `json:"acked"` // acknowledged events, build and live
	Found          uint64      `json:"found"`
	Missing        uint64      `json:"missing"`
}

func (r *backlogResult) phaseAt(name string) (window, bool) {
	for _, w := range r.Phases {
		if w.Label == name {
			return w, true
		}
	}
	return window{}, false
}

// runBacklog runs the backlog scenario on a fresh kfake and a fresh Sluice.
func runBacklog(ctx context.Context, env *scenarioEnv, cfg backlogConfig, extra, environ []string) (*backlogResult, error) {
	res := &backlogResult{Config: cfg}
	perReq := eventsPer(cfg.BuildKind)
	if perReq < 2 {
		return res, fmt.Errorf("-backlog-kind %q: want batchN", cfg.BuildKind)
	}
	cluster, err := startKafka(3)
	if err != nil {
		return res, err
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	public, err1 := freePort()
	admin, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		return res, err
	}
	dataDir := filepath.Join(env.tmp, "scenario-"+backlogScenario)
	defer os.RemoveAll(dataDir)
	p, err := startSluice(ctx, env.kids, sluiceOpts{bin: env.sluiceBin, dataDir: dataDir,
		logPath: filepath.Join(env.rawDir, "sluice-"+backlogScenario+".log"), public: public, admin: admin, brokers: brokers,
		extra: append([]string{"--pprof"}, extra...), env: environ})
	if err != nil {
		return res, err
	}
	defer func() {
		if res.Stop == "" {
			res.Stop, _ = p.stop(45 * time.Second)
		}
	}()
	url := "http://" + public + "/v1/beacon"
	start := time.Now()
	res.Started = start
	rel := func(t time.Time) float64 { return round3(t.Sub(start).Seconds()) }

	var (
		mu    sync.Mutex
		phase = "before"
	)
	setPhase := func(name string) { mu.Lock(); phase = name; mu.Unlock() }
	// check records one scrape's ledger.
	check := func(t time.Time, m promtext.Metrics) ledger {
		l := ledgerOf(m)
		if !l.Has {
			return l
		}
		mu.Lock()
		defer mu.Unlock()
		res.Checks++
		if l.off() != 0 {
			res.Violations = append(res.Violations, ledgerViolation{T: rel(t), Phase: phase, Ledger: l})
			logf("backlog: ledger off by %.0f at %.1fs: %+v", l.off(), rel(t), l)
		}
		return l
	}
	prev := takeCPU(p.pid, 0)
	stopSampling := everySecond(func() {
		now := time.Now()
		mu.Lock()
		s := backlogSample{T: rel(now), Phase: phase}
		mu.Unlock()
		snap := takeCPU(p.pid, 0)
		if snap.serverErr == nil && prev.serverErr == nil {
			u := cpuBetween(prev, snap)
			s.SluiceCores, s.HarnessCores, s.HostCores, s.HasCPU = u.ServerCores, u.HarnessCores, u.HostCores, true
		}
		prev = snap
		if mem, err := procstat.Memory(p.pid); err == nil {
			s.RSSMiB, s.AnonMiB, s.FileMiB, s.HWMMiB = mib(mem.VmRSS), mib(mem.RssAnon), mib(mem.RssFile), mib(mem.VmHWM)
		}
		if m, err := scrape(ctx, p.admin); err == nil {
			s.Up = true
			s.Backlog = m.Sum("sluice_buffer_backlog_records")
			s.DiskBytes = m.Sum("sluice_buffer_disk_bytes")
			s.HeapMiB = mib(m.Sum("go_memstats_heap_inuse_bytes"))
			s.GoSysMiB = mib(m.Sum("go_memstats_sys_bytes"))
			s.Ledger = check(now, m)
		}
		mu.Lock()
		res.Samples = append(res.Samples, s)
		mu.Unlock()
	})
	defer stopSampling()
	addPhase := func(name string, from, to time.Time) {
		mu.Lock()
		res.Phases = append(res.Phases, window{From: rel(from), To: rel(to), Label: name})
		mu.Unlock()
	}
	sleep := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-ctx.Done():
			return false
		}
	}
	profile := func(tag string) {
		path := filepath.Join(env.rawDir, "backlog-heap-"+tag+".pb.gz")
		if err := fetchHeapProfile(ctx, p.admin, path); err != nil {
			logf("backlog: heap profile %s: %v", tag, err)
			return
		}
		mu.Lock()
		res.Profiles = append(res.Profiles, filepath.Base(path))
		mu.Unlock()
	}

	// 1. Live load with Kafka healthy: the latency to compare with.
	liveID := fmt.Sprintf("bkl%06x", time.Now().UnixNano()&0xffffff)
	buildID := fmt.Sprintf("bkb%06x", time.Now().UnixNano()&0xffffff)
	liveAcked := filepath.Join(env.rawDir, "acked-backlog-live-before.bin")
	logf("backlog: %.0f live events/s for %v, Kafka healthy", cfg.LiveRate, cfg.Before)
	t0 := time.Now()
	before, err := runOpen(ctx, env.loadgenBin, openArgs{url: url, kind: "single", rate: cfg.LiveRate, duration: cfg.Before,
		timeout: 5 * time.Second, conns: cfg.LiveConns, runID: liveID, ackedOut: liveAcked}, p.pid, windowHooks{})
	if err != nil {
		return res, fmt.Errorf("live load before the outage: %w", err)
	}
	res.Before = before
	res.BeforeStart = rel(time.Unix(0, before.Summary.StartUnixNs))
	addPhase("before", t0, time.Now())
	if err := waitDrained(ctx, p.admin, env.drainWait); err != nil {
		return res, fmt.Errorf("before the outage: %w", err)
	}

	// 2. Outage: every Produce fails; build the backlog with batches.
	fault := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
	faultOn := true
	defer func() {
		mu.Lock()
		on := faultOn
		mu.Unlock()
		if on {
			fault.Remove()
		}
	}()
	setPhase("build")
	buildFrom := time.Now()
	logf("backlog: every Produce now fails; building a backlog of %.0f events with %s requests", cfg.Events, cfg.BuildKind)
	rate := cfg.BuildRate
	var firstReq uint64
	buildAcked := bitmap{}
	var buildSent uint64
	for round := 0; ; round++ {
		m, err := scrape(ctx, p.admin)
		if err != nil {
			return res, err
		}
		check(time.Now(), m)
		backlog := m.Sum("sluice_buffer_backlog_records")
		if backlog >= cfg.Events {
			break
		}
		if time.Since(buildFrom) > cfg.BuildMax {
			return res, fmt.Errorf("the backlog was only %.0f records after %v of building", backlog, cfg.BuildMax)
		}
		// A round of at most 30 s at the current rate, long enough for
		// what is missing (plus 3 %: not every request gets its answer).
		secs := math.Ceil((cfg.Events - backlog) * 1.03 / rate)
		dur := time.Duration(min(max(secs, 2), 30)) * time.Second
		ackedPath := filepath.Join(env.rawDir, fmt.Sprintf("acked-backlog-build-%02d.bin", round))
		logf("backlog: build round %d: backlog %.0f, %.0f events/s for %v", round+1, backlog, rate, dur)
		run, err := runOpen(ctx, env.loadgenBin, openArgs{url: url, kind: cfg.BuildKind, rate: rate / float64(perReq), duration: dur,
			timeout: 10 * time.Second, conns: cfg.BuildConns, runID: buildID, ackedOut: ackedPath, firstRequest: firstReq, bodies: 256},
			p.pid, windowHooks{})
		if err != nil {
			return res, fmt.Errorf("build round %d: %w", round+1, err)
		}
		acked, err := readBitmap(ackedPath)
		if err != nil {
			return res, err
		}
		buildAcked = buildAcked.orAt(acked, firstReq)
		buildSent += totalSent(run.Seconds)
		br := buildRound{FirstRequest: firstReq, Run: run}
		if m, err := scrape(ctx, p.admin); err == nil {
			br.BacklogAfter = m.Sum("sluice_buffer_backlog_records")
		}
		res.Rounds = append(res.Rounds, br)
		firstReq += run.Summary.Slots
		x := run.Summary
		logf("backlog: round %d acked %.0f events/s (offered %.0f), p99 %s ms, %d failed; backlog %.0f",
			round+1, x.EPS, x.OfferedEPS, fmtMs(x.P99ms), x.Failed(), br.BacklogAfter)
		if x.Events == 0 {
			return res, fmt.Errorf("build round %d: no event acknowledged (%v, %v)", round+1, x.Status, x.Errors)
		}
		if keptUp := float64(x.Events) >= 0.97*float64(x.Offered*uint64(perReq)) && x.Failed() == 0; keptUp {
			rate *= 1.25
		} else {
			rate = 0.95 * x.EPS
		}
	}
	addPhase("build", buildFrom, time.Now())
	setPhase("hold")
	profile("built")

	// 3. Live load again: hold with Kafka down, restore, drain, after.
	stopLive := make(chan struct{})
	var restore, drained time.Time
	hook := func() {
		defer close(stopLive)
		holdFrom := time.Now()
		setPhase("hold")
		if !sleep(cfg.Hold) {
			return
		}
		profile("hold")
		fault.Remove()
		mu.Lock()
		faultOn = false
		res.FaultHits = fault.Hits()
		mu.Unlock()
		restore = time.Now()
		addPhase("hold", holdFrom, restore)
		setPhase("drain")
		logf("backlog: Kafka restored (%d produce requests were failed); draining", res.FaultHits)
		var startBacklog float64 = -1
		profiled := false
		for time.Since(restore) < cfg.DrainMax {
			if !sleep(250 * time.Millisecond) {
				return
			}
			now := time.Now()
			m, err := scrape(ctx, p.admin)
			if err != nil {
				continue
			}
			check(now, m)
			b := m.Sum("sluice_buffer_backlog_records")
			if startBacklog < 0 {
				startBacklog = b
			}
			if !profiled && b <= startBacklog/2 {
				profiled = true
				profile("draining")
			}
			if b < cfg.DrainedBelow {
				drained = now
				break
			}
		}
		end := time.Now()
		mu.Lock()
		res.Drained = !drained.IsZero()
		mu.Unlock()
		if drained.IsZero() {
			logf("backlog: not drained %v after the restore", cfg.DrainMax)
			addPhase("drain", restore, end)
		} else {
			addPhase("drain", restore, drained)
			logf("backlog: drained (below %.0f) %.1fs after the restore", cfg.DrainedBelow, drained.Sub(restore).Seconds())
		}
		setPhase("after")
		afterFrom := time.Now()
		sleep(cfg.After)
		addPhase("after", afterFrom, time.Now())
	}
	liveAcked2 := filepath.Join(env.rawDir, "acked-backlog-live.bin")
	live, err := runOpen(ctx, env.loadgenBin, openArgs{url: url, kind: "single", rate: cfg.LiveRate,
		duration: cfg.Hold + cfg.DrainMax + cfg.After + 5*time.Second, timeout: 5 * time.Second, conns: cfg.LiveConns,
		runID: liveID, ackedOut: liveAcked2, firstRequest: before.Summary.Slots, stop: stopLive}, p.pid, windowHooks{onStart: hook})
	if err != nil {
		return res, fmt.Errorf("live load during the drain: %w", err)
	}
	res.Live = live
	res.LiveStart = rel(time.Unix(0, live.Summary.StartUnixNs))
	if restore.IsZero() {
		return res, errors.New("the live load ended before Kafka was restored")
	}
	res.RestoreT = rel(restore)
	if !drained.IsZero() {
		res.DrainedT = rel(drained)
	}

	// 4. The rest ships; the ledger must balance at rest too.
	setPhase("final")
	if err := waitDrained(ctx, p.admin, env.drainWait); err != nil {
		logf("backlog: %v", err)
	}
	if m, err := scrape(ctx, p.admin); err == nil {
		res.Final = check(time.Now(), m)
	}
	stopSampling()
	res.Stop, _ = p.stop(45 * time.Second)
	res.Warnings, _ = p.log.Notes()

	bAcked1, err1 := readBitmap(liveAcked)
	bAcked2, err2 := readBitmap(liveAcked2)
	if err := errors.Join(err1, err2); err != nil {
		return res, err
	}
	liveSlots := before.Summary.Slots + live.Summary.Slots
	logf("backlog: reading the topic back")
	vs, err := verifyRuns(ctx, brokers, []markRun{
		{ID: buildID, PerReq: perReq, Slots: firstReq, SentReqs: buildSent, Acked: buildAcked},
		{ID: liveID, PerReq: 1, Slots: liveSlots, SentReqs: totalSent(before.Seconds) + totalSent(live.Seconds),
			Acked: bitmap{}.orAt(bAcked1, 0).orAt(bAcked2, before.Summary.Slots)},
	}, 10*time.Minute)
	if err != nil {
		return res, fmt.Errorf("read the topic back: %w", err)
	}
	res.Verify = vs
	res.Stats = analyzeBacklog(res)
	st := res.Stats
	logf("backlog: peak %.0f records, built in %.1fs (%.0f/s); RSS max %.1f MiB (build %.1f, drain %.1f), VmHWM %.1f MiB; drained in %.1fs (%.0f records/s mean, %.0f slope); live p99 before %s ms, during the drain %s ms; acked %d, found %d, missing %d; ledger: %d checks, %d violations",
		st.BacklogPeak, st.BuildS, st.BuildRate, st.RSSMax, st.RSSBuild, st.RSSDrain, st.HWM, st.DrainS, st.DrainMean, st.DrainSlope,
		fmtMs(livePhaseOf(st, "before").P99ms), fmtMs(livePhaseOf(st, "drain").P99ms), st.Acked, st.Found, st.Missing, res.Checks, len(res.Violations))
	return res, nil
}

func mib(b float64) float64 { return round3(b / (1 << 20)) }

// orAt returns b with the bits of o set from bit offset on.
func (b bitmap) orAt(o bitmap, offset uint64) bitmap {
	for i, w := range o {
		for ; w != 0; w &= w - 1 {
			bit := offset + uint64(i)*64 + uint64(bits.TrailingZeros64(w))
			for uint64(len(b)) <= bit/64 {
				b = append(b, 0)
			}
			b[bit/64] |= 1 << (bit % 64)
		}
	}
	return b
}

// fetchHeapProfile saves Sluice's heap profile after a GC (so in-use is
// what is live).
func fetchHeapProfile(ctx context.Context, admin, path string) error {
	return sluiceproc.FetchPprof(ctx, admin, "heap?gc=1", path)
}

// otherCores is the mean CPU, in cores, that neither Sluice, bench (kfake)
// nor the generator used, over the samples of the build and over those of
// the other phases with load (the build loads the machine differently).
func otherCores(r *backlogResult) (others, build float64) {
	lg := map[string]float64{}
	if r.Before != nil {
		lg["before"] = r.Before.CPU.LoadgenCores
	}
	if r.Live != nil {
		lg["hold"], lg["drain"], lg["after"] = r.Live.CPU.LoadgenCores, r.Live.CPU.LoadgenCores, r.Live.CPU.LoadgenCores
	}
	for _, br := range r.Rounds {
		lg["build"] = max(lg["build"], br.Run.CPU.LoadgenCores)
	}
	var sum, sumBuild float64
	var n, nBuild int
	for _, s := range r.Samples {
		if !s.HasCPU || s.Phase == "final" {
			continue
		}
		o := max(0, s.HostCores-s.SluiceCores-s.HarnessCores-lg[s.Phase])
		if s.Phase == "build" {
			sumBuild += o
			nBuild++
		} else {
			sum += o
			n++
		}
	}
	if n > 0 {
		others = round3(sum / float64(n))
	}
	if nBuild > 0 {
		build = round3(sumBuild / float64(nBuild))
	}
	return others, build
}

func livePhaseOf(st backlogStats, name string) phaseStats {
	for _, p := range st.Live {
		if p.Name == name {
			return p.Stats
		}
	}
	return phaseStats{}
}

// analyzeBacklog derives the report's figures from the samples and runs
// (and sets r.OtherCores and r.OtherBuild).
func analyzeBacklog(r *backlogResult) backlogStats {
	var st backlogStats
	lim := r.Config.RSSLimitMiB
	for _, s := range r.Samples {
		st.RSSMax = max(st.RSSMax, s.RSSMiB)
		st.AnonMax = max(st.AnonMax, s.AnonMiB)
		st.HeapMax = max(st.HeapMax, s.HeapMiB)
		st.HWM = max(st.HWM, s.HWMMiB)
		st.BacklogPeak = max(st.BacklogPeak, s.Backlog)
		st.DiskPeakBytes = max(st.DiskPeakBytes, s.DiskBytes)
		switch s.Phase {
		case "before":
			st.RSSBefore = max(st.RSSBefore, s.RSSMiB)
		case "build":
			st.RSSBuild = max(st.RSSBuild, s.RSSMiB)
		case "hold":
			st.RSSHold = max(st.RSSHold, s.RSSMiB)
		case "drain":
			st.RSSDrain = max(st.RSSDrain, s.RSSMiB)
		case "after", "final":
			st.RSSAfter = max(st.RSSAfter, s.RSSMiB)
		}
		if s.Ledger.Has {
			st.LedgerChecked = true
		}
	}
	st.RSSFail = lim > 0 && max(st.RSSMax, st.HWM) >= lim
	r.OtherCores, r.OtherBuild = otherCores(r)
	st.LedgerBalanced = st.LedgerChecked && len(r.Violations) == 0

	if b, ok := r.phaseAt("build"); ok {
		st.BuildS = round3(b.To - b.From)
		first, last := sampleNear(r.Samples, b.From), sampleNear(r.Samples, b.To)
		if first != nil && last != nil && st.BuildS > 0 {
			st.BuildRate = round3((last.Backlog - first.Backlog) / st.BuildS)
		}
	}
	for _, br := range r.Rounds {
		st.BuildAcked += float64(br.Run.Summary.Events)
	}

	if r.RestoreT > 0 {
		var drain []backlogSample
		for _, s := range r.Samples {
			if s.Up && s.T >= r.RestoreT && (!r.Drained || s.T <= r.DrainedT+1) {
				drain = append(drain, s)
			}
		}
		if at := sampleNear(r.Samples, r.RestoreT); at != nil {
			st.BacklogAtStart = at.Backlog
		}
		if r.Drained {
			st.DrainS = round3(r.DrainedT - r.RestoreT)
			if st.DrainS > 0 {
				st.DrainMean = round3(st.BacklogAtStart / st.DrainS)
			}
		}
		var mid []backlogSample
		for _, s := range drain {
			if s.Backlog <= 0.9*st.BacklogAtStart && s.Backlog >= 0.1*st.BacklogAtStart {
				mid = append(mid, s)
			}
		}
		st.DrainSlope = round3(-slope(mid, func(s backlogSample) float64 { return s.Backlog }))
		st.ShipRate = round3(slope(mid, func(s backlogSample) float64 { return s.Ledger.Shipped }))
		// Shipping resumed by the first sample whose shipped count is above
		// the last one before the restore (an upper bound, 1 s resolution).
		var base *backlogSample
		for i := range r.Samples {
			if s := &r.Samples[i]; s.Up && s.T < r.RestoreT {
				base = s
			}
		}
		for _, s := range drain {
			if base != nil && s.Ledger.Shipped > base.Ledger.Shipped {
				st.ResumedS, st.Resumed = round3(s.T-r.RestoreT), true
				break
			}
		}
	}

	if r.Before != nil {
		st.Live = append(st.Live, livePhase{"before", mergeSeconds(r.Before.Seconds, 0, math.Inf(1))})
	}
	if r.Live != nil {
		off := r.LiveStart // live schedule second s is scenario second off+s
		// Each second of the live load counts in one phase: a second that
		// overlaps the drain in the drain (the phase under test gets the
		// boundary seconds), the others in the phase that holds their middle.
		d, drainOK := r.phaseAt("drain")
		for _, name := range []string{"hold", "drain", "after"} {
			w, ok := r.phaseAt(name)
			if !ok {
				continue
			}
			var secs []secondLine
			if name == "drain" {
				secs = secondsOverlapping(r.Live.Seconds, w.From-off, w.To-off)
			} else {
				to := w.To - off
				if name == "after" { // the live load was interrupted in its last second: leave it out
					to = math.Floor(to)
				}
				for _, s := range secondsCentredIn(r.Live.Seconds, w.From-off, to) {
					if !drainOK || len(secondsOverlapping([]secondLine{s}, d.From-off, d.To-off)) == 0 {
						secs = append(secs, s)
					}
				}
			}
			st.Live = append(st.Live, livePhase{name, mergeSeconds(secs, math.Inf(-1), math.Inf(1))})
		}
	}
	for _, v := range r.Verify {
		st.Acked += v.Acked
		st.Found += v.Found
		st.Missing += v.Missing
	}
	return st
}

// secondsCentredIn are the seconds whose middle is in [from, to).
func secondsCentredIn(secs []secondLine, from, to float64) []secondLine {
	var out []secondLine
	for _, s := range secs {
		if m := float64(s.T) + 0.5; m >= from && m < to {
			out = append(out, s)
		}
	}
	return out
}

// secondsOverlapping are the seconds that overlap [from, to).
func secondsOverlapping(secs []secondLine, from, to float64) []secondLine {
	var out []secondLine
	for _, s := range secs {
		if t := float64(s.T); t < to && t+1 > from {
			out = append(out, s)
		}
	}
	return out
}

// sampleNear is the first sample with a scrape at or after t.
func sampleNear(samples []backlogSample, t float64) *backlogSample {
	for i := range samples {
		if samples[i].Up && samples[i].T >= t {
			return &samples[i]
		}
	}
	return nil
}

// slope is the least-squares slope of f over the samples' times (0 with
// fewer than 3 samples).
func slope(samples []backlogSample, f func(backlogSample) float64) float64 {
	if len(samples) < 3 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	n := float64(len(samples))
	for _, s := range samples {
		x, y := s.T, f(s)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
