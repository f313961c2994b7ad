package main

// Process-level tests: the real binary, real signals, a real restart on the
// same data dir, and a Kafka consumer reading what the embedded broker holds.
// Helpers are in proc_helpers_test.go. go test -short skips them.

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// envelopeChecker checks every record of a run: envelope fields, headers and
// key, payload bytes, and that no two records share an event id.
type envelopeChecker struct {
	t          *testing.T
	run        string
	instance   string
	from, to   time.Time // received_at must fall in [from, to]
	ids        map[string]int64
	violations int
}

func newEnvelopeChecker(t *testing.T, run, instance string, from, to time.Time) *envelopeChecker {
	return &envelopeChecker{t: t, run: run, instance: instance, from: from, to: to, ids: map[string]int64{}}
}

func (c *envelopeChecker) errorf(format string, args ...any) {
	c.t.Helper()
	c.violations++
	if c.violations <= 10 {
		c.t.Errorf(format, args...)
	}
}

func (c *envelopeChecker) check(r *kgo.Record, env *envelope, n int64) {
	c.t.Helper()
	id, err := uuid.Parse(env.ID)
	if err != nil || id.Version() != 7 {
		c.errorf("event %d: id %q is not a UUIDv7", n, env.ID)
	}
	if prev, dup := c.ids[env.ID]; dup && prev != n {
		c.errorf("event %d: id %s already used by event %d", n, env.ID, prev)
	}
	c.ids[env.ID] = n
	if string(r.Key) != env.ID {
		c.errorf("event %d: record key %q, want the event id %s (no user or anonymous id)", n, r.Key, env.ID)
	}
	if v, _ := header(r, "sluice-event-id"); v != env.ID {
		c.errorf("event %d: header sluice-event-id %q, want %s", n, v, env.ID)
	}
	if v, _ := header(r, "sluice-instance"); v != c.instance {
		c.errorf("event %d: header sluice-instance %q, want %s", n, v, c.instance)
	}
	if v, _ := header(r, "sluice-schema"); v != "1" {
		c.errorf("event %d: header sluice-schema %q, want 1", n, v)
	}
	if v, _ := header(r, "sluice-wal-index"); v == "" || v == "0" {
		c.errorf("event %d: header sluice-wal-index %q", n, v)
	} else if _, err := strconv.ParseUint(v, 10, 64); err != nil {
		c.errorf("event %d: header sluice-wal-index %q: %v", n, v, err)
	}
	at, err := time.Parse(time.RFC3339Nano, env.ReceivedAt)
	if err != nil {
		c.errorf("event %d: received_at %q: %v", n, env.ReceivedAt, err)
	} else if at.Before(c.from.Add(-time.Second)) || at.After(c.to.Add(time.Second)) {
		c.errorf("event %d: received_at %v outside the sending window [%v, %v]", n, at, c.from, c.to)
	}
	if env.Type != "t" {
		c.errorf("event %d: type %q, want t", n, env.Type)
	}
	if env.Context.IP != "127.0.0.1" {
		c.errorf("event %d: context.ip %q, want 127.0.0.1", n, env.Context.IP)
	}
	if want := eventJSON(c.run, n); string(env.Payload) != want {
		c.errorf("event %d: payload\n got %s\nwant %s", n, env.Payload, want)
	}
}

func randomRun() string {
	return strings.ToLower(rand.Text()[:12])
}

