package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/sluice-gateway/sluice/loadtest/internal/loadgenout"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/fsyncprobe"
	"github.com/sluice-gateway/sluice/loadtest/internal/procstat"
	"github.com/sluice-gateway/sluice/loadtest/internal/promtext"
	"github.com/sluice-gateway/sluice/loadtest/internal/sluiceproc"
)

// Lines "loadgen run" prints on stderr at the edges of its measured window
// (the same strings as in loadgen).
const (
	markStart = "loadgen: measured window starts"
	markEnd   = "loadgen: measured window ends"
)

// loadResult is the JSON line "loadgen run" prints.
type loadResult = loadgenout.Closed

type run struct {
	Round  int             `json:"round"`
	Kind   string          `json:"kind"`
	Target string          `json:"target"`
	Load   loadResult      `json:"-"`
	Raw    json.RawMessage `json:"loadgen"`
	Sluice *sluiceStats    `json:"sluice,omitempty"`
	// Host cores busy in the second before the run, servers idle, and how
	// long compare waited for the host to quieten.
	QuietBefore float64 `json:"host_busy_before"`
	QuietWaitS  float64 `json:"quiet_wait_s"`
}

func (r *run) sluiceSummary() string {
	s := r.Sluice
	if s == nil {
		return ""
	}
	return fmt.Sprintf("  | %.1f rec/fsync  fsync %.2f ms  backlog max %.0f end %.0f  drained in %.1fs",
		s.RecordsPerFsync, s.FsyncMeanMs, s.BacklogMax, s.BacklogEnd, s.DrainS)
}

