package main

// The crash test of issue #4: kill -9 at random moments under load, restart on
// the same data dir each time, and prove that every event a client got a 2xx
// for reaches Kafka (duplicates allowed, counted and bounded).

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// crashIterationsDefault is the "20 or more". CI runs them all:
	// with -race on 2 shared cores the whole test takes about 20 s.
	crashIterationsDefault = 20
	// crashLoadWorkers is the number of keep-alive connections sending at once.
	crashLoadWorkers = 4
	// crashCheckpointInterval is short so that kills land in the middle of a
	// checkpoint save and restarts resume from the middle of the WAL.
	crashCheckpointInterval = "100ms"
)

// crashPlan is what the seeded RNG decided for one iteration.
type crashPlan struct {
	// beforeReady: kill during startup (opening and repairing the WAL,
	// reloading the embedded broker), without load, at startupShare times the
	// last measured startup time after the spawn. Startup takes tens of
	// milliseconds, and more with -race, so a share of the measured time
	// lands inside it where a fixed range would mostly miss.
	beforeReady  bool
	startupShare float64
	// afterReady is the time from readiness to the kill, under load.
	afterReady time.Duration
}

// planCrash draws one iteration's kill moment: one time in four during
// startup (a share up to 1.2: sometimes just after it), otherwise 50 ms to
// 1.5 s after readiness, which spans the first checkpoint intervals, the
// catch-up on the previous backlog and steady state.
func planCrash(rng *rand.Rand) crashPlan {
	if rng.IntN(4) == 0 {
		return crashPlan{beforeReady: true, startupShare: 1.2 * rng.Float64()}
	}
	return crashPlan{afterReady: 50*time.Millisecond + time.Duration(rng.Int64N(int64(1450*time.Millisecond)))}
}

// firstStartupGuess stands in for the startup time before one was measured.
const firstStartupGuess = 50 * time.Millisecond

// crashIteration is what one process lifetime did and left behind.
type crashIteration struct {
	proc         *sluiceProc
	plan         crashPlan
	ready        bool          // it logged "listening" before the kill
	killAfter    time.Duration // from the spawn (beforeReady) or from readiness
	first, next  int64         // event numbers [first, next) were sent in it
	acked        map[int64]bool
	bufferOpened bool      // it logged "buffer opened" before the kill
	opened       walOpened // valid if bufferOpened
	repairs      int       // "wal tail repaired" lines in its log
	readyAfter   time.Duration
	took         time.Duration
}

// walOpened is the "buffer opened" log line: where a start found the WAL.
type walOpened struct {
	first, last, acked uint64
}

// crashSeed is SLUICE_CRASH_SEED if set, so a failing run can be replayed
// (the kill moments, not the scheduler), else a fresh seed.
func crashSeed(t *testing.T) uint64 {
	t.Helper()
	s := os.Getenv("SLUICE_CRASH_SEED")
	if s == "" {
		return uint64(time.Now().UnixNano())
	}
	seed, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("SLUICE_CRASH_SEED=%q: %v", s, err)
	}
	return seed
}

// crashIterations is SLUICE_CRASH_ITERATIONS if set, else the default.
func crashIterations(t *testing.T) int {
	t.Helper()
	if s := os.Getenv("SLUICE_CRASH_ITERATIONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SLUICE_CRASH_ITERATIONS=%q: want a positive integer", s)
		}
		return n
	}
	return crashIterationsDefault
}