// TestProcessSIGTERMRestart: every acknowledged event is in Kafka exactly once
// after a graceful stop and a restart on the same data dir.
func TestProcessSIGTERMRestart(t *testing.T) {
	const events = 3000
	dir := t.TempDir()
	p1 := startSluice(t, "first", dir)
	run := randomRun()

	l := newLoad("http://"+p1.public+"/v1/beacon", run, nil, p1.exited)
	from := time.Now()
	l.send(8, events)
	to := time.Now()
	t.Logf("%s in %v", l.summary(), to.Sub(from).Round(time.Millisecond))
	l.checkContract(t)
	acked := l.ackedSet()
	if len(acked) != events {
		t.Errorf("%d of %d events acknowledged; an idle gateway should take them all", len(acked), events)
	}

	drained := p1.stopGracefully(60 * time.Second)
	if drained.str("backlog") != "0" {
		t.Errorf("graceful stop with Kafka up left a backlog of %s records", drained.str("backlog"))
	}

	p2 := startSluice(t, "restarted", dir)
	if p2.instance != p1.instance {
		t.Errorf("instance id changed across the restart: %s, then %s", p1.instance, p2.instance)
	}
	opened := p2.waitLine(time.Second, "buffer opened", nil)
	last, ackedIdx := opened.uint(t, "last_index"), opened.uint(t, "acked_index")
	if last != uint64(len(acked)) || ackedIdx != last {
		t.Errorf("restart found last_index %d, acked_index %d; want both %d (everything shipped)", last, ackedIdx, len(acked))
	}
	p2.waitBacklogEmpty(30 * time.Second)
	p2.checkLedger()

	c := newEnvelopeChecker(t, run, p1.instance, from, to)
	s := consumeBeacons(t, p2.kafka, run, acked, 30*time.Second, c.check)
	checkAllShipped(t, acked, s)
	if d := s.duplicates(); d != 0 {
		t.Errorf("%d duplicates after a graceful stop; want exactly once", d)
	}
	if s.total != len(acked) {
		t.Errorf("beacons holds %d records of this run, want %d", s.total, len(acked))
	}
	t.Logf("consumed %d records of this run (%d foreign), %d distinct events", s.total, s.foreign, len(s.count))
	p2.stopGracefully(60 * time.Second)
}

// TestProcessSIGTERMUnderLoad: SIGTERM arrives while 8 connections keep
// sending. Every 2xx is in Kafka after a restart; every other answer is a 503
// with Retry-After or a connection error; the exit status is 0.
func TestProcessSIGTERMUnderLoad(t *testing.T) {
	dir := t.TempDir()
	p1 := startSluice(t, "first", dir)
	run := randomRun()

	shutdown := make(chan struct{})
	l := newLoad("http://"+p1.public+"/v1/beacon", run, shutdown, p1.exited)
	reached := l.reachAcked(1500)
	loadDone := make(chan struct{})
	from := time.Now()
	go func() {
		defer close(loadDone)
		l.send(8, -1)
	}()
	select {
	case <-reached:
	case <-loadDone:
		t.Fatalf("load stopped early: %s", l.summary())
	case <-time.After(60 * time.Second):
		t.Fatalf("1500 events not acknowledged within 60s: %s", l.summary())
	}
	// The ledger balances at every scrape, under load too.
	for range 5 {
		p1.checkLedger()
	}
	close(shutdown)
	drained := p1.stopGracefully(60 * time.Second)
	select {
	case <-loadDone:
	case <-time.After(30 * time.Second):
		t.Fatalf("load still running 30s after the process exited: %s", l.summary())
	}
	to := time.Now()
	t.Log(l.summary())
	l.checkContract(t)
	acked := l.ackedSet()

	p2 := startSluice(t, "restarted", dir)
	opened := p2.waitLine(time.Second, "buffer opened", nil)
	t.Logf("restart: WAL first_index %s, last_index %s, acked_index %s",
		opened.str("first_index"), opened.str("last_index"), opened.str("acked_index"))
	last, ackedIdx := opened.uint(t, "last_index"), opened.uint(t, "acked_index")
	if last < uint64(len(acked)) {
		t.Errorf("WAL last_index %d < %d acknowledged events", last, len(acked))
	}
	if ackedIdx == 0 {
		t.Errorf("no checkpoint was persisted in the first process's lifetime (--checkpoint-interval 100ms)")
	}
	p2.waitBacklogEmpty(30 * time.Second)
	p2.checkLedger()
	c := newEnvelopeChecker(t, run, p1.instance, from, to)
	s := consumeBeacons(t, p2.kafka, run, acked, 30*time.Second, c.check)
	checkAllShipped(t, acked, s)
	// Only records past the checkpoint are sent again.
	if d := s.duplicates(); uint64(d) > last-ackedIdx {
		t.Errorf("%d duplicates, but only %d records were past the checkpoint", d, last-ackedIdx)
	}
	unacked := 0
	for n := range s.count {
		if !acked[n] {
			unacked++
		}
	}
	d := s.duplicates()
	t.Logf("consumed %d records of this run: %d distinct, %d duplicates, %d shipped without a 2xx", s.total, len(s.count), d, unacked)
	if drained.str("backlog") == "0" && d != 0 {
		t.Errorf("%d duplicates although the drain completed; want exactly once", d)
	}
	p2.stopGracefully(60 * time.Second)
}

