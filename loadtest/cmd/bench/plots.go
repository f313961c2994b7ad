package main

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	colP50   = color.RGBA{R: 0x1b, G: 0x9e, B: 0x77, A: 0xff} // green
	colP99   = color.RGBA{R: 0xd9, G: 0x5f, B: 0x02, A: 0xff} // orange
	colP999  = color.RGBA{R: 0x75, G: 0x70, B: 0xb3, A: 0xff} // purple
	colMax   = color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}
	colOK    = color.RGBA{R: 0x1f, G: 0x78, B: 0xb4, A: 0xff}
	colFail  = color.RGBA{R: 0xe3, G: 0x1a, B: 0x1c, A: 0xff}
	colShade = color.NRGBA{R: 0xff, G: 0xa5, B: 0x00, A: 0x50} // translucent orange
	dashed   = []vg.Length{vg.Points(5), vg.Points(3)}
)

// writePlots writes latency-vs-rate-<kind>.png for every body kind and
// timeline-<scenario>.png for every scenario, and returns their file names.
func writePlots(dir string, res *results) ([]string, error) {
	var names []string
	var errs []error
	for _, kind := range kindsOf(res) {
		name := "latency-vs-rate-" + kind + ".png"
		if err := latencyVsRate(filepath.Join(dir, name), res, kind); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		names = append(names, name)
	}
	for _, sr := range res.Scenarios {
		if sr.Run == nil {
			continue
		}
		name := "timeline-" + sr.Spec.Name + ".png"
		if err := timeline(filepath.Join(dir, name), sr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		names = append(names, name)
	}
	if r := res.Backlog; r != nil && len(r.Samples) > 0 {
		if err := backlogTimeline(filepath.Join(dir, backlogPlot), r); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", backlogPlot, err))
		} else {
			names = append(names, backlogPlot)
		}
	}
	return names, errors.Join(errs...)
}

// logTicks labels 1, 2 and 5 times powers of ten, with k and M suffixes.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for m := 1; m < 10; m++ {
			v := base * float64(m)
			if v < lo*0.999 || v > hi*1.001 {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = shortNum(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, dash []vg.Length, glyph draw.GlyphDrawer, label string) error {
	if len(xys) == 0 {
		return nil
	}
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.LineStyle.Color, l.LineStyle.Width, l.LineStyle.Dashes = c, vg.Points(1.6), dash
	s.GlyphStyle.Color, s.GlyphStyle.Radius = c, vg.Points(2.8)
	if glyph != nil {
		s.GlyphStyle.Shape = glyph
	}
	p.Add(l, s)
	if label != "" {
		p.Legend.Add(label, l, s)
	}
	return nil
}

// latencyVsRate plots p50/p99/p99.9 against the offered events/s for
// Sluice (solid) and the no-op server (dashed), both axes logarithmic.
func latencyVsRate(path string, res *results, kind string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency vs offered load, %s (open loop, from the intended send time)", kind)
	p.X.Label.Text = "offered events/s"
	p.Y.Label.Text = "latency, ms"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = logTicks{}, logTicks{}
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	xmin, xmax, ymin, ymax := math.Inf(1), 0.0, math.Inf(1), 0.0
	for _, target := range []string{"sluice", "noop"} {
		se := res.find(kind, target)
		if se == nil || len(se.Steps) == 0 {
			continue
		}
		steps := append([]*step(nil), se.Steps...)
		sort.Slice(steps, func(i, j int) bool { return steps[i].Rate < steps[j].Rate })
		dash, glyph, name := []vg.Length(nil), draw.GlyphDrawer(draw.CircleGlyph{}), "Sluice"
		var halfMark plot.Thumbnailer
		if target == "noop" {
			dash, glyph, name = dashed, draw.TriangleGlyph{}, "no-op"
		}
		for _, q := range []struct {
			label string
			col   color.Color
			f     func(*openSummary) float64
		}{
			{"p50", colP50, func(s *openSummary) float64 { return s.P50ms }},
			{"p99", colP99, func(s *openSummary) float64 { return s.P99ms }},
			{"p99.9", colP999, func(s *openSummary) float64 { return s.P999ms }},
		} {
			var xys, half plotter.XYs
			for _, st := range steps {
				x, y := st.Run.Summary.OfferedEPS, math.Max(q.f(&st.Run.Summary), 0.01)
				if st.Purpose == "half" {
					half = append(half, plotter.XY{X: x, Y: y})
				} else {
					xys = append(xys, plotter.XY{X: x, Y: y})
				}
				xmin, xmax, ymin, ymax = math.Min(xmin, x), math.Max(xmax, x), math.Min(ymin, y), math.Max(ymax, y)
			}
			if err := addLine(p, xys, q.col, dash, glyph, name+" "+q.label); err != nil {
				return err
			}
			if len(half) > 0 { // the longer step at 50 % of saturation: a square, not on the line
				sc, err := plotter.NewScatter(half)
				if err != nil {
					return err
				}
				sc.GlyphStyle.Color, sc.GlyphStyle.Radius, sc.GlyphStyle.Shape = q.col, vg.Points(4.5), draw.BoxGlyph{}
				if target == "noop" {
					sc.GlyphStyle.Shape = draw.SquareGlyph{}
				}
				p.Add(sc)
				if q.label == "p99" {
					halfMark = sc
				}
			}
		}
		if halfMark != nil {
			p.Legend.Add(fmt.Sprintf("%s at 50 %% of saturation (%.0f s step)", name, half50Secs(se)), halfMark)
		}
		if sat := se.saturation(); sat != nil {
			x := sat.Run.Summary.OfferedEPS
			l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 1e-3}, {X: x, Y: 1e6}})
			if err != nil {
				return err
			}
			l.LineStyle.Color, l.LineStyle.Width = color.Gray{Y: 0x60}, vg.Points(1)
			l.LineStyle.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
			if target == "noop" {
				l.LineStyle.Dashes = []vg.Length{vg.Points(6), vg.Points(2), vg.Points(1), vg.Points(2)}
			}
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("%s saturation (%.0f events/s)", name, sat.Run.Summary.EPS), l)
		}
	}
	if xmax == 0 {
		return errors.New("no steps to plot")
	}
	p.X.Min, p.X.Max = xmin/1.3, xmax*1.3
	p.Y.Min, p.Y.Max = math.Max(ymin/1.5, 0.01), ymax*3
	return savePNG(path, 11*vg.Inch, 6.5*vg.Inch, [][]*plot.Plot{{p}})
}