// TestProcessCrashLoop: kill -9 at random moments (during startup, under
// steady load, around checkpoints), restart on the same data dir each time;
// every restart must come up ready, and in the end every event that got a
// 2xx in any iteration must be in Kafka. Duplicates are counted, reported per
// iteration and bounded by what the restarts found past their checkpoint.
func TestProcessCrashLoop(t *testing.T) {
	sluiceBinary(t) // skips under -short; builds before the clock starts
	seed, iterations := crashSeed(t), crashIterations(t)
	t.Logf("crash loop: %d iterations, seed %d (replay the kill moments with SLUICE_CRASH_SEED=%d)", iterations, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	dir := t.TempDir()
	run := randomRun()
	var procs []*sluiceProc
	t.Cleanup(func() { dumpCrashLogs(t, procs) })
	t0 := time.Now()

	var its []*crashIteration
	var next int64
	startup := firstStartupGuess
	for i := range iterations {
		it := runCrashIteration(t, fmt.Sprintf("crash-%02d", i), dir, planCrash(rng), startup, run, next)
		its = append(its, it)
		procs = append(procs, it.proc)
		next = it.next
		if !it.plan.beforeReady {
			startup = it.readyAfter
		}
		checkRestart(t, i, its)
		t.Logf("iteration %2d: %s", i, it.describe())
	}
	loopTook := time.Since(t0)

	spawned := time.Now()
	final := spawnSluice(t, "final", dir, "--checkpoint-interval", crashCheckpointInterval)
	procs = append(procs, final)
	t.Logf("final start: ready after %v", final.awaitServing(spawned).Round(time.Millisecond))
	finalOpened := openedLine(t, final)
	checkFinalStart(t, its, final, finalOpened)
	checkSameInstance(t, procs)
	final.waitBacklogEmpty(60 * time.Second)
	checkRepairMetric(t, final)

	acked := map[int64]bool{}
	for _, it := range its {
		for n := range it.acked {
			acked[n] = true
		}
	}
	if len(acked) == 0 {
		t.Fatalf("no event was acknowledged in %d iterations; the test proved nothing", iterations)
	}
	env := newEnvelopeChecker(t, run, final.instance, t0, t0.Add(loopTook))
	copies := newCopyChecker(t)
	// The backlog is empty, so the end offsets are final: read up to them
	// rather than wait for every acknowledged event, so that lost events are
	// reported per iteration below instead of as a consumer timeout.
	s := consumeBeacons(t, final.kafka, run, nil, 60*time.Second, func(r *kgo.Record, e *envelope, n int64) {
		env.check(r, e, n)
		copies.check(r, e, n)
	})
	checkAllShipped(t, acked, s)
	reportCrashLoop(t, its, s, finalOpened)
	checkDuplicateBound(t, its, finalOpened, s)
	checkQuarantine(t, dir, its, final)
	final.stopGracefully(60 * time.Second)
	t.Logf("crash loop wall time %v (iterations %v)", time.Since(t0).Round(time.Millisecond), loopTook.Round(time.Millisecond))
}

// runCrashIteration starts sluice on dir, kills it with SIGKILL as planned and
// returns what happened. Events are numbered from first on.
// startup is the last measured time from spawn to readiness.
func runCrashIteration(t *testing.T, name, dir string, plan crashPlan, startup time.Duration, run string, first int64) *crashIteration {
	t.Helper()
	t0 := time.Now()
	p := spawnSluice(t, name, dir, "--checkpoint-interval", crashCheckpointInterval)
	it := &crashIteration{proc: p, plan: plan, first: first, next: first, acked: map[int64]bool{}}
	if plan.beforeReady {
		it.killAfter = time.Duration(plan.startupShare * float64(startup))
		killDuringStartup(t, p, it.killAfter)
		_, it.ready = p.findLine("listening", nil)
	} else {
		it.readyAfter = p.awaitServing(t0)
		it.ready = true
		if code, body := p.get("/readyz"); code != http.StatusOK {
			t.Errorf("%s: /readyz answered %d %q after listening", name, code, body)
		}
		it.killAfter = plan.afterReady
		l := killUnderLoad(t, p, plan.afterReady, run, first)
		it.next = l.next.Load()
		it.acked = l.ackedSet()
		// A restarted gateway that is ready but refuses everything would
		// pass every other check.
		if plan.afterReady >= time.Second && len(it.acked) == 0 {
			t.Errorf("%s: no event acknowledged in %v of load after a restart: %s", name, plan.afterReady, l.summary())
		}
	}
	it.took = time.Since(t0)
	it.repairs = countLines(p, "wal tail repaired")
	if _, it.bufferOpened = p.findLine("buffer opened", nil); it.bufferOpened {
		it.opened = openedLine(t, p)
	}
	return it
}

// killDuringStartup sends SIGKILL delay after the spawn, wherever startup is.
// The process must still be running then: startup never stops on its own.
func killDuringStartup(t *testing.T, p *sluiceProc, delay time.Duration) {
	t.Helper()
	select {
	case <-time.After(delay):
	case <-p.exited:
		t.Fatalf("%s: exited on its own during startup (%v) before the planned kill at %v", p.name, p.waitErr, delay)
	}
	killAndReap(t, p)
}

// killUnderLoad runs the load from first on, sends SIGKILL delay later and
// returns the load once every worker has stopped.
func killUnderLoad(t *testing.T, p *sluiceProc, delay time.Duration, run string, first int64) *load {
	t.Helper()
	shutdown := make(chan struct{})
	l := newLoad("http://"+p.public+"/v1/beacon", run, shutdown, p.exited)
	l.next.Store(first)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		l.send(crashLoadWorkers, -1)
	}()
	select {
	case <-time.After(delay):
	case <-p.exited:
		t.Fatalf("%s: exited on its own under load (%v): %s", p.name, p.waitErr, l.summary())
	case <-loadDone:
		t.Fatalf("%s: load stopped before the kill: %s", p.name, l.summary())
	}
	// From here on connection errors are the kill's doing, not a broken contract.
	close(shutdown)
	killAndReap(t, p)
	select {
	case <-loadDone:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: load still running 30s after the kill: %s", p.name, l.summary())
	}
	l.checkContract(t)
	return l
}