// TestProcessKill9: SIGKILL, first when idle after a fully acknowledged batch,
// then in the middle of a load; a restart on the same data dir ships every
// acknowledged event (duplicates allowed).
func TestProcessKill9(t *testing.T) {
	dir := t.TempDir()
	// A short checkpoint interval, so the restart resumes from the middle of
	// the WAL rather than from its start.
	p1 := startSluice(t, "first", dir, "--checkpoint-interval", "100ms")
	run := randomRun()
	url := "http://" + p1.public + "/v1/beacon"
	from := time.Now()

	const idle = 1500
	l1 := newLoad(url, run, nil, p1.exited)
	l1.send(8, idle)
	t.Logf("before the load: %s", l1.summary())
	l1.checkContract(t)
	if n := len(l1.ackedSet()); n != idle {
		t.Errorf("%d of %d events acknowledged; an idle gateway should take them all", n, idle)
	}
	// The kill must come after a checkpoint (1500 events take well under
	// 100 ms now): wait until one is on disk.
	waitCheckpoint(t, filepath.Join(dir, "wal", "acked"), 10*time.Second)

	shutdown := make(chan struct{})
	l2 := newLoad(url, run, shutdown, p1.exited)
	l2.next.Store(idle)
	reached := l2.reachAcked(1000)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		l2.send(8, -1)
	}()
	select {
	case <-reached:
	case <-loadDone:
		t.Fatalf("load stopped early: %s", l2.summary())
	case <-time.After(60 * time.Second):
		t.Fatalf("1000 events not acknowledged within 60s: %s", l2.summary())
	}
	close(shutdown)
	p1.signal(syscall.SIGKILL)
	st := p1.waitExit(10 * time.Second)
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("first process ended with %v, want killed by SIGKILL", st)
	}
	select {
	case <-loadDone:
	case <-time.After(30 * time.Second):
		t.Fatalf("load still running 30s after the kill: %s", l2.summary())
	}
	to := time.Now()
	t.Logf("under load: %s", l2.summary())
	l2.checkContract(t)
	acked := l1.ackedSet()
	for n := range l2.ackedSet() {
		acked[n] = true
	}

	p2 := startSluice(t, "restarted", dir)
	if p2.instance != p1.instance {
		t.Errorf("instance id changed across the restart: %s, then %s", p1.instance, p2.instance)
	}
	opened := p2.waitLine(time.Second, "buffer opened", nil)
	t.Logf("restart after SIGKILL: WAL first_index %s, last_index %s, acked_index %s",
		opened.str("first_index"), opened.str("last_index"), opened.str("acked_index"))
	last, ackedIdx := opened.uint(t, "last_index"), opened.uint(t, "acked_index")
	if last < uint64(len(acked)) {
		t.Errorf("WAL last_index %d < %d acknowledged events", last, len(acked))
	}
	if ackedIdx == 0 {
		t.Errorf("no checkpoint was persisted in the first process's lifetime (--checkpoint-interval 100ms)")
	}
	p2.waitBacklogEmpty(30 * time.Second)
	p2.checkLedger()
	c := newEnvelopeChecker(t, run, p1.instance, from, to)
	s := consumeBeacons(t, p2.kafka, run, acked, 30*time.Second, c.check)
	checkAllShipped(t, acked, s)
	// Only records past the checkpoint are sent again.
	if d := s.duplicates(); uint64(d) > last-ackedIdx {
		t.Errorf("%d duplicates, but only %d records were past the checkpoint", d, last-ackedIdx)
	}
	unacked := 0
	for n := range s.count {
		if !acked[n] {
			unacked++
		}
	}
	t.Logf("kill -9: %d acknowledged events; consumed %d records of this run: %d distinct, %d DUPLICATES, %d shipped without a 2xx",
		len(acked), s.total, len(s.count), s.duplicates(), unacked)
	p2.stopGracefully(60 * time.Second)
}

