// Command compare measures what Sluice costs against a no-op HTTP server on
// the same machine, with the same client and settings.
//
//	go run ./loadtest/cmd/compare -rounds 3
//
// It builds ./cmd/sluice and ./loadtest/cmd/loadgen into a temporary
// directory, starts "sluice serve" (embedded Kafka, temporary data dir, every
// address on 127.0.0.1 port 0) and "loadgen noop", then for each round and
// each body kind runs "loadgen run" against both, alternating which goes
// first. After every Sluice run it scrapes /metrics for the group commit
// (records per fsync, fsync time) and the shipping backlog, and waits for the
// backlog to drain before the next run. Optionally it then takes a CPU profile
// of Sluice under the single-event load. It prints a markdown report; with
// -out it also writes the report, every raw result, the profile and Sluice's
// log into a directory. Everything binds 127.0.0.1, every step has a
// deadline, and the children are stopped on every exit path.
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
	rounds         int
	conns          int
	duration       time.Duration
	warmup         time.Duration
	kinds          []string
	profileSeconds int
	profileTop     int
	out            string
	keep           bool
	sluiceFlags    []string
	drainWait      time.Duration
	maxTotal       time.Duration
	quietCores     float64
	quietWait      time.Duration
}

func main() {
	var c config
	var kinds, sluiceFlags string
	flag.IntVar(&c.rounds, "rounds", 3, "rounds; each runs every kind against both targets")
	flag.IntVar(&c.conns, "conns", 64, "keep-alive connections per run")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "measured window per run")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured load before each window")
	flag.StringVar(&kinds, "kinds", "single,batch20", "comma-separated body kinds (loadgen -kind)")
	flag.IntVar(&c.profileSeconds, "profile-seconds", 8, "after the rounds, CPU-profile Sluice for this long under single-event load (0: skip)")
	flag.IntVar(&c.profileTop, "profile-top", 10, "functions shown from the profile")
	flag.StringVar(&c.out, "out", "", "directory for report.md and raw/ (results, profile, Sluice log); e.g. loadtest/results/$(date +%F)")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (binaries, data dir)")
	flag.StringVar(&sluiceFlags, "sluice-flags", "", `extra "sluice serve" flags, space-separated (e.g. "--ack enqueue")`)
	flag.DurationVar(&c.drainWait, "drain-wait", 30*time.Second, "after a Sluice run, longest wait for the shipping backlog to reach 0")
	flag.DurationVar(&c.maxTotal, "max-total", 20*time.Minute, "hard deadline for the whole comparison")
	flag.Float64Var(&c.quietCores, "quiet-cores", 0.25, "before each run, wait until the host (servers idle) uses at most this many cores...")
	flag.DurationVar(&c.quietWait, "quiet-wait", 20*time.Second, "...or this long at most (0: don't wait)")
	flag.Parse()
	for _, k := range strings.Split(kinds, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.kinds = append(c.kinds, k)
		}
	}
	c.sluiceFlags = strings.Fields(sluiceFlags)
	if c.rounds < 1 || c.conns < 1 || c.duration <= 0 || len(c.kinds) == 0 {
		fmt.Fprintln(os.Stderr, "compare: -rounds, -conns, -duration and -kinds must be positive/non-empty")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.maxTotal)
	defer cancel()
	if err := compare(ctx, &c); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func compare(ctx context.Context, c *config) (err error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sluice-compare-")
	if err != nil {
		return err
	}
	if c.keep {
		logf("temporary directory kept: %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	rawDir := filepath.Join(tmp, "raw")
	if c.out != "" {
		rawDir = filepath.Join(c.out, "raw")
	}
	if err := os.MkdirAll(rawDir, 0o755); err != nil {
		return err
	}

	logf("building sluice and loadgen")
	sluiceBin, loadgenBin := filepath.Join(tmp, "sluice"), filepath.Join(tmp, "loadgen")
	for bin, pkg := range map[string]string{sluiceBin: "./cmd/sluice", loadgenBin: "./loadtest/cmd/loadgen"} {
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
	sl, err := startSluice(ctx, &kids, sluiceBin, filepath.Join(tmp, "data"), filepath.Join(rawDir, "sluice.log"), c.sluiceFlags)
	if err != nil {
		return err
	}
	logf("noop on %s (pid %d); sluice on %s, admin %s, embedded kafka %s (pid %d)",
		noop.Addr, noop.PID, sl.public, sl.admin, sl.kafka, sl.pid)

	rawOut, err := os.Create(filepath.Join(rawDir, "runs.jsonl"))
	if err != nil {
		return err
	}
	defer rawOut.Close()

	var runs []*run
	var probes []fsyncSample
	probe := func(when string) {
		ps, err := fsyncProbe(tmp, when, time.Second)
		if err != nil {
			logf("fsync probe: %v", err)
			return
		}
		logf("fsync probe %s: p50 %.2f ms, p99 %.2f ms, %.0f/s", when, ps.P50ms, ps.P99ms, ps.PerSecond)
		probes = append(probes, ps)
	}
	for r := range c.rounds {
		probe(fmt.Sprintf("before round %d", r+1))
		for _, kind := range c.kinds {
			targets := []string{"noop", "sluice"}
			if r%2 == 1 {
				targets[0], targets[1] = targets[1], targets[0]
			}
			for _, target := range targets {
				rn := &run{Round: r + 1, Kind: kind, Target: target}
				if c.quietWait > 0 {
					t := time.Now()
					busy, ok := waitQuiet(ctx, c.quietCores, c.quietWait)
					rn.QuietBefore, rn.QuietWaitS = round3(busy), round3(time.Since(t).Seconds())
					if !ok {
						logf("host still %.2f cores busy after waiting %v; running anyway", busy, c.quietWait)
					}
				}
				if target == "noop" {
					err = loadRun(ctx, c, loadgenBin, "http://"+noop.Addr+"/v1/beacon", noop.PID, kind, c.duration, c.warmup, rn, nil, nil)
				} else {
					err = sluiceRun(ctx, c, loadgenBin, sl, kind, rn)
				}
				if err != nil {
					return fmt.Errorf("round %d %s %s: %w", r+1, kind, target, err)
				}
				logf("round %d %-8s %-6s %9.0f events/s  p50 %.2f ms  p99 %.2f ms  %.2f µs/event  other procs %.2f cores%s",
					rn.Round, kind, target, rn.Load.EPS, rn.Load.P50ms, rn.Load.P99ms, rn.Load.ServerUsPerEv, rn.Load.OtherCores(), rn.sluiceSummary())
				runs = append(runs, rn)
				json.NewEncoder(rawOut).Encode(rn)
			}
		}
	}

	probe("after the rounds")

	var prof *profile
	if c.profileSeconds > 0 {
		prof, err = profileSluice(ctx, c, loadgenBin, sluiceBin, sl, rawDir)
		if err != nil {
			logf("profile failed: %v", err) // the measurements stand without it
		}
	}

	logf("stopping sluice")
	shutdown := sl.stop(45 * time.Second)
	noop.Stop(5 * time.Second)

	report := buildReport(c, runs, probes, prof, sl, shutdown)
	fmt.Print(report)
	if c.out != "" {
		if err := os.WriteFile(filepath.Join(c.out, "report.md"), []byte(report), 0o644); err != nil {
			return err
		}
		logf("report written to %s", filepath.Join(c.out, "report.md"))
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run compare inside the sluice module (go run ./loadtest/cmd/compare)")
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "sluice")); err != nil {
		return "", fmt.Errorf("%s has no cmd/sluice: %w", root, err)
	}
	return root, nil
}
