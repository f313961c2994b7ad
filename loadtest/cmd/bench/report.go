package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/stats"
)

// headline is one body kind's comparison of Sluice and the no-op server.
type headline struct {
	Kind                      string
	NoopSatEPS, SluiceSatEPS  float64 // achieved events/s at the highest sustained step
	Ratio                     float64 // Sluice / noop
	NoopHalf, SluiceHalf      *step   // the 50 % steps
	NoopSat, SluiceSat        *step
	NoopPeak, SluicePeak      float64
	CPURatioSat, CPURatioHalf float64
}

func headlines(res *results) []headline {
	var out []headline
	for _, kind := range kindsOf(res) {
		h := headline{Kind: kind}
		if s := res.find(kind, "noop"); s != nil {
			h.NoopSat, h.NoopHalf, h.NoopPeak = s.saturation(), s.half(), s.peakEPS()
		}
		if s := res.find(kind, "sluice"); s != nil {
			h.SluiceSat, h.SluiceHalf, h.SluicePeak = s.saturation(), s.half(), s.peakEPS()
		}
		if h.NoopSat != nil {
			h.NoopSatEPS = h.NoopSat.Run.Summary.EPS
		}
		if h.SluiceSat != nil {
			h.SluiceSatEPS = h.SluiceSat.Run.Summary.EPS
		}
		if h.NoopSatEPS > 0 {
			h.Ratio = h.SluiceSatEPS / h.NoopSatEPS
		}
		h.CPURatioSat = cpuRatio(h.SluiceSat, h.NoopSat)
		h.CPURatioHalf = cpuRatio(h.SluiceHalf, h.NoopHalf)
		out = append(out, h)
	}
	return out
}

func cpuRatio(a, b *step) float64 {
	if a == nil || b == nil || b.UsPerEvent == 0 {
		return 0
	}
	return a.UsPerEvent / b.UsPerEvent
}

func kindsOf(res *results) []string {
	var kinds []string
	seen := map[string]bool{}
	for _, s := range res.Series {
		if !seen[s.Kind] {
			seen[s.Kind] = true
			kinds = append(kinds, s.Kind)
		}
	}
	return kinds
}

// orDash formats a value, or "–" when there is none.
func orDash(ok bool, format string, args ...any) string {
	if !ok {
		return "–"
	}
	return fmt.Sprintf(format, args...)
}

func stepP(s *step, f func(*openSummary) float64) string {
	if s == nil {
		return "–"
	}
	return fmtMs(f(&s.Run.Summary))
}

