package main

import (
	"fmt"
	"math"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/stats"
)

// med is the median of f over runs.
func med(runs []*run, f func(*run) float64) float64 {
	xs := make([]float64, 0, len(runs))
	for _, r := range runs {
		xs = append(xs, f(r))
	}
	return stats.Median(xs)
}

func statusSummary(runs []*run) string {
	var bad []string
	agg := map[string]uint64{}
	for _, r := range runs {
		for code, n := range r.Load.Status {
			if !strings.HasPrefix(code, "2") {
				agg[code] += n
			}
		}
		for k, n := range r.Load.Errors {
			agg[k] += n
		}
	}
	for k, n := range agg {
		bad = append(bad, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(bad)
	if len(bad) == 0 {
		return "0"
	}
	return strings.Join(bad, " ")
}

func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--tags").Output()
	if err != nil {
		return "(no commit)"
	}
	return strings.TrimSpace(string(out))
}

func buildReport(c *config, runs []*run, probes []fsyncSample, prof *profile, sl *sluiceProc, shutdown string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	group := func(kind, target string) []*run {
		var out []*run
		for _, r := range runs {
			if r.Kind == kind && r.Target == target {
				out = append(out, r)
			}
		}
		return out
	}

	p("## Sluice vs a no-op fasthttp server\n\n")
	p("%s, %d round(s), %d connections, %v warm-up + %v measured per run, closed loop; %d cores shared by the generator and the server; %s; sluice %s",
		time.Now().Format("2006-01-02 15:04"), c.rounds, c.conns, c.warmup, c.duration, runtime.NumCPU(), runtime.Version(), gitDescribe())
	if len(c.sluiceFlags) > 0 {
		p(", extra flags `%s`", strings.Join(c.sluiceFlags, " "))
	}
	p(". Medians over rounds.\n\n")
	p("| kind | target | events/s | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | server cores | server CPU µs/event | other procs cores | non-2xx / errors | sluice/noop events/s | sluice/noop CPU/event |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
	for _, kind := range c.kinds {
		noop, sluice := group(kind, "noop"), group(kind, "sluice")
		for _, g := range []struct {
			name string
			runs []*run
		}{{"noop", noop}, {"sluice", sluice}} {
			if len(g.runs) == 0 {
				continue
			}
			ratio, cpuRatio := "", ""
			if g.name == "sluice" && len(noop) > 0 {
				ratio = fmt.Sprintf("%.3f", med(sluice, func(r *run) float64 { return r.Load.EPS })/med(noop, func(r *run) float64 { return r.Load.EPS }))
				cpuRatio = fmt.Sprintf("%.1f×", med(sluice, func(r *run) float64 { return r.Load.ServerUsPerEv })/med(noop, func(r *run) float64 { return r.Load.ServerUsPerEv }))
			}
			rs := g.runs
			p("| %s | %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %s | %s |\n", kind, g.name,
				med(rs, func(r *run) float64 { return r.Load.EPS }),
				med(rs, func(r *run) float64 { return r.Load.RPS }),
				med(rs, func(r *run) float64 { return r.Load.P50ms }),
				med(rs, func(r *run) float64 { return r.Load.P90ms }),
				med(rs, func(r *run) float64 { return r.Load.P99ms }),
				med(rs, func(r *run) float64 { return r.Load.P999ms }),
				med(rs, func(r *run) float64 { return r.Load.ServerCores }),
				med(rs, func(r *run) float64 { return r.Load.ServerUsPerEv }),
				med(rs, func(r *run) float64 { return r.Load.OtherCores() }),
				statusSummary(rs), ratio, cpuRatio)
		}
	}

	p("\n### Inside Sluice (from /metrics over each measured window; medians; ≤: upper bound of the Prometheus bucket)\n\n")
	p("| kind | records/fsync | fsyncs/s | fsync mean ms | fsync p99 ms ≤ | handler p50 ms ≤ | handler p99 ms ≤ | intake queue max | accepted/s | WAL appended/s | shipped/s | backlog max | backlog at end | WAL MiB max | drain after load s | invalid | rejected | ship errors |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, kind := range c.kinds {
		rs := group(kind, "sluice")
		if len(rs) == 0 {
			continue
		}
		s := func(f func(*sluiceStats) float64) float64 {
			return med(rs, func(r *run) float64 { return f(r.Sluice) })
		}
		p("| %s | %.1f | %.0f | %.3f | %.3f | %.3f | %.3f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %.0f | %.0f | %.0f |\n", kind,
			s(func(x *sluiceStats) float64 { return x.RecordsPerFsync }),
			s(func(x *sluiceStats) float64 { return x.CommitsPerS }),
			s(func(x *sluiceStats) float64 { return x.FsyncMeanMs }),
			s(func(x *sluiceStats) float64 { return x.FsyncP99Ms }),
			s(func(x *sluiceStats) float64 { return x.HandlerP50Ms }),
			s(func(x *sluiceStats) float64 { return x.HandlerP99Ms }),
			s(func(x *sluiceStats) float64 { return x.IntakeMax }),
			s(func(x *sluiceStats) float64 { return x.AcceptedPerS }),
			s(func(x *sluiceStats) float64 { return x.AppendedPerS }),
			s(func(x *sluiceStats) float64 { return x.ShippedPerS }),
			s(func(x *sluiceStats) float64 { return x.BacklogMax }),
			s(func(x *sluiceStats) float64 { return x.BacklogEnd }),
			s(func(x *sluiceStats) float64 { return x.DiskBytesMax / (1 << 20) }),
			s(func(x *sluiceStats) float64 { return x.DrainS }),
			s(func(x *sluiceStats) float64 { return x.Invalid }),
			s(func(x *sluiceStats) float64 { return x.Rejected }),
			s(func(x *sluiceStats) float64 { return x.ShipErrors }))
	}

	if len(probes) > 0 {
		p("\nDisk: 4 KiB append + fsync in a loop for 1 s on the data dir's file system, between rounds (what one group commit costs at best):\n\n")
		p("| when | fsyncs | p50 ms | p99 ms | max ms | per s |\n|---|---:|---:|---:|---:|---:|\n")
		for _, x := range probes {
			p("| %s | %d | %.2f | %.2f | %.2f | %.0f |\n", x.When, x.N, x.P50ms, x.P99ms, x.MaxMs, x.PerSecond)
		}
	}

	p("\n### Every run\n\n")
	p("| round | kind | target | events/s | p50 ms | p99 ms | max ms | server cores | µs/event | other procs cores | host busy before | records/fsync | shipped/s | backlog max |\n")
	p("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range runs {
		gc, sh, bl := "", "", ""
		if r.Sluice != nil {
			gc, sh, bl = fmt.Sprintf("%.1f", r.Sluice.RecordsPerFsync), fmt.Sprintf("%.0f", r.Sluice.ShippedPerS), fmt.Sprintf("%.0f", r.Sluice.BacklogMax)
		}
		p("| %d | %s | %s | %.0f | %.2f | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f | %s | %s | %s |\n", r.Round, r.Kind, r.Target,
			r.Load.EPS, r.Load.P50ms, r.Load.P99ms, r.Load.MaxMs, r.Load.ServerCores, r.Load.ServerUsPerEv, r.Load.OtherCores(), r.QuietBefore, gc, sh, bl)
	}

	p("\n### Checks\n\n")
	for _, n := range checks(runs, sl, shutdown) {
		p("- %s\n", n)
	}

	if prof != nil {
		p("\n### CPU profile of Sluice, single events, %d s (not part of the table)\n\n", prof.Seconds)
		p("Under %.0f events/s, p99 %.2f ms, server %.2f cores. Profile: `%s`.\n\n", prof.Load.EPS, prof.Load.P99ms, prof.Load.ServerCores, prof.Path)
		p("```\n%s```\n\n```\n%s```\n", trimPprof(prof.Flat), trimPprof(prof.Cum))
		if len(prof.Shares) > 0 {
			p("\nShare of CPU samples with a frame in each part (parts overlap; stacks are whole goroutines):\n\n| part | samples %% |\n|---|---:|\n")
			for _, s := range prof.Shares {
				p("| %s | %.1f |\n", s.Name, s.Percent)
			}
		}
	}
	return b.String()
}

// trimPprof drops pprof's header lines up to "Showing nodes".
func trimPprof(s string) string {
	if i := strings.Index(s, "Showing nodes"); i >= 0 {
		return s[i:]
	}
	return s
}

func checks(runs []*run, sl *sluiceProc, shutdown string) []string {
	var out []string
	for _, r := range runs {
		tag := fmt.Sprintf("round %d %s %s", r.Round, r.Kind, r.Target)
		if r.Load.OKRequests != r.Load.Requests || len(r.Load.Errors) > 0 {
			out = append(out, fmt.Sprintf("%s: not every request succeeded: status %v, errors %v", tag, r.Load.Status, r.Load.Errors))
		}
		if o := r.Load.OtherCores(); o > 0.1 {
			out = append(out, fmt.Sprintf("%s: other processes used %.2f cores during the window: the machine was not quiet, numbers are low", tag, o))
		}
		if r.Load.HostBusyCores < 0.85*float64(runtime.NumCPU()) {
			out = append(out, fmt.Sprintf("%s: the host was only %.2f of %d cores busy: something other than CPU limits this run (latency, fsync, locks)",
				tag, r.Load.HostBusyCores, runtime.NumCPU()))
		}
		s := r.Sluice
		if s == nil {
			continue
		}
		if s.Invalid > 0 || s.Rejected > 0 {
			out = append(out, fmt.Sprintf("%s: %.0f events invalid, %.0f rejected (the generated beacons should all be valid)", tag, s.Invalid, s.Rejected))
		}
		if r.Load.EPS > 0 && math.Abs(s.AcceptedPerS-r.Load.EPS)/r.Load.EPS > 0.05 {
			out = append(out, fmt.Sprintf("%s: Sluice counted %.0f accepted/s, the generator %.0f events/s (windows differ slightly; >5%% is suspicious)", tag, s.AcceptedPerS, r.Load.EPS))
		}
		if s.AcceptedPerS > 0 && s.ShippedPerS < 0.9*s.AcceptedPerS {
			out = append(out, fmt.Sprintf("%s: shipping does not keep up: %.0f shipped/s for %.0f accepted/s, backlog max %.0f", tag, s.ShippedPerS, s.AcceptedPerS, s.BacklogMax))
		}
		if !s.Drained {
			out = append(out, fmt.Sprintf("%s: backlog did not drain within the wait after the run", tag))
		}
		if s.ShipErrors > 0 || s.WriteErrors > 0 {
			out = append(out, fmt.Sprintf("%s: %.0f ship errors, %.0f WAL write errors", tag, s.ShipErrors, s.WriteErrors))
		}
	}
	if len(out) == 0 {
		out = append(out, "every request answered 2xx, Sluice's accepted count matches the generator's, shipping kept up, the backlog drained after every run")
	}
	warnings, steps := sl.log.Notes()
	if len(warnings) > 0 {
		out = append(out, fmt.Sprintf("Sluice logged %d warning/error line(s); first ones:", len(warnings)))
		for _, w := range warnings[:min(len(warnings), 5)] {
			out = append(out, "  `"+truncate(w, 300)+"`")
		}
	} else {
		out = append(out, "Sluice logged no warnings or errors (apart from the development-broker notice)")
	}
	out = append(out, "Sluice shutdown (SIGTERM): "+shutdown)
	for _, s := range steps {
		out = append(out, "  "+s)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
