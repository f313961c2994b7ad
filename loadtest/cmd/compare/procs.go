package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/sluiceproc"
)

type sluiceProc struct {
	public, admin, kafka string
	pid                  int
	stop                 func(grace time.Duration) string

	mu  sync.Mutex     // guards the addresses while the log is read
	log sluiceproc.Log // warnings (WARN and ERROR lines, apart from the expected development-broker warning) and shutdown steps
}

// startSluice runs "sluice serve" with every address on 127.0.0.1 port 0 and
// learns the bound addresses from its JSON log: the "listening" line (public,
// admin) and the embedded broker's line (addr). The log is copied to logPath.
func startSluice(ctx context.Context, kids *sluiceproc.Children, bin, dataDir, logPath string, extra []string) (*sluiceProc, error) {
	args := []string{"serve",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--embedded-kafka-listen", "127.0.0.1:0",
		"--data-dir", dataDir, "--log-format", "json", "--pprof", "--drain-timeout", "20s"}
	cmd := sluiceproc.Command(bin, append(args, extra...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	exited, err := kids.Start(cmd)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	s := &sluiceProc{pid: cmd.Process.Pid}
	s.log.IgnoreWarning = func(msg string) bool { return strings.Contains(msg, "DEVELOPMENT Kafka broker") }
	logDone := make(chan struct{})
	done := make(chan struct{})
	go func() { <-logDone; cmd.Wait(); logFile.Close(); close(done); close(exited) }()
	ready := make(chan struct{})
	go func() {
		defer close(logDone)
		var once sync.Once
		sluiceproc.ReadLines(io.TeeReader(stderr, logFile), func(line []byte) {
			rec := s.log.Add(line)
			if rec == nil {
				return
			}
			msg, _ := rec["msg"].(string)
			s.mu.Lock()
			defer s.mu.Unlock()
			switch {
			case msg == "listening":
				s.public, _ = rec["public"].(string)
				s.admin, _ = rec["admin"].(string)
			case strings.Contains(msg, "embedded") && rec["addr"] != nil:
				s.kafka, _ = rec["addr"].(string)
			}
			if s.public != "" && s.admin != "" {
				once.Do(func() { close(ready) })
			}
		})
	}()
	s.stop = func(grace time.Duration) string {
		if sluiceproc.StopGracefully(cmd, done, grace) {
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
