package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/sluice-gateway/sluice/loadtest/internal/loadgenout"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gateway/sluice/loadtest/internal/hist"
	"github.com/sluice-gateway/sluice/loadtest/internal/procstat"
)

// openConfig is "loadgen open": an open-loop generator. Requests are due at
// fixed intended times (rate per second, evenly spaced); a pacer releases
// each one at its time to a pool of keep-alive connections, and its latency
// is measured from the intended time, so a stalled server cannot slow the
// offered load down and hide the stall (coordinated omission).
type openConfig struct {
	url          string
	rate         float64
	duration     time.Duration
	warmup       time.Duration
	conns        int
	timeout      time.Duration
	kind         string
	contentType  string
	userAgent    string
	bodies       int
	seed         uint64
	runID        string
	firstRequest uint64
	ackedOut     string
	lateAfter    time.Duration
	stopGrace    time.Duration
	pacer        string
	allowRemote  bool
	eventsPerReq int
}

// openSecond is one per-second line of "loadgen open".
type openSecond = loadgenout.Second

// openResult is the summary line of "loadgen open".
type openResult = loadgenout.OpenSummary

var runIDRE = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)

func openCmd(args []string) error {
	var c openConfig
	fs := flag.NewFlagSet("open", flag.ContinueOnError)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080/v1/beacon", "target URL (http only)")
	fs.Float64Var(&c.rate, "rate", 1000, "offered requests per second (evenly spaced intended send times)")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "measured window")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "load at the same rate before the window (sent, not counted in the summary)")
	fs.IntVar(&c.conns, "conns", 256, "keep-alive connections in the pool (one request in flight each)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "per-request deadline from its send; past it the request counts as error \"timeout\"")
	fs.StringVar(&c.kind, "kind", "single", "body: single (one JSON object) or batchN (a JSON array of N objects)")
	fs.StringVar(&c.contentType, "content-type", "auto", "Content-Type; auto: text/plain;charset=UTF-8 for single (sendBeacon), application/json for batches (an SDK's fetch)")
	fs.StringVar(&c.userAgent, "user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "User-Agent header")
	fs.IntVar(&c.bodies, "bodies", 4096, "distinct body templates, cycled (each request gets fresh marks)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed for the generated bodies")
	fs.StringVar(&c.runID, "run-id", "", "marker prefix: every event carries \"mark\":\"<run-id>-<12-digit sequence>\" (default: random)")
	fs.Uint64Var(&c.firstRequest, "first-request", 0, "number the requests from this one: request i's event j carries sequence (first-request+i)*N+j, so consecutive runs with one -run-id have distinct marks (-acked-out stays indexed from 0)")
	fs.StringVar(&c.ackedOut, "acked-out", "", "write a bitmap of the requests answered 2xx (bit i = request i, little-endian uint64 words) to this file")
	fs.DurationVar(&c.lateAfter, "late-after", time.Millisecond, "a request that waits longer than this for a free connection counts as late")
	fs.DurationVar(&c.stopGrace, "stop-grace", 50*time.Millisecond, "after the schedule's end, requests not sent within this long count as unsent")
	fs.StringVar(&c.pacer, "pacer", "auto", "thread: one pacer thread (nanosleep, 1 ns timer slack) releases each request to the pool, ~0.1 ms late; timer: each connection takes the next request and sleeps until it is due on Go's timers: cheaper per request, but up to ~1 ms late while the process is idle; auto: thread below 10000 requests/s, timer from there")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow a non-loopback target")
	cpuProfile := fs.String("cpuprofile", "", "write the generator's own CPU profile here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	if c.eventsPerReq, err = parseKind(c.kind); err != nil {
		return err
	}
	if c.contentType == "auto" {
		c.contentType = "text/plain;charset=UTF-8"
		if c.eventsPerReq > 1 {
			c.contentType = "application/json"
		}
	}
	if c.runID == "" {
		c.runID = fmt.Sprintf("%08x", rand32())
	}
	if !runIDRE.MatchString(c.runID) {
		return fmt.Errorf("-run-id %q: want 1 to 32 letters or digits", c.runID)
	}
	if c.rate <= 0 || c.duration <= 0 || c.warmup < 0 || c.conns < 1 || c.timeout <= 0 || c.bodies < 1 {
		return errors.New("-rate, -duration, -conns, -timeout and -bodies must be positive, -warmup not negative")
	}
	switch c.pacer {
	case "auto":
		c.pacer = "thread"
		if c.rate >= 10000 {
			c.pacer = "timer"
		}
	case "thread", "timer":
	default:
		return fmt.Errorf("-pacer %q: want auto, thread or timer", c.pacer)
	}
	if c.warmup%time.Second != 0 {
		return errors.New("-warmup must be whole seconds (the per-second lines are split at it)")
	}
	if slots := c.rate * (c.warmup + c.duration).Seconds(); slots > 1<<26 {
		return fmt.Errorf("%.0f requests in one schedule is too many (at most %d)", slots, 1<<26)
	}
	if last := (float64(c.firstRequest) + c.rate*(c.warmup+c.duration).Seconds() + 1) * float64(c.eventsPerReq); last >= 1e12 {
		return fmt.Errorf("-first-request %d: sequence numbers would pass %d digits", c.firstRequest, markDigits)
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
	o := newOpenRun(&c, addr, u.Host, u.RequestURI())
	res, secs, err := o.run(ctx)
	if err != nil {
		return err
	}
	if c.ackedOut != "" {
		if err := o.writeAcked(c.ackedOut); err != nil {
			return err
		}
	}
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	for i := range secs {
		enc.Encode(&secs[i])
	}
	enc.Encode(res)
	return w.Flush()
}

func rand32() uint32 {
	var b [4]byte
	if f, err := os.Open("/dev/urandom"); err == nil {
		f.Read(b[:])
		f.Close()
	}
	return binary.LittleEndian.Uint32(b[:]) ^ uint32(time.Now().UnixNano())
}

// markDigits is the width of the sequence number in a mark.
const markDigits = 12

// markedBody is a body template and the offsets of its events' sequence
// digits: request i's event j gets sequence i*eventsPerReq+j.
type markedBody struct {
	body []byte
	offs []int
}

func buildMarkedBodies(n, perReq int, seed uint64, runID string) ([]markedBody, int) {
	placeholder := runID + "-" + string(bytes.Repeat([]byte{'0'}, markDigits))
	raw, mean := buildBodiesMarked(n, perReq, seed, placeholder)
	needle := []byte(`"mark":"` + runID + "-")
	out := make([]markedBody, n)
	for i, b := range raw {
		mb := markedBody{body: b}
		for from := 0; ; {
			k := bytes.Index(b[from:], needle)
			if k < 0 {
				break
			}
			off := from + k + len(needle)
			mb.offs = append(mb.offs, off)
			from = off + markDigits
		}
		if len(mb.offs) != perReq {
			panic(fmt.Sprintf("body %d has %d marks, want %d", i, len(mb.offs), perReq))
		}
		out[i] = mb
	}
	return out, mean
}

// putSeq writes v as markDigits decimal digits, zero-padded.
func putSeq(dst []byte, v uint64) {
	for i := markDigits - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
}

// parseSeq reads the sequence number of a mark's digits.
func parseSeq(b []byte) (uint64, bool) {
	if len(b) < markDigits {
		return 0, false
	}
	var v uint64
	for _, c := range b[:markDigits] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

type secondStats struct {
	hist, lag                              hist.Atomic
	sent, ok, non2xx, errors, late, unsent atomic.Uint64
}

type openRun struct {
	c                      *openConfig
	addr, host, requestURI string
	bodies                 []markedBody
	meanBytes              int

	start     time.Time
	slots     int64 // requests due over the whole schedule
	warmSlots int64 // requests due in the warm-up
	secs      []secondStats
	window    hist.Atomic // latency over the measured window
	lag       hist.Atomic // send lag over the measured window
	acked     []atomic.Uint64
	stop      atomic.Bool
	ch        chan int64   // -pacer thread: released requests
	next      atomic.Int64 // -pacer timer: the next request to take
	released  int64        // requests released; set when the pacer returns

	mu         sync.Mutex
	status     map[int]uint64
	errs       map[string]uint64
	reconnects uint64
}

func newOpenRun(c *openConfig, addr, host, requestURI string) *openRun {
	o := &openRun{c: c, addr: addr, host: host, requestURI: requestURI,
		status: map[int]uint64{}, errs: map[string]uint64{}}
	o.bodies, o.meanBytes = buildMarkedBodies(c.bodies, c.eventsPerReq, c.seed, c.runID)
	total := c.warmup + c.duration
	o.slots = slotsBefore(c.rate, total)
	o.warmSlots = slotsBefore(c.rate, c.warmup)
	o.secs = make([]secondStats, int(math.Ceil(total.Seconds())))
	o.acked = make([]atomic.Uint64, (o.slots+63)/64)
	return o
}

// slotsBefore is the number of requests whose intended time is before d:
// request i is due at i/rate seconds.
func slotsBefore(rate float64, d time.Duration) int64 {
	n := int64(math.Ceil(d.Seconds()*rate - 1e-9))
	return max(n, 0)
}

// intended is request i's offset from the schedule's start.
func (o *openRun) intended(i int64) time.Duration {
	return time.Duration(float64(i) * 1e9 / o.c.rate)
}

func (o *openRun) second(i int64) *secondStats {
	s := int(o.intended(i) / time.Second)
	return &o.secs[min(s, len(o.secs)-1)]
}

func (o *openRun) run(ctx context.Context) (*openResult, []openSecond, error) {
	c := o.c
	if c.pacer == "thread" {
		o.ch = make(chan int64, o.slots)
	} else {
		o.ch = make(chan int64)
	}
	// Dial the pool before the schedule starts.
	conns := make([]net.Conn, c.conns)
	var dialWG sync.WaitGroup
	for i := range conns {
		dialWG.Add(1)
		go func() {
			defer dialWG.Done()
			conns[i], _ = net.DialTimeout("tcp", o.addr, c.timeout)
		}()
	}
	dialWG.Wait()

	o.start = time.Now().Add(20 * time.Millisecond)
	end := o.start.Add(c.warmup + c.duration)
	var wg sync.WaitGroup
	pacerDone := make(chan struct{})
	take := func() (int64, bool, bool) {
		i, ok := <-o.ch
		return i, time.Since(o.start.Add(o.intended(i))) > c.lateAfter, ok
	}
	if c.pacer == "timer" {
		take = o.takeTimed
		close(pacerDone)
	} else {
		go func() {
			defer close(pacerDone)
			o.pace(ctx)
		}()
	}
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.worker(conns[i], take)
		}()
	}

	interrupted := false
	sleepUntil := func(t time.Time) {
		select {
		case <-time.After(time.Until(t)):
		case <-ctx.Done():
			interrupted = true
		}
	}
	sleepUntil(o.start.Add(c.warmup))
	self0, _ := procCPU(os.Getpid())
	host0, _ := procstat.HostBusy()
	t0 := time.Now()
	fmt.Fprintln(os.Stderr, markStart)
	if !interrupted {
		sleepUntil(end)
	}
	window := time.Since(t0)
	fmt.Fprintln(os.Stderr, markEnd)
	self1, _ := procCPU(os.Getpid())
	host1, _ := procstat.HostBusy()
	if !interrupted {
		sleepUntil(end.Add(c.stopGrace))
	}
	o.stop.Store(true)
	<-pacerDone
	if c.pacer == "timer" { // the pacer's channel is not used
		close(o.ch)
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.timeout + 5*time.Second):
		return nil, nil, errors.New("connections did not stop within the request timeout")
	}
	if c.pacer == "timer" {
		o.released = min(o.next.Load(), o.slots)
	}
	for i := o.released; i < o.slots; i++ { // never released (the pacer was stopped)
		o.second(i).unsent.Add(1)
	}

	res := &openResult{
		Type: "summary", Target: "http://" + o.host + o.requestURI, Kind: c.kind, ContentType: c.contentType,
		EventsPerReq: c.eventsPerReq, BodyBytes: o.meanBytes, RunID: c.runID, FirstRequest: c.firstRequest, Pacer: c.pacer, Rate: c.rate, Conns: c.conns,
		StartUnixNs: o.start.UnixNano(), WarmupS: c.warmup.Seconds(), WindowS: window.Seconds(),
		Slots: uint64(o.slots), Offered: uint64(o.slots - o.warmSlots),
		Status: map[string]uint64{}, Errors: map[string]uint64{}, Reconnects: o.reconnects,
		HostCores: runtime.NumCPU(), Interrupted: interrupted,
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	warmSecs := int(c.warmup / time.Second)
	secs := make([]openSecond, len(o.secs))
	for t := range o.secs {
		s := &o.secs[t]
		h := s.hist.Snapshot()
		lo := slotsBefore(c.rate, time.Duration(t)*time.Second)
		hi := min(slotsBefore(c.rate, time.Duration(t+1)*time.Second), o.slots)
		secs[t] = openSecond{
			Type: "second", T: t, Warmup: t < warmSecs, Offered: uint64(max(hi-lo, 0)),
			Sent: s.sent.Load(), OK: s.ok.Load(), Non2xx: s.non2xx.Load(), Errors: s.errors.Load(),
			Late: s.late.Load(), Unsent: s.unsent.Load(),
			P50ms: ms(h.ValueAtQuantile(50)), P90ms: ms(h.ValueAtQuantile(90)), P99ms: ms(h.ValueAtQuantile(99)),
			P999ms: ms(h.ValueAtQuantile(99.9)), MaxMs: ms(h.Max()), Hist: h.Sparse(),
			LagP99ms: ms(s.lag.Snapshot().ValueAtQuantile(99)),
		}
		if t >= warmSecs {
			res.Sent += secs[t].Sent
			res.OKRequests += secs[t].OK
			res.Non2xx += secs[t].Non2xx
			res.ErrorsN += secs[t].Errors
			res.Late += secs[t].Late
			res.Unsent += secs[t].Unsent
		}
	}
	for code, n := range o.status {
		res.Status[strconv.Itoa(code)] = n
	}
	for k, n := range o.errs {
		res.Errors[k] = n
	}
	res.Events = res.OKRequests * uint64(c.eventsPerReq)
	h := o.window.Snapshot()
	res.P50ms, res.P90ms = ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(90))
	res.P99ms, res.P999ms = ms(h.ValueAtQuantile(99)), ms(h.ValueAtQuantile(99.9))
	res.MaxMs, res.MeanMs = ms(h.Max()), ms(h.Mean())
	l := o.lag.Snapshot()
	res.LagP50ms, res.LagP99ms, res.LagMaxMs = ms(l.ValueAtQuantile(50)), ms(l.ValueAtQuantile(99)), ms(l.Max())
	nominal := c.duration.Seconds()
	res.OfferedRPS = float64(res.Offered) / nominal
	res.OfferedEPS = res.OfferedRPS * float64(c.eventsPerReq)
	res.RPS = float64(res.OKRequests) / nominal
	res.EPS = float64(res.Events) / nominal
	res.LoadgenCPUs = self1 - self0
	res.HostBusyCores = (host1 - host0) / window.Seconds()
	for _, f := range []*float64{&res.WindowS, &res.OfferedRPS, &res.OfferedEPS, &res.RPS, &res.EPS,
		&res.LoadgenCPUs, &res.HostBusyCores} {
		*f = math.Round(*f*1000) / 1000
	}
	return res, secs, nil
}

