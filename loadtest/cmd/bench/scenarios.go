package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-gateway/sluice/loadtest/internal/procstat"
	"github.com/sluice-gateway/sluice/loadtest/internal/sluiceproc"
)

// scenarioSpec is one fault scenario: constant single-event load for
// Duration, with the fault from FaultAt for FaultFor.
type scenarioSpec struct {
	Name     string        `json:"name"`
	Title    string        `json:"title"`
	Fault    string        `json:"fault"` // none, outage, slow, shuffles, nodes, partitions, restart
	Duration time.Duration `json:"duration"`
	FaultAt  time.Duration `json:"fault_at"`
	FaultFor time.Duration `json:"fault_for"`
	// Flags are added to "sluice serve" for this scenario.
	Flags []string `json:"flags,omitempty"`
}

// slowProduce is how long the slow-broker scenario holds every Produce.
const slowProduce = 2 * time.Second

// Each fault's "before" window (from scenarioWarmup to the fault) is as long
// as its "during" window: a p99 over a few seconds on a shared 2-core
// machine swings by 2x from one window to the next, and the ratio of two
// such numbers is only as good as the shorter one.
var scenarioSpecs = []scenarioSpec{
	// The control: the same windows as a fault's with nothing done, so the
	// report shows what a "ratio during" is when nothing happens.
	{Name: "healthy", Title: "healthy (no fault: the control)", Fault: "none", Duration: 62 * time.Second, FaultAt: 32 * time.Second, FaultFor: 30 * time.Second},
	{Name: "outage", Title: "30 s Kafka outage (every Produce fails)", Fault: "outage", Duration: 80 * time.Second, FaultAt: 32 * time.Second, FaultFor: 30 * time.Second},
	{Name: "slow", Title: "30 s slow broker (every Produce answered after 2 s)", Fault: "slow", Duration: 80 * time.Second, FaultAt: 32 * time.Second, FaultFor: 30 * time.Second},
	{Name: "shuffles", Title: "partition leaders shuffled every second for 30 s", Fault: "shuffles", Duration: 75 * time.Second, FaultAt: 32 * time.Second, FaultFor: 30 * time.Second},
	{Name: "nodes", Title: "broker 0 of 3 removed for 15 s, then added back", Fault: "nodes", Duration: 80 * time.Second, FaultAt: 32 * time.Second, FaultFor: 30 * time.Second},
	// Sluice learns of new partitions at its next metadata refresh
	// (--kafka-metadata-max-age, default 1m): 5 s here so the run sees it.
	{Name: "partitions", Title: "topic grown from 6 to 12 partitions mid-run", Fault: "partitions", Duration: 65 * time.Second, FaultAt: 27 * time.Second, FaultFor: 25 * time.Second,
		Flags: []string{"--kafka-metadata-max-age", "5s"}},
	{Name: "restart", Title: "SIGTERM and restart on the same data dir", Fault: "restart", Duration: 45 * time.Second, FaultAt: 17 * time.Second},
}

// scenarioWarmup is left out of a scenario's "before" window: the first
// seconds of a fresh process and fresh connections.
const scenarioWarmup = 2 * time.Second

// scaled multiplies the scenario's times by f (whole seconds at least).
func (s scenarioSpec) scaled(f float64) scenarioSpec {
	if f <= 0 || f == 1 {
		return s
	}
	sc := func(d time.Duration) time.Duration {
		if d == 0 {
			return 0
		}
		return max(time.Duration(float64(d)*f).Round(time.Second), time.Second)
	}
	s.Duration, s.FaultAt, s.FaultFor = sc(s.Duration), sc(s.FaultAt), sc(s.FaultFor)
	return s
}

// window is a stretch of a scenario in seconds since the schedule's start.
type window struct {
	From  float64 `json:"from"`
	To    float64 `json:"to"`
	Label string  `json:"label"`
}

