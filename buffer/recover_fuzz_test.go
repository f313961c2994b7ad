package buffer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fuzzRecords is how many records the fuzzed WAL holds, in segments of
// damageSegmentBytes: five sealed segments and four records in the last.
const fuzzRecords = 30

// pristineWAL is the WAL every fuzz input damages, written once through
// Open and Append: its segment files and, for each record, its frame and
// where its entry lies.
type pristineWAL struct {
	files   []walFile
	entries []fuzzEntry // entries[i] holds record i, at index i+1
}

type walFile struct {
	name string
	data []byte
}

type fuzzEntry struct {
	segment    int // in files
	start, end int // byte range of the entry (length prefix and frame)
	frame      []byte
}

// fuzzRecord has a value whose length varies, so that entries do too.
func fuzzRecord(i int) Record {
	r := testRecord("f", i)
	r.Value = fmt.Appendf(nil, "f/%d/%s", i, strings.Repeat("v", i*7%40))
	r.DeadLetter = i%5 == 0
	return r
}

func writePristineWAL(f *testing.F) pristineWAL {
	f.Helper()
	dir := f.TempDir()
	b, err := Open(Config{Dir: dir, SegmentBytes: damageSegmentBytes, Logger: quietLogger})
	if err != nil {
		f.Fatal(err)
	}
	frames := make([][]byte, fuzzRecords)
	for i := range frames {
		r := fuzzRecord(i)
		frames[i] = AppendRecord(nil, &r)
	}
	done := make(chan error, 1)
	b.Append(frames, func(_, _ uint64, err error) { done <- err })
	if err := <-done; err != nil {
		f.Fatal(err)
	}
	if err := b.Close(); err != nil {
		f.Fatal(err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		f.Fatal(err)
	}
	var p pristineWAL
	for si, seg := range segs {
		data, err := os.ReadFile(seg.path)
		if err != nil {
			f.Fatal(err)
		}
		p.files = append(p.files, walFile{seg.name, data})
		for off := 0; off < len(data); {
			frame, end, ok := entryAt(data, off)
			if !ok {
				f.Fatalf("pristine segment %s does not parse at %d", seg.name, off)
			}
			p.entries = append(p.entries, fuzzEntry{segment: si, start: off, end: end, frame: frame})
			off = end
		}
	}
	if len(p.files) < 4 || len(p.entries) != fuzzRecords {
		f.Fatalf("pristine WAL: %d segments, %d entries; the fuzz wants 4+ and %d", len(p.files), len(p.entries), fuzzRecords)
	}
	return p
}

// Damage operations: what a fuzz input does to one segment file.
const (
	opOverwrite  = iota // data over the bytes at off
	opTruncate          // cut the file at off
	opAppend            // data after the end
	opZero              // zero 1+len(data) bytes from off
	opDelete            // remove the file
	opReplace           // the file holds data instead
	opInsert            // data inserted at off
	opUnreadable        // a link to nothing in place of the file
	opFlipBit           // flip bit data[0]%8 of the byte at off
	opCount
	// opRunning added to an op damages a sealed segment of the running
	// gateway, after Open and before the shipper reads it. Only the damage
	// a read can notice: cut, removed or unreadable files.
	opRunning = 16
)

// damageSpan is where a damage hit: segment file s from byte from on (bytes
// past to are untouched but may sit at other offsets; to < 0: to the end).
type damageSpan struct {
	segment  int
	from, to int
}

// applyDamage damages segment seg of dir as op says, and returns where.
func applyDamage(t *testing.T, dir string, p pristineWAL, seg int, op uint8, off int, data []byte) damageSpan {
	t.Helper()
	file := p.files[seg]
	path := filepath.Join(dir, file.name)
	old := file.data
	off = min(off, len(old))
	span := damageSpan{segment: seg, from: off, to: -1}
	var now []byte
	switch op {
	case opOverwrite:
		now = slices.Clone(old)
		n := copy(now[off:], data)
		span.to = off + n
	case opTruncate:
		now = old[:off]
	case opAppend:
		now = append(slices.Clone(old), data...)
		span.from = len(old)
	case opZero:
		now = slices.Clone(old)
		n := min(1+len(data), len(old)-off)
		clear(now[off : off+n])
		span.to = off + n
	case opDelete:
		span.from = 0
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		return span
	case opReplace:
		now, span.from = data, 0
	case opInsert:
		now = slices.Concat(old[:off], data, old[off:])
	case opUnreadable:
		span.from = 0
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(dir, "nowhere"), path); err != nil {
			t.Fatal(err)
		}
		return span
	case opFlipBit:
		now = slices.Clone(old)
		if off == len(old) {
			return damageSpan{segment: seg, from: len(old), to: len(old)} // nothing to flip
		}
		now[off] ^= 1 << (firstByte(data) % 8)
		span.to = off + 1
	}
	if err := os.WriteFile(path, now, 0o644); err != nil {
		t.Fatal(err)
	}
	return span
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// untouched reports whether the damage left entry e's bytes as they were.
func (d damageSpan) untouched(e fuzzEntry) bool {
	return e.segment != d.segment || e.end <= d.from || (d.to >= 0 && e.start >= d.to)
}

// FuzzRecover damages a real WAL (a fuzzer-chosen segment, operation, offset
// and bytes), reopens it and ships everything. Whatever the damage: Open
// succeeds and never panics; every record shipped is one that was written,
// byte for byte, shipped once, in order; every record before the damage, and
// every record of the segments after a damaged sealed one, ships at the index
// it was written at; the bytes of every record the damage did not touch are
// still in a segment or in the quarantine; appends after the open ship; and a
// second open finds nothing to repair. The seed corpus, one input per kind of
// damage, is in testdata/fuzz/FuzzRecover.
func FuzzRecover(f *testing.F) {
	p := writePristineWAL(f)
	f.Fuzz(func(t *testing.T, seg, op uint8, off uint16, data []byte) {
		dir := t.TempDir()
		for _, file := range p.files {
			if err := os.WriteFile(filepath.Join(dir, file.name), file.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		running := op >= opRunning
		if running {
			op = []uint8{opTruncate, opDelete, opUnreadable}[(op-opRunning)%3]
			seg %= uint8(len(p.files) - 1) // sealed: tidwall/wal holds the last one in memory
		} else {
			op %= opCount
			seg %= uint8(len(p.files))
		}
		var damage damageSpan
		var damaged map[string][]byte // the segment files as the damage left them
		if !running {
			damage = applyDamage(t, dir, p, int(seg), op, int(off), data)
			damaged = readSegmentFiles(t, dir)
		}
		// The repair of a damaged sealed segment keeps every other record
		// at its index; damage to the last one may move records after it on.
		exact := int(seg) < len(p.files)-1

		reg := prometheus.NewRegistry()
		b, err := Open(Config{Dir: dir, SegmentBytes: damageSegmentBytes, Logger: quietLogger, Registerer: reg})
		if err != nil {
			t.Fatalf("Open after the damage: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		if running {
			damage = applyDamage(t, dir, p, int(seg), op, int(off), data)
			damaged = readSegmentFiles(t, dir)
		}
		sink := newMemSink()
		s := startShipper(t, b, sink, ShipperConfig{Registerer: reg, CheckpointInterval: time.Hour})
		drain(t, s)
		checkFuzzShipped(t, p, damage, sink.deliveries(), exact)
		checkNothingLost(t, dir, damaged, readSegmentFiles(t, dir))
		checkTailEndsWithRecord(t, dir)

		first, _ := mustAppend(t, b, "after", 0, 2)
		drain(t, s)
		shipped := sink.deliveries()
		if got := shipped[len(shipped)-2:]; !slices.Equal(got, []delivery{{first, "after/0"}, {first + 1, "after/1"}}) {
			t.Fatalf("appends after the repair shipped as %v", got)
		}
		s.Close()
		if err := b.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}

		quarantinedBefore := len(quarantined(t, dir))
		rec, err := recoverWAL(dir, quietLogger, true)
		if err != nil || rec != (recovery{}) {
			t.Fatalf("second recovery: %+v, %v; want nothing to repair", rec, err)
		}
		if got := len(quarantined(t, dir)); got != quarantinedBefore {
			t.Fatalf("second recovery quarantined %d more files", got-quarantinedBefore)
		}
	})
}

// checkFuzzShipped checks what the sink got from the damaged WAL; with exact,
// that every record written shipped at the index it was written at.
func checkFuzzShipped(t *testing.T, p pristineWAL, damage damageSpan, shipped []delivery, exact bool) {
	t.Helper()
	byValue := map[string]int{}
	for i := range p.entries {
		r := fuzzRecord(i)
		byValue[string(r.Value)] = i
	}
	shippedAt := map[int]uint64{}
	last := -1
	for _, d := range shipped {
		i, ok := byValue[d.value]
		if !ok {
			t.Fatalf("shipped %q at index %d, never written", d.value, d.index)
		}
		if _, again := shippedAt[i]; again {
			t.Fatalf("record %d shipped twice", i)
		}
		if i < last {
			t.Fatalf("record %d shipped after record %d", i, last)
		}
		if exact && d.index != uint64(i+1) {
			t.Fatalf("record %d shipped at index %d, written at %d (damage %+v)", i, d.index, i+1, damage)
		}
		shippedAt[i], last = d.index, i
	}
	for i, e := range p.entries {
		before := e.segment < damage.segment || (e.segment == damage.segment && e.end <= damage.from)
		later := e.segment > damage.segment && damage.segment < len(p.files)-1
		if !before && !later {
			continue
		}
		if at, ok := shippedAt[i]; !ok || at != uint64(i+1) {
			t.Errorf("record %d (segment %d, bytes %d-%d) untouched by damage %+v: shipped %v at %d, want at %d",
				i, e.segment, e.start, e.end, damage, ok, at, i+1)
		}
	}
}

// segmentFiles reads dir's segment files, by name; an unreadable one is absent.
func readSegmentFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, seg := range segs {
		if data, err := os.ReadFile(seg.path); err == nil {
			files[seg.name] = data
		}
	}
	return files
}

// checkNothingLost checks, without trusting the repair's own reasoning, that
// it deleted nothing without quarantining it: each segment file as it was
// before the repair is the repaired file's entries, placeholders aside, with
// the quarantine files (named <segment>.<offset>.<nanos>) back at their
// offsets; and a new segment file holds only placeholders.
func checkNothingLost(t *testing.T, dir string, before, after map[string][]byte) {
	t.Helper()
	cuts := map[string]map[int][]byte{}
	paths, err := filepath.Glob(filepath.Join(dir, quarantineDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		var seg string
		var off int
		var nanos int64
		if _, err := fmt.Sscanf(strings.ReplaceAll(filepath.Base(p), ".", " "), "%s %d %d", &seg, &off, &nanos); err != nil {
			t.Fatalf("quarantine file %s: %v", p, err)
		}
		data, err := os.ReadFile(p)
		if err != nil { // a moved unreadable segment: nothing to read back
			continue
		}
		if cuts[seg] == nil {
			cuts[seg] = map[int][]byte{}
		}
		cuts[seg][off] = data
	}
	for name, now := range after {
		was, existed := before[name]
		if !existed {
			if recs := recordEntries(t, now); len(recs) != 0 {
				t.Errorf("new segment %s holds %d entries other than placeholders", name, len(recs))
			}
			continue
		}
		var kept []byte
		for off := 0; off < len(was); {
			if cut, ok := cuts[name][off]; ok {
				if !bytes.Equal(was[off:min(len(was), off+len(cut))], cut) {
					t.Fatalf("quarantine of %s at %d holds %x, the segment had %x", name, off, cut, was[off:min(len(was), off+len(cut))])
				}
				off += len(cut)
				continue
			}
			kept = append(kept, was[off])
			off++
		}
		if got, want := recordEntries(t, now), recordEntries(t, kept); !slices.EqualFunc(got, want, bytes.Equal) {
			t.Errorf("segment %s: after the repair its entries are %x, but what it held less the quarantine is %x", name, got, want)
		}
	}
}

// recordEntries are the entries of segment bytes that frame whole, except placeholders.
func recordEntries(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for off := 0; off < len(data); {
		frame, end, ok := entryAt(data, off)
		if !ok {
			t.Fatalf("segment bytes %x do not frame whole at %d", data, off)
		}
		if !isPlaceholder(frame) {
			out = append(out, data[off:end])
		}
		off = end
	}
	return out
}

// checkTailEndsWithRecord: after a repair the last segment is empty or ends
// with a record, so a torn or zeroed end is never left for the next write.
func checkTailEndsWithRecord(t *testing.T, dir string) {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := readSegmentFile(t, segs[len(segs)-1])
	var last []byte
	for off := 0; off < len(data); {
		frame, end, ok := entryAt(data, off)
		if !ok {
			t.Fatalf("last segment torn at %d", off)
		}
		last, off = frame, end
	}
	if len(data) > 0 && !isRecord(last) {
		t.Fatalf("last segment ends with %x, not a record", last)
	}
}