// loadRun runs "loadgen run" and decodes its result line. onStart and
// onEnd, if set, are called when loadgen announces the edges of its measured
// window; onStart runs on its own goroutine (it may last the whole window),
// loadRun waits for it.
func loadRun(ctx context.Context, c *config, bin, url string, pid int, kind string, duration, warmup time.Duration,
	rn *run, onStart func(), onEnd func()) error {
	ctx, cancel := context.WithTimeout(ctx, warmup+duration+45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "-url", url, "-conns", strconv.Itoa(c.conns),
		"-duration", duration.String(), "-warmup", warmup.String(), "-kind", kind, "-pid", strconv.Itoa(pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	sluiceproc.ReadLines(stderr, func(line []byte) {
		switch string(bytes.TrimSpace(line)) {
		case markStart:
			if onStart != nil {
				wg.Add(1)
				go func() { defer wg.Done(); onStart() }()
			}
		case markEnd:
			if onEnd != nil {
				onEnd()
			}
		default:
			os.Stderr.Write(append(line, '\n'))
		}
	})
	err = cmd.Wait()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("loadgen run: %w", err)
	}
	line := bytes.TrimSpace(out.Bytes())
	rn.Raw = append(json.RawMessage(nil), line...)
	return json.Unmarshal(line, &rn.Load)
}

type sluiceStats struct {
	WindowS         float64 `json:"window_s"`
	GroupCommits    float64 `json:"group_commits"`
	RecordsPerFsync float64 `json:"records_per_fsync"`
	FsyncMeanMs     float64 `json:"fsync_mean_ms"`
	FsyncP99Ms      float64 `json:"fsync_p99_ms"` // the bucket bound holding the 99th percentile
	CommitsPerS     float64 `json:"commits_per_s"`
	AcceptedPerS    float64 `json:"accepted_per_s"`
	AppendedPerS    float64 `json:"wal_appended_per_s"`
	ShippedPerS     float64 `json:"shipped_per_s"`
	Invalid         float64 `json:"invalid"`
	Rejected        float64 `json:"rejected"`
	ShipErrors      float64 `json:"ship_errors"`
	WriteErrors     float64 `json:"wal_write_errors"`
	ProcessCPUs     float64 `json:"process_cpu_s"`
	BacklogMax      float64 `json:"backlog_max"`
	BacklogEnd      float64 `json:"backlog_end"`
	DrainS          float64 `json:"drain_s"`
	Drained         bool    `json:"drained"`
	GoroutinesEnd   float64 `json:"goroutines_end"`
	HandlerP50Ms    float64 `json:"handler_p50_ms"` // sluice_http_request_duration_seconds, bucket bounds
	HandlerP99Ms    float64 `json:"handler_p99_ms"`
	IntakeMax       float64 `json:"intake_queue_max"` // peak of the once-a-second samples
	DiskBytesMax    float64 `json:"wal_disk_bytes_max"`
}

// sluiceRun loads Sluice and scrapes its metrics at the edges of the
// measured window and every second in between (for the backlog's peak), then
// waits for the backlog to drain.
func sluiceRun(ctx context.Context, c *config, bin string, sl *sluiceProc, kind string, rn *run) error {
	if _, err := waitDrained(ctx, sl, c.drainWait); err != nil {
		return fmt.Errorf("before the run: %w", err)
	}
	st := &sluiceStats{}
	var (
		m0, m1       promtext.Metrics
		t0, t1       time.Time
		err0, err1   error
		mu           sync.Mutex // guards BacklogMax between the poller and the end
		windowEnded  = make(chan struct{})
		endedOnce    sync.Once
		closeEnded   = func() { endedOnce.Do(func() { close(windowEnded) }) }
		backlogMax   float64
		intakeMax    float64
		diskMax      float64
		observeLevel = func(m promtext.Metrics) {
			mu.Lock()
			diskMax = max(diskMax, m.Sum("sluice_buffer_disk_bytes"))
			backlogMax = max(backlogMax, m.Sum("sluice_buffer_backlog_records"))
			intakeMax = max(intakeMax, m.Sum("sluice_intake_queue_length"))
			mu.Unlock()
		}
	)
	onStart := func() {
		t0 = time.Now()
		if m0, err0 = scrape(ctx, sl.admin); err0 != nil {
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-windowEnded:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if m, err := scrape(ctx, sl.admin); err == nil {
					observeLevel(m)
				}
			}
		}
	}
	onEnd := func() {
		t1 = time.Now()
		m1, err1 = scrape(ctx, sl.admin)
		closeEnded()
	}
	err := loadRun(ctx, c, bin, "http://"+sl.public+"/v1/beacon", sl.pid, kind, c.duration, c.warmup, rn, onStart, onEnd)
	closeEnded()
	if err != nil {
		return err
	}
	if t0.IsZero() || t1.IsZero() {
		return fmt.Errorf("loadgen did not mark its measured window")
	}
	if err := cmpErr(err0, err1); err != nil {
		return err
	}
	observeLevel(m1)
	win := t1.Sub(t0).Seconds()
	d := func(name string) float64 { return m1.Sum(name) - m0.Sum(name) }
	dl := func(name, labels string) float64 { return m1.Get(name, labels) - m0.Get(name, labels) }
	st.WindowS = round3(win)
	st.GroupCommits = d("sluice_wal_group_commit_records_count")
	if st.GroupCommits > 0 {
		st.RecordsPerFsync = round3(d("sluice_wal_group_commit_records_sum") / st.GroupCommits)
	}
	if n := d("sluice_wal_fsync_duration_seconds_count"); n > 0 {
		st.FsyncMeanMs = round3(d("sluice_wal_fsync_duration_seconds_sum") / n * 1000)
		st.FsyncP99Ms = round3(promtext.BucketQuantile(m0, m1, "sluice_wal_fsync_duration_seconds", 0.99) * 1000)
	}
	st.CommitsPerS = round3(st.GroupCommits / win)
	st.AcceptedPerS = round3(dl("sluice_events_total", `outcome="accepted"`) / win)
	st.Invalid = dl("sluice_events_total", `outcome="invalid"`)
	st.Rejected = dl("sluice_events_total", `outcome="rejected"`)
	st.AppendedPerS = round3(d("sluice_wal_appended_records_total") / win)
	st.ShippedPerS = round3(d("sluice_shipped_records_total") / win)
	st.ShipErrors = d("sluice_ship_errors_total")
	st.WriteErrors = d("sluice_wal_write_errors_total")
	st.ProcessCPUs = round3(d("process_cpu_seconds_total"))
	st.BacklogEnd = m1.Sum("sluice_buffer_backlog_records")
	st.BacklogMax, st.IntakeMax, st.DiskBytesMax = backlogMax, intakeMax, diskMax
	st.HandlerP50Ms = round3(promtext.BucketQuantile(m0, m1, "sluice_http_request_duration_seconds", 0.50) * 1000)
	st.HandlerP99Ms = round3(promtext.BucketQuantile(m0, m1, "sluice_http_request_duration_seconds", 0.99) * 1000)
	st.GoroutinesEnd = m1.Sum("go_goroutines")
	// From the window's end: loadgen's last requests and its exit come first.
	_, err = waitDrained(ctx, sl, c.drainWait)
	st.DrainS, st.Drained = round3(time.Since(t1).Seconds()), err == nil
	rn.Sluice = st
	return nil
}

func cmpErr(start, end error) error {
	if start != nil {
		return fmt.Errorf("scrape at the window's start: %w", start)
	}
	if end != nil {
		return fmt.Errorf("scrape at the window's end: %w", end)
	}
	return nil
}