// killAndReap sends SIGKILL and requires that the signal is what ended the process.
func killAndReap(t *testing.T, p *sluiceProc) {
	t.Helper()
	// An error here means the process is already reaped; the status below says why.
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	st := p.waitExit(10 * time.Second)
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s: ended with %v (%v), not by our SIGKILL", p.name, st, p.waitErr)
	}
}

// checkRestart checks the start of iteration i against the ones before it:
// the WAL never shrinks, it holds at least every acknowledged event and the
// checkpoint is inside it.
func checkRestart(t *testing.T, i int, its []*crashIteration) {
	t.Helper()
	it := its[i]
	if !it.bufferOpened {
		return // killed before the buffer opened
	}
	prevOpened, ackedBefore := lastOpened(its[:i])
	checkOpened(t, it.proc.name, it.opened, prevOpened, ackedBefore)
	checkNoCheckpointMismatch(t, it.proc)
}

// lastOpened is the latest WAL position a start of its found (nil if none)
// and the number of events they acknowledged.
func lastOpened(its []*crashIteration) (*walOpened, int) {
	var opened *walOpened
	acked := 0
	for _, it := range its {
		acked += len(it.acked)
		if it.bufferOpened {
			opened = &it.opened
		}
	}
	return opened, acked
}

func checkFinalStart(t *testing.T, its []*crashIteration, final *sluiceProc, opened walOpened) {
	t.Helper()
	prevOpened, ackedBefore := lastOpened(its)
	checkOpened(t, final.name, opened, prevOpened, ackedBefore)
	checkNoCheckpointMismatch(t, final)
}

// checkSameInstance: the instance id, which every log line carries, survives
// every crash, including one during the very first start.
func checkSameInstance(t *testing.T, procs []*sluiceProc) {
	t.Helper()
	want := procs[len(procs)-1].instance
	for _, p := range procs {
		if l, ok := p.findLine("", func(l logLine) bool { return l.str("instance") != "" }); ok && l.str("instance") != want {
			t.Errorf("%s: instance id %s, but the final start has %s", p.name, l.str("instance"), want)
		}
	}
}

