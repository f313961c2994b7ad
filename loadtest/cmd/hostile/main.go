// Command hostile measures what hostile clients cost the others: it runs
// `loadgen open` against a Sluice in calm windows and in hostile windows —
// while hostile clients send 50 MB gzip bombs, JSON nested 100 000 deep, 1 MB
// headers and hold 500 slowloris connections — and reports the normal
// clients' latency in every window and the p99 ratio. Loopback only.
//
// A calm p99 of a couple of milliseconds moves a lot from one window to the
// next, so one calm and one hostile window say little. The tool alternates
// them (-rounds): first -control pairs of consecutive calm windows, whose
// ratio is the noise floor, then calm, hostile, calm, hostile, … with a
// -settle pause after the attackers stop. It reports every window, the p99 of
// all calm windows' requests pooled against all hostile ones', and the median
// of the per-round ratios (each hostile window against the calm window just
// before it).
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/hist"
	"github.com/sluice-gateway/sluice/loadtest/internal/loadgenout"
	"github.com/sluice-gateway/sluice/loadtest/internal/procstat"
	"github.com/sluice-gateway/sluice/loadtest/internal/sluiceproc"
	"github.com/sluice-gateway/sluice/loadtest/internal/stats"
)

type config struct {
	addr, loadgen string
	rate          float64
	window        time.Duration
	slowloris     int
	attackRate    float64
	rounds        int
	control       int
	settle        time.Duration
	attacks       []string
	pid           int
	pprofAddr     string // Sluice's admin address, to fetch CPU profiles of the hostile windows
	profileDir    string
}