func buildReport(res *results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := res.Machine
	took := res.Finished.Sub(res.Started).Round(time.Second)
	p("# Sluice benchmark, %s\n\n", res.Started.UTC().Format("2006-01-02 15:04 UTC"))
	what := " (what `make bench` runs)"
	if res.Backlog != nil {
		what = ""
	}
	p("`%s`%s, %v in all; sluice %s, %s.\n\n", res.Command, what, took, m.Commit, m.Go)
	p("**Machine:** %d cores (%s), %s RAM, Linux %s. Disk: 4 KiB append + fsync p50 %.2f ms, p99 %.2f ms (%.0f/s). "+
		"Host busy before the run: %.2f cores.\n\n", m.Cores, m.CPUModel, m.MemTotal, m.Kernel, m.Fsync.P50ms, m.Fsync.P99ms, m.Fsync.PerSecond, m.BusyBefore)
	if hasSeries := len(res.Series) > 0 || (len(res.Scenarios) == 0 && res.Backlog == nil); hasSeries {
		p("**Load:** `loadgen open`, a separate process: open loop, requests due at evenly spaced intended times, "+
			"released by a pacer to a pool of %d keep-alive connections; latency is measured from the **intended** send "+
			"time, so a stall shows as latency instead of slowing the load down (no coordinated omission). "+
			"Each step: %.0f s warm-up at the step's rate, then %.0f s measured (%.0f s for the step at 50 %% of saturation). Bodies: `single` = one `page_view` "+
			"event (~375 B, `text/plain`, as `navigator.sendBeacon` sends), `batch20` = a JSON array of 20 (~7.5 KB, "+
			"`application/json`); every event carries a unique mark (run id + sequence number).\n\n", res.Conns, res.WarmupS, res.StepS, res.HalfS)
		p("**Targets:** the no-op server (`loadgen noop`, fasthttp, answers 204) and Sluice (`sluice serve`, defaults: `--ack disk`, " +
			"i.e. every 2xx waits for the WAL's fsync")
		if len(res.SluiceArg) > 0 {
			p(", plus `%s`", strings.Join(res.SluiceArg, " "))
		}
		p("). Sluice ships to **kfake run inside the bench process** (franz-go's fake Kafka, 3 brokers, in memory) via "+
			"`--kafka-brokers`, for the saturation steps and the scenarios alike: a fresh broker and a fresh Sluice data dir "+
			"per series and per scenario. Sluice's CPU therefore excludes the broker (its CPU is in *harness cores*). "+
			"Generator, server and broker share the machine's %d cores: the ratios matter more than the absolute numbers.\n\n", m.Cores)
		p("**Saturation:** the rate steps up (fractions of a 2 s closed-loop probe, then ×1.2) until a step fails — "+
			"more than %.0f%% of requests failed (non-2xx, errors, never sent), fewer than %.0f%% of the offered events "+
			"acknowledged, p99 above %.0f ms (exploded) or p50 above %.0f ms (a standing queue; a short stall the server recovers from lifts "+
			"only the upper percentiles) — then up to two bisection steps; *saturation* is the highest step that kept up "+
			"(its achieved events/s), and a last, longer step runs at 50 %% of that rate.\n\n",
			100*res.Criteria.MaxFailedFrac, 100*res.Criteria.MinAchieved, res.Criteria.MaxP99ms, res.Criteria.MaxP50ms)

		p("## Headline\n\n")
		p("| body | no-op saturation events/s | Sluice saturation events/s | **Sluice / no-op** | Sluice p50 / p99 / p99.9 ms at 50 %% of its saturation | no-op p50 / p99 / p99.9 ms at 50 %% | Sluice CPU µs/event (at saturation, at 50 %%) | no-op CPU µs/event (at saturation, at 50 %%) | CPU ratio (at saturation, at 50 %%) | RSS max MiB Sluice / no-op |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, h := range headlines(res) {
			pct := func(s *step) string {
				if s == nil {
					return "–"
				}
				x := &s.Run.Summary
				return fmt.Sprintf("%s / **%s** / %s", fmtMs(x.P50ms), fmtMs(x.P99ms), fmtMs(x.P999ms))
			}
			us := func(a, b *step) string {
				return orDash(a != nil && b != nil, "%.1f, %.1f", usOf(a), usOf(b))
			}
			rss := func(kind, target string) float64 {
				var v float64
				if s := res.find(kind, target); s != nil {
					for _, st := range s.Steps {
						v = max(v, st.Run.RSSMaxMiB)
					}
				}
				return v
			}
			p("| %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %.0f / %.0f |\n", h.Kind,
				orDash(h.NoopSatEPS > 0, "%.0f", h.NoopSatEPS), orDash(h.SluiceSatEPS > 0, "%.0f", h.SluiceSatEPS),
				orDash(h.Ratio > 0, "%.3f", h.Ratio), pct(h.SluiceHalf), pct(h.NoopHalf),
				us(h.SluiceSat, h.SluiceHalf), us(h.NoopSat, h.NoopHalf),
				orDash(h.CPURatioSat > 0, "%.1f×, %.1f×", h.CPURatioSat, h.CPURatioHalf),
				rss(h.Kind, "sluice"), rss(h.Kind, "noop"))
		}
		p("\nSaturation = achieved events/s of the highest step that kept up; the most any step pushed through (overloaded steps included): ")
		var peaks []string
		for _, h := range headlines(res) {
			peaks = append(peaks, fmt.Sprintf("%s no-op %.0f, Sluice %.0f", h.Kind, h.NoopPeak, h.SluicePeak))
		}
		p("%s events/s. CPU µs/event = the server process's utime+stime over the window / events acknowledged.\n\n", strings.Join(peaks, "; "))
	}

	if len(res.Scenarios) > 0 {
		writeScenarios(&b, res)
	}
	if res.Backlog != nil {
		writeBacklog(&b, res)
	}

	var plots []string // the backlog section shows its own
	for _, f := range res.Plots {
		if f != backlogPlot || res.Backlog == nil {
			plots = append(plots, f)
		}
	}
	if len(plots) > 0 {
		p("## Plots\n\n")
		for _, f := range plots {
			p("![%s](%s)\n\n", strings.TrimSuffix(f, ".png"), f)
		}
	}

	if len(res.Series) > 0 {
		writeSteps(&b, res)
	}

	p("## Checks\n\n")
	for _, n := range checks(res) {
		p("- %s\n", n)
	}
	p("\nRaw data (git-ignored): `raw/results.json` (everything above, and every second of every step and scenario with its latency histogram; `go run ./loadtest/cmd/bench -replot DIR` redraws the report and plots from it), `raw/sluice-*.log`, `raw/acked-*.bin`.\n")
	return b.String()
}

