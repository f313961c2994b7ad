package buffer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A crash in the middle of a write leaves a torn entry at the end of the last
// segment. Open must cut it (quarantining the bytes, never deleting them),
// keep every whole record, and carry on at the next index.
func TestOpenRepairsTornTail(t *testing.T) {
	tests := map[string][]byte{
		"partial length varint":       {0x80},
		"length without bytes":        {0x40},
		"length with some bytes":      append([]byte{0x40}, bytes.Repeat([]byte{7}, 20)...),
		"half of a real record frame": nil, // filled in below
	}
	for name, torn := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			b := openBuffer(t, Config{Dir: dir})
			mustAppend(t, b, "r", 0, 10)
			b.Close()
			seg := lastSegment(t, dir)
			if torn == nil {
				frame := testFrames("torn", 0, 1)[0]
				entry := append([]byte{byte(len(frame))}, frame...)
				torn = entry[:len(entry)/2]
			}
			before, _ := os.ReadFile(seg)
			appendFile(t, seg, torn)

			b = openBuffer(t, Config{Dir: dir})
			if got := b.LastIndex(); got != 10 {
				t.Fatalf("LastIndex after repair = %d, want 10", got)
			}
			for i := uint64(1); i <= 10; i++ {
				frame, err := b.read(i)
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				var r Record
				if err := DecodeRecord(frame, &r); err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
			}
			if after, _ := os.ReadFile(seg); !bytes.Equal(after, before) {
				t.Errorf("segment after repair is %d bytes, want the %d whole-entry bytes", len(after), len(before))
			}
			q, _ := filepath.Glob(filepath.Join(dir, quarantineDir, "*"))
			if len(q) != 1 {
				t.Fatalf("quarantine files %v, want 1", q)
			}
			if got, _ := os.ReadFile(q[0]); !bytes.Equal(got, torn) {
				t.Errorf("quarantined %x, want %x", got, torn)
			}
			if b.tailRepairs.Load() != 1 {
				t.Errorf("tail repairs = %d, want 1", b.tailRepairs.Load())
			}
			if first, last := mustAppend(t, b, "after", 0, 3); first != 11 || last != 13 {
				t.Errorf("append after repair got %d..%d, want 11..13", first, last)
			}
		})
	}
}

func TestRepairTailNothingToRepair(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	mustAppend(t, b, "r", 0, 3)
	b.Close()
	if _, err := repairTail(dir, quietLogger); !errors.Is(err, errNoTornTail) {
		t.Fatalf("repairTail on a whole segment: %v", err)
	}
	if _, err := repairTail(t.TempDir(), quietLogger); !errors.Is(err, errNoTornTail) {
		t.Fatalf("repairTail on an empty dir: %v", err)
	}
}

func TestLastWholeEntryEnd(t *testing.T) {
	f := func(data []byte, want int) {
		t.Helper()
		if got := lastWholeEntryEnd(data); got != want {
			t.Errorf("lastWholeEntryEnd(%x) = %d, want %d", data, got, want)
		}
	}
	f(nil, 0)
	f([]byte{0x02, 'a', 'b'}, 3)
	f([]byte{0x02, 'a', 'b', 0x01}, 3)
	f([]byte{0x02, 'a', 'b', 0x01, 'c'}, 5)
	f([]byte{0x02, 'a'}, 0)
	f([]byte{0x80}, 0)
	f([]byte{0x00, 0x00}, 2) // zeroed bytes are empty entries to tidwall/wal
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := segmentFiles(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments %v: %v", segs, err)
	}
	return segs[len(segs)-1]
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