// checkOpened: indices only grow, acknowledged events are all in the WAL
// (one record per event), and the checkpoint never passes the WAL's end.
func checkOpened(t *testing.T, name string, o walOpened, prev *walOpened, ackedBefore int) {
	t.Helper()
	if o.last < uint64(ackedBefore) {
		t.Errorf("%s: WAL last_index %d < %d events acknowledged before this start", name, o.last, ackedBefore)
	}
	if o.acked > o.last {
		t.Errorf("%s: checkpoint %d past the WAL's last index %d", name, o.acked, o.last)
	}
	if prev != nil && (o.last < prev.last || o.acked < prev.acked) {
		t.Errorf("%s: WAL went back: last_index %d → %d, acked_index %d → %d", name, prev.last, o.last, prev.acked, o.acked)
	}
}

// checkNoCheckpointMismatch: the shipper reconciles a checkpoint outside the
// WAL by shipping everything; after a plain kill -9 that must never happen.
func checkNoCheckpointMismatch(t *testing.T, p *sluiceProc) {
	t.Helper()
	for _, msg := range []string{"checkpoint is past the end of the WAL", "checkpoint is before the start of the WAL", "unreadable checkpoint"} {
		if l, ok := p.findLine(msg, nil); ok {
			t.Errorf("%s: %s", p.name, l.raw)
		}
	}
}

// checkRepairMetric: a ready process reports the tail repairs it logged.
func checkRepairMetric(t *testing.T, p *sluiceProc) {
	t.Helper()
	v, ok := p.metric("sluice_wal_tail_repairs_total")
	if !ok {
		t.Errorf("%s: /metrics lacks sluice_wal_tail_repairs_total", p.name)
		return
	}
	if logged := countLines(p, "wal tail repaired"); int(v) != logged {
		t.Errorf("%s: sluice_wal_tail_repairs_total %v, but %d repairs logged", p.name, v, logged)
	}
}