// writeSteps lists every step of every series.
func writeSteps(b *strings.Builder, res *results) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Every step\n\n")
	p("Latencies in ms from the intended send time. *failed*: non-2xx, transport errors and requests never sent; " +
		"*late*: requests that waited > 1 ms for a free connection; *lag p99*: the generator's own send lag; " +
		"*harness*: bench itself (the in-process kfake); *other*: the rest of the machine.\n\n")
	for _, se := range res.Series {
		p("### %s → %s", se.Kind, se.Target)
		if se.Probe != nil {
			p(" (closed-loop probe, 64 connections: %.0f req/s, %.0f events/s)", se.Probe.RPS, se.Probe.EPS)
		}
		p("\n\n")
		p("| # | step | offered req/s | offered ev/s | achieved ev/s | p50 | p99 | p99.9 | max | failed | late | server cores | µs/event | RSS MiB | loadgen cores | harness cores | other cores | lag p99 | verdict |\n")
		p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for i, st := range se.Steps {
			x := &st.Run.Summary
			c := st.Run.CPU
			p("| %d | %s | %.0f | %.0f | %.0f | %s | %s | %s | %s | %d | %d | %.2f | %.1f | %.0f | %.2f | %.2f | %.2f | %.2f | %s |\n",
				i+1, st.Purpose, x.OfferedRPS, x.OfferedEPS, x.EPS, fmtMs(x.P50ms), fmtMs(x.P99ms), fmtMs(x.P999ms), fmtMs(x.MaxMs),
				x.Failed(), x.Late, c.ServerCores, st.UsPerEvent, st.Run.RSSMaxMiB, c.LoadgenCores, c.HarnessCores, c.OtherCores,
				x.LagP99ms, verdict(st))
		}
		if se.Target == "sluice" {
			p("\nInside Sluice (its /metrics over each window):\n\n")
			p("| # | accepted/s | shipped/s | records/fsync | fsync mean ms | backlog max | backlog at end | drained after s | rejected | invalid | ship errors |\n")
			p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			for i, st := range se.Steps {
				w := st.Sluice
				if w == nil {
					continue
				}
				p("| %d | %.0f | %.0f | %.1f | %.3f | %.0f | %.0f | %s | %.0f | %.0f | %.0f |\n", i+1, w.AcceptedPerS, w.ShippedPerS,
					w.RecordsPerFsync, w.FsyncMeanMs, w.BacklogMax, w.BacklogEnd, orDash(w.Drained, "%.1f", w.DrainS), w.Rejected, w.Invalid, w.ShipErrors)
			}
		}
		if se.Note != "" {
			p("\nNote: %s\n", se.Note)
		}
		p("\n")
	}

}

