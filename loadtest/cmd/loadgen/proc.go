package main

import "github.com/sluice-gateway/sluice/loadtest/internal/procstat"

// procCPU returns the user+system CPU seconds process pid has used; 0 for
// pid 0 (no server process given).
func procCPU(pid int) (float64, error) {
	if pid <= 0 {
		return 0, nil
	}
	return procstat.CPU(pid)
}