// checkQuarantine: every logged repair left its cut bytes in quarantine.
// (More files than lines is possible: a kill between quarantining and
// cutting makes the next start quarantine the same bytes again.)
func checkQuarantine(t *testing.T, dir string, its []*crashIteration, final *sluiceProc) {
	t.Helper()
	repairs := countLines(final, "wal tail repaired")
	for _, it := range its {
		repairs += it.repairs
	}
	files, err := os.ReadDir(filepath.Join(dir, "wal", "quarantine"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(files) < repairs {
		t.Errorf("%d tail repairs logged, but only %d quarantine files", repairs, len(files))
	}
	t.Logf("torn-tail repairs: %d logged, %d quarantine files", repairs, len(files))
}

// checkDuplicateBound: a record is sent again only by a start that found it
// past the checkpoint, so duplicates are at most the sum over starts of
// last_index - acked_index.
func checkDuplicateBound(t *testing.T, its []*crashIteration, final walOpened, s *shipped) {
	t.Helper()
	bound := final.last - final.acked
	for _, it := range its {
		if it.bufferOpened {
			bound += it.opened.last - it.opened.acked
		}
	}
	d := uint64(s.duplicates())
	if d > bound {
		t.Errorf("%d duplicates, but the restarts found only %d records past their checkpoints", d, bound)
	}
	t.Logf("duplicates %d; bound (records the starts found past their checkpoint) %d", d, bound)
}

// reportCrashLoop logs acknowledged, found, lost and duplicate counts per
// iteration (by the iteration that sent the event) and in total.
func reportCrashLoop(t *testing.T, its []*crashIteration, s *shipped, final walOpened) {
	t.Helper()
	var acked, found, lost, dups, beforeReady int
	for i, it := range its {
		f, l, d := 0, 0, 0
		for n := range it.acked {
			if s.count[n] > 0 {
				f++
			} else {
				l++
			}
		}
		for n := it.first; n < it.next; n++ {
			d += max(0, s.count[n]-1)
		}
		if it.plan.beforeReady {
			beforeReady++
		}
		t.Logf("iteration %2d: sent %5d, acked %5d, found %5d, lost %d, duplicates %4d", i, it.next-it.first, len(it.acked), f, l, d)
		acked, found, lost, dups = acked+len(it.acked), found+f, lost+l, dups+d
	}
	unacked := 0
	for n := range s.count {
		if !acksIn(its, n) {
			unacked++
		}
	}
	t.Logf("crash loop: %d iterations (%d killed during startup); acked %d, found %d, lost %d, duplicates %d (%.2f%% of records); %d shipped without a 2xx; final start found WAL [%d, %d] acked %d",
		len(its), beforeReady, acked, found, lost, dups, 100*float64(dups)/float64(max(1, s.total)), unacked,
		final.first, final.last, final.acked)
}

func acksIn(its []*crashIteration, n int64) bool {
	for _, it := range its {
		if it.acked[n] {
			return true
		}
	}
	return false
}

func (it *crashIteration) describe() string {
	when := fmt.Sprintf("killed %v after readiness", it.killAfter.Round(time.Millisecond))
	if it.plan.beforeReady {
		when = fmt.Sprintf("killed %v after spawn (%.0f%% of startup; had become ready: %v)",
			it.killAfter.Round(time.Millisecond), 100*it.plan.startupShare, it.ready)
	}
	opened := "buffer not opened"
	if it.bufferOpened {
		opened = fmt.Sprintf("WAL [%d, %d] acked %d", it.opened.first, it.opened.last, it.opened.acked)
	}
	ready := ""
	if it.ready && !it.plan.beforeReady {
		ready = fmt.Sprintf(", ready after %v", it.readyAfter.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s; %s at start, %d tail repairs%s; sent %d, acked %d; %v",
		when, opened, it.repairs, ready, it.next-it.first, len(it.acked), it.took.Round(time.Millisecond))
}

// copyChecker: every copy of an event is the same WAL record re-sent, so all
// copies carry the same event id and WAL index.
type copyChecker struct {
	t      *testing.T
	seen   map[int64]string // event number → "id@index" of its first copy
	errors int
}

func newCopyChecker(t *testing.T) *copyChecker {
	return &copyChecker{t: t, seen: map[int64]string{}}
}

func (c *copyChecker) check(r *kgo.Record, env *envelope, n int64) {
	c.t.Helper()
	idx, _ := header(r, "sluice-wal-index")
	key := env.ID + "@" + idx
	prev, ok := c.seen[n]
	if !ok {
		c.seen[n] = key
		return
	}
	if prev != key && c.errors < 10 {
		c.errors++
		c.t.Errorf("event %d shipped as two different records: id@wal-index %s and %s (written to the WAL twice?)", n, prev, key)
	}
}

// openedLine reads where p's start found the WAL.
func openedLine(t *testing.T, p *sluiceProc) walOpened {
	t.Helper()
	l := p.waitLine(time.Second, "buffer opened", nil)
	return walOpened{first: l.uint(t, "first_index"), last: l.uint(t, "last_index"), acked: l.uint(t, "acked_index")}
}

// countLines counts p's log lines whose msg starts with prefix.
func countLines(p *sluiceProc, prefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if l.fields != nil && strings.HasPrefix(l.msg(), prefix) {
			n++
		}
	}
	return n
}

// dumpCrashLogs, once the test failed, shows what the processes said beyond
// routine INFO lines, and the last lines of the last one: dumping every log
// of two dozen processes would bury the failure.
func dumpCrashLogs(t *testing.T, procs []*sluiceProc) {
	if !t.Failed() || len(procs) == 0 {
		return
	}
	for _, p := range procs {
		p.mu.Lock()
		for _, l := range p.lines {
			if l.fields == nil || (l.str("level") != "INFO" && !strings.HasPrefix(l.msg(), "started the embedded DEVELOPMENT")) {
				t.Logf("%s: %s", p.name, l.raw)
			}
		}
		p.mu.Unlock()
	}
	procs[len(procs)-1].dumpLog(40)
}
