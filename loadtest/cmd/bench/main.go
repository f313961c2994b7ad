// Command bench is Sluice's reproducible benchmark harness (make bench).
//
//	go run ./loadtest/cmd/bench -out loadtest/results/$(date -u +%Y%m%dT%H%M%SZ)
//
// It builds ./cmd/sluice and ./loadtest/cmd/loadgen, starts the no-op
// fasthttp server (loadgen noop) and, per series, a fresh Sluice pointed at
// an in-process fake Kafka (franz-go's kfake, run by bench itself), and loads
// each from a separate lean process (loadgen open) with the same open-loop
// load: requests are due at evenly spaced intended times and their latency
// is measured from that time, so a stall cannot hide (no coordinated
// omission). For each body kind (single events, 20-event batches) and each
// target it steps the offered rate up until the target no longer keeps up
// (see criteria), bisects once, then measures a step at 50 % of the highest
// rate it sustained. Then it runs four scenarios against Sluice at 50 % of
// its single-event saturation: healthy, a 30 s Kafka outage, partition
// leader shuffles, and SIGTERM plus restart mid-run; after each it reads the
// topic back and checks every acknowledged event is there. It writes
// report.md and PNG plots (gonum/plot) to -out, raw data to -out/raw.
//
// Everything listens on 127.0.0.1; every child has a deadline and dies with
// bench (Pdeathsig); the whole run is bounded by -max-total.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/sluiceproc"
)

type config struct {
	out          string
	kinds        []string
	conns        int
	warmup       time.Duration
	duration     time.Duration
	halfFor      time.Duration
	timeout      time.Duration
	probeFor     time.Duration
	seriesBudget time.Duration
	crit         criteria
	scenarios    []string
	scenarioFrac float64
	scenarioRate float64
	scenarioRuns int
	scenarioTime float64
	sluiceFlags  []string
	drainWait    time.Duration
	maxTotal     time.Duration
	keep         bool
	command      string
	quietCores   float64
	quietWait    time.Duration
	quietBudget  time.Duration
	quietSpent   time.Duration
	backlog      backlogConfig
	sluiceBin    string
	sluiceEnv    []string
	profile      bool
}

