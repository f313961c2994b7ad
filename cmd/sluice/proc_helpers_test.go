package main

// Helpers of the process-level tests: build the sluice binary once, run it as
// a child process, follow its JSON log on stderr, drive HTTP load against it
// and read what reached the embedded Kafka broker.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// sluiceBinary builds the binary once per test run (with -race when the tests
// run with -race, so the child's data races fail the tests too) and returns
// its path. Process-level tests are skipped under -short.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process-level test: builds and runs the sluice binary")
	}
	binOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("go tool not found: %w", err)
			return
		}
		if binDir, binErr = os.MkdirTemp("", "sluice-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sluice")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, goTool, append(args, ".")...).CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		t.Logf("built %s (race=%v) in %v", binPath, raceEnabled, time.Since(t0).Round(time.Millisecond))
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// cleanEnv is the test's environment without SLUICE_* variables, so a
// developer's or CI's settings cannot change what the child does. A
// race-built child skips the race runtime's 1s sleep at exit.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	env = append(env, strings.TrimSpace("GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return append(env, extra...)
}

// logLine is one line of the child's stderr; fields is nil when the line is
// not JSON (a panic, a race report).
type logLine struct {
	raw    string
	fields map[string]any
}

func (l logLine) msg() string { s, _ := l.fields["msg"].(string); return s }

func (l logLine) str(key string) string {
	switch v := l.fields[key].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func (l logLine) uint(t *testing.T, key string) uint64 {
	t.Helper()
	v, ok := l.fields[key].(float64)
	if !ok {
		t.Fatalf("log line has no numeric %q: %s", key, l.raw)
	}
	return uint64(v)
}

// sluiceProc is one running sluice serve child process.
type sluiceProc struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	dataDir string

	mu      sync.Mutex
	lines   []logLine
	changed chan struct{} // closed and replaced whenever a line arrives

	exited chan struct{} // closed once stderr hit EOF and Wait returned
	state  *os.ProcessState
	// Read after exited is closed.
	waitErr error

	public, admin, kafka, instance string
}

// startSluice starts `sluice serve` on dataDir with every listener on a free
// 127.0.0.1 port and JSON logs, and waits until it serves.
func startSluice(t *testing.T, name, dataDir string, extra ...string) *sluiceProc {
	t.Helper()
	t0 := time.Now()
	p := spawnSluice(t, name, dataDir, extra...)
	t.Cleanup(func() {
		if t.Failed() {
			p.dumpLog(150)
		}
	})
	took := p.awaitServing(t0)
	t.Logf("%s: pid %d serving in %v: public %s, admin %s, kafka %s", name, p.cmd.Process.Pid,
		took.Round(time.Millisecond), p.public, p.admin, p.kafka)
	return p
}

// spawnSluice is the first half of startSluice: it starts `sluice serve` on
// dataDir and follows its log, without waiting for it to serve, so a kill
// can land anywhere in startup. awaitServing is the second half.
func spawnSluice(t *testing.T, name, dataDir string, extra ...string) *sluiceProc {
	t.Helper()
	args := append([]string{
		"serve",
		"--listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0",
		"--embedded-kafka-listen", "127.0.0.1:0",
		"--data-dir", dataDir,
		"--log-format", "json",
	}, extra...)
	p := &sluiceProc{
		t:       t,
		name:    name,
		cmd:     exec.Command(sluiceBinary(t), args...),
		dataDir: dataDir,
		changed: make(chan struct{}),
		exited:  make(chan struct{}),
	}
	p.cmd.Env = cleanEnv()
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", name, err)
	}
	go p.readLog(stderr)
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
				t.Errorf("%s: pid %d did not exit after SIGKILL", name, p.cmd.Process.Pid)
			}
		}
	})
	return p
}

