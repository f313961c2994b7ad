package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/sluice-gateway/sluice/loadtest/internal/loadgenout"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gateway/sluice/loadtest/internal/hist"
	"github.com/sluice-gateway/sluice/loadtest/internal/procstat"
)

type runConfig struct {
	url          string
	conns        int
	duration     time.Duration
	warmup       time.Duration
	timeout      time.Duration
	kind         string
	pid          int
	bodies       int
	seed         uint64
	contentType  string
	userAgent    string
	allowRemote  bool
	eventsPerReq int // derived from kind
}

// result is the one JSON line "loadgen run" prints.
type result = loadgenout.Closed

func runCmd(args []string) error {
	var c runConfig
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080/v1/beacon", "target URL (http only)")
	fs.IntVar(&c.conns, "conns", 64, "keep-alive connections, one closed-loop goroutine each")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "load before the measured window (not recorded)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "per-request deadline; a request past it counts as error \"timeout\" and its connection is redialled")
	fs.StringVar(&c.kind, "kind", "single", "body: single (one JSON object) or batchN (a JSON array of N objects, e.g. batch20)")
	fs.IntVar(&c.pid, "pid", 0, "server process whose CPU time (utime+stime from /proc/PID/stat) is measured over the window")
	fs.IntVar(&c.bodies, "bodies", 4096, "distinct pre-built bodies, cycled (distinct anonymous_id and path)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed for the generated bodies")
	fs.StringVar(&c.contentType, "content-type", "text/plain;charset=UTF-8", "Content-Type (what navigator.sendBeacon sends for a string)")
	fs.StringVar(&c.userAgent, "user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "User-Agent header")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow a non-loopback target")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if c.eventsPerReq, err = parseKind(c.kind); err != nil {
		return err
	}
	if c.conns < 1 || c.duration <= 0 || c.warmup < 0 || c.timeout <= 0 || c.bodies < 1 {
		return errors.New("-conns, -duration, -timeout and -bodies must be positive, -warmup not negative")
	}
	u, err := url.Parse(c.url)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port/path", c.url)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	if err := checkLoopback(u.Hostname(), c.allowRemote); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, &c, addr, u.Host, u.RequestURI())
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// parseKind returns the events per request of a body kind: single (1) or
// batchN (N).
func parseKind(kind string) (int, error) {
	switch {
	case kind == "single":
		return 1, nil
	case len(kind) > 5 && kind[:5] == "batch":
		n, err := strconv.Atoi(kind[5:])
		if err != nil || n < 1 {
			return 0, fmt.Errorf("-kind %q: want single or batchN with N >= 1", kind)
		}
		return n, nil
	}
	return 0, fmt.Errorf("-kind %q: want single or batchN", kind)
}

func checkLoopback(host string, allowRemote bool) error {
	if allowRemote || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address; pass -allow-remote to load another machine", host)
}

// Lines run prints on stderr when the measured window starts and ends.
const (
	markStart = "loadgen: measured window starts"
	markEnd   = "loadgen: measured window ends"
)

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// worker is one connection's closed loop and its private tallies.
type worker struct {
	hist       hist.Histogram
	status     [600]uint64
	errors     map[string]uint64
	reconnects uint64
}

func run(ctx context.Context, c *runConfig, addr, host, requestURI string) (*result, error) {
	bodies, meanBytes := buildBodies(c.bodies, c.eventsPerReq, c.seed)
	var phase atomic.Int32
	workers := make([]*worker, c.conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{errors: map[string]uint64{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(c, &phase, addr, host, requestURI, bodies, i*len(bodies)/c.conns)
		}()
	}
	interrupted := false
	sleep := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			interrupted = true
		}
	}
	sleep(c.warmup)
	cpu0, err := procCPU(c.pid)
	if err != nil {
		phase.Store(phaseStop)
		wg.Wait()
		return nil, err
	}
	self0, _ := procCPU(os.Getpid())
	host0, _ := procstat.HostBusy()
	t0 := time.Now()
	phase.Store(phaseMeasure)
	// Markers on stderr let a driver (compare) scrape the server's metrics
	// at the window's edges.
	fmt.Fprintln(os.Stderr, markStart)
	if !interrupted {
		sleep(c.duration)
	}
	phase.Store(phaseStop)
	window := time.Since(t0)
	fmt.Fprintln(os.Stderr, markEnd)
	cpu1, err := procCPU(c.pid)
	if err != nil {
		return nil, fmt.Errorf("server process went away during the run: %w", err)
	}
	self1, _ := procCPU(os.Getpid())
	host1, _ := procstat.HostBusy()

	// Every request in flight finishes or hits its deadline.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.timeout + 5*time.Second):
		return nil, errors.New("connections did not stop within the request timeout")
	}

	var h hist.Histogram
	res := &result{
		Target: "http://" + host + requestURI, Kind: c.kind, EventsPerReq: c.eventsPerReq, BodyBytes: meanBytes,
		Conns: c.conns, WarmupS: c.warmup.Seconds(), WindowS: window.Seconds(),
		Status: map[string]uint64{}, Errors: map[string]uint64{}, Interrupted: interrupted,
		HostCores: runtime.NumCPU(),
	}
	for _, w := range workers {
		h.Merge(&w.hist)
		for code, n := range w.status {
			if n == 0 {
				continue
			}
			res.Status[strconv.Itoa(code)] += n
			res.Requests += n
			if code >= 200 && code < 300 {
				res.OKRequests += n
			}
		}
		for k, n := range w.errors {
			res.Errors[k] += n
		}
		res.Reconnects += w.reconnects
	}
	res.Events = res.OKRequests * uint64(c.eventsPerReq)
	secs := window.Seconds()
	res.RPS = float64(res.Requests) / secs
	res.EPS = float64(res.Events) / secs
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.P50ms, res.P90ms = ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(90))
	res.P99ms, res.P999ms = ms(h.ValueAtQuantile(99)), ms(h.ValueAtQuantile(99.9))
	res.MaxMs, res.MeanMs = ms(h.Max()), ms(h.Mean())
	if c.pid > 0 {
		res.ServerPID = c.pid
		res.ServerCPUs = cpu1 - cpu0
		res.ServerCores = res.ServerCPUs / secs
		if res.Events > 0 {
			res.ServerUsPerEv = res.ServerCPUs * 1e6 / float64(res.Events)
		}
	}
	res.LoadgenCPUs = self1 - self0
	if res.Requests > 0 {
		res.LoadgenUsReq = res.LoadgenCPUs * 1e6 / float64(res.Requests)
	}
	res.HostBusyCores = (host1 - host0) / secs
	for _, f := range []*float64{&res.WindowS, &res.RPS, &res.EPS, &res.ServerCPUs, &res.ServerCores,
		&res.ServerUsPerEv, &res.LoadgenCPUs, &res.LoadgenUsReq, &res.HostBusyCores} {
		*f = math.Round(*f*1000) / 1000
	}
	return res, nil
}

