package main

import (
	"fmt"
	"image/color"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

const backlogPlot = "timeline-backlog.png"

// backlogVerdict is PASS or FAIL with the reasons.
func backlogVerdict(r *backlogResult) (bool, []string) {
	st := r.Stats
	var why []string
	if r.Err != "" {
		why = append(why, "the scenario did not finish: "+r.Err)
	}
	if st.RSSFail {
		why = append(why, fmt.Sprintf("RSS reached %.1f MiB (limit %.0f MiB)", max(st.RSSMax, st.HWM), r.Config.RSSLimitMiB))
	}
	if st.BacklogPeak < r.Config.Events {
		why = append(why, fmt.Sprintf("the backlog peaked at %.0f records, below the %.0f asked for", st.BacklogPeak, r.Config.Events))
	}
	if !r.Drained {
		why = append(why, "the backlog did not drain")
	}
	if st.Missing > 0 {
		why = append(why, fmt.Sprintf("%d acknowledged events missing from Kafka", st.Missing))
	}
	if len(r.Verify) == 0 {
		why = append(why, "the topic was not read back")
	}
	for _, v := range r.Verify {
		if !v.Complete {
			why = append(why, "the topic was not read to its end")
			break
		}
	}
	if !st.LedgerChecked {
		why = append(why, "Sluice exports no event ledger (sluice_events_received_total, sluice_events_buffered)")
	} else if len(r.Violations) > 0 {
		why = append(why, fmt.Sprintf("the ledger did not balance at %d of %d scrapes", len(r.Violations), r.Checks))
	}
	return len(why) == 0, why
}

func writeBacklog(b *strings.Builder, res *results) {
	r := res.Backlog
	st := r.Stats
	cfg := r.Config
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Backlog on disk (scenario `backlog`)\n\n")
	flags := "`--pprof`, otherwise defaults"
	if len(res.SluiceArg) > 0 {
		flags = "`--pprof " + strings.Join(res.SluiceArg, " ") + "`"
	}
	if len(res.SluiceEnv) > 0 {
		flags += ", environment `" + strings.Join(res.SluiceEnv, " ") + "`"
	}
	p("A fresh Sluice (%s) and kfake. (1) %.0f live single events/s for %.0f s with Kafka healthy. "+
		"(2) Every Produce fails (kfake `Fault`, `NOT_ENOUGH_REPLICAS`, as in `outage`); `loadgen open` rounds of `%s` requests "+
		"over %d connections build the backlog to %.0f records as fast as Sluice takes them (a round that keeps up raises the rate ×1.25, "+
		"one that does not sets it to 95 %% of what it achieved). (3) Live load again at %.0f events/s: %.0f s with the full "+
		"backlog and Kafka still down (*hold*), then Kafka is restored and the backlog drains under the live load (*drain*: "+
		"until the backlog is below %.0f records), then %.0f s more (*after*). (4) bench waits for the backlog to reach 0, stops "+
		"Sluice and reads the topic back. Every second: VmRSS, RssAnon and VmHWM from `/proc/PID/status`; `go_memstats_heap_inuse_bytes`, "+
		"`sluice_buffer_backlog_records`, `sluice_buffer_disk_bytes` and the ledger from `/metrics`; the ledger "+
		"(received = shipped + dropped + refused + buffered, each summed over its labels) is checked at every scrape.\n\n",
		flags, cfg.LiveRate, cfg.Before.Seconds(), cfg.BuildKind, cfg.BuildConns, cfg.Events, cfg.LiveRate, cfg.Hold.Seconds(),
		cfg.DrainedBelow, cfg.After.Seconds())
	ok, why := backlogVerdict(r)
	if ok {
		p("**PASS**: RSS stayed below %.0f MiB, nothing acknowledged was lost, the ledger balanced at every scrape.\n\n", cfg.RSSLimitMiB)
	} else {
		p("**FAIL**: %s.\n\n", strings.Join(why, "; "))
	}
	rssCell := fmt.Sprintf("%.1f MiB / %.1f MiB", st.RSSMax, st.HWM)
	if st.RSSFail {
		rssCell = "**FAIL** " + rssCell
	} else if len(r.Samples) > 0 {
		rssCell = "PASS " + rssCell
	}
	p("| | |\n|---|---|\n")
	p("| backlog peak | %.0f records |\n", st.BacklogPeak)
	p("| build | %.1f s, %.0f events acknowledged in %d rounds; backlog grew %.0f records/s |\n", st.BuildS, st.BuildAcked, len(r.Rounds), st.BuildRate)
	bytesPer := 0.0
	if st.BacklogPeak > 0 {
		bytesPer = st.DiskPeakBytes / st.BacklogPeak
	}
	p("| WAL on disk, peak | %.2f GiB (%.0f B/record) |\n", st.DiskPeakBytes/(1<<30), bytesPer)
	p("| **RSS max** (sampled VmRSS) / **VmHWM** at the end, limit %.0f MiB | %s |\n", cfg.RSSLimitMiB, rssCell)
	p("| RSS max by phase: before / build / hold / drain / after | %.1f / %.1f / %.1f / %.1f / %.1f MiB |\n", st.RSSBefore, st.RSSBuild, st.RSSHold, st.RSSDrain, st.RSSAfter)
	p("| RssAnon max, Go heap in use max | %.1f MiB, %.1f MiB |\n", st.AnonMax, st.HeapMax)
	p("| drain | %.0f records at the restore; below %.0f after %s |\n", st.BacklogAtStart, cfg.DrainedBelow, orDash(r.Drained, "**%.1f s**", st.DrainS))
	p("| **drain rate**: mean (backlog / drain time), net slope (backlog 90 %%→10 %%), shipped | %s, %s, %s records/s |\n",
		orDash(st.DrainMean > 0, "**%.0f**", st.DrainMean), orDash(st.DrainSlope != 0, "%.0f", st.DrainSlope), orDash(st.ShipRate != 0, "%.0f", st.ShipRate))
	p("| shipping resumed | within %s of the restore (the first 1 s sample with more shipped) |\n", orDash(st.Resumed, "%.1f s", st.ResumedS))
	for _, lp := range st.Live {
		x := lp.Stats
		what := map[string]string{"before": "Kafka healthy, before the outage", "hold": "Kafka down, full backlog",
			"drain": "while the backlog drains", "after": "after the drain"}[lp.Name]
		p("| live p50 / **p99** / p99.9, %s (%d s, %d requests, %d failed) | %s / **%s** / %s ms |\n", what, x.Seconds, x.Answered, x.Failed,
			orDash(x.Answered > 0, "%s", fmtMs(x.P50ms)), orDash(x.Answered > 0, "%s", fmtMs(x.P99ms)), orDash(x.Answered > 0, "%s", fmtMs(x.P999ms)))
	}
	for i, v := range r.Verify {
		name := [...]string{"build", "live"}[min(i, 1)]
		p("| %s events: acked / found / **missing** / duplicates / unacked but found | %d / %d / **%d** / %d / %d |\n", name, v.Acked, v.Found, v.Missing, v.Duplicates, v.UnackedFound)
	}
	if len(r.Verify) > 0 {
		v := r.Verify[0]
		p("| topic read back | %d records, %d foreign, %d dead-lettered, complete: %v, %.1f s |\n", v.Records, v.Foreign, v.DLQRecords, v.Complete, v.ReadS)
	}
	f := r.Final
	if st.LedgerChecked {
		p("| **ledger violations** | **%d** of %d scrapes; at rest: received %.0f = shipped %.0f + dropped %.0f + refused %.0f + buffered %.0f |\n",
			len(r.Violations), r.Checks, f.Received, f.Shipped, f.Dropped, f.Refused, f.Buffered)
	} else {
		p("| ledger | not exported by this Sluice |\n")
	}
	p("| other processes (CPU used by none of Sluice, kfake, the generator) | %.2f cores on average during the build, %.2f in the other phases |\n\n", r.OtherBuild, r.OtherCores)

	if len(r.Rounds) > 0 {
		p("Build rounds (`%s`, %d connections; latency from the intended send time, so an overloaded round's queue in the generator counts):\n\n", cfg.BuildKind, cfg.BuildConns)
		p("| round | offered events/s | acked events/s | p50 ms | p99 ms | failed requests | backlog after |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		for i, br := range r.Rounds {
			x := br.Run.Summary
			p("| %d | %.0f | %.0f | %s | %s | %d | %.0f |\n", i+1, x.OfferedEPS, x.EPS, fmtMs(x.P50ms), fmtMs(x.P99ms), x.Failed(), br.BacklogAfter)
		}
		p("\n")
	}
	var notes []string
	if r.Err != "" {
		notes = append(notes, "error: "+r.Err)
	}
	if len(r.Violations) > 0 {
		v := r.Violations[0]
		notes = append(notes, fmt.Sprintf("first ledger violation at %.1f s (%s): received %.0f, shipped %.0f, dropped %.0f, refused %.0f, buffered %.0f (off by %.0f)",
			v.T, v.Phase, v.Ledger.Received, v.Ledger.Shipped, v.Ledger.Dropped, v.Ledger.Refused, v.Ledger.Buffered, v.Ledger.off()))
	}
	for _, v := range r.Verify {
		if v.Missing > 0 {
			notes = append(notes, fmt.Sprintf("missing sequence numbers, e.g. %v", v.MissingSample))
		}
	}
	notes = append(notes, fmt.Sprintf("kfake failed %d produce requests during the outage", r.FaultHits))
	if len(r.Profiles) > 0 {
		notes = append(notes, "Sluice's heap profiles: `raw/"+strings.Join(r.Profiles, "`, `raw/")+"` (`go tool pprof -top -sample_index=inuse_space FILE`)")
	}
	notes = append(notes, "Sluice after the scenario: "+r.Stop)
	if len(r.Warnings) > 0 {
		notes = append(notes, fmt.Sprintf("Sluice logged %d warning/error lines (raw/sluice-backlog.log), first: `%s`", len(r.Warnings), truncate(r.Warnings[0], 240)))
	}
	for _, n := range notes {
		p("- %s\n", n)
	}
	p("\n![backlog timeline](%s)\n\n", backlogPlot)
}

// backlogChecks are the backlog scenario's lines under Checks.
func backlogChecks(r *backlogResult) []string {
	var out []string
	if r.OtherBuild > 0.2 {
		out = append(out, fmt.Sprintf("scenario backlog: other processes used %.2f cores on average during the build: the machine was not quiet (the build rate is suspect)", r.OtherBuild))
	}
	if r.OtherCores > 0.2 {
		out = append(out, fmt.Sprintf("scenario backlog: other processes used %.2f cores on average outside the build: the machine was not quiet (latency and drain rate are suspect)", r.OtherCores))
	}
	if ok, why := backlogVerdict(r); !ok {
		out = append(out, "scenario backlog FAILED: "+strings.Join(why, "; "))
	}
	return out
}

var (
	colDrain = color.NRGBA{R: 0x1f, G: 0x78, B: 0xb4, A: 0x30} // translucent blue
	colLimit = color.RGBA{R: 0xe3, G: 0x1a, B: 0x1c, A: 0xff}
)

// backlogTimeline plots the backlog scenario: memory, backlog and WAL size,
// ingest and ship rates, live latency; the outage shaded orange, the drain
// blue.
func backlogTimeline(path string, r *backlogResult) error {
	var outage, drain []window
	var xmax float64
	for _, s := range r.Samples {
		xmax = max(xmax, s.T)
	}
	xmax = math.Ceil(xmax + 1)
	if b, ok := r.phaseAt("build"); ok {
		to := r.RestoreT
		if to == 0 {
			to = xmax
		}
		outage = append(outage, window{From: b.From, To: to, Label: "Kafka down (every Produce fails)"})
	}
	if d, ok := r.phaseAt("drain"); ok {
		drain = append(drain, window{From: d.From, To: d.To, Label: "draining under live load"})
	}
	shadeAll := func(p *plot.Plot, lo, hi float64, legend bool) error {
		if err := shade(p, outage, lo, hi, legend); err != nil {
			return err
		}
		for _, w := range drain {
			poly, err := plotter.NewPolygon(plotter.XYs{{X: w.From, Y: lo}, {X: w.To, Y: lo}, {X: w.To, Y: hi}, {X: w.From, Y: hi}})
			if err != nil {
				return err
			}
			poly.Color, poly.LineStyle.Width, poly.LineStyle.Color = colDrain, 0, color.Transparent
			p.Add(poly)
			if legend {
				p.Legend.Add(w.Label, poly)
			}
		}
		return nil
	}

	mem := plot.New()
	mem.Title.Text = fmt.Sprintf("backlog: %.0f records built with Kafka down, drained under %.0f live events/s", r.Config.Events, r.Config.LiveRate)
	mem.Y.Label.Text = "Sluice memory, MiB"
	mem.Add(plotter.NewGrid())
	mem.Legend.Top, mem.Legend.Left = true, true
	var rss, anon, heap plotter.XYs
	mmax := r.Config.RSSLimitMiB
	for _, s := range r.Samples {
		if s.RSSMiB > 0 {
			rss = append(rss, plotter.XY{X: s.T, Y: s.RSSMiB})
			anon = append(anon, plotter.XY{X: s.T, Y: s.AnonMiB})
			mmax = max(mmax, s.RSSMiB)
		}
		if s.Up {
			heap = append(heap, plotter.XY{X: s.T, Y: s.HeapMiB})
		}
	}
	mmax *= 1.2
	if err := shadeAll(mem, 0, mmax, true); err != nil {
		return err
	}
	if r.Config.RSSLimitMiB > 0 {
		if err := addLine(mem, plotter.XYs{{X: 0, Y: r.Config.RSSLimitMiB}, {X: xmax, Y: r.Config.RSSLimitMiB}}, colLimit, dashed, nil,
			fmt.Sprintf("limit %.0f MiB", r.Config.RSSLimitMiB)); err != nil {
			return err
		}
	}
	for _, l := range []struct {
		xys   plotter.XYs
		col   color.Color
		label string
	}{{rss, colP99, "VmRSS"}, {anon, colP999, "RssAnon"}, {heap, colP50, "Go heap in use"}} {
		if err := addLine(mem, l.xys, l.col, nil, nil, l.label); err != nil {
			return err
		}
	}
	mem.Y.Min, mem.Y.Max = 0, mmax

	bl := plot.New()
	bl.Y.Label.Text = "millions / GiB"
	bl.Add(plotter.NewGrid())
	bl.Legend.Top, bl.Legend.Left = true, true
	var backlog, disk plotter.XYs
	bmax := 1.0
	for _, s := range r.Samples {
		if !s.Up {
			continue
		}
		backlog = append(backlog, plotter.XY{X: s.T, Y: s.Backlog / 1e6})
		disk = append(disk, plotter.XY{X: s.T, Y: s.DiskBytes / (1 << 30)})
		bmax = max(bmax, s.Backlog/1e6, s.DiskBytes/(1<<30))
	}
	bmax *= 1.15
	if err := shadeAll(bl, 0, bmax, false); err != nil {
		return err
	}
	if err := addLine(bl, backlog, colFail, nil, nil, "backlog, million records"); err != nil {
		return err
	}
	if err := addLine(bl, disk, colOK, dashed, nil, "WAL on disk, GiB"); err != nil {
		return err
	}
	bl.Y.Min, bl.Y.Max = 0, bmax

	rates := plot.New()
	rates.Y.Label.Text = "events/s"
	rates.Add(plotter.NewGrid())
	rates.Legend.Top, rates.Legend.Left = true, true
	var recv, ship plotter.XYs
	rmax := 1.0
	var prev *backlogSample
	for i := range r.Samples {
		s := &r.Samples[i]
		if !s.Up || !s.Ledger.Has {
			continue
		}
		if prev != nil && s.T > prev.T {
			dt := s.T - prev.T
			a, b := (s.Ledger.Received-prev.Ledger.Received)/dt, (s.Ledger.Shipped-prev.Ledger.Shipped)/dt
			recv = append(recv, plotter.XY{X: s.T, Y: max(a, 0)})
			ship = append(ship, plotter.XY{X: s.T, Y: max(b, 0)})
			rmax = max(rmax, a, b)
		}
		prev = s
	}
	rmax *= 1.15
	if err := shadeAll(rates, 0, rmax, false); err != nil {
		return err
	}
	if err := addLine(rates, recv, colP999, nil, nil, "received by Sluice"); err != nil {
		return err
	}
	if err := addLine(rates, ship, colOK, nil, nil, "shipped to Kafka"); err != nil {
		return err
	}
	rates.Y.Min, rates.Y.Max = 0, rmax

	lat := plot.New()
	lat.Y.Label.Text = "live latency, ms"
	lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, logTicks{}
	lat.Add(plotter.NewGrid())
	lat.Legend.Top, lat.Legend.Left = true, true
	var p50, p99 plotter.XYs
	ymin, ymax := math.Inf(1), 0.0
	for _, run := range []struct {
		r   *openRun
		off float64
	}{{r.Before, r.BeforeStart}, {r.Live, r.LiveStart}} {
		if run.r == nil {
			continue
		}
		for _, s := range run.r.Seconds {
			if s.OK+s.Non2xx == 0 {
				continue
			}
			x := run.off + float64(s.T) + 0.5
			p50 = append(p50, plotter.XY{X: x, Y: max(s.P50ms, 0.01)})
			p99 = append(p99, plotter.XY{X: x, Y: max(s.P99ms, 0.01)})
			ymin, ymax = min(ymin, max(s.P50ms, 0.01)), max(ymax, s.P99ms)
		}
	}
	if len(p99) == 0 {
		ymin, ymax = 0.1, 10
	}
	ylo, yhi := max(ymin/1.5, 0.01), max(ymax*2, ymin*10)
	if err := shadeAll(lat, ylo, yhi, false); err != nil {
		return err
	}
	// Two runs: plot each as its own line (no line across the build).
	for _, q := range []struct {
		xys   plotter.XYs
		col   color.Color
		label string
	}{{p99, colP99, "p99 (per second of intended send time)"}, {p50, colP50, "p50"}} {
		for i, seg := range splitRuns(q.xys) {
			label := q.label
			if i > 0 {
				label = ""
			}
			if err := addLine(lat, seg, q.col, nil, draw.CircleGlyph{}, label); err != nil {
				return err
			}
		}
	}
	lat.Y.Min, lat.Y.Max = ylo, yhi
	lat.X.Label.Text = "seconds since the scenario started"

	for _, p := range []*plot.Plot{mem, bl, rates, lat} {
		p.X.Min, p.X.Max = 0, xmax
		p.Legend.TextStyle.Font.Size = vg.Points(9)
	}
	return savePNG(path, 11*vg.Inch, 12*vg.Inch, [][]*plot.Plot{{mem}, {bl}, {rates}, {lat}})
}

// splitRuns splits points into runs where x increases by at most 5 at a
// time (or is NaN), so two load runs are not joined by a line.
func splitRuns(xys plotter.XYs) []plotter.XYs {
	var out []plotter.XYs
	var cur plotter.XYs
	for _, p := range xys {
		if math.IsNaN(p.X) || (len(cur) > 0 && p.X < cur[len(cur)-1].X) || (len(cur) > 0 && p.X-cur[len(cur)-1].X > 5) {
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur = nil
			if math.IsNaN(p.X) {
				continue
			}
		}
		cur = append(cur, p)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i][0].X < out[j][0].X })
	return out
}
