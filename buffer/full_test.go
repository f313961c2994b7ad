package buffer

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Config.MaxBytes refuses an Append that would take the WAL past it, with an
// error wrapping ErrFull and nothing written; once acknowledged segments are
// removed there is room again.
func TestAppendRefusedAtMaxBytes(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir, SegmentBytes: 1024, MaxBytes: 4096})
	var last uint64
	for i := 0; ; i++ {
		r := appendWait(t, b, testFrames("r", i, 1))
		if r.err != nil {
			if !errors.Is(r.err, ErrFull) {
				t.Fatalf("append %d: %v, want ErrFull", i, r.err)
			}
			break
		}
		last = r.last
		if i > 1000 {
			t.Fatal("no ErrFull after 1000 appends with a 4 KiB limit")
		}
	}
	if got := b.LastIndex(); got != last {
		t.Fatalf("last index %d after a refused append, want %d (nothing written)", got, last)
	}
	if used := b.DiskBytes(); used > 4096 || used != segmentBytesOnDisk(t, dir) {
		t.Fatalf("DiskBytes %d: over the limit or unlike the files (%d)", used, segmentBytesOnDisk(t, dir))
	}
	if _, err := b.removeAcked(last); err != nil {
		t.Fatal(err)
	}
	if r := appendWait(t, b, testFrames("after", 0, 1)); r.err != nil {
		t.Fatalf("append after removing acknowledged segments: %v", r.err)
	}
}

// Removing many segments reopens the log now and then so tidwall/wal's
// segment list stays short; reads and appends carry on across it.
func TestRemoveAckedCompacts(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir, SegmentBytes: 64})
	for i := range 600 {
		mustAppend(t, b, "r", i, 1)
	}
	if n := countSegments(t, dir); n < compactAfterSegments+10 {
		t.Fatalf("%d segments; the test needs more than %d", n, compactAfterSegments)
	}
	removed, err := b.removeAcked(580)
	if err != nil || removed < compactAfterSegments {
		t.Fatalf("removeAcked = %d, %v", removed, err)
	}
	if got := b.removedSegments.Load(); got != 0 {
		t.Fatalf("%d removed segments remembered after the compacting reopen, want 0", got)
	}
	b.mu.RLock()
	walFirst, _ := b.wal.FirstIndex()
	b.mu.RUnlock()
	if first := b.firstIndex(); first != walFirst || first > 581 || first < 570 {
		t.Fatalf("first index %d, tidwall/wal says %d; want the same, near 581", first, walFirst)
	}
	if got := readValues(t, b, b.firstIndex(), 600); len(got) != int(601-b.firstIndex()) {
		t.Fatalf("read %d records after compaction", len(got))
	}
	mustAppend(t, b, "after", 0, 5)
	if got, want := b.DiskBytes(), segmentBytesOnDisk(t, dir); got != want {
		t.Fatalf("DiskBytes %d, files %d", got, want)
	}
}

