package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/procstat"
	"github.com/sluice-gateway/sluice/loadtest/internal/sluiceproc"
)

// sluiceProc is one "sluice serve" process. Its public and admin ports are
// chosen by bench, so a restart on the same data dir keeps them.
type sluiceProc struct {
	public, admin string
	pid           int
	started       time.Time
	done          chan struct{}
	cmd           *exec.Cmd

	log sluiceproc.Log // warnings (WARN and ERROR lines) and shutdown steps
}

// stop sends SIGTERM and waits up to grace (then SIGKILL); it returns how it
// ended, e.g. "exit status 0".
func (s *sluiceProc) stop(grace time.Duration) (string, bool) {
	if sluiceproc.StopGracefully(s.cmd, s.done, grace) {
		return s.cmd.ProcessState.String(), s.cmd.ProcessState.Success()
	}
	return fmt.Sprintf("did not stop within %v of SIGTERM; killed", grace), false
}

type sluiceOpts struct {
	bin, dataDir, logPath string
	public, admin         string // host:port
	brokers               []string
	extra                 []string
	env                   []string // KEY=VALUE added to the environment
}

// freePort asks the kernel for a free 127.0.0.1 port.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startSluice runs "sluice serve" against the given brokers and waits until
// /readyz answers 200. The log (JSON) is appended to o.logPath.
func startSluice(ctx context.Context, kids *sluiceproc.Children, o sluiceOpts) (*sluiceProc, error) {
	args := []string{"serve",
		"--listen", o.public, "--admin-listen", o.admin, "--kafka-brokers", strings.Join(o.brokers, ","),
		"--data-dir", o.dataDir, "--log-format", "json", "--drain-timeout", "20s"}
	cmd := sluiceproc.Command(o.bin, append(args, o.extra...)...)
	cmd.Env = append(cmd.Env, o.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(o.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	exited, err := kids.Start(cmd)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	s := &sluiceProc{public: o.public, admin: o.admin, pid: cmd.Process.Pid, started: time.Now(), cmd: cmd, done: make(chan struct{})}
	go func() {
		sluiceproc.ReadLines(io.TeeReader(stderr, logFile), func(line []byte) { s.log.Add(line) })
		cmd.Wait()
		logFile.Close()
		close(s.done)
		close(exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := httpClient.Get("http://" + s.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("sluice serve exited before it was ready: %v (log in %s)", cmd.ProcessState, o.logPath)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sluice /readyz not OK within 30s (last: %v; log in %s)", err, o.logPath)
		}
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// cpuSnap is the CPU time of the processes a measurement cares about.
type cpuSnap struct {
	t                     time.Time
	server, loadgen, self float64
	host                  float64
	serverErr, loadgenErr error
}

func takeCPU(serverPID, loadgenPID int) cpuSnap {
	s := cpuSnap{t: time.Now()}
	s.server, s.serverErr = procstat.CPU(serverPID)
	s.loadgen, s.loadgenErr = procstat.CPU(loadgenPID)
	s.self, _ = procstat.CPU(os.Getpid())
	s.host, _ = procstat.HostBusy()
	return s
}

// cpuUse is what a window between two snapshots cost, in cores.
type cpuUse struct {
	ServerCPUs   float64 `json:"server_cpu_s"`
	ServerCores  float64 `json:"server_cores"`
	LoadgenCores float64 `json:"loadgen_cores"`
	HarnessCores float64 `json:"harness_cores"` // bench itself: its in-process Kafka (kfake) and scrapes
	HostCores    float64 `json:"host_busy_cores"`
	OtherCores   float64 `json:"other_cores"` // everything else on the machine
}

func cpuBetween(a, b cpuSnap) cpuUse {
	secs := b.t.Sub(a.t).Seconds()
	if secs <= 0 {
		return cpuUse{}
	}
	u := cpuUse{ServerCPUs: b.server - a.server}
	u.ServerCores = u.ServerCPUs / secs
	u.LoadgenCores = (b.loadgen - a.loadgen) / secs
	u.HarnessCores = (b.self - a.self) / secs
	u.HostCores = (b.host - a.host) / secs
	u.OtherCores = max(0, u.HostCores-u.ServerCores-u.LoadgenCores-u.HarnessCores)
	for _, f := range []*float64{&u.ServerCPUs, &u.ServerCores, &u.LoadgenCores, &u.HarnessCores, &u.HostCores, &u.OtherCores} {
		*f = round3(*f)
	}
	return u
}

// hostBusyCores samples /proc/stat over d.
func hostBusyCores(d time.Duration) float64 {
	c, _ := procstat.BusyCores(d)
	return c
}