// waitDrained polls until the shipping backlog is 0 or limit passes.
func waitDrained(ctx context.Context, sl *sluiceProc, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		m, err := scrape(ctx, sl.admin)
		if err != nil {
			return time.Since(start), err
		}
		b := m.Sum("sluice_buffer_backlog_records")
		if b == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return time.Since(start), fmt.Errorf("backlog still %.0f records after %v", b, limit)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type profile struct {
	Seconds int
	Load    loadResult
	Flat    string
	Cum     string
	Shares  []share
	Path    string
}

type share struct {
	Name, Focus string
	Percent     float64
}

// profileGroups are the parts of the process whose share of CPU samples the
// report shows: a sample counts for a group when any frame of its stack
// matches, so groups overlap (the handler's stack holds fasthttp's, ...).
var profileGroups = []share{
	{Name: "HTTP server (fasthttp, incl. handler)", Focus: `valyala/fasthttp\.`},
	{Name: "gateway handler", Focus: `sluice/gateway\.`},
	{Name: "enrichment workers", Focus: `sluice/enrich\.`},
	{Name: "WAL writer (group commit)", Focus: `sluice/buffer\.\(\*Buffer\)\.(writeLoop|commit)`},
	{Name: "shipper", Focus: `sluice/buffer\.\(\*Shipper\)`},
	{Name: "Kafka producer (franz-go kgo)", Focus: `franz-go/pkg/kgo\.`},
	{Name: "zstd compression", Focus: `klauspost/compress`},
	{Name: "embedded broker (kfake)", Focus: `franz-go/pkg/kfake\.`},
	{Name: "encoding/json", Focus: `^encoding/json\.`},
	{Name: "GC (background mark)", Focus: `runtime\.gcBgMarkWorker`},
	{Name: "syscalls", Focus: `^syscall\.|internal/runtime/syscall`},
	{Name: "metrics scrapes", Focus: `prometheus`},
}

var accountingRE = regexp.MustCompile(`Showing nodes accounting for [^,]+, ([0-9.]+)% of`)

// profileSluice takes a CPU profile of Sluice under single-event load. This
// run is not part of the comparison: the profiler costs a little CPU.
func profileSluice(ctx context.Context, c *config, loadgenBin, sluiceBin string, sl *sluiceProc, rawDir string) (*profile, error) {
	if _, err := waitDrained(ctx, sl, c.drainWait); err != nil {
		return nil, err
	}
	p := &profile{Seconds: c.profileSeconds, Path: filepath.Join(rawDir, "sluice-single.cpu.pprof")}
	logf("profiling sluice for %ds under single-event load", c.profileSeconds)
	var profErr error
	rn := &run{}
	err := loadRun(ctx, c, loadgenBin, "http://"+sl.public+"/v1/beacon", sl.pid, "single",
		time.Duration(c.profileSeconds)*time.Second+time.Second, time.Second, rn, func() {
			pctx, cancel := context.WithTimeout(ctx, time.Duration(c.profileSeconds+15)*time.Second)
			defer cancel()
			profErr = sluiceproc.FetchPprof(pctx, sl.admin, fmt.Sprintf("profile?seconds=%d", c.profileSeconds), p.Path)
		}, nil)
	if err != nil {
		return nil, err
	}
	if profErr != nil {
		return nil, fmt.Errorf("fetch profile (is --pprof honoured?): %w", profErr)
	}
	p.Load = rn.Load
	pprof := func(args ...string) (string, error) {
		args = append(append([]string{"tool", "pprof"}, args...), sluiceBin, p.Path)
		out, err := exec.CommandContext(ctx, "go", args...).Output()
		if err != nil {
			return "", fmt.Errorf("go tool pprof %s: %w", strings.Join(args[2:len(args)-2], " "), err)
		}
		return string(out), nil
	}
	top := fmt.Sprintf("-nodecount=%d", c.profileTop)
	if p.Flat, err = pprof("-top", top); err != nil {
		return p, err
	}
	if p.Cum, err = pprof("-top", "-cum", top); err != nil {
		return p, err
	}
	for _, g := range profileGroups {
		out, err := pprof("-top", "-nodecount=1000000", "-focus="+g.Focus)
		if err != nil {
			return p, err
		}
		if m := accountingRE.FindStringSubmatch(out); m != nil {
			g.Percent, _ = strconv.ParseFloat(m[1], 64)
		}
		p.Shares = append(p.Shares, g)
	}
	slices.SortStableFunc(p.Shares, func(a, b share) int {
		switch {
		case a.Percent > b.Percent:
			return -1
		case a.Percent < b.Percent:
			return 1
		}
		return 0
	})
	if _, err := waitDrained(ctx, sl, c.drainWait); err != nil {
		logf("after the profile: %v", err)
	}
	return p, nil
}

// fsyncProbe appends 4 KiB and fsyncs, over and over for d, in dir (the
// data dir's file system): what one group commit costs at best right now.
// Other processes' writes on the same file system show up here.
type fsyncSample struct {
	When      string  `json:"when"`
	N         int     `json:"n"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	PerSecond float64 `json:"per_s"`
}

func fsyncProbe(dir, when string, d time.Duration) (fsyncSample, error) {
	r, err := fsyncprobe.Run(dir, d)
	if err != nil {
		return fsyncSample{}, err
	}
	ms := func(x time.Duration) float64 { return round3(float64(x) / 1e6) }
	return fsyncSample{When: when, N: r.N, P50ms: ms(r.P50), P99ms: ms(r.P99), MaxMs: ms(r.Max),
		PerSecond: round3(r.PerSecond)}, nil
}

// waitQuiet waits, up to limit, until the host is nearly idle between runs
// (the servers are idle then, so whatever is busy is someone else). It
// returns the last sample.
func waitQuiet(ctx context.Context, threshold float64, limit time.Duration) (float64, bool) {
	deadline := time.Now().Add(limit)
	for {
		busy, err := procstat.BusyCores(time.Second)
		if err != nil || busy <= threshold {
			return busy, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return busy, false
		}
	}
}