// A full disk (ENOSPC from a real, tiny tmpfs) fails appends with ErrFull,
// corrupts nothing, and appends work again once space returns. Every record
// whose append succeeded is in the log after a reopen.
func TestDiskFullRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	dir := filepath.Join(mnt, "wal")
	// A filler file takes most of the space; deleting it is "space returns".
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 700<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	b := openBuffer(t, Config{Dir: dir, SegmentBytes: 64 << 10})
	b.mu.Lock()
	b.reopenEvery = 0
	b.mu.Unlock()

	var ok []string
	var fullErr error
	for i := 0; i < 100_000 && fullErr == nil; i++ {
		r := appendWait(t, b, testFrames("r", i*10, 10))
		switch {
		case r.err == nil:
			ok = append(ok, testValues("r", i*10, 10)...)
		case errors.Is(r.err, ErrFull):
			fullErr = r.err
		default:
			t.Fatalf("append %d: %v, want success or ErrFull", i, r.err)
		}
	}
	if fullErr == nil {
		t.Fatal("the disk never filled")
	}
	if !errors.Is(fullErr, syscall.ENOSPC) && !errors.Is(fullErr, errWALUnavailable) {
		t.Fatalf("full-disk error %v names neither ENOSPC nor the unavailable log", fullErr)
	}
	if !b.NoSpace() {
		t.Fatal("NoSpace() false after ENOSPC")
	}
	t.Logf("disk full after %d records: %v", len(ok), fullErr)
	// Still full: appends keep failing cleanly.
	if r := appendWait(t, b, testFrames("still", 0, 1)); !errors.Is(r.err, ErrFull) {
		t.Fatalf("append on a full disk: %v, want ErrFull", r.err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r := appendWait(t, b, testFrames("later", 0, 5))
	if r.err != nil {
		t.Fatalf("append after space returned: %v", r.err)
	}
	ok = append(ok, testValues("later", 0, 5)...)
	if b.NoSpace() {
		t.Fatal("NoSpace() still true after a good write")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	b2 := openBuffer(t, Config{Dir: dir, SegmentBytes: 64 << 10})
	got := readValues(t, b2, 1, b2.LastIndex())
	// A failed write may leave whole entries behind (they ship: a duplicate
	// of the client's retry, never a loss); every acknowledged one is there,
	// in order.
	j := 0
	for _, v := range got {
		if j < len(ok) && v == ok[j] {
			j++
		}
	}
	if j != len(ok) {
		t.Fatalf("only %d of %d acknowledged records found in order after reopen (log has %d)", j, len(ok), len(got))
	}
}

// A repair that cuts acknowledged records at the tail (here the last record's
// CRC is broken after it shipped) leaves the checkpoint past the end of the
// WAL. The next records reuse those indices, so the checkpoint must be reset
// at open: otherwise a restart before the next checkpoint would take them as
// shipped and never send them.
func TestCheckpointPastRepairedTail(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	mustAppend(t, b, "r", 0, 10)
	s := startShipper(t, b, newMemSink(), ShipperConfig{})
	drain(t, s)
	s.Close() // checkpoint 10
	b.Close()
	if got := mustReadCheckpoint(t, dir); got != 10 {
		t.Fatalf("checkpoint %d, want 10", got)
	}
	flipLastByte(t, dir)

	b = openBuffer(t, Config{Dir: dir})
	if last := b.LastIndex(); last != 9 {
		t.Fatalf("last index %d after the damaged tail record was cut, want 9", last)
	}
	mustAppend(t, b, "new", 0, 1) // index 10 again
	b.Close()                     // a crash before any checkpoint

	b = openBuffer(t, Config{Dir: dir})
	sink := newMemSink()
	drain(t, startShipper(t, b, sink, ShipperConfig{}))
	found := false
	for _, d := range sink.deliveries() {
		found = found || d.value == "new/0"
	}
	if !found {
		t.Fatalf("the record written at a reused index was never shipped: delivered %v", sink.deliveries())
	}
}

// flipLastByte corrupts the last byte of the last segment: the last record's
// value, so its CRC no longer matches.
func flipLastByte(t *testing.T, dir string) {
	t.Helper()
	segs, err := segmentFiles(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %v %v", segs, err)
	}
	data, err := os.ReadFile(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(segs[len(segs)-1], data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// CatchUpRate paces reads from the WAL: a backlog starts with one burst
// (50 ms worth, at least 256 records) and then waits for the rate. At half a
// record per second the 257th read is two seconds away, so the count seen
// right after the burst is exact.
func TestShipperPacesCatchUp(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	mustAppend(t, b, "r", 0, 1000)
	b.Close()
	b = openBuffer(t, Config{Dir: dir}) // nothing in memory: every record is read back
	sink := newMemSink()
	startShipper(t, b, sink, ShipperConfig{CatchUpRate: 0.5})
	sink.waitSends(t, 256)
	if n := len(sink.sent()); n != 256 {
		t.Fatalf("%d records read back at once, want the burst of 256", n)
	}
}

// Records handed over in memory while the shipper keeps up are never paced:
// with a catch-up rate of one record a second, 2000 fresh records still
// ship at once.
func TestShipperDoesNotPaceLiveRecords(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	sink := newMemSink()
	s := startShipper(t, b, sink, ShipperConfig{CatchUpRate: 1})
	for i := range 20 {
		mustAppend(t, b, "live", i*100, 100)
		drain(t, s)
	}
	if n := len(sink.deliveredIndices()); n != 2000 {
		t.Fatalf("%d records delivered, want 2000", n)
	}
}
