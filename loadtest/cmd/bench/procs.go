package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// children are the processes bench started; stopAll kills whatever is still
// running, on every exit path. Each child also gets SIGKILL from the kernel
// if bench itself dies (Pdeathsig). (The approach of loadtest/cmd/compare.)
type children struct {
	mu    sync.Mutex
	procs []*exec.Cmd
	done  []chan struct{}
}

// start starts cmd; the returned channel is closed once cmd.Wait returned
// (the caller must arrange that, see waitFor).
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
	stdin, err := cmd.StdinPipe() // held open until bench exits
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
	addrc := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		first := true
		readLines(stdout, func(line []byte) {
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

// sluiceProc is one "sluice serve" process. Its public and admin ports are
// chosen by bench, so a restart on the same data dir keeps them.
type sluiceProc struct {
	public, admin string
	pid           int
	started       time.Time
	done          chan struct{}
	cmd           *exec.Cmd

	mu       sync.Mutex
	warnings []string // WARN and ERROR log lines
	shutdown []string // the shutdown steps' messages and durations
}

func (s *sluiceProc) notes() (warnings, shutdown []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.warnings...), append([]string(nil), s.shutdown...)
}

// stop sends SIGTERM and waits up to grace (then SIGKILL); it returns how it
// ended, e.g. "exit status 0".
func (s *sluiceProc) stop(grace time.Duration) (string, bool) {
	if stopGracefully(s.cmd, s.done, grace) {
		return s.cmd.ProcessState.String(), s.cmd.ProcessState.Success()
	}
	return fmt.Sprintf("did not stop within %v of SIGTERM; killed", grace), false
}

type sluiceOpts struct {
	bin, dataDir, logPath string
	public, admin         string // host:port
	brokers               []string
	extra                 []string
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
func startSluice(ctx context.Context, kids *children, o sluiceOpts) (*sluiceProc, error) {
	args := []string{"serve",
		"--listen", o.public, "--admin-listen", o.admin, "--kafka-brokers", strings.Join(o.brokers, ","),
		"--data-dir", o.dataDir, "--log-format", "json", "--drain-timeout", "20s"}
	cmd := exec.Command(o.bin, append(args, o.extra...)...)
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
	logFile, err := os.OpenFile(o.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	exited, err := kids.start(cmd)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	s := &sluiceProc{public: o.public, admin: o.admin, pid: cmd.Process.Pid, started: time.Now(), cmd: cmd, done: make(chan struct{})}
	go func() {
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
			if strings.HasPrefix(msg, "shutdown") {
				took := rec["took"]
				if ns, ok := took.(float64); ok { // slog's JSON handler writes durations in nanoseconds
					took = time.Duration(ns).Round(time.Microsecond)
				}
				s.shutdown = append(s.shutdown, fmt.Sprintf("%s (took %v)", msg, took))
			}
			if level == "WARN" || level == "ERROR" {
				s.warnings = append(s.warnings, strings.TrimSpace(string(line)))
			}
		})
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

// readLines calls fn for each line of r until r ends.
func readLines(r io.Reader, fn func(line []byte)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
}

// clockTicks is USER_HZ, the unit of /proc times (100 on every Linux
// architecture Go supports).
const clockTicks = 100

// procCPU returns the user+system CPU seconds of process pid.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(ut+st) / clockTicks, nil
}

// procRSS returns VmRSS of process pid in bytes.
func procRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseFloat(f[0], 64)
				return kb * 1024, err
			}
		}
	}
	return 0, errors.New("no VmRSS")
}

// hostBusy returns the CPU seconds all cores have spent neither idle nor
// waiting for I/O since boot.
func hostBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat format")
	}
	var busy float64
	for i, s := range f[1:9] { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, err
		}
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy / clockTicks, nil
}

// cpuSnap is the CPU time of the processes a measurement cares about.
type cpuSnap struct {
	t                     time.Time
	server, loadgen, self float64
	host                  float64
	serverErr, loadgenErr error
}

func takeCPU(serverPID, loadgenPID int) cpuSnap {
	s := cpuSnap{t: time.Now()}
	s.server, s.serverErr = procCPU(serverPID)
	s.loadgen, s.loadgenErr = procCPU(loadgenPID)
	s.self, _ = procCPU(os.Getpid())
	s.host, _ = hostBusy()
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
	b0, err := hostBusy()
	if err != nil {
		return 0
	}
	t0 := time.Now()
	time.Sleep(d)
	b1, _ := hostBusy()
	return (b1 - b0) / time.Since(t0).Seconds()
}