func half50Secs(se *series) float64 {
	if h := se.half(); h != nil {
		return h.Run.Summary.WindowS
	}
	return 0
}

// shade adds a translucent rectangle over each fault window.
func shade(p *plot.Plot, wins []window, ylo, yhi float64, legend bool) error {
	for _, w := range wins {
		poly, err := plotter.NewPolygon(plotter.XYs{{X: w.From, Y: ylo}, {X: w.To, Y: ylo}, {X: w.To, Y: yhi}, {X: w.From, Y: yhi}})
		if err != nil {
			return err
		}
		poly.Color = colShade
		poly.LineStyle.Width = 0
		poly.LineStyle.Color = color.Transparent
		p.Add(poly)
		if legend {
			p.Legend.Add(w.Label, poly)
		}
	}
	return nil
}

// timeline plots a scenario second by second: latency percentiles (by
// intended send second), acknowledged and failed requests, and Sluice's
// backlog, with the fault window shaded.
func timeline(path string, sr *scenarioResult) error {
	secs := sr.Run.Seconds
	xmax := sr.Spec.Duration.Seconds()
	for _, s := range sr.Samples {
		xmax = math.Max(xmax, s.T)
	}
	xmax = math.Ceil(xmax + 1)

	lat := plot.New()
	lat.Title.Text = fmt.Sprintf("%s: %s, %.0f events/s", sr.Spec.Name, sr.Spec.Title, sr.Rate)
	lat.Y.Label.Text = "latency, ms"
	lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, logTicks{}
	lat.Add(plotter.NewGrid())
	lat.Legend.Top = true
	ymin, ymax := math.Inf(1), 0.0
	var p50, p99, mx plotter.XYs
	for _, s := range secs {
		if s.OK+s.Non2xx == 0 && len(s.Hist) == 0 {
			continue
		}
		x := float64(s.T) + 0.5
		p50 = append(p50, plotter.XY{X: x, Y: math.Max(s.P50ms, 0.01)})
		p99 = append(p99, plotter.XY{X: x, Y: math.Max(s.P99ms, 0.01)})
		mx = append(mx, plotter.XY{X: x, Y: math.Max(s.MaxMs, 0.01)})
		ymin, ymax = math.Min(ymin, math.Max(s.P50ms, 0.01)), math.Max(ymax, s.MaxMs)
	}
	if len(p50) == 0 {
		ymin, ymax = 0.1, 10
	}
	ylo, yhi := math.Max(ymin/1.5, 0.01), math.Max(ymax*2, ymin*10)
	if err := shade(lat, sr.Windows, ylo, yhi, true); err != nil {
		return err
	}
	for _, l := range []struct {
		xys   plotter.XYs
		col   color.Color
		label string
	}{{mx, colMax, "max"}, {p99, colP99, "p99"}, {p50, colP50, "p50"}} {
		if err := addLine(lat, l.xys, l.col, nil, draw.CircleGlyph{}, l.label); err != nil {
			return err
		}
	}
	lat.Y.Min, lat.Y.Max = ylo, yhi

	reqs := plot.New()
	reqs.Y.Label.Text = "requests/s"
	reqs.Add(plotter.NewGrid())
	reqs.Legend.Top = true
	var ok, failed plotter.XYs
	var rmax float64
	for _, s := range secs {
		x := float64(s.T) + 0.5
		f := float64(s.Non2xx + s.Errors + s.Unsent)
		ok = append(ok, plotter.XY{X: x, Y: float64(s.OK)})
		failed = append(failed, plotter.XY{X: x, Y: f})
		rmax = math.Max(rmax, math.Max(float64(s.OK), f))
	}
	rmax = math.Max(rmax*1.15, 1)
	if err := shade(reqs, sr.Windows, 0, rmax, false); err != nil {
		return err
	}
	if err := addLine(reqs, ok, colOK, nil, nil, "2xx (acknowledged)"); err != nil {
		return err
	}
	if err := addLine(reqs, failed, colFail, nil, nil, "failed (errors, non-2xx, unsent)"); err != nil {
		return err
	}
	reqs.Y.Min, reqs.Y.Max = 0, rmax

	bl := plot.New()
	bl.X.Label.Text = "seconds since the load started (by intended send time; Sluice metrics by scrape time)"
	bl.Y.Label.Text = "records"
	bl.Add(plotter.NewGrid())
	bl.Legend.Top = true
	var backlog, shipped plotter.XYs
	var bmax float64
	for i, s := range sr.Samples {
		if !s.Up {
			continue
		}
		backlog = append(backlog, plotter.XY{X: s.T, Y: s.Backlog})
		bmax = math.Max(bmax, s.Backlog)
		if i > 0 && sr.Samples[i-1].Up {
			prev := sr.Samples[i-1]
			if dt := s.T - prev.T; dt > 0 && s.Shipped >= prev.Shipped {
				r := (s.Shipped - prev.Shipped) / dt
				shipped = append(shipped, plotter.XY{X: s.T, Y: r})
				bmax = math.Max(bmax, r)
			}
		}
	}
	bmax = math.Max(bmax*1.15, 1)
	if err := shade(bl, sr.Windows, 0, bmax, false); err != nil {
		return err
	}
	if err := addLine(bl, backlog, colFail, nil, nil, "Sluice backlog (WAL records not yet acked by Kafka)"); err != nil {
		return err
	}
	if err := addLine(bl, shipped, colOK, dashed, nil, "shipped to Kafka per second"); err != nil {
		return err
	}
	bl.Y.Min, bl.Y.Max = 0, bmax

	cpu := plot.New()
	cpu.Y.Label.Text = "CPU cores"
	cpu.Add(plotter.NewGrid())
	cpu.Legend.Top = true
	var hostC, sluiceC, otherC plotter.XYs
	cmax := 2.0
	for _, s := range sr.Samples {
		if !s.HasCPU {
			continue
		}
		x := s.T - 0.5 // the second before the sample
		hostC = append(hostC, plotter.XY{X: x, Y: s.HostCores})
		sluiceC = append(sluiceC, plotter.XY{X: x, Y: s.SluiceCores})
		lg := 0.0
		if s.T <= sr.Spec.Duration.Seconds()+0.5 {
			lg = sr.Run.CPU.LoadgenCores
		}
		otherC = append(otherC, plotter.XY{X: x, Y: math.Max(0, s.HostCores-s.SluiceCores-s.HarnessCores-lg)})
		cmax = math.Max(cmax, s.HostCores)
	}
	cmax *= 1.1
	if err := shade(cpu, sr.Windows, 0, cmax, false); err != nil {
		return err
	}
	if err := addLine(cpu, hostC, colMax, nil, nil, "whole machine (busy)"); err != nil {
		return err
	}
	if err := addLine(cpu, sluiceC, colOK, nil, nil, "Sluice"); err != nil {
		return err
	}
	if err := addLine(cpu, otherC, colFail, dashed, nil, "other processes (not Sluice, bench/kfake or the generator)"); err != nil {
		return err
	}
	cpu.Y.Min, cpu.Y.Max = 0, cmax
	bl.X.Label.Text = ""
	cpu.X.Label.Text = "seconds since the load started (latency and requests by intended send time; Sluice's metrics and CPU by sample time)"

	for _, p := range []*plot.Plot{lat, reqs, bl, cpu} {
		p.X.Min, p.X.Max = 0, xmax
		p.Legend.TextStyle.Font.Size = vg.Points(9)
	}
	return savePNG(path, 11*vg.Inch, 12*vg.Inch, [][]*plot.Plot{{lat}, {reqs}, {bl}, {cpu}})
}

// savePNG draws a grid of plots (rows of columns) into one PNG.
func savePNG(path string, w, h vg.Length, rows [][]*plot.Plot) error {
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(rows), Cols: len(rows[0]), PadX: vg.Points(4), PadY: vg.Points(8),
		PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8)}
	canvases := plot.Align(rows, tiles, dc)
	for i, row := range rows {
		for j, p := range row {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