// allAttacks are the -attacks names, in the order they are started.
var allAttacks = []string{"bomb", "deep", "header", "slowloris"}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:8080", "Sluice's public address (loopback only)")
	flag.StringVar(&c.loadgen, "loadgen", "", "loadgen binary (default: built once from ./loadtest/cmd/loadgen)")
	flag.Float64Var(&c.rate, "rate", 2000, "normal clients' requests per second (single events)")
	flag.DurationVar(&c.window, "duration", 10*time.Second, "each measured window")
	flag.IntVar(&c.slowloris, "slowloris", 500, "slowloris connections held during a hostile window (reopened when the server closes them)")
	flag.Float64Var(&c.attackRate, "attack-rate", 10, "requests per second of each attack (bomb, deep JSON, huge header); 0: as fast as they are answered")
	flag.IntVar(&c.rounds, "rounds", 3, "calm+hostile window pairs")
	flag.IntVar(&c.control, "control", 1, "pairs of consecutive calm windows first, for the calm/calm noise floor")
	flag.DurationVar(&c.settle, "settle", 2*time.Second, "pause after the attackers stop, before the next window")
	attacks := flag.String("attacks", strings.Join(allAttacks, ","), "comma-separated attacks of a hostile window: "+strings.Join(allAttacks, ", "))
	flag.IntVar(&c.pid, "pid", 0, "Sluice's process id, to report its CPU per window (0: not reported)")
	flag.StringVar(&c.pprofAddr, "pprof-addr", "", "Sluice's admin address (loopback, sluice serve --pprof): save a CPU profile of every window to -profile-dir")
	flag.StringVar(&c.profileDir, "profile-dir", ".", "where -pprof-addr profiles (sluice-<window>.pprof) and -cpuprofile go")
	cpuProfile := flag.Bool("cpuprofile", false, "write this tool's own CPU profile (the attackers') to -profile-dir/hostile.pprof")
	flag.Parse()
	if host, _, err := net.SplitHostPort(c.addr); err != nil || (host != "127.0.0.1" && host != "localhost") {
		fmt.Fprintln(os.Stderr, "hostile: -addr must be a 127.0.0.1 address")
		os.Exit(2)
	}
	var err error
	if c.attacks, err = parseAttacks(*attacks); err != nil {
		fmt.Fprintln(os.Stderr, "hostile: -attacks:", err)
		os.Exit(2)
	}
	if c.rounds < 1 || c.control < 0 || c.window <= 0 || c.settle < 0 {
		fmt.Fprintln(os.Stderr, "hostile: -rounds and -duration must be positive, -control and -settle not negative")
		os.Exit(2)
	}
	if c.pprofAddr != "" {
		if host, _, err := net.SplitHostPort(c.pprofAddr); err != nil || (host != "127.0.0.1" && host != "localhost") {
			fmt.Fprintln(os.Stderr, "hostile: -pprof-addr must be a 127.0.0.1 address")
			os.Exit(2)
		}
	}
	if *cpuProfile {
		f, err := os.Create(filepath.Join(c.profileDir, "hostile.pprof"))
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "hostile: -cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(c); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

// parseAttacks validates an -attacks list and returns it without duplicates.
func parseAttacks(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if !slices.Contains(allAttacks, a) {
			return nil, fmt.Errorf("unknown attack %q (want %s)", a, strings.Join(allAttacks, ", "))
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no attack")
	}
	return out, nil
}

// windowPlan is one measured window of the schedule.
type windowPlan struct {
	name    string // "control 1a", "calm 2", "hostile 2"
	hostile bool
	round   int // 1-based; control pairs have their own numbering
	control bool
	second  bool // the second window of a control pair
}

// plan is the schedule: control pairs of calm windows, then rounds of calm, hostile.
func plan(control, rounds int) []windowPlan {
	var p []windowPlan
	for i := 1; i <= control; i++ {
		p = append(p, windowPlan{name: fmt.Sprintf("control %da", i), round: i, control: true},
			windowPlan{name: fmt.Sprintf("control %db", i), round: i, control: true, second: true})
	}
	for i := 1; i <= rounds; i++ {
		p = append(p, windowPlan{name: fmt.Sprintf("calm %d", i), round: i},
			windowPlan{name: fmt.Sprintf("hostile %d", i), round: i, hostile: true})
	}
	return p
}

// result is a measured window.
type result struct {
	windowPlan
	sum         *loadgenout.OpenSummary
	secs        []loadgenout.Second // the measured seconds (warm-up excluded)
	attackerCPU float64             // this process's CPU seconds during the window
	sluiceCPU   float64             // -pid's, or -1
	attackers   string              // what the hostile clients got back
}

func run(c config) error {
	if c.loadgen == "" {
		dir, err := os.MkdirTemp("", "hostile-loadgen")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.loadgen = filepath.Join(dir, "loadgen")
		build := exec.Command("go", "build", "-o", c.loadgen, "./loadtest/cmd/loadgen")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build loadgen: %w", err)
		}
	}
	reqs, err := attackRequests()
	if err != nil {
		return err
	}
	var results []result
	for _, w := range plan(c.control, c.rounds) {
		r := result{windowPlan: w, sluiceCPU: -1}
		cpu0, scpu0 := selfCPU(), sluiceCPU(c.pid)
		var h *hostiles
		var stop func()
		if w.hostile {
			h, stop = startHostiles(c, reqs)
		}
		profiled := make(chan error, 1)
		if c.pprofAddr != "" {
			// loadgen warms up for a second, then measures the window.
			go func() {
				profiled <- fetchProfile(c.pprofAddr, c.window, filepath.Join(c.profileDir, "sluice-"+strings.ReplaceAll(w.name, " ", "-")+".pprof"))
			}()
		} else {
			profiled <- nil
		}
		sum, secs, err := measure(c.addr, c.loadgen, c.rate, c.window)
		if perr := <-profiled; perr != nil {
			fmt.Fprintf(os.Stderr, "hostile: %s: profile: %v\n", w.name, perr)
		}
		if stop != nil {
			stop()
			r.attackers = h.summary()
		}
		if err != nil {
			return fmt.Errorf("%s window: %w", w.name, err)
		}
		r.sum, r.secs = sum, secs
		r.attackerCPU = selfCPU() - cpu0
		if scpu0 >= 0 {
			if s := sluiceCPU(c.pid); s >= 0 {
				r.sluiceCPU = s - scpu0
			}
		}
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "hostile: %s: p99 %.2f ms\n", w.name, sum.P99ms)
		if w.hostile && c.settle > 0 {
			time.Sleep(c.settle)
		}
	}
	fmt.Printf("Normal clients: %.0f single events/s over 64 connections, %s windows; attacks: %s",
		c.rate, c.window, strings.Join(c.attacks, ", "))
	if c.attackRate > 0 {
		fmt.Printf(" (%g requests/s each", c.attackRate)
	} else {
		fmt.Printf(" (back to back")
	}
	if slices.Contains(c.attacks, "slowloris") {
		fmt.Printf(", %d slowloris connections", c.slowloris)
	}
	fmt.Printf(").\n\n")
	printReport(os.Stdout, results)
	return nil
}

