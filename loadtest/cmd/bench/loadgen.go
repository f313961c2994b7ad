package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/sluice-gateway/sluice/loadtest/internal/loadgenout"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/hist"
	"github.com/sluice-gateway/sluice/loadtest/internal/procstat"
	"github.com/sluice-gateway/sluice/loadtest/internal/sluiceproc"
)

// Lines loadgen prints on stderr at the edges of its measured window.
const (
	markStart = "loadgen: measured window starts"
	markEnd   = "loadgen: measured window ends"
)

// secondLine is one per-second line of "loadgen open".
type secondLine = loadgenout.Second

// openSummary is the summary line of "loadgen open".
type openSummary = loadgenout.OpenSummary

type openArgs struct {
	url, kind                 string
	rate                      float64
	duration, warmup, timeout time.Duration
	conns                     int
	runID, ackedOut           string
	firstRequest              uint64          // loadgen -first-request
	bodies                    int             // loadgen -bodies; 0: its default
	stop                      <-chan struct{} // closed: interrupt loadgen (SIGINT), which then reports what it did
}

// openRun is one "loadgen open" invocation and what bench measured around it.
type openRun struct {
	Summary   openSummary  `json:"loadgen"`
	Seconds   []secondLine `json:"seconds"`
	CPU       cpuUse       `json:"cpu"`
	RSSMaxMiB float64      `json:"server_rss_max_mib"`
	// Wall-clock edges of the measured window as bench saw the markers.
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
}

// windowHooks let a caller act at the edges of loadgen's measured window:
// onStart runs on its own goroutine (it may last the whole window), onEnd
// synchronously; runOpen waits for onStart to return.
type windowHooks struct {
	onStart func()
	onEnd   func()
}

// runOpen runs "loadgen open", measures the server's (serverPID) CPU and RSS
// and the machine's CPU over the measured window, and parses the output.
func runOpen(ctx context.Context, bin string, a openArgs, serverPID int, h windowHooks) (*openRun, error) {
	limit := a.warmup + a.duration + a.timeout + 60*time.Second
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	args := []string{"open", "-url", a.url, "-kind", a.kind,
		"-rate", strconv.FormatFloat(a.rate, 'f', 3, 64),
		"-duration", a.duration.String(), "-warmup", a.warmup.String(), "-timeout", a.timeout.String(),
		"-conns", strconv.Itoa(a.conns)}
	if a.runID != "" {
		args = append(args, "-run-id", a.runID)
	}
	if a.ackedOut != "" {
		args = append(args, "-acked-out", a.ackedOut)
	}
	if a.firstRequest > 0 {
		args = append(args, "-first-request", strconv.FormatUint(a.firstRequest, 10))
	}
	if a.bodies > 0 {
		args = append(args, "-bodies", strconv.Itoa(a.bodies))
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if a.stop != nil {
		exited := make(chan struct{})
		defer close(exited)
		go func() {
			select {
			case <-a.stop:
				cmd.Process.Signal(os.Interrupt)
			case <-exited:
			}
		}()
	}
	r := &openRun{}
	var (
		wg       sync.WaitGroup
		snap0    cpuSnap
		snap1    cpuSnap
		rssMax   float64
		rssMu    sync.Mutex
		stopRSS  = make(chan struct{})
		rssOnce  sync.Once
		endRSS   = func() { rssOnce.Do(func() { close(stopRSS) }) }
		started  bool
		finished bool
	)
	sampleRSS := func() {
		if v, err := procstat.RSS(serverPID); err == nil {
			rssMu.Lock()
			rssMax = max(rssMax, v)
			rssMu.Unlock()
		}
	}
	sluiceproc.ReadLines(stderr, func(line []byte) {
		switch string(bytes.TrimSpace(line)) {
		case markStart:
			started = true
			r.WindowStart = time.Now()
			snap0 = takeCPU(serverPID, cmd.Process.Pid)
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(250 * time.Millisecond)
				defer tick.Stop()
				sampleRSS()
				for {
					select {
					case <-stopRSS:
						return
					case <-tick.C:
						sampleRSS()
					}
				}
			}()
			if h.onStart != nil {
				wg.Add(1)
				go func() { defer wg.Done(); h.onStart() }()
			}
		case markEnd:
			finished = true
			r.WindowEnd = time.Now()
			snap1 = takeCPU(serverPID, cmd.Process.Pid)
			sampleRSS()
			endRSS()
			if h.onEnd != nil {
				h.onEnd()
			}
		default:
			os.Stderr.Write(append(append([]byte("  loadgen: "), line...), '\n'))
		}
	})
	err = cmd.Wait()
	endRSS()
	if started && !finished && h.onEnd != nil {
		h.onEnd()
	}
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("loadgen open: %w", err)
	}
	if !started || !finished {
		return nil, fmt.Errorf("loadgen open did not mark its measured window")
	}
	r.CPU = cpuBetween(snap0, snap1)
	r.RSSMaxMiB = round3(rssMax / (1 << 20))
	if err := parseOpenOutput(out.Bytes(), r); err != nil {
		return nil, err
	}
	return r, nil
}

