// Package sluiceproc runs the processes a load test drives: it tracks child
// processes so they are stopped on every exit path, starts the "loadgen
// noop" server, and collects the notable lines of a "sluice serve" JSON log.
package sluiceproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Children are the processes a tool started; StopAll kills whatever is
// still running, on every exit path. Each child also gets SIGKILL from the
// kernel if the tool itself dies (Pdeathsig).
type Children struct {
	mu    sync.Mutex
	procs []*exec.Cmd
	done  []chan struct{}
}

// Start starts cmd; the returned channel is to be closed once cmd.Wait
// returned (the caller must arrange that).
func (k *Children) Start(cmd *exec.Cmd) (chan struct{}, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	k.mu.Lock()
	k.procs = append(k.procs, cmd)
	k.done = append(k.done, done)
	k.mu.Unlock()
	return done, nil
}

// StopAll kills every child still running and waits up to 5 s for each.
func (k *Children) StopAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, cmd := range k.procs {
		select {
		case <-k.done[i]:
			continue
		default:
		}
		cmd.Process.Kill()
		select {
		case <-k.done[i]:
		case <-time.After(5 * time.Second):
		}
	}
}

// StopGracefully sends SIGTERM, then SIGKILL after grace; done is closed
// once cmd.Wait returned.
func StopGracefully(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) (graceful bool) {
	select {
	case <-done:
		return true
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return true
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
		return false
	}
}

// Command is exec.Command for sluice: the environment is this process's
// minus the SLUICE_* variables, which would silently change the
// configuration.
func Command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// ReadLines calls fn for each line of r until r ends.
func ReadLines(r io.Reader, fn func(line []byte)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
}

// Noop is a running "loadgen noop" server.
type Noop struct {
	Addr string
	PID  int
	Stop func(grace time.Duration) bool
}

// StartNoop runs "bin noop" on a free 127.0.0.1 port for at most lifetime
// and returns once it printed its address. Its stdin is held open until Stop
// (or until the calling tool exits).
func StartNoop(ctx context.Context, kids *Children, bin string, lifetime time.Duration) (*Noop, error) {
	cmd := exec.Command(bin, "noop", "-listen", "127.0.0.1:0", "-exit-on-stdin-eof", "-max-lifetime", lifetime.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	exited, err := kids.Start(cmd)
	if err != nil {
		return nil, err
	}
	addrc := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		first := true
		ReadLines(stdout, func(line []byte) {
			if first {
				addrc <- strings.TrimSpace(string(line))
				first = false
			}
		})
		cmd.Wait()
		close(done)
		close(exited)
	}()
	select {
	case addr := <-addrc:
		p := &Noop{Addr: addr, PID: cmd.Process.Pid}
		p.Stop = func(grace time.Duration) bool {
			stdin.Close()
			return StopGracefully(cmd, done, grace)
		}
		return p, nil
	case <-done:
		return nil, errors.New("loadgen noop exited before printing its address")
	case <-time.After(10 * time.Second):
		return nil, errors.New("loadgen noop printed no address within 10s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Log collects the notable lines of a "sluice serve --log-format json" log:
// warnings (WARN and ERROR lines, and lines that are not JSON) and the
// shutdown steps with their durations.
type Log struct {
	// IgnoreWarning, if set, reports WARN or ERROR messages not to record.
	IgnoreWarning func(msg string) bool

	mu       sync.Mutex
	warnings []string
	shutdown []string
}

// Add records line if it is notable, and returns its fields, or nil if it
// is not JSON.
func (l *Log) Add(line []byte) map[string]any {
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil {
		l.mu.Lock()
		l.warnings = append(l.warnings, "non-JSON output: "+string(line))
		l.mu.Unlock()
		return nil
	}
	msg, _ := rec["msg"].(string)
	level, _ := rec["level"].(string)
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.HasPrefix(msg, "shutdown") {
		took := rec["took"]
		if ns, ok := took.(float64); ok { // slog's JSON handler writes durations in nanoseconds
			took = time.Duration(ns).Round(time.Microsecond)
		}
		l.shutdown = append(l.shutdown, fmt.Sprintf("%s (took %v)", msg, took))
	}
	if (level == "WARN" || level == "ERROR") && (l.IgnoreWarning == nil || !l.IgnoreWarning(msg)) {
		l.warnings = append(l.warnings, strings.TrimSpace(string(line)))
	}
	return rec
}

// Notes returns copies of the warnings and shutdown steps recorded so far.
func (l *Log) Notes() (warnings, shutdown []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.warnings...), append([]string(nil), l.shutdown...)
}