// printReport writes the windows table and the summary table.
func printReport(w io.Writer, results []result) {
	fmt.Fprintf(w, "| window | normal requests | failed | p50 ms | p99 ms | p99.9 ms | loadgen CPU s | attackers CPU s | sluice CPU s |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		sl := "–"
		if r.sluiceCPU >= 0 {
			sl = fmt.Sprintf("%.2f", r.sluiceCPU)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", r.name, r.sum.Sent, r.sum.Failed(),
			r.sum.P50ms, r.sum.P99ms, r.sum.P999ms, r.sum.LoadgenCPUs, r.attackerCPU, sl)
	}
	s := summarize(results)
	fmt.Fprintf(w, "\n| measure | value |\n|---|---:|\n")
	fmt.Fprintf(w, "| pooled p99, calm windows (%d) | %.2f ms |\n", s.calmWindows, s.calmP99)
	fmt.Fprintf(w, "| pooled p99, hostile windows (%d) | %.2f ms |\n", s.hostileWindows, s.hostileP99)
	fmt.Fprintf(w, "| pooled p99 hostile / calm | %.2f |\n", s.pooledRatio)
	fmt.Fprintf(w, "| median per-round p99 hostile / calm (%s) | **%.2f** |\n", fmtRatios(s.roundRatios), s.medianRatio)
	if len(s.controlRatios) > 0 {
		fmt.Fprintf(w, "| control: p99 calm / calm (%s) | %.2f |\n", fmtRatios(s.controlRatios), s.controlRatio)
	}
	fmt.Fprintln(w)
	for _, r := range results {
		if r.attackers != "" {
			fmt.Fprintf(w, "%s, hostile clients: %s\n", r.name, r.attackers)
		}
	}
}

func fmtRatios(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(parts, ", ")
}

type summary struct {
	calmWindows, hostileWindows int
	calmP99, hostileP99         float64 // ms, of the pooled requests
	pooledRatio                 float64
	roundRatios                 []float64 // hostile i / calm i
	medianRatio                 float64
	controlRatios               []float64 // control ib / control ia
	controlRatio                float64   // their median
}

// summarize pools the windows' latency histograms by kind and computes the
// per-round and control ratios of their p99s.
func summarize(results []result) summary {
	var s summary
	var calm, hostile hist.Histogram
	var calmMax, hostileMax float64
	calmOf := map[int]float64{}
	controlA := map[int]float64{}
	for _, r := range results {
		h, mx, n := &calm, &calmMax, &s.calmWindows
		if r.hostile {
			h, mx, n = &hostile, &hostileMax, &s.hostileWindows
		}
		*n++
		for _, sec := range r.secs {
			h.AddSparse(sec.Hist)
			*mx = max(*mx, sec.MaxMs)
		}
		switch {
		case r.control && !r.second:
			controlA[r.round] = r.sum.P99ms
		case r.control:
			if a := controlA[r.round]; a > 0 {
				s.controlRatios = append(s.controlRatios, r.sum.P99ms/a)
			}
		case r.hostile:
			if c := calmOf[r.round]; c > 0 {
				s.roundRatios = append(s.roundRatios, r.sum.P99ms/c)
			}
		default:
			calmOf[r.round] = r.sum.P99ms
		}
	}
	calm.SetMax(time.Duration(calmMax * 1e6))
	hostile.SetMax(time.Duration(hostileMax * 1e6))
	s.calmP99 = float64(calm.ValueAtQuantile(99)) / 1e6
	s.hostileP99 = float64(hostile.ValueAtQuantile(99)) / 1e6
	if s.calmP99 > 0 {
		s.pooledRatio = s.hostileP99 / s.calmP99
	}
	s.medianRatio = median(s.roundRatios)
	s.controlRatio = median(s.controlRatios)
	return s
}

// median is stats.Median, 0 for none (no control windows).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return stats.Median(xs)
}

// fetchProfile saves a CPU profile of Sluice over the window (after
// loadgen's one-second warm-up) to path.
func fetchProfile(admin string, window time.Duration, path string) error {
	time.Sleep(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), window+10*time.Second)
	defer cancel()
	return sluiceproc.FetchPprof(ctx, admin, fmt.Sprintf("profile?seconds=%d", max(1, int(window.Seconds()))), path)
}

// selfCPU is this process's user+system CPU seconds (the attackers' cost:
// loadgen is a child and counts its own).
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func sluiceCPU(pid int) float64 {
	if pid <= 0 {
		return -1
	}
	s, err := procstat.CPU(pid)
	if err != nil {
		return -1
	}
	return s
}

// measure runs loadgen open for one window and returns its summary and its
// measured seconds.
func measure(addr, loadgen string, rate float64, window time.Duration) (*loadgenout.OpenSummary, []loadgenout.Second, error) {
	args := []string{"open", "-url", "http://" + addr + "/v1/beacon", "-rate", fmt.Sprint(rate),
		"-duration", window.String(), "-conns", "64"}
	cmd := exec.Command(loadgen, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("loadgen: %w", err)
	}
	return parseLoadgen(out)
}

// parseLoadgen reads loadgen open's output: the summary line and the
// measured (not warm-up) seconds.
func parseLoadgen(out []byte) (*loadgenout.OpenSummary, []loadgenout.Second, error) {
	var secs []loadgenout.Second
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var typ struct{ Type string }
		if json.Unmarshal(sc.Bytes(), &typ) != nil {
			continue
		}
		switch typ.Type {
		case "second":
			var s loadgenout.Second
			if json.Unmarshal(sc.Bytes(), &s) == nil && !s.Warmup {
				secs = append(secs, s)
			}
		case "summary":
			var s loadgenout.OpenSummary
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				return nil, nil, err
			}
			return &s, secs, nil
		}
	}
	return nil, nil, errors.New("loadgen printed no summary")
}