// awaitServing waits until a spawned process listens, records its addresses
// and instance id, as startSluice does, and returns the time since spawned.
func (p *sluiceProc) awaitServing(spawned time.Time) time.Duration {
	p.t.Helper()
	listening := p.waitLine(30*time.Second, "listening", nil)
	p.public, p.admin = listening.str("public"), listening.str("admin")
	broker := p.waitLine(5*time.Second, "started the embedded DEVELOPMENT Kafka broker", nil)
	p.kafka = broker.str("addr")
	p.instance = listening.str("instance")
	for _, addr := range []string{p.public, p.admin, p.kafka} {
		if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
			p.t.Fatalf("%s: bound address %q is not on 127.0.0.1", p.name, addr)
		}
	}
	if _, err := uuid.Parse(p.instance); err != nil {
		p.t.Fatalf("%s: instance %q in the log is not a UUID", p.name, p.instance)
	}
	return time.Since(spawned)
}

// readLog follows stderr line by line until EOF, then reaps the child. Wait
// comes after the last read, as os/exec requires for StderrPipe.
func (p *sluiceProc) readLog(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			l := logLine{raw: strings.TrimRight(string(b), "\r\n")}
			if strings.HasPrefix(l.raw, "{") {
				if json.Unmarshal([]byte(l.raw), &l.fields) != nil {
					l.fields = nil
				}
			}
			p.mu.Lock()
			p.lines = append(p.lines, l)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	p.waitErr = p.cmd.Wait()
	p.state = p.cmd.ProcessState
	close(p.exited)
}

// findLine returns the first line whose msg starts with prefix and which
// satisfies match (if given).
func (p *sluiceProc) findLine(prefix string, match func(logLine) bool) (logLine, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if l.fields != nil && strings.HasPrefix(l.msg(), prefix) && (match == nil || match(l)) {
			return l, true
		}
	}
	return logLine{}, false
}

// lineIndex is the position of the first line whose msg starts with prefix, -1 if none.
func (p *sluiceProc) lineIndex(prefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, l := range p.lines {
		if l.fields != nil && strings.HasPrefix(l.msg(), prefix) {
			return i
		}
	}
	return -1
}

// waitLine waits for a log line (see findLine) and fails the test if none
// arrives within timeout or the process exits first.
func (p *sluiceProc) waitLine(timeout time.Duration, prefix string, match func(logLine) bool) logLine {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		if l, ok := p.findLine(prefix, match); ok {
			return l
		}
		select {
		case <-changed:
		case <-p.exited:
			if l, ok := p.findLine(prefix, match); ok {
				return l
			}
			p.t.Fatalf("%s: exited (%v) before logging %q", p.name, p.waitErr, prefix)
		case <-deadline.C:
			p.t.Fatalf("%s: no log line %q within %v", p.name, prefix, timeout)
		}
	}
}

func (p *sluiceProc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: send %v: %v", p.name, sig, err)
	}
}

// waitExit waits for the child to exit and returns its status.
func (p *sluiceProc) waitExit(timeout time.Duration) *os.ProcessState {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("%s: still running %v after the signal", p.name, timeout)
	}
	p.checkNoRace()
	return p.state
}

// stopGracefully sends SIGTERM and requires exit status 0 and the whole
// shutdown sequence in the log. It returns the "shutdown: shipper drained" line.
func (p *sluiceProc) stopGracefully(timeout time.Duration) logLine {
	p.t.Helper()
	t0 := time.Now()
	p.signal(syscall.SIGTERM)
	st := p.waitExit(timeout)
	if st.ExitCode() != 0 {
		p.t.Fatalf("%s: exit status %d after SIGTERM (%v), want 0", p.name, st.ExitCode(), p.waitErr)
	}
	// The steps of the shutdown sequence, in the order they must happen.
	prev, prevMsg := -1, ""
	for _, msg := range []string{
		"shutdown: readiness false",
		"shutdown: listener closed, in-flight requests finished",
		"shutdown: intake drained into the WAL",
		"shutdown: shipper drained",
		"shutdown: kafka producer closed",
		"buffer closed",
		"shutdown: wal and admin closed",
		"shutdown complete",
	} {
		i := p.lineIndex(msg)
		switch {
		case i < 0:
			p.t.Errorf("%s: no %q line in the log after SIGTERM", p.name, msg)
			continue
		case i < prev:
			p.t.Errorf("%s: %q logged before %q", p.name, msg, prevMsg)
		}
		prev, prevMsg = i, msg
	}
	drained, _ := p.findLine("shutdown: shipper drained", nil)
	p.t.Logf("%s: SIGTERM to exit 0 in %v (acked_index %s, backlog %s)", p.name,
		time.Since(t0).Round(time.Millisecond), drained.str("acked_index"), drained.str("backlog"))
	return drained
}

