package buffer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/wal"
)

// readThroughTidwall reads index the old way, for comparison.
func readThroughTidwall(t *testing.T, b *Buffer, index uint64) []byte {
	t.Helper()
	frame, err := b.readEntry(index)
	if err != nil {
		t.Fatalf("tidwall/wal read of index %d: %v", index, err)
	}
	return frame
}

// The shipper's reads of sealed segments go through the cursor and return
// what tidwall/wal returns, in order, after a rewind, and across segments;
// reads from the tail segment go to tidwall/wal without listing the
// directory each time.
func TestSealedReadsMatchTidwall(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir, SegmentBytes: 1024})
	for i := range 20 {
		mustAppend(t, b, "s", i*10, 10)
	}
	segs, err := listSegments(dir)
	if err != nil || len(segs) < 4 {
		t.Fatalf("want several segments, have %d (%v)", len(segs), err)
	}
	tailFirst := segs[len(segs)-1].first
	last := b.LastIndex()
	check := func(from, to uint64) {
		t.Helper()
		for i := from; i <= to; i++ {
			got, err := b.read(i)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if want := readThroughTidwall(t, b, i); !bytes.Equal(got, want) {
				t.Fatalf("index %d: cursor read %q, tidwall/wal %q", i, got, want)
			}
		}
	}
	check(1, last)
	if want := tailFirst - 1; b.sealed.served != want {
		t.Errorf("cursor served %d reads, want every sealed one (%d)", b.sealed.served, want)
	}
	// A rewind into the middle of a segment, then on through the next ones.
	mid := segs[1].first + 3
	served := b.sealed.served
	check(mid, last)
	if want := served + tailFirst - mid; b.sealed.served != want {
		t.Errorf("after a rewind the cursor served %d reads, want %d", b.sealed.served, want)
	}
	// Skipping forward (a rewind's confirmed records) stays in the open
	// file: one open per sealed segment.
	opens := b.sealed.opens
	for i := uint64(1); i < tailFirst; i += 2 {
		got, err := b.read(i)
		if err != nil || !bytes.Equal(got, readThroughTidwall(t, b, i)) {
			t.Fatalf("read %d skipping forward: %q, %v", i, got, err)
		}
	}
	if got, want := b.sealed.opens-opens, len(segs)-1; got != want {
		t.Errorf("reading every other record opened %d segment files, want %d", got, want)
	}
	// Reading the tail again and again lists the directory no more.
	listings := b.sealed.listings
	for range 3 {
		check(tailFirst, last)
	}
	if b.sealed.listings != listings {
		t.Errorf("tail reads listed the directory %d more times", b.sealed.listings-listings)
	}
	// Once the writer starts a segment, the former tail is read by the cursor.
	for b.cycles.Load() == 0 || len(mustList(t, dir)) == len(segs) {
		mustAppend(t, b, "more", 0, 10)
	}
	served = b.sealed.served
	check(tailFirst, tailFirst)
	if b.sealed.served != served+1 {
		t.Errorf("the former tail segment, now sealed, was not read by the cursor")
	}
}

func mustList(t *testing.T, dir string) []segmentFile {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// Damage anywhere in a sealed segment keeps the cursor out of all of it:
// the first read goes through tidwall/wal, which finds the damage, and the
// repair keeps every good record at its index, as before the cursor.
func TestSealedReadLeavesDamagedSegmentsToRepair(t *testing.T) {
	for _, tc := range []struct {
		name     string
		damage   func(data []byte, offs []int) []byte
		repaired bool // tidwall/wal finds the damage and the segment is repaired
	}{
		{"torn last entry", func(d []byte, _ []int) []byte { return d[:len(d)-3] }, true},
		{"length one too long mid-segment", func(d []byte, offs []int) []byte {
			d[offs[3]]++ // a one-byte uvarint length
			return d
		}, true},
		// tidwall/wal reads zeros as empty entries and finds nothing
		// wrong; the records' own checks catch them when shipped.
		{"zeroed entry", func(d []byte, offs []int) []byte {
			for i := offs[2]; i < offs[3]; i++ {
				d[i] = 0
			}
			return d
		}, false},
		{"junk appended", func(d []byte, _ []int) []byte { return append(d, 5, 'j', 'u', 'n', 'k', '!') }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newDamagedWAL(t, 40)
			o := w.open(t)
			// Damaged while the gateway runs: the open checked it whole.
			seg := w.segment(t, 1)
			writeSegmentFile(t, seg, tc.damage(readSegmentFile(t, seg), entryOffsets(t, seg)))
			frame, err := o.b.read(seg.first)
			if err != nil {
				t.Fatalf("read %d: %v", seg.first, err)
			}
			if o.b.sealed.served != 0 {
				t.Errorf("the cursor served %d reads from a damaged segment", o.b.sealed.served)
			}
			var r Record
			if err := DecodeRecord(frame, &r); err != nil || string(r.Value) != fmt.Sprintf("d/%d", record(seg.first)) {
				t.Errorf("index %d: %q (%v), want d/%d", seg.first, r.Value, err, record(seg.first))
			}
			if got := o.b.segmentRepairs.Load() == 1; got != tc.repaired {
				t.Errorf("segment repaired %t, want %t", got, tc.repaired)
			}
		})
	}
}