// TestProcessReadiness: health and readiness while serving, metrics on the
// admin port only; at SIGTERM /readyz fails while the listener still takes
// beacons for --shutdown-delay; a second SIGTERM cuts the delay short, exit
// status 0, and the beacon taken during the delay ships on the next start.
func TestProcessReadiness(t *testing.T) {
	dir := t.TempDir()
	p := startSluice(t, "gw", dir, "--shutdown-delay", "60s")
	run := randomRun()
	if code, body := p.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %q, want 200", code, body)
	}
	if code, body := p.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz while serving: %d %q, want 200", code, body)
	}
	if _, body := p.get("/metrics"); !strings.Contains(body, `sluice_events_total{outcome="rejected"} 0`) {
		t.Errorf("/metrics before the first event lacks sluice_events_total at 0:\n%s", body)
	}
	client := &http.Client{Timeout: 15 * time.Second}
	if resp, err := client.Get("http://" + p.public + "/metrics"); err != nil {
		t.Errorf("GET /metrics on the public port: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("public port answers /metrics with %d, want 404 (admin only)", resp.StatusCode)
		}
	}

	beacon := func(n int64) int {
		t.Helper()
		code, ra, body, err := post(client, "http://"+p.public+"/v1/beacon", "application/json", eventJSON(run, n))
		if err != nil {
			t.Fatalf("beacon %d: %v", n, err)
		}
		if code == http.StatusServiceUnavailable && ra == "" {
			t.Errorf("503 without Retry-After: %s", body)
		}
		return code
	}
	if code := beacon(0); code != http.StatusNoContent {
		t.Fatalf("beacon while serving: %d, want 204", code)
	}
	_, metrics := p.get("/metrics")
	for _, want := range []string{
		`sluice_events_total{outcome="accepted"} 1`,
		`sluice_http_requests_total{code="204",route="/v1/beacon"} 1`,
		"sluice_buffer_backlog_records",
		"sluice_wal_acked_index",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A client in the middle of a request when the second signal arrives: the
	// listener's wait for it is what the second signal cuts short.
	slow, err := net.DialTimeout("tcp", p.public, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "POST /v1/beacon HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":")

	p.signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		code, _ := p.get("/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("/readyz answered %d after SIGTERM, want 503 within 10s", code)
		}
		<-tick.C
	}
	if code, _ := p.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz during the shutdown delay: %d, want 200 (alive)", code)
	}
	if code := beacon(1); code != http.StatusNoContent {
		t.Errorf("beacon during the shutdown delay: %d, want 204 (the listener stays open until the delay ends)", code)
	}

	t0 := time.Now()
	p.signal(syscall.SIGTERM)
	st := p.waitExit(30 * time.Second)
	if st.ExitCode() != 0 {
		t.Errorf("exit status %d after a second SIGTERM, want 0", st.ExitCode())
	}
	t.Logf("second SIGTERM to exit in %v", time.Since(t0).Round(time.Millisecond))
	if _, ok := p.findLine("shutdown complete", nil); !ok {
		t.Error("no \"shutdown complete\" line")
	}

	p2 := startSluice(t, "restarted", dir)
	p2.waitBacklogEmpty(30 * time.Second)
	p2.checkLedger()
	want := map[int64]bool{0: true, 1: true}
	s := consumeBeacons(t, p2.kafka, run, want, 30*time.Second, nil)
	checkAllShipped(t, want, s)
	p2.stopGracefully(60 * time.Second)
}

// waitCheckpoint polls the checkpoint file until it holds a non-zero index:
// nothing else announces a checkpoint.
func waitCheckpoint(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 {
				return
			}
		}
		<-tick.C
	}
	t.Fatalf("no checkpoint in %s within %v", path, timeout)
}
