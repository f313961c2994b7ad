package main

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/fsyncprobe"
)

// machine is what the report says about where it ran.
type machine struct {
	Cores      int         `json:"cores"`
	CPUModel   string      `json:"cpu_model"`
	MemTotal   string      `json:"mem_total"`
	Kernel     string      `json:"kernel"`
	Go         string      `json:"go"`
	Commit     string      `json:"commit"`
	Fsync      fsyncSample `json:"fsync_probe"`
	BusyBefore float64     `json:"host_busy_before_cores"`
}

func describeMachine(ctx context.Context, dir string) machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), CPUModel: "unknown", MemTotal: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Commit = gitDescribe(ctx)
	m.BusyBefore = round3(hostBusyCores(time.Second))
	if s, err := fsyncProbe(dir, time.Second); err == nil {
		m.Fsync = s
	}
	return m
}

func gitDescribe(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty", "--tags").Output()
	if err != nil {
		return "(no commit)"
	}
	return strings.TrimSpace(string(out))
}

// fsyncSample is a 4 KiB append + fsync loop on the data dir's file system:
// what one group commit costs at best on this disk right now.
type fsyncSample struct {
	N         int     `json:"n"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	PerSecond float64 `json:"per_s"`
}

func fsyncProbe(dir string, d time.Duration) (fsyncSample, error) {
	r, err := fsyncprobe.Run(dir, d)
	if err != nil {
		return fsyncSample{}, err
	}
	ms := func(x time.Duration) float64 { return round3(float64(x) / 1e6) }
	return fsyncSample{N: r.N, P50ms: ms(r.P50), P99ms: ms(r.P99), MaxMs: ms(r.Max), PerSecond: round3(r.PerSecond)}, nil
}
