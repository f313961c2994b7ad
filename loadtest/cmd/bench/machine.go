package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
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
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return fsyncSample{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := bytes.Repeat([]byte{'x'}, 4096)
	var lat []time.Duration
	start := time.Now()
	for time.Since(start) < d && len(lat) < 100000 {
		t := time.Now()
		if _, err := f.Write(block); err != nil {
			return fsyncSample{}, err
		}
		if err := f.Sync(); err != nil {
			return fsyncSample{}, err
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	ms := func(x time.Duration) float64 { return round3(float64(x) / 1e6) }
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return fsyncSample{N: len(lat), P50ms: ms(q(0.5)), P99ms: ms(q(0.99)), MaxMs: ms(lat[len(lat)-1]),
		PerSecond: round3(float64(len(lat)) / time.Since(start).Seconds())}, nil
}