// checkNoRace fails the test if a race-built child reported a data race.
func (p *sluiceProc) checkNoRace() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if strings.Contains(l.raw, "WARNING: DATA RACE") || strings.HasPrefix(l.raw, "panic:") {
			p.t.Errorf("%s: %s (log dumped below)", p.name, l.raw)
			return
		}
	}
}

func (p *sluiceProc) dumpLog(last int) {
	p.mu.Lock()
	lines := p.lines
	p.mu.Unlock()
	from := max(0, len(lines)-last)
	p.t.Logf("%s: last %d of %d stderr lines:", p.name, len(lines)-from, len(lines))
	for _, l := range lines[from:] {
		p.t.Log("  " + l.raw)
	}
}

// get performs a GET on the admin port.
func (p *sluiceProc) get(path string) (int, string) {
	p.t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.admin + path)
	if err != nil {
		p.t.Fatalf("%s: GET %s: %v", p.name, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("%s: GET %s: %v", p.name, path, err)
	}
	return resp.StatusCode, string(b)
}

// metric returns the value of an unlabelled metric line "name value".
func (p *sluiceProc) metric(name string) (float64, bool) {
	p.t.Helper()
	code, body := p.get("/metrics")
	if code != http.StatusOK {
		p.t.Fatalf("%s: /metrics answered %d", p.name, code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// metricSum adds up every series of the metric family name in one scrape body.
func metricSum(body, name string) float64 {
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (len(rest) > 0 && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			if v, err := strconv.ParseFloat(rest[i+1:], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// checkLedger scrapes /metrics once and checks the conservation of events:
// received = shipped + dropped + refused + buffered. It returns the scrape's
// received total.
func (p *sluiceProc) checkLedger() float64 {
	p.t.Helper()
	code, body := p.get("/metrics")
	if code != http.StatusOK {
		p.t.Fatalf("%s: /metrics answered %d", p.name, code)
	}
	for _, family := range []string{"sluice_events_received_total", "sluice_events_shipped_total", "sluice_events_buffered"} {
		if !strings.Contains(body, "\n"+family) {
			p.t.Fatalf("%s: /metrics has no %s", p.name, family)
		}
	}
	received := metricSum(body, "sluice_events_received_total")
	shipped := metricSum(body, "sluice_events_shipped_total")
	dropped := metricSum(body, "sluice_events_dropped_total")
	refused := metricSum(body, "sluice_events_refused_total")
	buffered := metricSum(body, "sluice_events_buffered")
	if received != shipped+dropped+refused+buffered {
		p.t.Errorf("%s: ledger out of balance: received %v != shipped %v + dropped %v + refused %v + buffered %v",
			p.name, received, shipped, dropped, refused, buffered)
	}
	return received
}

// waitBacklogEmpty polls /metrics until the shipper has nothing left to send.
// Nothing reports this in the log, so polling is the only way.
func (p *sluiceProc) waitBacklogEmpty(timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		v, ok := p.metric("sluice_buffer_backlog_records")
		if ok && v == 0 {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: backlog still %v (found=%v) after %v", p.name, v, ok, timeout)
		}
		select {
		case <-tick.C:
		case <-p.exited:
			p.t.Fatalf("%s: exited while waiting for the backlog to drain", p.name)
		}
	}
}

// --- load generation ---------------------------------------------------------

// eventJSON is event n of a run exactly as the client sends it; the gateway
// must put these bytes unchanged into the envelope's payload.
func eventJSON(run string, n int64) string {
	return fmt.Sprintf(`{"type":"t","n":%d,"run":%q,"props":{"page":"/p/%d","label":"café ✓","escaped":"caf\u00e9"}}`, n, run, n%97)
}

// load sends events over keep-alive connections, one connection per worker,
// as single objects, JSON arrays and NDJSON, and records what was acknowledged.
type load struct {
	url  string
	run  string
	next atomic.Int64 // next event number to send

	// shutdown, once closed, says the process is being stopped: from then on
	// connection errors are expected and end a worker.
	shutdown <-chan struct{}
	// exited ends every worker.
	exited <-chan struct{}

	ackedN    atomic.Int64
	milestone int64
	reached   chan struct{}
	reachOnce sync.Once

	mu       sync.Mutex
	acked    map[int64]bool // event number → got 2xx
	sent     int64
	codes    map[int]int
	connErrs int
	lateOK   int // 2xx answered after shutdown began
	late503  int
	bad      []string // responses that break the contract
}

func newLoad(url, run string, shutdown, exited <-chan struct{}) *load {
	return &load{
		url: url, run: run, shutdown: shutdown, exited: exited,
		reached: make(chan struct{}), milestone: -1,
		acked: make(map[int64]bool), codes: make(map[int]int),
	}
}

// reachAcked returns a channel closed once at least n events were acknowledged.
func (l *load) reachAcked(n int64) <-chan struct{} {
	l.milestone = n
	return l.reached
}

// send runs workers until limit events were sent (limit < 0: until the
// process exits, or a connection error after shutdown began) and returns when
// every worker is done.
func (l *load) send(workers int, limit int64) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.worker(w, limit)
		}()
	}
	wg.Wait()
}

func closed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (l *load) worker(w int, limit int64) {
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for req := w; ; req++ {
		if closed(l.exited) {
			return
		}
		mode := req % 3
		k := int64(1)
		if mode != 0 {
			k = 2 + int64(req*7%15)
		}
		first := l.next.Add(k) - k
		if limit >= 0 {
			if first >= limit {
				return
			}
			k = min(k, limit-first)
		}
		evs := make([]string, k)
		for i := range evs {
			evs[i] = eventJSON(l.run, first+int64(i))
		}
		var body, ct string
		switch mode {
		case 0:
			body, ct = evs[0], "application/json"
		case 1:
			body = "[" + strings.Join(evs, ",") + "]"
			ct = "application/json"
			if req%2 == 1 {
				ct = "text/plain;charset=UTF-8" // what navigator.sendBeacon sends for a string
			}
		default:
			body, ct = strings.Join(evs, "\n")+"\n", "application/x-ndjson"
		}
		shuttingDown := closed(l.shutdown)
		status, retryAfter, respBody, err := post(client, l.url, ct, body)
		l.record(first, k, shuttingDown, status, retryAfter, respBody, err)
		if err != nil && closed(l.shutdown) {
			return // the listener is closing or closed, or the process died
		}
	}
}

func post(c *http.Client, url, ct, body string) (int, string, string, error) {
	resp, err := c.Post(url, ct, strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", "", err
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b), nil
}

func (l *load) record(first, k int64, shuttingDown bool, status int, retryAfter, body string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent += k
	switch {
	case err != nil:
		l.connErrs++
		if !closed(l.shutdown) {
			l.bad = append(l.bad, fmt.Sprintf("connection error while serving normally: %v", err))
		}
		return
	case status == http.StatusNoContent:
		for n := first; n < first+k; n++ {
			l.acked[n] = true
		}
		if shuttingDown {
			l.lateOK++
		}
		if a := l.ackedN.Add(k); l.milestone >= 0 && a >= l.milestone {
			l.reachOnce.Do(func() { close(l.reached) })
		}
	case status == http.StatusServiceUnavailable:
		if retryAfter == "" {
			l.bad = append(l.bad, "503 without Retry-After: "+body)
		}
		if closed(l.shutdown) {
			l.late503++
		}
	default:
		// Every event is valid, so 200 (some invalid) is wrong too.
		l.bad = append(l.bad, fmt.Sprintf("status %d: %s", status, body))
	}
	l.codes[status]++
}

// ackedSet is a copy of the acknowledged event numbers.
func (l *load) ackedSet() map[int64]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int64]bool, len(l.acked))
	for n := range l.acked {
		out[n] = true
	}
	return out
}

