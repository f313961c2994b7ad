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

func TestParseMem(t *testing.T) {
	status := "Name:\tsluice\nVmPeak:\t 2000000 kB\nVmHWM:\t  180000 kB\nVmRSS:\t  150000 kB\nRssAnon:\t  120000 kB\nRssFile:\t   29000 kB\nRssShmem:\t    1000 kB\nThreads:\t12\n"
	m, err := ParseMem([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	want := Mem{VmRSS: 150000 * 1024, VmHWM: 180000 * 1024, RssAnon: 120000 * 1024, RssFile: 29000 * 1024, RssShmem: 1000 * 1024}
	if m != want {
		t.Errorf("ParseMem = %+v, want %+v", m, want)
	}
	if _, err := ParseMem([]byte("Name:\tx\nVmRSS:\t  1 kB\n")); err == nil {
		t.Error("no VmHWM: no error")
	}
	if _, err := ParseMem([]byte("VmHWM:\t 2 kB\nVmRSS:\t  x kB\n")); err == nil {
		t.Error("a bad number: no error")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		return
	}
	self, err := Memory(os.Getpid())
	if err != nil || self.VmRSS <= 0 || self.VmHWM < self.VmRSS {
		t.Errorf("Memory(self) = %+v, %v", self, err)
	}
}