func usOf(s *step) float64 {
	if s == nil {
		return 0
	}
	return s.UsPerEvent
}

func verdict(st *step) string {
	if st.Pass {
		return "kept up"
	}
	return "**" + st.Reason + "**"
}

func writeScenarios(b *strings.Builder, res *results) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Fault scenarios\n\n")
	p("Single events at a constant rate (column *events/s*), a fresh Sluice and kfake (3 brokers, 6 partitions) each. " +
		"*Sent* events were written to a connection, *acked* got a 2xx; after the load bench waits for " +
		"Sluice's backlog to reach 0, stops it (SIGTERM), reads the whole topic from the start and looks for every " +
		"acknowledged mark. *Order*: per key and partition, records first appear in WAL order (the `sluice-wal-index` " +
		"header; copies of an index already seen are duplicates, not violations); *keys moved* were found in more than one " +
		"partition. Latency (ms, from the intended send time) before, during and after the fault window; *ratio* is p99 " +
		"during (after) ÷ p99 before, in the same run (goal ≤ 1.25). *Drain*: seconds from the fault's end until the " +
		"backlog was back under max(500, its peak before the fault).\n\n")
	p("| scenario | events/s | fault window s | sent | acked | found | **missing** | duplicates | order violations | keys moved | failed (non-2xx, errors, unsent) | p99 before | p99 during | p99 after | **ratio during** | ratio after | max during | backlog peak | drain s | other procs cores |\n")
	p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, sr := range res.Scenarios {
		if sr.Run == nil || sr.Verify == nil {
			p("| %s | %.0f |%s\n", sr.label(), sr.Rate, strings.Repeat(" – |", 18))
			continue
		}
		v := sr.Verify
		win := "–"
		before, during, after := sr.Whole, phaseStats{}, phaseStats{}
		if len(sr.Windows) > 0 {
			w := sr.Windows[0]
			win = fmt.Sprintf("%.1f–%.1f", w.From, w.To)
			before, during, after = sr.Before, sr.During, sr.After
		}
		ph := func(x phaseStats, f func(phaseStats) float64) string { return orDash(x.Seconds > 0, "%s", fmtMs(f(x))) }
		ratio := func(x phaseStats) string {
			return orDash(x.Seconds > 0 && before.Seconds > 0 && before.P99ms > 0, "%.2f", x.P99ms/before.P99ms)
		}
		drain := "–"
		if d, ok := faultDrain(sr); ok {
			drain = fmt.Sprintf("%.0f", d)
		}
		failed := sr.Run.Summary.Non2xx + sr.Run.Summary.ErrorsN + sr.Run.Summary.Unsent
		p("| %s | %.0f | %s | %d | %d | %d | **%d** | %d | %d | %d | %d | %s | %s | %s | **%s** | %s | %s | %.0f | %s | %.2f |\n",
			sr.label(), sr.Rate, win, v.Sent, v.Acked, v.Found, v.Missing, v.Duplicates, v.Order.Violations, v.Order.KeysMoved, failed,
			ph(before, func(x phaseStats) float64 { return x.P99ms }), ph(during, func(x phaseStats) float64 { return x.P99ms }),
			ph(after, func(x phaseStats) float64 { return x.P99ms }), ratio(during), ratio(after), ph(during, func(x phaseStats) float64 { return x.MaxMs }),
			sr.BacklogMax, drain, sr.OtherCores)
	}
	p("\n")
	for _, sr := range res.Scenarios {
		var notes []string
		if sr.Err != "" {
			notes = append(notes, "error: "+sr.Err)
		}
		if sr.Spec.Fault == "outage" {
			notes = append(notes, fmt.Sprintf("kfake failed %d produce requests with NOT_ENOUGH_REPLICAS (a retriable error: franz-go retries, Sluice's WAL holds the backlog)", sr.FaultHits))
			if d, peak, ok := resumed(sr); ok {
				notes = append(notes, fmt.Sprintf("shipping resumed %.1f s after the outage ended and peaked at %.0f records/s while the backlog drained", d, peak))
			}
		}
		if sr.Spec.Fault == "slow" {
			notes = append(notes, fmt.Sprintf("kfake held %d produce requests %v each before answering them (a control function with SleepControl; requests on one connection are answered in order)", sr.FaultHits, slowProduce))
		}
		if sr.Spec.Fault == "nodes" {
			notes = append(notes, "kfake RemoveNode(0) (its listener closed, every partition given a new leader among the other two), AddNode(0) on the same port half-way through the window (leaders shuffled again)")
		}
		if sr.Spec.Fault == "partitions" {
			notes = append(notes, fmt.Sprintf("CreatePartitions +6 (6 → 12) at the window's start; Sluice flags %v", sr.Spec.Flags))
		}
		if v := sr.Verify; v != nil {
			notes = append(notes, fmt.Sprintf("order: %d records checked in %d keys, %d violations, %d keys in more than one partition", v.Order.Checked, v.Order.Keys, v.Order.Violations, v.Order.KeysMoved))
			if len(v.Order.Sample) > 0 {
				notes = append(notes, "**order violations**, e.g. "+strings.Join(v.Order.Sample, "; "))
			}
		}
		if len(sr.Profiles) > 0 {
			notes = append(notes, "CPU profiles and traces: raw/"+strings.Join(sr.Profiles, ", raw/"))
		}
		if sr.Spec.Fault == "shuffles" {
			notes = append(notes, fmt.Sprintf("%d leader shuffles (kfake ShufflePartitionLeaders: every partition gets a random leader of 3 and a new epoch)", sr.Shuffles))
		}
		if ri := sr.Restart; ri != nil {
			notes = append(notes, fmt.Sprintf("SIGTERM → %s in %.2f s (graceful: %v); ready again %.2f s after the SIGTERM; requests in the gap failed (connection refused) and count as not acknowledged", ri.Stop, ri.StopS, ri.Graceful, ri.GapS))
			if ri.StartErr != "" {
				notes = append(notes, "restart failed: "+ri.StartErr)
			}
			if len(ri.Shutdown) > 0 {
				notes = append(notes, "shutdown steps: "+strings.Join(ri.Shutdown, "; "))
			}
		}
		if sr.Run != nil {
			x := &sr.Run.Summary
			var errs []string
			for k, n := range x.Errors {
				errs = append(errs, fmt.Sprintf("%s×%d", k, n))
			}
			for k, n := range x.Status {
				if !strings.HasPrefix(k, "2") {
					errs = append(errs, fmt.Sprintf("HTTP %s×%d", k, n))
				}
			}
			sort.Strings(errs)
			if len(errs) > 0 {
				notes = append(notes, "not acknowledged: "+strings.Join(errs, ", "))
			}
			notes = append(notes, fmt.Sprintf("whole run p50 %s, p99 %s, p99.9 %s, max %s ms", fmtMs(x.P50ms), fmtMs(x.P99ms), fmtMs(x.P999ms), fmtMs(x.MaxMs)))
		}
		if v := sr.Verify; v != nil {
			if !v.Complete {
				notes = append(notes, "the topic was not read to its end within the time limit")
			}
			if v.Missing > 0 {
				notes = append(notes, fmt.Sprintf("**%d acknowledged events missing from Kafka**, e.g. sequence numbers %v", v.Missing, v.MissingSample))
			}
			if v.Foreign > 0 || v.DLQRecords > 0 {
				notes = append(notes, fmt.Sprintf("%d records without this run's mark, %d in the dead-letter topic", v.Foreign, v.DLQRecords))
			}
		}
		if !sr.Drained {
			notes = append(notes, "the backlog did not reach 0 within the drain wait")
		}
		notes = append(notes, "Sluice after the scenario: "+sr.Stop)
		if len(sr.Warnings) > 0 {
			notes = append(notes, fmt.Sprintf("Sluice logged %d warning/error lines, first: `%s`", len(sr.Warnings), truncate(sr.Warnings[0], 240)))
		}
		p("- **%s**: %s.\n", sr.label(), strings.Join(notes, "; "))
	}
	p("\n")
	writeScenarioMedians(b, res)
}

