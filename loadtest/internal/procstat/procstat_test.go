package procstat

import (
	"os"
	"testing"
	"time"
)

func TestSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if v, err := CPU(os.Getpid()); err != nil || v < 0 {
		t.Errorf("CPU = %v, %v", v, err)
	}
	if v, err := RSS(os.Getpid()); err != nil || v <= 0 {
		t.Errorf("RSS = %v, %v", v, err)
	}
	if v, err := HostBusy(); err != nil || v <= 0 {
		t.Errorf("HostBusy = %v, %v", v, err)
	}
	if v, err := BusyCores(10 * time.Millisecond); err != nil || v < 0 {
		t.Errorf("BusyCores = %v, %v", v, err)
	}
}