// minTick is the shortest sleep of the pacer: requests are released at most
// this much (plus the kernel's wake-up latency) after their intended time.
const minTick = 50 * time.Microsecond

// pace releases every request to the pool at its intended time. It sleeps
// with nanosleep on a locked thread with a 1 ns timer slack: Go's own timers
// wake up to a millisecond late when the process is idle (the netpoller
// waits in whole milliseconds), which would be counted as latency.
func (o *openRun) pace(ctx context.Context) {
	var next int64
	defer func() {
		o.released = next
		close(o.ch)
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const prSetTimerslack = 29
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, 1, 0)
	for next < o.slots {
		if ctx.Err() != nil || o.stop.Load() {
			return
		}
		now := time.Since(o.start)
		for next < o.slots && o.intended(next) <= now {
			o.ch <- next // never blocks: the channel holds every slot
			next++
		}
		if next >= o.slots {
			return
		}
		// At least minTick between wake-ups: at high rates each wake-up
		// releases a few requests instead of costing a syscall each.
		d := o.intended(next) - time.Since(o.start)
		ts := syscall.NsecToTimespec(int64(min(max(d, minTick), 100*time.Millisecond)))
		syscall.Nanosleep(&ts, nil)
	}
}

// takeTimed is the timer pacer: the caller gets the next request and sleeps
// until it is due. late: the request was already more than -late-after
// overdue when a connection became free to take it.
func (o *openRun) takeTimed() (i int64, late, ok bool) {
	if o.stop.Load() {
		return 0, false, false
	}
	i = o.next.Add(1) - 1
	if i >= o.slots {
		return 0, false, false
	}
	d := time.Until(o.start.Add(o.intended(i)))
	if d > 0 {
		time.Sleep(d)
	}
	return i, -d > o.c.lateAfter, true
}