// label names a scenario run: "outage", or "outage #2" for a repeat.
func (sr *scenarioResult) label() string {
	if sr.Repeat > 1 {
		return fmt.Sprintf("%s #%d", sr.Spec.Name, sr.Repeat)
	}
	return sr.Spec.Name
}

// pRatios are a scenario run's p99 during and after its fault over p99
// before it; ok is false without a fault window or a before window.
func (sr *scenarioResult) pRatios() (during, after float64, ok bool) {
	if len(sr.Windows) == 0 || sr.Before.Seconds == 0 || sr.Before.P99ms <= 0 || sr.During.Seconds == 0 {
		return 0, 0, false
	}
	return sr.During.P99ms / sr.Before.P99ms, sr.After.P99ms / sr.Before.P99ms, true
}

// writeScenarioMedians summarizes scenarios run more than once: the median
// of the runs' ratios, and the sums of what must be zero.
func writeScenarioMedians(b *strings.Builder, res *results) {
	var names []string
	runs := map[string][]*scenarioResult{}
	for _, sr := range res.Scenarios {
		if len(runs[sr.Spec.Name]) == 0 {
			names = append(names, sr.Spec.Name)
		}
		runs[sr.Spec.Name] = append(runs[sr.Spec.Name], sr)
	}
	repeated := false
	for _, n := range names {
		repeated = repeated || len(runs[n]) > 1
	}
	if !repeated {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("### Over the runs\n\nMedians of the runs' values; the counts are sums. *Pooled*: the p99 of all the runs' before windows' " +
		"requests together against that of all their during windows' (more requests per percentile than any one run's). " +
		"The healthy scenario is the control: the same windows with no fault, so its ratios are the measurement's noise.\n\n")
	p("*Disk stalls*: seconds of each window in which a WAL fsync took over 51.2 ms (summed over the runs). Such a stall " +
		"holds up every request of its moment whether or not Kafka is in trouble, and one of them in a 30 s window can " +
		"set its p99; *without stall seconds* is the ratio with those seconds left out of both windows.\n\n")
	p("| scenario | runs | p99 before | p99 during | p99 after | **ratio during** (each run) | pooled p99 before → during (ratio) | disk stalls before / during | ratio without stall seconds (each run) | ratio after (each run) | backlog peak | drain s | acked | **missing** | order violations | failed |\n")
	p("|---|---:|---:|---:|---:|---|---|---|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range names {
		var before, during, after, rd, ra, rc, peak, drain []float64
		var acked, missing, viol, failed uint64
		var stallsB, stallsD int
		for _, sr := range runs[n] {
			if d, a, ok := sr.pRatios(); ok {
				rd, ra = append(rd, d), append(ra, a)
				before, during, after = append(before, sr.Before.P99ms), append(during, sr.During.P99ms), append(after, sr.After.P99ms)
			}
			if c, sb, sd, ok := sr.stallFreeRatio(); ok {
				rc = append(rc, c)
				stallsB, stallsD = stallsB+sb, stallsD+sd
			}
			peak = append(peak, sr.BacklogMax)
			if d, ok := faultDrain(sr); ok {
				drain = append(drain, d)
			}
			if v := sr.Verify; v != nil {
				acked, missing, viol = acked+v.Acked, missing+v.Missing, viol+v.Order.Violations
			}
			if sr.Run != nil {
				failed += sr.Run.Summary.Non2xx + sr.Run.Summary.ErrorsN + sr.Run.Summary.Unsent
			}
		}
		each := func(xs []float64) string {
			if len(xs) == 0 {
				return "–"
			}
			parts := make([]string, len(xs))
			for i, x := range xs {
				parts[i] = fmt.Sprintf("%.2f", x)
			}
			return fmt.Sprintf("**%.2f** (%s)", stats.Median(xs), strings.Join(parts, ", "))
		}
		med := func(xs []float64, format string) string { return orDash(len(xs) > 0, format, stats.Median(xs)) }
		pooled := "–"
		if b, d, ok := pooledP99(runs[n]); ok {
			pooled = fmt.Sprintf("%.2f → %.2f (**%.2f**)", b, d, d/b)
		}
		stalls := "–"
		if len(rc) > 0 {
			stalls = fmt.Sprintf("%d / %d", stallsB, stallsD)
		}
		p("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | **%d** | %d | %d |\n", n, len(runs[n]),
			med(before, "%.2f"), med(during, "%.2f"), med(after, "%.2f"), each(rd), pooled, stalls, each(rc), each(ra),
			med(peak, "%.0f"), med(drain, "%.0f"), acked, missing, viol, failed)
	}
	p("\n")
}

// pooledP99 is the p99 in ms of every before window's requests of runs
// together, and of every during window's.
func pooledP99(runs []*scenarioResult) (before, during float64, ok bool) {
	var bs, ds []secondSpan
	for _, sr := range runs {
		if len(sr.Windows) == 0 || sr.Run == nil {
			continue
		}
		b, d, _ := phaseSpans(sr.Windows[0], sr.Spec.Duration.Seconds())
		bs = append(bs, secondSpan{secs: sr.Run.Seconds, from: b[0], to: b[1]})
		ds = append(ds, secondSpan{secs: sr.Run.Seconds, from: d[0], to: d[1]})
	}
	pb, pd := mergeSpans(bs...), mergeSpans(ds...)
	if pb.Answered == 0 || pd.Answered == 0 || pb.P99ms <= 0 {
		return 0, 0, false
	}
	return pb.P99ms, pd.P99ms, true
}

// diskStallSeconds are the load's seconds that a WAL fsync over 51.2 ms may
// have held up: every request of those moments waits for it, whatever Kafka
// does, and one such stall in a window moves its p99. A sample covers the
// second before it, and the stall may have begun in the second before that.
func (sr *scenarioResult) diskStallSeconds() map[int]bool {
	stalls := map[int]bool{}
	var prev float64
	havePrev := false
	for _, s := range sr.Samples {
		if !s.Up {
			havePrev = false
			continue
		}
		// A restarted Sluice counts from zero again: a new baseline.
		if havePrev && s.SlowFsyncs > prev {
			t := int(math.Floor(s.T - 0.5))
			stalls[t-1], stalls[t] = true, true
		}
		prev, havePrev = s.SlowFsyncs, true
	}
	return stalls
}

// stallFreeRatio is p99 during over p99 before with the seconds a WAL fsync
// stall held up left out of both windows; stalls counts those seconds in
// each window.
func (sr *scenarioResult) stallFreeRatio() (ratio float64, stallsBefore, stallsDuring int, ok bool) {
	if len(sr.Windows) == 0 || sr.Run == nil {
		return 0, 0, 0, false
	}
	stalls := sr.diskStallSeconds()
	b, d, _ := phaseSpans(sr.Windows[0], sr.Spec.Duration.Seconds())
	for t := range stalls {
		switch ft := float64(t); {
		case ft+1 > b[0] && ft < b[1]:
			stallsBefore++
		case ft+1 > d[0] && ft < d[1]:
			stallsDuring++
		}
	}
	pb := mergeSpans(secondSpan{secs: sr.Run.Seconds, from: b[0], to: b[1], skip: stalls})
	pd := mergeSpans(secondSpan{secs: sr.Run.Seconds, from: d[0], to: d[1], skip: stalls})
	if pb.P99ms <= 0 || pd.Answered == 0 {
		return 0, stallsBefore, stallsDuring, false
	}
	return pd.P99ms / pb.P99ms, stallsBefore, stallsDuring, true
}

// faultDrain is how long after the first fault window the backlog got back
// under max(500, its peak before the window), at sample resolution.
func faultDrain(sr *scenarioResult) (float64, bool) {
	if len(sr.Windows) == 0 {
		return 0, false
	}
	w := sr.Windows[0]
	limit := 500.0
	for _, s := range sr.Samples {
		if s.Up && s.T < w.From {
			limit = max(limit, s.Backlog)
		}
	}
	for _, s := range sr.Samples {
		if s.Up && s.T >= w.To && s.Backlog <= limit {
			return round3(s.T - w.To), true
		}
	}
	return 0, false
}

// resumed finds, after the first fault window, when Sluice's shipped counter
// moved again (in seconds after the window's end, at sample resolution) and
// the peak shipping rate after it.
func resumed(sr *scenarioResult) (after, peak float64, ok bool) {
	if len(sr.Windows) == 0 {
		return 0, 0, false
	}
	end := sr.Windows[0].To
	for i := 1; i < len(sr.Samples); i++ {
		a, b := sr.Samples[i-1], sr.Samples[i]
		if !a.Up || !b.Up || b.T <= end || b.T <= a.T {
			continue
		}
		if rate := (b.Shipped - a.Shipped) / (b.T - a.T); rate > 0 {
			if !ok {
				after, ok = max(0, a.T-end), true
			}
			peak = max(peak, rate)
		}
	}
	return round3(after), peak, ok
}

// checks lists what makes numbers suspect.
func checks(res *results) []string {
	var out []string
	for _, se := range res.Series {
		for i, st := range se.Steps {
			tag := fmt.Sprintf("%s → %s step %d (%.0f req/s)", se.Kind, se.Target, i+1, st.Rate)
			if st.Run.CPU.OtherCores > 0.2 {
				out = append(out, fmt.Sprintf("%s: other processes used %.2f cores: the machine was not quiet", tag, st.Run.CPU.OtherCores))
			}
			if st.Pass && st.Run.Summary.LagP99ms > 5 {
				out = append(out, fmt.Sprintf("%s: the generator's send lag p99 was %.2f ms in a step that kept up (generator or machine busy)", tag, st.Run.Summary.LagP99ms))
			}
			if w := st.Sluice; w != nil && (w.Rejected > 0 || w.Invalid > 0 || w.ShipErrors > 0) {
				out = append(out, fmt.Sprintf("%s: Sluice counted %.0f rejected, %.0f invalid events, %.0f ship errors", tag, w.Rejected, w.Invalid, w.ShipErrors))
			}
			if w := st.Sluice; w != nil && !w.Drained {
				out = append(out, fmt.Sprintf("%s: Sluice's backlog did not drain after the step", tag))
			}
		}
	}
	for _, sr := range res.Scenarios {
		if sr.OtherCores > 0.2 {
			out = append(out, fmt.Sprintf("scenario %s: other processes used %.2f cores on average: the machine was not quiet", sr.Spec.Name, sr.OtherCores))
		}
		if sr.Verify != nil && sr.Verify.Missing > 0 {
			out = append(out, fmt.Sprintf("scenario %s: %d acknowledged events are not in Kafka", sr.Spec.Name, sr.Verify.Missing))
		}
		if sr.Verify != nil && sr.Verify.Order.Violations > 0 {
			out = append(out, fmt.Sprintf("scenario %s: %d records out of per-key order", sr.Spec.Name, sr.Verify.Order.Violations))
		}
	}
	if res.Backlog != nil {
		out = append(out, backlogChecks(res.Backlog)...)
	}
	out = append(out, res.Notes...)
	if len(out) == 0 {
		out = append(out, "nothing suspicious: the machine stayed quiet, the generator kept its schedule in every step that kept up, Sluice rejected nothing and drained after every step")
	}
	return out
}
