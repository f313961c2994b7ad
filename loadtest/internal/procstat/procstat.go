// Package procstat reads CPU time and memory of processes and of the host
// from Linux's /proc, for the load-test tools.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of /proc times; 100 on every Linux
// architecture Go supports (sysconf(_SC_CLK_TCK) is not reachable without cgo).
const ClockTicks = 100

// CPU returns the user+system CPU seconds process pid has used.
func CPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return float64(ut+st) / ClockTicks, nil
}

// RSS returns VmRSS of process pid in bytes.
func RSS(pid int) (float64, error) {
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

// HostBusy returns the CPU seconds all cores have spent neither idle nor
// waiting for I/O since boot, from /proc/stat.
func HostBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat format")
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal (guest is inside user).
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, err
		}
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return float64(busy) / ClockTicks, nil
}

// BusyCores samples HostBusy over d: how many cores were busy (not idle,
// not waiting for I/O) on average.
func BusyCores(d time.Duration) (float64, error) {
	b0, err := HostBusy()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(d)
	b1, err := HostBusy()
	if err != nil {
		return 0, err
	}
	return (b1 - b0) / time.Since(t0).Seconds(), nil
}

// Mem is a process's memory from /proc/PID/status, in bytes: VmRSS is
// RssAnon + RssFile + RssShmem; VmHWM is the peak VmRSS since the start.
type Mem struct {
	VmRSS, VmHWM, RssAnon, RssFile, RssShmem float64
}

// Memory returns process pid's Mem.
func Memory(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	return ParseMem(b)
}

// ParseMem reads the memory lines of a /proc/PID/status file. VmRSS and
// VmHWM must be there; the Rss* breakdown (Linux 4.5+) may be missing.
func ParseMem(status []byte) (Mem, error) {
	var m Mem
	fields := map[string]*float64{"VmRSS:": &m.VmRSS, "VmHWM:": &m.VmHWM, "RssAnon:": &m.RssAnon, "RssFile:": &m.RssFile, "RssShmem:": &m.RssShmem}
	for _, line := range strings.Split(string(status), "\n") {
		k, rest, ok := strings.Cut(line, "\t")
		if !ok {
			k, rest, ok = strings.Cut(line, " ")
		}
		dst, want := fields[k]
		if !ok || !want {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 || f[1] != "kB" {
			return Mem{}, fmt.Errorf("unexpected /proc status line %q", line)
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return Mem{}, fmt.Errorf("unexpected /proc status line %q: %w", line, err)
		}
		*dst = kb * 1024
	}
	if m.VmRSS == 0 || m.VmHWM == 0 {
		return Mem{}, errors.New("no VmRSS or VmHWM in /proc status")
	}
	return m, nil
}