// The cursor closes a segment file once read to its end, and Close closes
// the one it holds open.
func TestCloseClosesSealedCursor(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(Config{Dir: dir, SegmentBytes: 512, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, b, "c", 0, 50)
	if _, err := b.read(1); err != nil {
		t.Fatal(err)
	}
	f := b.sealed.f
	if f == nil {
		t.Fatal("the cursor holds no file after a sealed read")
	}
	// Reading a segment to its end closes it: a removed segment's space
	// must not be held while the shipper reads from memory.
	for i := uint64(2); i < b.sealed.end; i++ {
		if _, err := b.read(i); err != nil {
			t.Fatal(err)
		}
	}
	if b.sealed.f != nil {
		t.Fatal("the cursor kept its segment open after reading all of it")
	}
	if err := f.Close(); err == nil {
		t.Error("the finished segment's file was still open")
	}
	if _, err := b.read(1); err != nil {
		t.Fatal(err)
	}
	f = b.sealed.f
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b.sealed.f != nil {
		t.Error("Close left the cursor's file open")
	}
	if err := f.Close(); err == nil {
		t.Error("the cursor's file was still open after Close")
	}
}

// FuzzSealedCursor feeds arbitrary bytes as a sealed segment of entries
// records and checks the cursor against tidwall/wal: whatever the cursor
// serves, tidwall/wal reads the same, without error.
func FuzzSealedCursor(f *testing.F) {
	var good []byte
	for i := range 5 {
		good = append(good, byte(3+i%2))
		good = append(good, bytes.Repeat([]byte{'a' + byte(i)}, 3+i%2)...)
	}
	f.Add(good, uint8(5))
	f.Add(good, uint8(4))
	f.Add(good, uint8(6))
	f.Add(good[:len(good)-1], uint8(5))
	f.Add([]byte{0, 0, 2, 'h', 'i'}, uint8(3))
	f.Add([]byte{0x80, 0x80, 0x80}, uint8(1))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, entries uint8) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentFileName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		tail := uint64(entries) + 1
		if err := os.WriteFile(filepath.Join(dir, segmentFileName(tail)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		c := sealedCursor{dir: dir}
		defer c.close()
		var served [][]byte
		for i := uint64(1); i < tail; i++ {
			frame, ok := c.frame(i, 0)
			if !ok {
				if len(served) > 0 {
					t.Fatalf("the cursor served %d entries, then refused index %d", len(served), i)
				}
				return // tidwall/wal's business
			}
			served = append(served, frame)
		}
		if _, ok := c.frame(tail, 0); ok {
			t.Fatal("the cursor read the tail segment")
		}
		l, err := wal.Open(dir, &wal.Options{LogFormat: wal.Binary, AllowEmpty: true, SegmentCacheSize: 2})
		if err != nil {
			t.Fatalf("the cursor served %d entries of a log tidwall/wal cannot open: %v", len(served), err)
		}
		defer l.Close()
		for i, want := range served {
			got, err := l.Read(uint64(i) + 1)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("index %d: cursor %q, tidwall/wal %q (%v)", i+1, want, got, err)
			}
		}
	})
}