func (l *load) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("sent %d events, %d acknowledged; responses by status %v; %d connection errors; after shutdown began: %d 2xx, %d 503",
		l.sent, len(l.acked), l.codes, l.connErrs, l.lateOK, l.late503)
}

func (l *load) checkContract(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, b := range l.bad {
		if i == 10 {
			t.Errorf("... and %d more contract violations", len(l.bad)-10)
			break
		}
		t.Errorf("response breaks the contract: %s", b)
	}
}

// --- consuming ---------------------------------------------------------------

type envelope struct {
	ID         string `json:"id"`
	ReceivedAt string `json:"received_at"`
	Type       string `json:"type"`
	Context    struct {
		IP string `json:"ip"`
	} `json:"context"`
	Payload json.RawMessage `json:"payload"`
}

type marker struct {
	Run string `json:"run"`
	N   int64  `json:"n"`
}

// shipped is what the beacons topic holds for one run.
type shipped struct {
	count   map[int64]int // event number → times seen
	total   int           // records of this run
	foreign int           // records of other runs or not ours
}

func (s *shipped) duplicates() int {
	d := 0
	for _, c := range s.count {
		d += c - 1
	}
	return d
}

// consumeBeacons reads the beacons topic from the start until it has every
// event in want and has reached the end offsets the broker reported when the
// call began. Each record of the run is checked with check. Call it once the
// gateway has nothing left to ship, so the end offsets are final.
func consumeBeacons(t *testing.T, broker, run string, want map[int64]bool, timeout time.Duration,
	check func(r *kgo.Record, env *envelope, n int64)) *shipped {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, "beacons")
	adm.Close()
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	end := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of beacons[%d]: %v", o.Partition, o.Err)
		}
		end[o.Partition] = o.Offset
	})

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(broker),
		kgo.ConsumeTopics("beacons"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	s := &shipped{count: map[int64]int{}}
	pos := map[int32]int64{}
	missing := len(want)
	done := func() bool {
		if missing > 0 {
			return false
		}
		for p, e := range end {
			if pos[p] < e {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consuming beacons: %d of %d acknowledged events still missing after %v (positions %v, ends %v)",
				missing, len(want), timeout, pos, end)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s[%d]: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = max(pos[r.Partition], r.Offset+1)
			var env envelope
			var m marker
			if json.Unmarshal(r.Value, &env) != nil || json.Unmarshal(env.Payload, &m) != nil || m.Run != run {
				s.foreign++
				return
			}
			s.total++
			s.count[m.N]++
			if s.count[m.N] == 1 && want[m.N] {
				missing--
			}
			if check != nil {
				check(r, &env, m.N)
			}
		})
	}
	return s
}

// header returns the value of a record header.
func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// checkAllShipped fails the test for every acknowledged event missing from
// Kafka and returns how many there were.
func checkAllShipped(t *testing.T, acked map[int64]bool, s *shipped) {
	t.Helper()
	var missing []int64
	for n := range acked {
		if s.count[n] == 0 {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged events are not in Kafka, e.g. %v", len(missing), len(acked), missing[:min(10, len(missing))])
	}
}