func main() {
	var c config
	var kinds, scenarios, sluiceFlags, sluiceEnv string
	flag.StringVar(&c.out, "out", "", "output directory (report.md, PNGs, raw/); default loadtest/results/<UTC timestamp>")
	flag.StringVar(&kinds, "kinds", "single,batch20", "body kinds, comma-separated (single or batchN)")
	flag.IntVar(&c.conns, "conns", 256, "keep-alive connections in the generator's pool")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "per step: load at the step's rate before the measured window (whole seconds)")
	flag.DurationVar(&c.duration, "step", 4*time.Second, "per step: measured window")
	flag.DurationVar(&c.halfFor, "half-step", 10*time.Second, "measured window of the step at 50 % of saturation (the headline p99; Sluice truncates its WAL every 10 s)")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Second, "per request deadline in the steps")
	flag.DurationVar(&c.probeFor, "probe", 2*time.Second, "closed-loop capacity probe before each series")
	flag.DurationVar(&c.seriesBudget, "series-budget", 75*time.Second, "no new step of a series starts after this long")
	flag.Float64Var(&c.crit.MaxP99ms, "max-p99", defaultCriteria.MaxP99ms, "a step whose p99 (ms, from the intended time) exceeds this did not keep up")
	flag.Float64Var(&c.crit.MaxP50ms, "max-p50", defaultCriteria.MaxP50ms, "a step whose median latency (ms, from the intended time) exceeds this did not keep up (a standing queue)")
	flag.Float64Var(&c.crit.MinAchieved, "min-achieved", defaultCriteria.MinAchieved, "a step that got fewer 2xx events than this fraction of the offered did not keep up")
	flag.Float64Var(&c.crit.MaxFailedFrac, "max-failed", defaultCriteria.MaxFailedFrac, "a step with more failed requests (non-2xx, errors, unsent) than this fraction did not keep up")
	flag.StringVar(&scenarios, "scenarios", "healthy,outage,shuffles,restart", "scenarios to run, comma-separated (empty: none); also backlog (not in the default list: about 2 minutes, 4-5 GB of WAL)")
	flag.Float64Var(&c.scenarioFrac, "scenario-load", 0.5, "scenario rate, as a fraction of Sluice's single-event saturation rate")
	flag.IntVar(&c.scenarioRuns, "scenario-runs", 1, "run each scenario this many times (the report adds a table of medians); without -max-total the deadline grows to fit")
	flag.Float64Var(&c.scenarioRate, "scenario-rate", 0, "scenario rate in events/s (overrides -scenario-load; without either or a single-event series: 5000)")
	flag.Float64Var(&c.scenarioTime, "scenario-time", 1, "scale every scenario's durations by this (e.g. 0.3 for a smoke test)")
	flag.StringVar(&c.sluiceBin, "sluice-bin", "", "run this sluice binary instead of building ./cmd/sluice (e.g. one built from another commit)")
	flag.StringVar(&sluiceEnv, "sluice-env", "", `extra environment of Sluice's processes (scenarios), space-separated KEY=VALUE (e.g. "GOMEMLIMIT=150MiB")`)
	flag.StringVar(&sluiceFlags, "sluice-flags", "", `extra "sluice serve" flags, space-separated (e.g. "--ack enqueue")`)
	flag.DurationVar(&c.drainWait, "drain-wait", 60*time.Second, "longest wait for Sluice's backlog to reach 0 (before steps, after scenarios)")
	flag.DurationVar(&c.maxTotal, "max-total", 9*time.Minute+30*time.Second, "hard deadline for the whole run")
	flag.Float64Var(&c.quietCores, "quiet-cores", 0.3, "before each series and scenario, wait until the machine (servers idle) uses at most this many cores...")
	flag.DurationVar(&c.quietWait, "quiet-wait", 15*time.Second, "...or this long at most...")
	flag.DurationVar(&c.quietBudget, "quiet-budget", 60*time.Second, "...and this long in all (the report notes every wait)")
	flag.BoolVar(&c.profile, "profile", false, "scenarios: run Sluice with --pprof and save a CPU profile and a 5 s execution trace before and during each fault (raw/cpu-<scenario>-<run>-<before|during>.pprof, raw/trace-….out)")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (binaries, data dirs)")
	c.backlog = defaultBacklog
	flag.Float64Var(&c.backlog.Events, "backlog-events", c.backlog.Events, "backlog scenario: records to pile up in the WAL while Kafka is down")
	flag.StringVar(&c.backlog.BuildKind, "backlog-kind", c.backlog.BuildKind, "backlog scenario: body of the requests that build the backlog (batchN)")
	flag.IntVar(&c.backlog.BuildConns, "backlog-conns", c.backlog.BuildConns, "backlog scenario: connections of the build")
	flag.Float64Var(&c.backlog.BuildRate, "backlog-rate", c.backlog.BuildRate, "backlog scenario: events/s offered by the first build round (later rounds adapt: x1.25 after a round that kept up, else 95 % of what it achieved)")
	flag.DurationVar(&c.backlog.BuildMax, "backlog-build-max", c.backlog.BuildMax, "backlog scenario: give up building after this long")
	flag.Float64Var(&c.backlog.LiveRate, "backlog-live-rate", c.backlog.LiveRate, "backlog scenario: live single events/s before the outage and while the backlog drains")
	flag.DurationVar(&c.backlog.Before, "backlog-before", c.backlog.Before, "backlog scenario: live load with Kafka healthy before the outage")
	flag.DurationVar(&c.backlog.DrainMax, "backlog-drain-max", c.backlog.DrainMax, "backlog scenario: longest wait for the backlog to drain")
	flag.Float64Var(&c.backlog.RSSLimitMiB, "backlog-rss-limit", c.backlog.RSSLimitMiB, "backlog scenario: fails when Sluice's RSS reaches this many MiB")
	replot := flag.String("replot", "", "only rewrite report.md and the plots of an earlier run's directory from its raw/results.json")
	flag.Parse()
	if *replot != "" {
		if err := replotDir(*replot); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	c.kinds = splitList(kinds)
	c.scenarios = splitList(scenarios)
	c.sluiceFlags = strings.Fields(sluiceFlags)
	c.sluiceEnv = strings.Fields(sluiceEnv)
	c.command = "go run ./loadtest/cmd/bench " + shellJoin(os.Args[1:])
	if c.out == "" {
		c.out = filepath.Join("loadtest", "results", time.Now().UTC().Format("20060102T150405Z"))
	}
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if err := c.check(explicit); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.maxTotal)
	defer cancel()
	if err := bench(ctx, &c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// check validates the configuration; explicit holds the flags given on the
// command line. Without -max-total, a run with the backlog scenario gets 20
// more minutes.
func (c *config) check(explicit map[string]bool) error {
	if len(c.kinds) == 0 && len(c.scenarios) == 0 {
		return errors.New("nothing to run: -kinds and -scenarios are both empty")
	}
	if c.conns < 1 || c.duration <= 0 || c.warmup%time.Second != 0 {
		return errors.New("-conns and -step must be positive, -warmup whole seconds")
	}
	if c.scenarioRuns < 1 {
		return errors.New("-scenario-runs must be at least 1")
	}
	var scenarioTime time.Duration
	for _, s := range c.scenarios {
		if sp := specByName(s); sp != nil {
			scenarioTime += sp.scaled(c.scenarioTime).Duration + 20*time.Second
		}
	}
	series := time.Duration(len(c.kinds)) * 2 * (c.seriesBudget + 30*time.Second)
	if total := series + time.Duration(c.scenarioRuns)*scenarioTime + 2*time.Minute; !explicit["max-total"] && total > c.maxTotal {
		c.maxTotal = total
	}
	for _, s := range c.scenarios {
		if s == backlogScenario {
			if b := c.backlog; b.Events < 1 || eventsPer(b.BuildKind) < 2 || b.BuildConns < 1 || b.BuildRate <= 0 || b.LiveRate <= 0 || b.Before <= 0 || b.DrainMax <= 0 {
				return errors.New("-backlog-events, -backlog-conns, -backlog-rate, -backlog-live-rate, -backlog-before and -backlog-drain-max must be positive, -backlog-kind batchN with N >= 2")
			}
			if !explicit["max-total"] {
				c.maxTotal += 20 * time.Minute
			}
			continue
		}
		if specByName(s) == nil {
			return fmt.Errorf("unknown scenario %q", s)
		}
	}
	return nil
}

// shellJoin joins args for a shell, quoting the empty ones and those with
// spaces or quotes (e.g. -kinds "").
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "" || strings.ContainsAny(a, " \t'\"$") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func specByName(name string) *scenarioSpec {
	for i := range scenarioSpecs {
		if scenarioSpecs[i].Name == name {
			return &scenarioSpecs[i]
		}
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// results is everything one run measured; raw/results.json holds it.
type results struct {
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Machine   machine           `json:"machine"`
	Command   string            `json:"command"`
	Criteria  criteria          `json:"criteria"`
	Conns     int               `json:"conns"`
	WarmupS   float64           `json:"warmup_s"`
	StepS     float64           `json:"step_s"`
	HalfS     float64           `json:"half_step_s"`
	SluiceArg []string          `json:"sluice_flags"`
	SluiceEnv []string          `json:"sluice_env,omitempty"`
	Series    []*series         `json:"series"`
	Scenarios []*scenarioResult `json:"scenarios"`
	Backlog   *backlogResult    `json:"backlog,omitempty"`
	Notes     []string          `json:"notes"`
	Plots     []string          `json:"plots"`
}

func (r *results) find(kind, target string) *series {
	for _, s := range r.Series {
		if s.Kind == kind && s.Target == target {
			return s
		}
	}
	return nil
}

func bench(ctx context.Context, c *config) (err error) {
	began := time.Now()
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	if c.keep {
		logf("temporary directory kept: %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	rawDir := filepath.Join(c.out, "raw")
	if err := os.MkdirAll(rawDir, 0o755); err != nil {
		return err
	}
	res := &results{Started: began, Command: c.command, Criteria: c.crit, Conns: c.conns,
		WarmupS: c.warmup.Seconds(), StepS: c.duration.Seconds(), HalfS: c.halfFor.Seconds(), SluiceArg: c.sluiceFlags, SluiceEnv: c.sluiceEnv}
	res.Machine = describeMachine(ctx, tmp)
	logf("machine: %s; fsync probe p50 %.2f ms p99 %.2f ms; host busy before start %.2f cores",
		res.Machine.CPUModel, res.Machine.Fsync.P50ms, res.Machine.Fsync.P99ms, res.Machine.BusyBefore)

	logf("building sluice and loadgen")
	sluiceBin, loadgenBin := filepath.Join(tmp, "sluice"), filepath.Join(tmp, "loadgen")
	builds := map[string]string{sluiceBin: "./cmd/sluice", loadgenBin: "./loadtest/cmd/loadgen"}
	if c.sluiceBin != "" {
		if sluiceBin, err = filepath.Abs(c.sluiceBin); err != nil {
			return err
		}
		delete(builds, filepath.Join(tmp, "sluice"))
		v, _ := exec.CommandContext(ctx, sluiceBin, "version").Output()
		res.Machine.Commit = fmt.Sprintf("binary %s (%s)", c.sluiceBin, strings.TrimSpace(string(v)))
	}
	for bin, pkg := range builds {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", pkg, err)
		}
	}

	var kids sluiceproc.Children
	defer kids.StopAll()
	noop, err := sluiceproc.StartNoop(ctx, &kids, loadgenBin, c.maxTotal)
	if err != nil {
		return err
	}
	defer noop.Stop(5 * time.Second)
	logf("noop on %s (pid %d)", noop.Addr, noop.PID)

	// Whatever happens below, write what was measured.
	defer func() {
		res.Finished = time.Now()
		if werr := writeOutputs(c, res); werr != nil {
			err = errors.Join(err, werr)
		}
	}()

	sc := &seriesConfig{loadgenBin: loadgenBin, conns: c.conns, warmup: c.warmup, duration: c.duration, halfFor: c.halfFor,
		timeout: c.timeout, probeFor: c.probeFor, crit: c.crit, rawDir: rawDir}
	for _, kind := range c.kinds {
		perReq := eventsPer(kind)
		waitQuiet(c, res, kind+" → noop")
		sc.deadline = time.Now().Add(c.seriesBudget)
		se, err := runSeries(ctx, sc, kind, noopTarget{noop}, perReq)
		res.Series = append(res.Series, se)
		if err != nil {
			return fmt.Errorf("%s noop: %w", kind, err)
		}
		waitQuiet(c, res, kind+" → sluice")
		sc.deadline = time.Now().Add(c.seriesBudget)
		se, err = sluiceSeries(ctx, c, sc, &kids, sluiceBin, tmp, rawDir, kind, perReq)
		res.Series = append(res.Series, se)
		if err != nil {
			return fmt.Errorf("%s sluice: %w", kind, err)
		}
	}

	if len(c.scenarios) > 0 {
		rate := 5000.0
		if c.scenarioRate > 0 {
			rate = c.scenarioRate
		} else if s := res.find("single", "sluice"); s != nil && s.saturation() != nil {
			rate = s.saturation().Rate * c.scenarioFrac
		} else if len(c.scenarios) > 1 || c.scenarios[0] != backlogScenario {
			res.Notes = append(res.Notes, "no single-event saturation rate for Sluice: scenarios ran at 5000 events/s")
		}
		env := &scenarioEnv{kids: &kids, sluiceBin: sluiceBin, loadgenBin: loadgenBin, tmp: tmp, rawDir: rawDir,
			conns: c.conns, drainWait: c.drainWait, sluiceFlags: c.sluiceFlags, sluiceEnv: c.sluiceEnv, profile: c.profile}
		for _, name := range c.scenarios {
			if name == backlogScenario {
				dl, _ := ctx.Deadline()
				if left := time.Until(dl); left < 5*time.Minute {
					res.Notes = append(res.Notes, fmt.Sprintf("scenario backlog skipped: only %v left before -max-total", left.Round(time.Second)))
					logf("skipping scenario backlog: not enough time left")
					continue
				}
				waitQuiet(c, res, "scenario backlog")
				br, err := runBacklog(ctx, env, c.backlog, c.sluiceFlags, c.sluiceEnv)
				if err != nil {
					br.Err = err.Error()
					br.Stats = analyzeBacklog(br)
					logf("scenario backlog: %v", err)
				}
				res.Backlog = br
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue
			}
			spec := specByName(name).scaled(c.scenarioTime)
			for rep := 1; rep <= c.scenarioRuns; rep++ {
				dl, _ := ctx.Deadline()
				if time.Until(dl) < spec.Duration+40*time.Second {
					res.Notes = append(res.Notes, fmt.Sprintf("scenario %s run %d skipped: not enough time left before -max-total", name, rep))
					logf("skipping scenario %s run %d: not enough time left", name, rep)
					break
				}
				waitQuiet(c, res, "scenario "+name)
				sr, err := runScenario(ctx, env, spec, rate, rep)
				if err != nil {
					sr.Err = err.Error()
					logf("scenario %s: %v", name, err)
				}
				res.Scenarios = append(res.Scenarios, sr)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}
	logf("done in %v", time.Since(began).Round(time.Second))
	return nil
}

// waitQuiet waits, within its budgets, until the machine is nearly idle
// between measurements (the servers are idle then, so whatever is busy is
// someone else), and notes what it found.
func waitQuiet(c *config, res *results, what string) {
	start := time.Now()
	for {
		busy := hostBusyCores(time.Second)
		if busy <= c.quietCores {
			c.quietSpent += time.Since(start)
			if waited := time.Since(start); waited > 1500*time.Millisecond {
				res.Notes = append(res.Notes, fmt.Sprintf("before %s bench waited %.0f s for other processes to quieten", what, waited.Seconds()))
			}
			return
		}
		if time.Since(start) >= c.quietWait || c.quietSpent+time.Since(start) >= c.quietBudget {
			c.quietSpent += time.Since(start)
			res.Notes = append(res.Notes, fmt.Sprintf("before %s the machine was still %.2f cores busy with other processes after waiting %.0f s: its numbers are suspect", what, busy, time.Since(start).Seconds()))
			logf("warning: the machine is %.2f cores busy before %s; going on", busy, what)
			return
		}
		if time.Since(start) < 1500*time.Millisecond {
			logf("the machine is %.2f cores busy before %s; waiting up to %v", busy, what, c.quietWait)
		}
	}
}

// sluiceSeries runs a series against a fresh Sluice and a fresh kfake.
func sluiceSeries(ctx context.Context, c *config, sc *seriesConfig, kids *sluiceproc.Children, bin, tmp, rawDir, kind string, perReq int) (*series, error) {
	cluster, err := startKafka(3)
	if err != nil {
		return &series{Kind: kind, Target: "sluice"}, err
	}
	defer cluster.Close()
	public, err1 := freePort()
	admin, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		return &series{Kind: kind, Target: "sluice"}, err
	}
	dataDir := filepath.Join(tmp, "series-"+kind)
	defer os.RemoveAll(dataDir)
	p, err := startSluice(ctx, kids, sluiceOpts{bin: bin, dataDir: dataDir, logPath: filepath.Join(rawDir, "sluice-series-"+kind+".log"),
		public: public, admin: admin, brokers: cluster.ListenAddrs(), extra: c.sluiceFlags})
	if err != nil {
		return &series{Kind: kind, Target: "sluice"}, err
	}
	logf("sluice on %s, admin %s (pid %d), kfake %v", public, admin, p.pid, cluster.ListenAddrs())
	se, err := runSeries(ctx, sc, kind, &sluiceTarget{p: p, drainWait: c.drainWait}, perReq)
	stopped, ok := p.stop(45 * time.Second)
	if !ok {
		se.Note = strings.TrimSpace(se.Note + " Sluice did not exit cleanly: " + stopped)
	}
	if w, _ := p.log.Notes(); len(w) > 0 {
		se.Note = strings.TrimSpace(fmt.Sprintf("%s Sluice logged %d warning/error lines (raw/sluice-series-%s.log), first: %s", se.Note, len(w), kind, truncate(w[0], 300)))
	}
	return se, err
}

func eventsPer(kind string) int {
	if n, ok := strings.CutPrefix(kind, "batch"); ok {
		var v int
		if _, err := fmt.Sscanf(n, "%d", &v); err == nil && v > 0 {
			return v
		}
	}
	return 1
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run bench inside the sluice module (go run ./loadtest/cmd/bench)")
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "sluice")); err != nil {
		return "", fmt.Errorf("%s has no cmd/sluice: %w", root, err)
	}
	return root, nil
}

// writeOutputs writes raw/results.json (everything, every second of every
// step and scenario included), the plots and report.md.
func writeOutputs(c *config, res *results) error {
	var errs []error
	plots, err := writePlots(c.out, res)
	res.Plots = plots
	if err != nil {
		res.Notes = append(res.Notes, "plotting failed: "+err.Error())
		errs = append(errs, err)
	}
	if b, err := json.Marshal(res); err == nil {
		errs = append(errs, os.WriteFile(filepath.Join(c.out, "raw", "results.json"), b, 0o644))
	} else {
		errs = append(errs, err)
	}
	report := buildReport(res)
	errs = append(errs, os.WriteFile(filepath.Join(c.out, "report.md"), []byte(report), 0o644))
	logf("report written to %s", filepath.Join(c.out, "report.md"))
	return errors.Join(errs...)
}

// replotDir rewrites the report and plots of a finished run.
func replotDir(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "raw", "results.json"))
	if err != nil {
		return err
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	if res.Backlog != nil { // derived figures: recomputed, so a replot shows the current analysis
		res.Backlog.Stats = analyzeBacklog(res.Backlog)
	}
	plots, err := writePlots(dir, &res)
	if err != nil {
		return err
	}
	res.Plots = plots
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(buildReport(&res)), 0o644)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