// requests are the attacks' requests, built once: a hostile window must cost
// the attacker a dial and a write per request, not a rebuild.
type requests struct {
	bomb, deep, header []byte
}

func attackRequests() (*requests, error) {
	bomb, err := gzipBomb(50 << 20)
	if err != nil {
		return nil, err
	}
	deep := []byte(strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000))
	return &requests{bomb: bombRequest(bomb), deep: jsonRequest(deep), header: hugeHeaderRequest(1 << 20)}, nil
}

// startHostiles starts the -attacks; stop ends them and waits until they have.
func startHostiles(c config, reqs *requests) (*hostiles, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hostiles{rate: c.attackRate}
	var wg sync.WaitGroup
	for _, a := range c.attacks {
		switch a {
		case "slowloris":
			for range c.slowloris {
				wg.Go(func() { h.slowloris(ctx, c.addr) })
			}
		case "bomb":
			wg.Go(func() { h.repeat(ctx, c.addr, "bomb", reqs.bomb) })
		case "deep":
			wg.Go(func() { h.repeat(ctx, c.addr, "deep", reqs.deep) })
		case "header":
			wg.Go(func() { h.repeat(ctx, c.addr, "header", reqs.header) })
		}
	}
	return h, func() { cancel(); wg.Wait() }
}

type hostiles struct {
	rate     float64 // requests per second of each attack; 0: back to back
	mu       sync.Mutex
	statuses map[string]int // "bomb 413" → count
	closed   atomic.Int64   // slowloris connections the server closed
}

func (h *hostiles) count(kind, outcome string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.statuses == nil {
		h.statuses = map[string]int{}
	}
	h.statuses[kind+" "+outcome]++
}

func (h *hostiles) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var parts []string
	for k, v := range h.statuses {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ") + fmt.Sprintf("; slowloris connections closed by the server (and reopened): %d", h.closed.Load())
}

// repeat sends req on fresh connections until ctx ends, counting answers.
func (h *hostiles) repeat(ctx context.Context, addr, kind string, req []byte) {
	var tick <-chan time.Time
	if h.rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / h.rate))
		defer t.Stop()
		tick = t.C
	}
	var d net.Dialer
	buf := make([]byte, 512)
	for ctx.Err() == nil {
		if tick != nil {
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				h.count(kind, "dial error")
			}
			continue
		}
		unhook := context.AfterFunc(ctx, func() { c.Close() })
		c.SetDeadline(time.Now().Add(15 * time.Second))
		go c.Write(req) // the server may answer before it has read everything
		// The status line fits in the first read; no bufio.Reader per request.
		n, err := io.ReadAtLeast(c, buf, len("HTTP/1.1 200"))
		switch {
		case ctx.Err() != nil:
		case err != nil:
			h.count(kind, "closed")
		default:
			h.count(kind, statusOf(buf[:n]))
		}
		unhook()
		c.Close()
	}
}

// statusOf is the status code of an answer's first bytes, or "?".
func statusOf(b []byte) string {
	if f := strings.Fields(string(b[:min(len(b), 16)])); len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
		return f[1]
	}
	return "?"
}

// slowloris holds a connection that trickles a header byte every second;
// when the server closes it, it opens another, until ctx ends.
func (h *hostiles) slowloris(ctx context.Context, addr string) {
	var d net.Dialer
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if h.trickle(ctx, c) {
			h.closed.Add(1)
		}
		c.Close()
	}
}

// trickle reports whether the server closed c before ctx ended.
func (h *hostiles) trickle(ctx context.Context, c net.Conn) bool {
	if _, err := c.Write([]byte("POST /v1/beacon HTTP/1.1\r\nHost: x\r\n")); err != nil {
		return ctx.Err() == nil
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			if _, err := c.Write([]byte("X")); err != nil {
				return true
			}
		}
	}
}

func gzipBomb(size int) ([]byte, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := io.CopyN(zw, zeros{}, int64(size)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func bombRequest(body []byte) []byte {
	return append([]byte(fmt.Sprintf("POST /v1/beacon HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Encoding: gzip\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))), body...)
}

func jsonRequest(body []byte) []byte {
	return append([]byte(fmt.Sprintf("POST /v1/beacon HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))), body...)
}

func hugeHeaderRequest(n int) []byte {
	return []byte("POST /v1/beacon HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("c", n) +
		"\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"type\":\"a\"}")
}