// worker is one connection. take returns the next request, whether it had
// to wait for a free connection (late), and false when the schedule is over.
func (o *openRun) worker(conn net.Conn, take func() (int64, bool, bool)) {
	c := o.c
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(o.requestURI)
	req.Header.SetHost(o.host)
	req.Header.SetContentType(c.contentType)
	req.Header.SetUserAgent(c.userAgent)

	status := map[int]uint64{}
	errs := map[string]uint64{}
	var reconnects uint64
	defer func() {
		o.mu.Lock()
		for k, n := range status {
			o.status[k] += n
		}
		for k, n := range errs {
			o.errs[k] += n
		}
		o.reconnects += reconnects
		o.mu.Unlock()
	}()

	var br *bufio.Reader
	var bw *bufio.Writer
	if conn != nil {
		br, bw = bufio.NewReaderSize(conn, 4096), bufio.NewWriterSize(conn, 16<<10)
	}
	drop := func() {
		if conn != nil {
			conn.Close()
			conn = nil
		}
	}
	defer drop()
	buf := make([]byte, 0, 16<<10)
	for {
		i, late, ok := take()
		if !ok {
			return
		}
		s := o.second(i)
		measuring := i >= o.warmSlots
		if o.stop.Load() {
			s.unsent.Add(1)
			continue
		}
		intended := o.start.Add(o.intended(i))
		if late {
			s.late.Add(1)
		}
		fail := func(kind string) {
			s.errors.Add(1)
			if measuring {
				errs[kind]++
			}
		}
		if conn == nil {
			var err error
			conn, err = net.DialTimeout("tcp", o.addr, c.timeout)
			if err != nil {
				conn = nil
				fail("dial")
				continue
			}
			reconnects++
			br, bw = bufio.NewReaderSize(conn, 4096), bufio.NewWriterSize(conn, 16<<10)
		}
		mb := &o.bodies[int(i%int64(len(o.bodies)))]
		buf = append(buf[:0], mb.body...)
		seq := o.firstSeq(i)
		for j, off := range mb.offs {
			putSeq(buf[off:off+markDigits], seq+uint64(j))
		}
		req.SetBodyRaw(buf)
		sendAt := time.Now()
		if !late { // the generator's own lag, when a connection was free
			lag := sendAt.Sub(intended)
			s.lag.Record(lag)
			if measuring {
				o.lag.Record(lag)
			}
		}
		s.sent.Add(1)
		conn.SetDeadline(sendAt.Add(c.timeout))
		err := req.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = resp.Read(br)
		}
		lat := time.Since(intended)
		if err != nil {
			kind := errorKind(err)
			if kind == "timeout" {
				s.hist.Record(lat)
				if measuring {
					o.window.Record(lat)
				}
			}
			fail(kind)
			drop()
			continue
		}
		s.hist.Record(lat)
		if measuring {
			o.window.Record(lat)
		}
		code := resp.StatusCode()
		if code >= 200 && code < 300 {
			s.ok.Add(1)
			o.acked[i/64].Or(1 << (i % 64))
		} else {
			s.non2xx.Add(1)
		}
		if measuring {
			status[code]++
		}
		if resp.ConnectionClose() {
			drop()
		}
	}
}

// firstSeq is the sequence number of request i's first event.
func (o *openRun) firstSeq(i int64) uint64 {
	return (o.c.firstRequest + uint64(i)) * uint64(o.c.eventsPerReq)
}

// writeAcked writes the 2xx bitmap: bit i of word i/64 is request i.
func (o *openRun) writeAcked(path string) error {
	b := make([]byte, 8*len(o.acked))
	for i := range o.acked {
		binary.LittleEndian.PutUint64(b[8*i:], o.acked[i].Load())
	}
	return os.WriteFile(path, b, 0o644)
}
