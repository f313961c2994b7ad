package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// children are the long-lived processes compare started; stopAll kills
// whatever is still running, on every exit path. Each child also gets
// SIGKILL from the kernel if compare itself dies (Pdeathsig).
type children struct {
	mu    sync.Mutex
	procs []*exec.Cmd
	done  []chan struct{}
}

func (k *children) start(cmd *exec.Cmd) (chan struct{}, error) {
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

func (k *children) stopAll() {
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

// stopGracefully sends SIGTERM, then SIGKILL after grace.
func stopGracefully(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) (graceful bool) {
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

type noopProc struct {
	addr string
	pid  int
	stop func(grace time.Duration) bool
}

func startNoop(ctx context.Context, kids *children, bin string, lifetime time.Duration) (*noopProc, error) {
	cmd := exec.Command(bin, "noop", "-listen", "127.0.0.1:0", "-exit-on-stdin-eof", "-max-lifetime", lifetime.String())
	stdin, err := cmd.StdinPipe() // held open until compare exits
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	exited, err := kids.start(cmd)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done); close(exited) }()
	addrc := make(chan string, 1)
	go func() {
		first := true
		readLines(stdout, func(line []byte) {
			if first {
				addrc <- strings.TrimSpace(string(line))
				first = false
			}
		})
	}()
	select {
	case addr := <-addrc:
		p := &noopProc{addr: addr, pid: cmd.Process.Pid}
		p.stop = func(grace time.Duration) bool {
			stdin.Close()
			return stopGracefully(cmd, done, grace)
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

type sluiceProc struct {
	public, admin, kafka string
	pid                  int
	stop                 func(grace time.Duration) string

	mu       sync.Mutex
	warnings []string // WARN and ERROR log lines, apart from the expected development-broker warning
	shutdown []string // the shutdown steps' messages and durations
}

func (s *sluiceProc) notes() (warnings, shutdown []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.warnings...), append([]string(nil), s.shutdown...)
}

// startSluice runs "sluice serve" with every address on 127.0.0.1 port 0 and
// learns the bound addresses from its JSON log: the "listening" line (public,
// admin) and the embedded broker's line (addr). The log is copied to logPath.
func startSluice(ctx context.Context, kids *children, bin, dataDir, logPath string, extra []string) (*sluiceProc, error) {
	args := []string{"serve",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--embedded-kafka-listen", "127.0.0.1:0",
		"--data-dir", dataDir, "--log-format", "json", "--pprof", "--drain-timeout", "20s"}
	cmd := exec.Command(bin, append(args, extra...)...)
	// Inherited SLUICE_* variables would silently change the configuration.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	exited, err := kids.start(cmd)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	s := &sluiceProc{pid: cmd.Process.Pid}
	logDone := make(chan struct{})
	done := make(chan struct{})
	go func() { <-logDone; cmd.Wait(); logFile.Close(); close(done); close(exited) }()
	ready := make(chan struct{})
	go func() {
		defer close(logDone)
		var once sync.Once
		readLines(io.TeeReader(stderr, logFile), func(line []byte) {
			var rec map[string]any
			if json.Unmarshal(line, &rec) != nil {
				s.mu.Lock()
				s.warnings = append(s.warnings, "non-JSON output: "+string(line))
				s.mu.Unlock()
				return
			}
			msg, _ := rec["msg"].(string)
			level, _ := rec["level"].(string)
			s.mu.Lock()
			defer s.mu.Unlock()
			switch {
			case msg == "listening":
				s.public, _ = rec["public"].(string)
				s.admin, _ = rec["admin"].(string)
			case strings.Contains(msg, "embedded") && rec["addr"] != nil:
				s.kafka, _ = rec["addr"].(string)
			case strings.HasPrefix(msg, "shutdown"):
				took := rec["took"]
				if ns, ok := took.(float64); ok { // slog's JSON handler writes durations in nanoseconds
					took = time.Duration(ns).Round(time.Microsecond)
				}
				s.shutdown = append(s.shutdown, fmt.Sprintf("%s (took %v)", msg, took))
			}
			if (level == "WARN" || level == "ERROR") && !strings.Contains(msg, "DEVELOPMENT Kafka broker") {
				s.warnings = append(s.warnings, strings.TrimSpace(string(line)))
			}
			if s.public != "" && s.admin != "" {
				once.Do(func() { close(ready) })
			}
		})
	}()
	s.stop = func(grace time.Duration) string {
		if stopGracefully(cmd, done, grace) {
			return fmt.Sprintf("exited with %v", cmd.ProcessState)
		}
		return fmt.Sprintf("did not stop within %v of SIGTERM; killed", grace)
	}
	select {
	case <-ready:
	case <-done:
		return nil, fmt.Errorf("sluice serve exited before listening: %v (log in %s)", cmd.ProcessState, logPath)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("sluice serve did not log \"listening\" within 30s (log in %s)", logPath)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Ready means WAL open; give it up to 10 s.
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get("http://" + s.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sluice /readyz not OK within 10s (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