func parseOpenOutput(b []byte, r *openRun) error {
	var gotSummary bool
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			return fmt.Errorf("loadgen open output: %w", err)
		}
		switch head.Type {
		case "second":
			var s secondLine
			if err := json.Unmarshal(line, &s); err != nil {
				return err
			}
			r.Seconds = append(r.Seconds, s)
		case "summary":
			if err := json.Unmarshal(line, &r.Summary); err != nil {
				return err
			}
			gotSummary = true
		}
	}
	if !gotSummary {
		return fmt.Errorf("loadgen open printed no summary")
	}
	return nil
}

// closedProbe is the result of a short closed-loop "loadgen run": a first
// estimate of a target's capacity that places the open-loop steps.
type closedProbe struct {
	EPS   float64 `json:"eps"`
	RPS   float64 `json:"rps"`
	P99ms float64 `json:"p99_ms"`
}

func runProbe(ctx context.Context, bin, url, kind string, conns int, d time.Duration) (*closedProbe, error) {
	ctx, cancel := context.WithTimeout(ctx, d+40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "-url", url, "-conns", strconv.Itoa(conns),
		"-duration", d.String(), "-warmup", "1s", "-kind", kind, "-timeout", "5s")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("loadgen run: %w", err)
	}
	var p closedProbe
	if err := json.Unmarshal(bytes.TrimSpace(out), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// phaseStats is a stretch of seconds of one loadgen run.
type phaseStats struct {
	Seconds  int     `json:"seconds"`
	Offered  uint64  `json:"offered"`
	OK       uint64  `json:"ok"`
	Failed   uint64  `json:"failed"` // non-2xx, errors, unsent
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	P999ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	Answered uint64  `json:"answered"` // requests with a latency (answers and timeouts)
}

// mergeSeconds merges the latency histograms of the seconds of the schedule
// that overlap [from, to), and sums their counters.
func mergeSeconds(secs []secondLine, from, to float64) phaseStats {
	return mergeSpans(secondSpan{secs: secs, from: from, to: to})
}

// secondSpan is the seconds of one run's schedule that overlap [from, to),
// but those in skip.
type secondSpan struct {
	secs     []secondLine
	from, to float64
	skip     map[int]bool
}

// mergeSpans merges the latency histograms of the seconds of every span (of
// one run or of several: a pooled percentile) and sums their counters.
func mergeSpans(spans ...secondSpan) phaseStats {
	var h hist.Histogram
	var ps phaseStats
	var maxMs float64
	for _, sp := range spans {
		for _, s := range sp.secs {
			if t := float64(s.T); t >= sp.to || t+1 <= sp.from || sp.skip[s.T] {
				continue
			}
			ps.Seconds++
			ps.Offered += s.Offered
			ps.OK += s.OK
			ps.Failed += s.Non2xx + s.Errors + s.Unsent
			h.AddSparse(s.Hist)
			maxMs = max(maxMs, s.MaxMs)
		}
	}
	h.SetMax(time.Duration(maxMs * 1e6))
	ms := func(d time.Duration) float64 { return round3(float64(d) / 1e6) }
	ps.Answered = h.Count()
	ps.P50ms, ps.P99ms, ps.P999ms = ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(99)), ms(h.ValueAtQuantile(99.9))
	ps.MaxMs = maxMs
	return ps
}