// sluiceSample is one per-second scrape during a scenario.
type sluiceSample struct {
	T          float64 `json:"t"` // seconds since the schedule's start
	wall       time.Time
	Backlog    float64 `json:"backlog"`
	Accepted   float64 `json:"accepted_total"`
	Shipped    float64 `json:"shipped_total"`
	ShipErrors float64 `json:"ship_errors_total"`
	RSSMiB     float64 `json:"rss_mib"`
	// SlowFsyncs counts the WAL fsyncs so far that took over 51.2 ms (a
	// histogram bucket bound): a stall every request of the moment waits
	// out, whatever the load.
	SlowFsyncs float64 `json:"slow_fsyncs_total"`
	Up         bool    `json:"up"`
	// CPU over the second before, in cores (HasCPU: the same Sluice process
	// was up at both ends).
	SluiceCores  float64 `json:"sluice_cores"`
	HarnessCores float64 `json:"harness_cores"`
	HostCores    float64 `json:"host_cores"`
	HasCPU       bool    `json:"has_cpu"`
}

type restartInfo struct {
	Stop     string   `json:"stop"` // how the first process ended
	Graceful bool     `json:"graceful"`
	StopS    float64  `json:"stop_s"`   // SIGTERM to exit
	GapS     float64  `json:"gap_s"`    // SIGTERM to the new process's /readyz
	Shutdown []string `json:"shutdown"` // the first process's shutdown steps
	StartErr string   `json:"start_error,omitempty"`
}

type scenarioResult struct {
	Spec       scenarioSpec   `json:"spec"`
	Repeat     int            `json:"repeat"` // 1 for the first run of this scenario (-scenario-runs)
	Rate       float64        `json:"rate"`   // requests (= events) per second
	Run        *openRun       `json:"run"`
	Windows    []window       `json:"fault_windows"`
	Before     phaseStats     `json:"before"`
	During     phaseStats     `json:"during"`
	After      phaseStats     `json:"after"`
	Whole      phaseStats     `json:"whole"`
	Verify     *verification  `json:"verify"`
	Samples    []sluiceSample `json:"samples"`
	BacklogMax float64        `json:"backlog_max"`
	// Mean over the load's seconds: the machine's busy cores, and those
	// used by neither Sluice, bench (kfake) nor the generator.
	HostCores  float64      `json:"host_cores"`
	OtherCores float64      `json:"other_cores"`
	DrainS     float64      `json:"drain_s"` // from the load's end until the backlog was 0
	Drained    bool         `json:"drained"`
	FaultHits  int          `json:"fault_hits,omitempty"` // produce requests the outage failed (or the slow broker held)
	Shuffles   int          `json:"shuffles,omitempty"`
	Profiles   []string     `json:"profiles,omitempty"` // CPU profiles and traces taken (-profile), relative to raw/
	Restart    *restartInfo `json:"restart,omitempty"`
	Stop       string       `json:"stop"` // how Sluice ended after the scenario
	Warnings   []string     `json:"warnings"`
	Err        string       `json:"error,omitempty"`
}

type scenarioEnv struct {
	kids       *sluiceproc.Children
	sluiceBin  string
	loadgenBin string
	tmp        string
	rawDir     string
	conns      int
	drainWait  time.Duration
	// Extra "sluice serve" flags and environment (-sluice-flags, -sluice-env).
	sluiceFlags []string
	sluiceEnv   []string
	// profile takes CPU profiles of Sluice before and during each fault
	// (Sluice runs with --pprof).
	profile bool
}