func (w *worker) loop(c *runConfig, phase *atomic.Int32, addr, host, requestURI string, bodies [][]byte, next int) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(requestURI)
	req.Header.SetHost(host)
	req.Header.SetContentType(c.contentType)
	req.Header.SetUserAgent(c.userAgent)

	var (
		conn    net.Conn
		dialled bool
		br      *bufio.Reader
		bw      *bufio.Writer
	)
	drop := func() {
		if conn != nil {
			conn.Close()
			conn = nil
		}
	}
	defer drop()
	for phase.Load() != phaseStop {
		if conn == nil {
			var err error
			conn, err = net.DialTimeout("tcp", addr, c.timeout)
			if err != nil {
				if phase.Load() == phaseMeasure {
					w.errors["dial"]++
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if dialled {
				w.reconnects++
			}
			dialled = true
			br, bw = bufio.NewReaderSize(conn, 4096), bufio.NewWriterSize(conn, 16<<10)
		}
		req.SetBodyRaw(bodies[next])
		next = (next + 1) % len(bodies)
		start := time.Now()
		conn.SetDeadline(start.Add(c.timeout))
		err := req.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = resp.Read(br)
		}
		lat := time.Since(start)
		measuring := phase.Load() == phaseMeasure
		if err != nil {
			if measuring {
				w.errors[errorKind(err)]++
			}
			drop()
			continue
		}
		if measuring {
			w.hist.Record(lat)
			code := resp.StatusCode()
			if code < 0 || code >= len(w.status) {
				code = 0
			}
			w.status[code]++
		}
		if resp.ConnectionClose() {
			drop()
		}
	}
}

func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "conn_closed"
	default:
		return "other"
	}
}

// event is one beacon; the field order is the wire order.
type event struct {
	Type        string `json:"type"`
	AnonymousID string `json:"anonymous_id"`
	SentAt      string `json:"sent_at"`
	Mark        string `json:"mark,omitempty"` // loadgen open: run id and sequence number
	Props       props  `json:"props"`
}

type props struct {
	Path        string  `json:"path"`
	Title       string  `json:"title"`
	Referrer    string  `json:"referrer"`
	Screen      string  `json:"screen"`
	Lang        string  `json:"lang"`
	UTMSource   string  `json:"utm_source"`
	UTMCampaign string  `json:"utm_campaign"`
	Price       float64 `json:"price"`
	Items       int     `json:"items"`
}

// buildBodies makes n distinct bodies of perReq events each (an object when
// perReq is 1, else an array of one visitor's events) before the run, so the
// loop itself allocates nothing. props is about 200 bytes of JSON.
func buildBodies(n, perReq int, seed uint64) ([][]byte, int) {
	return buildBodiesMarked(n, perReq, seed, "")
}

// buildBodiesMarked is buildBodies with every event's "mark" field set to
// mark (omitted when empty); the random content is the same for a seed.
func buildBodiesMarked(n, perReq int, seed uint64, mark string) ([][]byte, int) {
	r := rand.New(rand.NewPCG(seed, uint64(perReq)))
	sentAt := time.Now().UTC().Truncate(time.Second)
	sections := []string{"products", "blog", "docs", "cart", "search", "account"}
	out := make([][]byte, n)
	total := 0
	for i := range out {
		anon := fmt.Sprintf("a-%016x", r.Uint64())
		evs := make([]event, perReq)
		for j := range evs {
			sec := sections[r.IntN(len(sections))]
			evs[j] = event{
				Type: "page_view", AnonymousID: anon, SentAt: sentAt.Add(time.Duration(j) * time.Second).Format(time.RFC3339),
				Mark: mark,
				Props: props{
					Path:        fmt.Sprintf("/%s/item-%06d", sec, r.IntN(1000000)),
					Title:       fmt.Sprintf("Item %d | Example Store, %s", r.IntN(100000), sec),
					Referrer:    "https://www.example.com/search?q=" + strconv.Itoa(r.IntN(1e6)),
					Screen:      "1920x1080",
					Lang:        "en-US",
					UTMSource:   "newsletter",
					UTMCampaign: "spring_sale_2026",
					Price:       float64(r.IntN(100000)) / 100,
					Items:       r.IntN(10),
				},
			}
		}
		var b []byte
		var err error
		if perReq == 1 {
			b, err = json.Marshal(evs[0])
		} else {
			b, err = json.Marshal(evs)
		}
		if err != nil {
			panic(err) // plain structs always marshal
		}
		out[i] = b
		total += len(b)
	}
	return out, total / n
}