// runScenario runs one scenario on a fresh kfake cluster (3 brokers) and a
// fresh Sluice, then reads the topic back.
func runScenario(ctx context.Context, env *scenarioEnv, spec scenarioSpec, rate float64, rep int) (*scenarioResult, error) {
	res := &scenarioResult{Spec: spec, Rate: rate, Repeat: rep}
	cluster, err := startKafka(3)
	if err != nil {
		return res, err
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	public, err1 := freePort()
	admin, err2 := freePort()
	if err1 != nil || err2 != nil {
		return res, fmt.Errorf("free ports: %v %v", err1, err2)
	}
	dataDir := filepath.Join(env.tmp, "scenario-"+spec.Name)
	defer os.RemoveAll(dataDir)
	opts := sluiceOpts{bin: env.sluiceBin, dataDir: dataDir, logPath: filepath.Join(env.rawDir, "sluice-"+spec.Name+".log"),
		public: public, admin: admin, brokers: brokers, env: env.sluiceEnv,
		extra: append(append(slices.Clone(spec.Flags), env.sluiceFlags...), profileFlag(env.profile)...)}
	first, err := startSluice(ctx, env.kids, opts)
	if err != nil {
		return res, err
	}
	var (
		mu      sync.Mutex
		cur     = first
		procs   = []*sluiceProc{first}
		samples []sluiceSample
		walls   []window // wall-clock fault windows, as unix seconds
	)
	current := func() *sluiceProc { mu.Lock(); defer mu.Unlock(); return cur }
	var prev cpuSnap // CPU: Sluice (as "server"), bench itself and the host
	prevPID := 0
	// One scrape a second until the scenario is over.
	stopSampling := everySecond(func() {
		p := current()
		s := sluiceSample{wall: time.Now()}
		snap := takeCPU(p.pid, 0)
		if prevPID == p.pid && snap.serverErr == nil && prev.serverErr == nil {
			u := cpuBetween(prev, snap)
			s.SluiceCores, s.HarnessCores, s.HostCores, s.HasCPU = u.ServerCores, u.HarnessCores, u.HostCores, true
		}
		prev, prevPID = snap, p.pid
		if m, err := scrape(ctx, p.admin); err == nil {
			s.Up = true
			s.Backlog = m.Sum("sluice_buffer_backlog_records")
			s.Accepted = m.Get("sluice_events_total", `outcome="accepted"`)
			s.Shipped = m.Sum("sluice_shipped_records_total")
			s.ShipErrors = m.Sum("sluice_ship_errors_total")
			s.SlowFsyncs = m.Sum("sluice_wal_fsync_duration_seconds_count") - m.Get("sluice_wal_fsync_duration_seconds_bucket", `le="0.0512"`)
		}
		if v, err := procstat.RSS(p.pid); err == nil {
			s.RSSMiB = round3(v / (1 << 20))
		}
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	})
	defer stopSampling()

	sleepUntil := func(t time.Time) bool {
		select {
		case <-time.After(time.Until(t)):
			return true
		case <-ctx.Done():
			return false
		}
	}
	var profiles sync.WaitGroup
	defer profiles.Wait()
	// profileFor takes a CPU profile of the current Sluice from now on.
	// With -profile, CPU and allocation profiles of the window, and a 5 s execution trace
	// from its middle (go tool trace -pprof=sched shows who waited to run).
	profileFor := func(d time.Duration, label string) {
		secs := int(d / time.Second)
		if !env.profile || secs < 2 {
			return
		}
		fetch := func(after time.Duration, what, name string) {
			defer profiles.Done()
			select {
			case <-time.After(after):
			case <-ctx.Done():
				return
			}
			if err := sluiceproc.FetchPprof(ctx, current().admin, what, filepath.Join(env.rawDir, name)); err != nil {
				logf("scenario %s: %s: %v", spec.Name, name, err)
				return
			}
			mu.Lock()
			res.Profiles = append(res.Profiles, name)
			mu.Unlock()
		}
		base := fmt.Sprintf("%s-%d-%s", spec.Name, rep, label)
		profiles.Add(3)
		go fetch(0, fmt.Sprintf("profile?seconds=%d", secs), "cpu-"+base+".pprof")
		go fetch(0, fmt.Sprintf("allocs?seconds=%d", secs), "allocs-"+base+".pprof")
		go fetch(max(0, d/2-2500*time.Millisecond), "trace?seconds=5", "trace-"+base+".out")
	}
	addWindow := func(from, to time.Time, label string) {
		mu.Lock()
		walls = append(walls, window{From: float64(from.UnixNano()) / 1e9, To: float64(to.UnixNano()) / 1e9, Label: label})
		mu.Unlock()
	}
	onStart := func() {
		t0 := time.Now() // warm-up is 0: the schedule starts about now
		if spec.FaultAt > 3*time.Second {
			if !sleepUntil(t0.Add(time.Second)) {
				return
			}
			profileFor(spec.FaultAt-2*time.Second, "before")
		}
		if !sleepUntil(t0.Add(spec.FaultAt)) {
			return
		}
		from := time.Now()
		if spec.Fault != "restart" {
			profileFor(spec.FaultFor, "during")
		}
		switch spec.Fault {
		case "none":
			sleepUntil(from.Add(spec.FaultFor))
			addWindow(from, time.Now(), "no fault (control)")
		case "outage":
			h := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
			logf("scenario %s: every Produce now fails (NOT_ENOUGH_REPLICAS)", spec.Name)
			sleepUntil(from.Add(spec.FaultFor))
			h.Remove()
			addWindow(from, time.Now(), "Kafka outage")
			res.FaultHits = h.Hits()
			logf("scenario %s: outage over; %d produce requests were failed", spec.Name, res.FaultHits)
		case "slow":
			var slow atomic.Bool
			var held atomic.Int64
			slow.Store(true)
			// Every Produce sleeps, then the broker handles it as usual;
			// requests on one connection are still answered in order.
			cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				if !slow.Load() {
					cluster.DropControl()
					return nil, nil, false
				}
				cluster.KeepControl()
				held.Add(1)
				cluster.SleepControl(func() { time.Sleep(slowProduce) })
				return nil, nil, false
			})
			logf("scenario %s: every Produce is now held %v", spec.Name, slowProduce)
			sleepUntil(from.Add(spec.FaultFor))
			slow.Store(false)
			addWindow(from, time.Now(), "slow broker")
			res.FaultHits = int(held.Load())
			logf("scenario %s: slow broker over; %d produce requests were held", spec.Name, res.FaultHits)
		case "nodes":
			_, portStr, _ := net.SplitHostPort(brokers[0])
			port, _ := strconv.Atoi(portStr)
			if err := cluster.RemoveNode(0); err != nil {
				logf("scenario %s: remove broker 0: %v", spec.Name, err)
				return
			}
			logf("scenario %s: broker 0 (%s) removed; its partitions moved", spec.Name, brokers[0])
			sleepUntil(from.Add(spec.FaultFor / 2))
			if _, _, err := cluster.AddNode(0, port); err != nil {
				logf("scenario %s: add broker 0 back: %v", spec.Name, err)
			} else {
				logf("scenario %s: broker 0 added back on port %d; leaders reshuffled", spec.Name, port)
			}
			sleepUntil(from.Add(spec.FaultFor))
			addWindow(from, time.Now(), "broker removed, added back")
		case "partitions":
			if err := addPartitions(ctx, brokers, topic, 6); err != nil {
				logf("scenario %s: %v", spec.Name, err)
				return
			}
			logf("scenario %s: topic %s now has 6 more partitions", spec.Name, topic)
			sleepUntil(from.Add(spec.FaultFor))
			addWindow(from, time.Now(), "partitions added (window: 15 s after)")
		case "shuffles":
			for i := 0; time.Since(from) < spec.FaultFor && ctx.Err() == nil; i++ {
				cluster.ShufflePartitionLeaders()
				res.Shuffles++
				sleepUntil(from.Add(time.Duration(i+1) * time.Second))
			}
			addWindow(from, time.Now(), "leader shuffles")
			logf("scenario %s: %d leader shuffles done", spec.Name, res.Shuffles)
		case "restart":
			ri := &restartInfo{}
			res.Restart = ri
			old := current()
			ri.Stop, ri.Graceful = old.stop(45 * time.Second)
			ri.StopS = round3(time.Since(from).Seconds())
			_, ri.Shutdown = old.log.Notes()
			logf("scenario %s: SIGTERM → %s after %.2fs; restarting on the same data dir", spec.Name, ri.Stop, ri.StopS)
			p, err := startSluice(ctx, env.kids, opts)
			if err != nil {
				ri.StartErr = err.Error()
				logf("scenario %s: restart failed: %v", spec.Name, err)
				addWindow(from, time.Now(), "restart failed")
				return
			}
			mu.Lock()
			cur = p
			procs = append(procs, p)
			mu.Unlock()
			ri.GapS = round3(time.Since(from).Seconds())
			addWindow(from, time.Now(), "SIGTERM → ready again")
			logf("scenario %s: ready again %.2fs after the SIGTERM", spec.Name, ri.GapS)
		}
	}
	runID := fmt.Sprintf("%s%06x", spec.Name[:min(4, len(spec.Name))], time.Now().UnixNano()&0xffffff)
	ackedPath := filepath.Join(env.rawDir, "acked-"+spec.Name+".bin")
	logf("scenario %s: %s, %.0f events/s for %v", spec.Name, spec.Title, rate, spec.Duration)
	run, err := runOpen(ctx, env.loadgenBin, openArgs{
		url: "http://" + public + "/v1/beacon", kind: "single", rate: rate, duration: spec.Duration,
		timeout: 5 * time.Second, conns: env.conns, runID: runID, ackedOut: ackedPath,
	}, first.pid, windowHooks{onStart: onStart})
	if err != nil {
		return res, err
	}
	res.Run = run
	loadEnd := time.Now()
	err = waitDrained(ctx, current().admin, env.drainWait)
	res.DrainS, res.Drained = round3(time.Since(loadEnd).Seconds()), err == nil
	if err != nil {
		logf("scenario %s: %v", spec.Name, err)
	}
	stopSampling()
	p := current()
	res.Stop, _ = p.stop(45 * time.Second)
	for _, q := range procs {
		w, _ := q.log.Notes()
		res.Warnings = append(res.Warnings, w...)
	}

	// Times relative to the schedule's start.
	start := float64(run.Summary.StartUnixNs) / 1e9
	for _, w := range walls {
		res.Windows = append(res.Windows, window{From: round3(w.From - start), To: round3(w.To - start), Label: w.Label})
	}
	var host, other float64
	var n int
	for _, s := range samples {
		s.T = round3(float64(s.wall.UnixNano())/1e9 - start)
		res.Samples = append(res.Samples, s)
		res.BacklogMax = max(res.BacklogMax, s.Backlog)
		if s.HasCPU && s.T > 1 && s.T <= spec.Duration.Seconds() {
			host += s.HostCores
			other += max(0, s.HostCores-s.SluiceCores-s.HarnessCores-run.CPU.LoadgenCores)
			n++
		}
	}
	if n > 0 {
		res.HostCores, res.OtherCores = round3(host/float64(n)), round3(other/float64(n))
	}
	end := spec.Duration.Seconds()
	res.Whole = mergeSeconds(run.Seconds, 0, end)
	if len(res.Windows) > 0 {
		before, during, after := phaseSpans(res.Windows[0], end)
		res.Before = mergeSeconds(run.Seconds, before[0], before[1])
		res.During = mergeSeconds(run.Seconds, during[0], during[1])
		res.After = mergeSeconds(run.Seconds, after[0], after[1])
	}

	acked, err := readBitmap(ackedPath)
	if err != nil {
		return res, err
	}
	v, err := verifyTopic(ctx, brokers, runID, 1, run.Summary.Slots, totalSent(run.Seconds), acked, 60*time.Second)
	if err != nil {
		return res, fmt.Errorf("read the topic back: %w", err)
	}
	res.Verify = v
	logf("scenario %s: offered %d, acked %d, found %d, missing %d, duplicates %d, unacked found %d (read %d records in %.1fs); p99 whole %s, before/during/after %s/%s/%s ms; drained %.1fs after the load",
		spec.Name, v.Offered, v.Acked, v.Found, v.Missing, v.Duplicates, v.UnackedFound, v.Records, v.ReadS,
		fmtMs(res.Whole.P99ms), fmtMs(res.Before.P99ms), fmtMs(res.During.P99ms), fmtMs(res.After.P99ms), res.DrainS)
	return res, nil
}

// phaseSpans are the stretches, in seconds since the schedule's start, that
// make a scenario's before, during and after windows around its fault window
// w, for a schedule end seconds long. Before and after: the whole seconds
// outside the window (before without the warm-up); during: every second that
// overlaps it.
func phaseSpans(w window, end float64) (before, during, after [2]float64) {
	before = [2]float64{min(scenarioWarmup.Seconds(), math.Floor(w.From)-1), math.Floor(w.From) - 0.5}
	during = [2]float64{w.From, w.To}
	after = [2]float64{math.Ceil(w.To) + 0.5, end}
	return before, during, after
}

func totalSent(secs []secondLine) uint64 {
	var n uint64
	for _, s := range secs {
		n += s.Sent
	}
	return n
}

func readBitmap(path string) (bitmap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make(bitmap, len(b)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return out, nil
}

// everySecond runs sample once a second on its own goroutine until the
// returned stop is called; stop waits for a sample in progress and may be
// called more than once.
func everySecond(sample func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			sample()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// profileFlag is the "sluice serve" flag that serves /debug/pprof, when
// bench takes profiles.
func profileFlag(on bool) []string {
	if on {
		return []string{"--pprof"}
	}
	return nil
}
