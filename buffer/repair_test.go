package buffer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/wal"
)

// damageSegmentBytes makes segments of eight test records.
const damageSegmentBytes = 256

// damagedWAL is a closed WAL holding the records "d/0".."d/n-1" at indices
// 1..n, written through Open and Append, for a test to damage and reopen.
type damagedWAL struct {
	dir string
	n   int
}

func newDamagedWAL(t *testing.T, n int) *damagedWAL {
	t.Helper()
	w := &damagedWAL{dir: t.TempDir(), n: n}
	b := openBuffer(t, Config{Dir: w.dir, SegmentBytes: damageSegmentBytes})
	mustAppend(t, b, "d", 0, n)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return w
}

// segment is the WAL's i-th segment file; -1 is the last.
func (w *damagedWAL) segment(t *testing.T, i int) segmentFile {
	t.Helper()
	segs, err := listSegments(w.dir)
	if err != nil {
		t.Fatal(err)
	}
	if i < 0 {
		i += len(segs)
	}
	if i < 0 || i >= len(segs) {
		t.Fatalf("the WAL has %d segments, no segment %d", len(segs), i)
	}
	return segs[i]
}

// entryOffsets are the offsets where the segment's entries start, and its size.
func entryOffsets(t *testing.T, seg segmentFile) []int {
	t.Helper()
	data := readSegmentFile(t, seg)
	offs := []int{0}
	for off := 0; off < len(data); {
		_, end, ok := entryAt(data, off)
		if !ok {
			t.Fatalf("segment %s does not parse at %d", seg.name, off)
		}
		off = end
		offs = append(offs, off)
	}
	return offs
}

func readSegmentFile(t *testing.T, seg segmentFile) []byte {
	t.Helper()
	data, err := os.ReadFile(seg.path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeSegmentFile(t *testing.T, seg segmentFile, data []byte) {
	t.Helper()
	if err := os.WriteFile(seg.path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// record is the number of the record written at index.
func record(index uint64) int { return int(index) - 1 }

// recordsOf are the numbers of the records in entries from..to-1 of seg.
func recordsOf(seg segmentFile, from, to int) []int {
	var r []int
	for i := from; i < to; i++ {
		r = append(r, record(seg.first)+i)
	}
	return r
}

// logCapture collects a Buffer's JSON log lines.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// lines are the logged records whose message starts with prefix.
func (c *logCapture) lines(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(c.buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// opened is a Buffer reopened on a damaged WAL, with its metrics and log.
type opened struct {
	b   *Buffer
	reg *prometheus.Registry
	log *logCapture
}

func (w *damagedWAL) open(t *testing.T) opened {
	t.Helper()
	o := opened{reg: prometheus.NewRegistry(), log: &logCapture{}}
	o.b = openBuffer(t, Config{Dir: w.dir, SegmentBytes: damageSegmentBytes, Registerer: o.reg,
		Logger: slog.New(slog.NewJSONHandler(o.log, nil))})
	return o
}

func (o opened) metric(t *testing.T, name string) float64 {
	t.Helper()
	v, ok := gatherValues(t, o.reg)[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	return v
}

// quarantined are the contents of the quarantine files, in name order.
func quarantined(t *testing.T, dir string) [][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, quarantineDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) { // a quarantined dangling link reads as missing
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// outcome is what a damage must leave after the reopen.
type outcome struct {
	lost        []int    // records that cannot ship
	corrupt     int      // entries the shipper skips and counts: placeholders and bad records
	quarantined [][]byte // contents of the quarantine files
	tail        bool     // repaired as the last segment (else as a sealed one, if quarantined or lost)
	unrepaired  bool     // nothing to repair, though records are lost (gone or bad)
	moved       int      // how many later records' indices moved on by (tail damage before good records)
}

// checkRecovery reopens the damaged WAL and checks every promise of the
// repair: Open succeeds; every undamaged record ships once, in order, at the
// index it was written at; the damaged ones are counted and their bytes are
// in the quarantine; new appends ship after them; and a second open finds
// nothing left to repair.
func checkRecovery(t *testing.T, w *damagedWAL, want outcome) {
	t.Helper()
	o := w.open(t)
	repairs := 0
	if (want.lost != nil || want.quarantined != nil) && !want.unrepaired {
		repairs = 1
	}
	tailRepairs, segmentRepairs := 0, repairs
	if want.tail {
		tailRepairs, segmentRepairs = repairs, 0
	}
	if got := o.metric(t, "sluice_wal_tail_repairs_total"); got != float64(tailRepairs) {
		t.Errorf("sluice_wal_tail_repairs_total = %v, want %d", got, tailRepairs)
	}
	if got := o.metric(t, "sluice_wal_segment_repairs_total"); got != float64(segmentRepairs) {
		t.Errorf("sluice_wal_segment_repairs_total = %v, want %d", got, segmentRepairs)
	}
	if got := quarantined(t, w.dir); !slices.EqualFunc(got, want.quarantined, bytes.Equal) {
		t.Errorf("quarantined %q, want %q", got, want.quarantined)
	}

	sink := newMemSink()
	s := startShipper(t, o.b, sink, ShipperConfig{Registerer: o.reg, CheckpointInterval: time.Hour})
	_, last := mustAppend(t, o.b, "after", 0, 3)
	drain(t, s)
	var wantShipped []delivery
	for i := range w.n {
		if !slices.Contains(want.lost, i) {
			index := uint64(i + 1)
			if want.moved > 0 && len(want.lost) > 0 && i > slices.Max(want.lost) {
				index += uint64(want.moved)
			}
			wantShipped = append(wantShipped, delivery{index, fmt.Sprintf("d/%d", i)})
		}
	}
	for i, v := range testValues("after", 0, 3) {
		wantShipped = append(wantShipped, delivery{last - 2 + uint64(i), v})
	}
	if got := sink.deliveries(); !slices.Equal(got, wantShipped) {
		t.Errorf("shipped %v\nwant    %v", got, wantShipped)
	}
	if got := o.metric(t, "sluice_wal_corrupt_records_total"); got != float64(want.corrupt) {
		t.Errorf("sluice_wal_corrupt_records_total = %v, want %d", got, want.corrupt)
	}
	s.Close()
	if err := o.b.Close(); err != nil {
		t.Fatal(err)
	}

	again := w.open(t)
	if again.b.LastIndex() != last {
		t.Errorf("second open: last index %d, want %d", again.b.LastIndex(), last)
	}
	for _, m := range []string{"sluice_wal_tail_repairs_total", "sluice_wal_segment_repairs_total"} {
		if got := again.metric(t, m); got != 0 {
			t.Errorf("second open: %s = %v, want 0 (the repair is not idempotent)", m, got)
		}
	}
	if got := len(quarantined(t, w.dir)); got != len(want.quarantined) {
		t.Errorf("second open: %d quarantine files, want %d", got, len(want.quarantined))
	}
}

// A crash in the middle of a write, or a file system's crash recovery,
// leaves damage at the end of the last segment. Open cuts it back to the last
// good record, quarantining the bytes, and the indices carry on from there.
func TestOpenRepairsTornTail(t *testing.T) {
	frame := testFrames("torn", 0, 1)[0]
	entry := append([]byte{byte(len(frame))}, frame...)
	tests := map[string][]byte{
		"partial length varint":          {0x80},
		"length without bytes":           {0x40},
		"length with some bytes":         append([]byte{0x40}, bytes.Repeat([]byte{7}, 20)...),
		"half of a real record frame":    entry[:len(entry)/2],
		"zero-filled 4 KiB":              make([]byte, 4096),
		"zero-filled after a torn entry": append(slices.Clone(entry[:7]), make([]byte, 100)...),
		"one stray byte":                 {0x01},
		"whole entry with a bad crc":     append(slices.Clone(entry[:len(entry)-1]), entry[len(entry)-1]^1),
	}
	for name, torn := range tests {
		t.Run(name, func(t *testing.T) {
			w := newDamagedWAL(t, 20)
			tail := w.segment(t, -1)
			data := readSegmentFile(t, tail)
			writeSegmentFile(t, tail, append(slices.Clone(data), torn...))
			checkRecovery(t, w, outcome{quarantined: [][]byte{torn}, tail: true})
		})
	}
}

// The last record of the last segment fails its CRC, or the whole last
// segment is garbage or empty: cut back to the last good record.
func TestOpenRepairsDamagedLastSegment(t *testing.T) {
	tests := map[string]func(t *testing.T, w *damagedWAL) outcome{
		"crc mismatch in the last record": func(t *testing.T, w *damagedWAL) outcome {
			tail := w.segment(t, -1)
			data, offs := readSegmentFile(t, tail), entryOffsets(t, tail)
			data[len(data)-3] ^= 0x40
			writeSegmentFile(t, tail, data)
			last := len(offs) - 2
			return outcome{lost: recordsOf(tail, last, last+1), quarantined: [][]byte{data[offs[last]:]}, tail: true}
		},
		"garbage last segment": func(t *testing.T, w *damagedWAL) outcome {
			tail := w.segment(t, -1)
			n := len(entryOffsets(t, tail)) - 1
			garbage := bytes.Repeat([]byte{0xA5, 0x5A, 0x80}, 100)
			writeSegmentFile(t, tail, garbage)
			return outcome{lost: recordsOf(tail, 0, n), quarantined: [][]byte{garbage}, tail: true}
		},
		"zeroed last segment": func(t *testing.T, w *damagedWAL) outcome {
			tail := w.segment(t, -1)
			offs := entryOffsets(t, tail)
			zeros := make([]byte, offs[len(offs)-1])
			writeSegmentFile(t, tail, zeros)
			return outcome{lost: recordsOf(tail, 0, len(offs)-1), quarantined: [][]byte{zeros}, tail: true}
		},
		"empty last segment": func(t *testing.T, w *damagedWAL) outcome {
			tail := w.segment(t, -1)
			n := len(entryOffsets(t, tail)) - 1
			writeSegmentFile(t, tail, nil) // nothing to cut: the records are simply gone
			return outcome{lost: recordsOf(tail, 0, n), unrepaired: true}
		},
	}
	for name, damage := range tests {
		t.Run(name, func(t *testing.T) {
			w := newDamagedWAL(t, 20)
			want := damage(t, w)
			want.tail = true
			checkRecovery(t, w, want)
		})
	}
}

// Damage before good records in the last segment (a zeroed block, a torn
// length): the good records after it stay, moved on by at most what the
// damaged bytes could have held, never back (that could skip them as shipped).
func TestOpenKeepsGoodRecordsAfterTailDamage(t *testing.T) {
	w := newDamagedWAL(t, 20)
	tail := w.segment(t, -1)
	data, offs := readSegmentFile(t, tail), entryOffsets(t, tail)
	if len(offs) < 4 {
		t.Fatalf("the last segment holds %d entries; the test wants 3", len(offs)-1)
	}
	// Zero record 1 of the segment and half of record 2.
	clear(data[offs[1] : offs[2]+(offs[3]-offs[2])/2])
	damaged := slices.Clone(data[offs[1]:offs[3]])
	writeSegmentFile(t, tail, data)
	placeholders := len(damaged) / minRecordEntry
	checkRecovery(t, w, outcome{
		lost:        recordsOf(tail, 1, 3),
		corrupt:     placeholders,
		quarantined: [][]byte{damaged},
		tail:        true,
		moved:       placeholders - 2,
	})
}

// A sealed segment damaged in any way is rebuilt at open: its good records
// keep their indices, the damaged bytes go to the quarantine, and the indices
// of lost records become placeholders, skipped and counted by the shipper.
func TestOpenRepairsSealedSegments(t *testing.T) {
	tests := map[string]func(t *testing.T, w *damagedWAL) outcome{
		"torn in an entry": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 1)
			data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
			writeSegmentFile(t, seg, data[:offs[3]+5])
			n := len(offs) - 1
			return outcome{lost: recordsOf(seg, 3, n), corrupt: n - 3, quarantined: [][]byte{data[offs[3] : offs[3]+5]}}
		},
		"short: ends at an entry": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 1)
			data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
			writeSegmentFile(t, seg, data[:offs[3]])
			n := len(offs) - 1
			return outcome{lost: recordsOf(seg, 3, n), corrupt: n - 3}
		},
		"zeroed block inside": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 1)
			data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
			clear(data[offs[2]+3 : offs[3]+10])
			writeSegmentFile(t, seg, data)
			return outcome{lost: recordsOf(seg, 2, 4), corrupt: 2, quarantined: [][]byte{data[offs[2]:offs[4]]}}
		},
		"garbage inside": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 2)
			data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
			copy(data[offs[4]+1:], bytes.Repeat([]byte{0xC3}, 50))
			writeSegmentFile(t, seg, data)
			lost := recordsOf(seg, 4, 6)
			return outcome{lost: lost, corrupt: 2, quarantined: [][]byte{data[offs[4]:offs[6]]}}
		},
		"length prefix grown by one": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 1)
			data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
			data[offs[5]]++
			writeSegmentFile(t, seg, data)
			return outcome{lost: recordsOf(seg, 5, 6), corrupt: 1, quarantined: [][]byte{data[offs[5]:offs[6]]}}
		},
		"length prefix shrunk by one": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 1)
			data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
			data[offs[5]]--
			writeSegmentFile(t, seg, data)
			return outcome{lost: recordsOf(seg, 5, 6), corrupt: 1, quarantined: [][]byte{data[offs[5]:offs[6]]}}
		},
		"garbage appended": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 0)
			extra := []byte{0x03, 'a', 'b', 'c', 0x00, 0x00, 0x07}
			writeSegmentFile(t, seg, append(readSegmentFile(t, seg), extra...))
			return outcome{quarantined: [][]byte{extra}}
		},
		"whole segment garbage": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 1)
			n := len(entryOffsets(t, seg)) - 1
			garbage := bytes.Repeat([]byte{0x99}, 300)
			writeSegmentFile(t, seg, garbage)
			return outcome{lost: recordsOf(seg, 0, n), corrupt: n, quarantined: [][]byte{garbage}}
		},
		"empty segment": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 0)
			n := len(entryOffsets(t, seg)) - 1
			writeSegmentFile(t, seg, nil)
			return outcome{lost: recordsOf(seg, 0, n), corrupt: n}
		},
		"missing segment": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 2)
			n := len(entryOffsets(t, seg)) - 1
			if err := os.Remove(seg.path); err != nil {
				t.Fatal(err)
			}
			return outcome{lost: recordsOf(seg, 0, n), corrupt: n}
		},
		"unreadable segment": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 1)
			n := len(entryOffsets(t, seg)) - 1
			makeUnreadable(t, seg)
			return outcome{lost: recordsOf(seg, 0, n), corrupt: n, quarantined: [][]byte{nil}}
		},
		"two damaged stretches": func(t *testing.T, w *damagedWAL) outcome {
			// The good record between them cannot be placed for sure: lost.
			seg := w.segment(t, 1)
			data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
			data[offs[2]]++
			data[offs[4]]--
			writeSegmentFile(t, seg, data)
			return outcome{lost: recordsOf(seg, 2, 5), corrupt: 3, quarantined: [][]byte{data[offs[2]:offs[5]]}}
		},
	}
	for name, damage := range tests {
		t.Run(name, func(t *testing.T) {
			w := newDamagedWAL(t, 40)
			checkRecovery(t, w, damage(t, w))
		})
	}
}

// makeUnreadable replaces a segment file by a link to nothing: listed like a
// file, failing every read (tests run as root, which file modes do not stop).
func makeUnreadable(t *testing.T, seg segmentFile) {
	t.Helper()
	if err := os.Remove(seg.path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(filepath.Dir(seg.path), "nowhere"), seg.path); err != nil {
		t.Fatal(err)
	}
}

// A record failing its CRC inside a sealed segment that frames whole is at
// its index: it stays, and the shipper skips and counts it.
func TestOpenLeavesBadRecordInWholeSegment(t *testing.T) {
	w := newDamagedWAL(t, 40)
	seg := w.segment(t, 1)
	data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
	data[offs[3]+10] ^= 0x01
	writeSegmentFile(t, seg, data)
	o := w.open(t)
	if got := o.metric(t, "sluice_wal_segment_repairs_total"); got != 0 {
		t.Errorf("sluice_wal_segment_repairs_total = %v, want 0", got)
	}
	if got := readSegmentFile(t, seg); !bytes.Equal(got, data) {
		t.Error("the segment was rewritten")
	}
	o.b.Close()
	checkRecovery(t, w, outcome{lost: recordsOf(seg, 3, 4), corrupt: 1, unrepaired: true})
}

// The repair's log line says what was repaired and where the bytes went.
func TestRepairLogLines(t *testing.T) {
	w := newDamagedWAL(t, 40)
	seg := w.segment(t, 1)
	data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
	writeSegmentFile(t, seg, data[:offs[3]+5])
	tail := w.segment(t, -1)
	writeSegmentFile(t, tail, append(readSegmentFile(t, tail), 0x80))
	o := w.open(t)
	lines := o.log.lines(t, "wal segment repaired")
	if len(lines) != 1 {
		t.Fatalf("%d segment repair log lines, want 1", len(lines))
	}
	q := quarantined(t, w.dir)
	want := map[string]any{"segment": seg.name, "offset": float64(offs[3]), "bytes": float64(5),
		"records_lost": float64(len(offs) - 1 - 3)}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("segment repair logged %s=%v, want %v", k, lines[0][k], v)
		}
	}
	if paths, _ := lines[0]["quarantine"].([]any); len(paths) != 1 || !strings.Contains(paths[0].(string), seg.name) {
		t.Errorf("segment repair logged quarantine %v", lines[0]["quarantine"])
	}
	if len(q) != 2 || len(o.log.lines(t, "wal tail repaired")) != 1 {
		t.Errorf("%d quarantine files and %d tail repair lines, want 2 and 1", len(q), len(o.log.lines(t, "wal tail repaired")))
	}
}

// A sealed segment damaged after the open (the disk failing under a running
// gateway) is found by the read that needs it: the read rebuilds it, reopens
// the log and carries on, and shipping continues.
func TestReadRepairsDamagedSegment(t *testing.T) {
	tests := map[string]func(t *testing.T, w *damagedWAL) outcome{
		// tidwall/wal: ErrCorrupt.
		"torn in an entry": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 2)
			data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
			writeSegmentFile(t, seg, data[:offs[6]+1])
			n := len(offs) - 1
			return outcome{lost: recordsOf(seg, 6, n), corrupt: n - 6, quarantined: [][]byte{data[offs[6] : offs[6]+1]}}
		},
		// tidwall/wal: a panic, index out of range.
		"short: ends at an entry": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 2)
			data, offs := readSegmentFile(t, seg), entryOffsets(t, seg)
			writeSegmentFile(t, seg, data[:offs[4]])
			n := len(offs) - 1
			return outcome{lost: recordsOf(seg, 4, n), corrupt: n - 4}
		},
		"empty": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 1)
			n := len(entryOffsets(t, seg)) - 1
			writeSegmentFile(t, seg, nil)
			return outcome{lost: recordsOf(seg, 0, n), corrupt: n}
		},
		// tidwall/wal: the file's read error; no segment left holds the index.
		"first segment gone": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 0)
			n := len(entryOffsets(t, seg)) - 1
			if err := os.Remove(seg.path); err != nil {
				t.Fatal(err)
			}
			return outcome{lost: recordsOf(seg, 0, n), corrupt: n}
		},
		"middle segment gone": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 2)
			n := len(entryOffsets(t, seg)) - 1
			if err := os.Remove(seg.path); err != nil {
				t.Fatal(err)
			}
			return outcome{lost: recordsOf(seg, 0, n), corrupt: n}
		},
		// tidwall/wal: the file's read error.
		"unreadable": func(t *testing.T, w *damagedWAL) outcome {
			seg := w.segment(t, 0)
			n := len(entryOffsets(t, seg)) - 1
			makeUnreadable(t, seg)
			return outcome{lost: recordsOf(seg, 0, n), corrupt: n, quarantined: [][]byte{nil}}
		},
	}
	for name, damage := range tests {
		t.Run(name, func(t *testing.T) {
			w := newDamagedWAL(t, 40)
			o := w.open(t)
			want := damage(t, w)
			sink := newMemSink()
			s := startShipper(t, o.b, sink, ShipperConfig{Registerer: o.reg, CheckpointInterval: time.Hour})
			drain(t, s)
			var wantShipped []delivery
			for i := range w.n {
				if !slices.Contains(want.lost, i) {
					wantShipped = append(wantShipped, delivery{uint64(i + 1), fmt.Sprintf("d/%d", i)})
				}
			}
			if got := sink.deliveries(); !slices.Equal(got, wantShipped) {
				t.Errorf("shipped %v\nwant    %v", got, wantShipped)
			}
			if got := o.metric(t, "sluice_wal_corrupt_records_total"); got != float64(want.corrupt) {
				t.Errorf("sluice_wal_corrupt_records_total = %v, want %d", got, want.corrupt)
			}
			if got := o.metric(t, "sluice_wal_segment_repairs_total"); got != 1 {
				t.Errorf("sluice_wal_segment_repairs_total = %v, want 1", got)
			}
			if got := quarantined(t, w.dir); !slices.EqualFunc(got, want.quarantined, bytes.Equal) {
				t.Errorf("quarantined %q, want %q", got, want.quarantined)
			}
			if n := len(o.log.lines(t, "wal segment repaired")); n != 1 {
				t.Errorf("%d segment repair log lines, want 1", n)
			}
			first, _ := mustAppend(t, o.b, "after", 0, 2)
			drain(t, s)
			shipped := sink.deliveries()[len(wantShipped):]
			if want := []delivery{{first, "after/0"}, {first + 1, "after/1"}}; !slices.Equal(shipped, want) {
				t.Errorf("after the repair shipped %v, want %v", shipped, want)
			}
		})
	}
}

// Recovery never deletes what it could not first quarantine: when the
// quarantine or the rewrite fails, Open fails, the segment is as it was, and
// the next Open, once the disk lets it, repairs.
func TestRepairFailuresKeepTheBytes(t *testing.T) {
	tests := map[string]struct {
		damage   func(t *testing.T, w *damagedWAL) segmentFile
		obstacle func(t *testing.T, w *damagedWAL, seg segmentFile) string // returns the path to remove
	}{
		"tail, quarantine is a file": {
			damage:   tornTail,
			obstacle: quarantineIsAFile,
		},
		"sealed, quarantine is a file": {
			damage:   tornSealed,
			obstacle: quarantineIsAFile,
		},
		"unreadable, quarantine is a file": {
			damage: func(t *testing.T, w *damagedWAL) segmentFile {
				seg := w.segment(t, 1)
				makeUnreadable(t, seg)
				return seg
			},
			obstacle: quarantineIsAFile,
		},
		"unreadable tail, quarantine is a file": {
			damage: func(t *testing.T, w *damagedWAL) segmentFile {
				seg := w.segment(t, -1)
				makeUnreadable(t, seg)
				return seg
			},
			obstacle: quarantineIsAFile,
		},
		"tail, rewrite blocked": {
			damage:   tornTail,
			obstacle: rewriteBlocked,
		},
		"sealed, rewrite blocked": {
			damage:   tornSealed,
			obstacle: rewriteBlocked,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := newDamagedWAL(t, 40)
			seg := tc.damage(t, w)
			before, _ := os.Readlink(seg.path)
			if before == "" {
				before = string(readSegmentFile(t, seg))
			}
			obstacle := tc.obstacle(t, w, seg)
			b, err := Open(Config{Dir: w.dir, SegmentBytes: damageSegmentBytes, Logger: quietLogger})
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded though the repair could not be made")
			}
			if !strings.Contains(err.Error(), w.dir) {
				t.Errorf("Open: %v, want the directory named", err)
			}
			after, _ := os.Readlink(seg.path)
			if after == "" {
				after = string(readSegmentFile(t, seg))
			}
			if after != before {
				t.Errorf("segment %s changed though the repair failed", seg.name)
			}
			if err := os.RemoveAll(obstacle); err != nil {
				t.Fatal(err)
			}
			o := w.open(t)
			if o.metric(t, "sluice_wal_tail_repairs_total")+o.metric(t, "sluice_wal_segment_repairs_total") != 1 {
				t.Error("no repair counted once the obstacle was gone")
			}
		})
	}
}

func tornTail(t *testing.T, w *damagedWAL) segmentFile {
	seg := w.segment(t, -1)
	writeSegmentFile(t, seg, append(readSegmentFile(t, seg), 0x80))
	return seg
}

func tornSealed(t *testing.T, w *damagedWAL) segmentFile {
	seg := w.segment(t, 1)
	data := readSegmentFile(t, seg)
	writeSegmentFile(t, seg, data[:len(data)-3])
	return seg
}

func quarantineIsAFile(t *testing.T, w *damagedWAL, _ segmentFile) string {
	path := filepath.Join(w.dir, quarantineDir)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func rewriteBlocked(t *testing.T, _ *damagedWAL, seg segmentFile) string {
	path := seg.path + ".TEMP"
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A gap wider than any lost segments could leave comes from a misnamed file:
// filling it could fill the disk, so Open says so instead.
func TestOpenRefusesAbsurdGap(t *testing.T) {
	for _, unreadable := range []bool{false, true} {
		t.Run(fmt.Sprintf("unreadable=%v", unreadable), func(t *testing.T) {
			w := newDamagedWAL(t, 20)
			far := filepath.Join(w.dir, segmentFileName(1<<40))
			if err := os.WriteFile(far, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if unreadable {
				makeUnreadable(t, w.segment(t, -2))
			} else {
				tail := w.segment(t, -2)
				writeSegmentFile(t, tail, readSegmentFile(t, tail)[:10])
			}
			b, err := Open(Config{Dir: w.dir, SegmentBytes: damageSegmentBytes, Logger: quietLogger})
			if err == nil {
				b.Close()
				t.Fatal("Open filled a gap of 2^40 indices")
			}
			if !strings.Contains(err.Error(), "too") || !strings.Contains(err.Error(), fmt.Sprint(uint64(1<<40))) {
				t.Errorf("Open: %v, want it to name the gap", err)
			}
		})
	}
}

// When the read-time repair cannot be made, the read fails (the shipper
// retries) and the log stays usable; when the reopen after it fails, the log
// is broken until a reopen succeeds, as after a failed write.
func TestReadRepairFailures(t *testing.T) {
	t.Run("quarantine impossible", func(t *testing.T) {
		w := newDamagedWAL(t, 40)
		o := w.open(t)
		seg := tornSealed(t, w)
		path := quarantineIsAFile(t, w, seg)
		_, err := o.b.read(seg.first)
		if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), "quarantine") {
			t.Fatalf("read of a damaged segment that cannot be repaired: %v, want ErrCorrupt and the quarantine named", err)
		}
		if _, err := o.b.read(1); err != nil {
			t.Fatalf("read of a good segment after the failed repair: %v", err)
		}
		os.Remove(path)
		if _, err := o.b.read(seg.first); err != nil {
			t.Fatalf("read once the repair can be made: %v", err)
		}
	})
	t.Run("reopen fails", func(t *testing.T) {
		w := newDamagedWAL(t, 40)
		o := w.open(t)
		seg := tornSealed(t, w)
		// A START and an END file at once make tidwall/wal refuse to open.
		bogus := []string{filepath.Join(w.dir, segmentFileName(1)+".START"), filepath.Join(w.dir, segmentFileName(1)+".END")}
		for _, p := range bogus {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := o.b.read(seg.first + 1); !errors.Is(err, errWALUnavailable) {
			t.Fatalf("read when the reopen after the repair fails: %v, want errWALUnavailable", err)
		}
		for _, p := range bogus {
			os.Remove(p)
		}
		if !o.b.reopen() {
			t.Fatal("reopen failed")
		}
		if _, err := o.b.read(seg.first); err != nil {
			t.Fatalf("read after the reopen: %v", err)
		}
	})
	t.Run("nothing to repair", func(t *testing.T) {
		w := newDamagedWAL(t, 40)
		o := w.open(t)
		cause := fmt.Errorf("flaky: %w", wal.ErrCorrupt)
		if err := o.b.repairSegmentHolding(12, cause); !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), "whole") {
			t.Errorf("repair of a whole segment: %v, want the cause and that it is whole", err)
		}
		if err := o.b.repairSegmentHolding(w.segment(t, -1).first, cause); !errors.Is(err, errNoSealedSegment) || !errors.Is(err, wal.ErrCorrupt) {
			t.Errorf("repair of the last segment: %v, want errNoSealedSegment and the cause", err)
		}
		if got := o.metric(t, "sluice_wal_segment_repairs_total"); got != 0 {
			t.Errorf("sluice_wal_segment_repairs_total = %v, want 0", got)
		}
		o.b.mu.Lock()
		o.b.broken = true
		o.b.mu.Unlock()
		if err := o.b.repairSegmentHolding(12, cause); !errors.Is(err, errWALUnavailable) {
			t.Errorf("repair on a broken log: %v, want errWALUnavailable", err)
		}
		o.b.mu.Lock()
		o.b.broken = false
		o.b.mu.Unlock()
	})
}

func TestIsSegmentDamage(t *testing.T) {
	tests := map[error]bool{
		nil:                                  false,
		wal.ErrNotFound:                      false,
		errWALUnavailable:                    false,
		wal.ErrCorrupt:                       true,
		fmt.Errorf("x: %w", errSegmentShort): true,
		&fs.PathError{Op: "open", Path: "p", Err: fs.ErrNotExist}: true,
	}
	for err, want := range tests {
		if got := isSegmentDamage(err); got != want {
			t.Errorf("isSegmentDamage(%v) = %v, want %v", err, got, want)
		}
	}
}

// An empty directory and a WAL with nothing wrong need no repair.
func TestRecoverNothingToDo(t *testing.T) {
	rec, err := recoverWAL(t.TempDir(), quietLogger, true)
	if err != nil || rec != (recovery{}) {
		t.Fatalf("recoverWAL on an empty directory: %+v, %v", rec, err)
	}
	w := newDamagedWAL(t, 40)
	rec, err = recoverWAL(w.dir, quietLogger, true)
	if err != nil || rec != (recovery{}) {
		t.Fatalf("recoverWAL on a whole WAL: %+v, %v", rec, err)
	}
	if _, err := recoverWAL(filepath.Join(w.dir, "missing"), quietLogger, true); err == nil {
		t.Fatal("recoverWAL on a missing directory succeeded")
	}
}

// The segment repairs of a first open, made before the metrics exist, reach them.
func TestSegmentRepairsAtOpenHandedToMetrics(t *testing.T) {
	w := newDamagedWAL(t, 40)
	tornSealed(t, w)
	o := w.open(t)
	if got := o.metric(t, "sluice_wal_segment_repairs_total"); got != 1 {
		t.Errorf("sluice_wal_segment_repairs_total = %v, want 1", got)
	}
}

// entryBytes frames segment contents for the plan tests: r is a good record,
// p a placeholder, and any other string is taken as raw bytes.
func entryBytes(items ...string) []byte {
	var out []byte
	for i, it := range items {
		switch it {
		case "r":
			frame := testFrames("plan", i, 1)[0]
			out = append(append(out, byte(len(frame))), frame...)
		case "p":
			out = append(out, placeholderEntry...)
		default:
			out = append(out, it...)
		}
	}
	return out
}

// What a rebuild makes of each kind of stretch, and that a rebuilt segment
// needs nothing more.
func TestPlans(t *testing.T) {
	garbage := string(bytes.Repeat([]byte{0xEE}, 60)) // two records' worth: guessed as 2
	zeros := string(make([]byte, 30))                 // guessed as 1
	tests := []struct {
		name    string
		data    []byte
		want    int // sealed: entries the segment must hold; -1: the last segment
		entries int // after the rebuild
		damaged bool
	}{
		{"tail whole", entryBytes("r", "r"), -1, 2, false},
		{"tail bad record between good ones stays", entryBytes("r", "\x1a"+strings.Repeat("x", 26), "r"), -1, 3, false},
		{"tail placeholders stay", entryBytes("r", "p", "p", "r"), -1, 4, false},
		{"tail short bad entry stays", entryBytes("r", "\x07damaged", "r"), -1, 3, false},
		{"tail zeros framed up to a record stay", entryBytes("r", "\x00\x00\x00", "r"), -1, 5, false},
		{"tail trailing placeholders are cut", entryBytes("r", "p"), -1, 1, true},
		{"tail garbage between good ones guessed", entryBytes("r", garbage, "r"), -1, 4, true},
		{"tail zeros at the end cut", entryBytes("r", zeros), -1, 1, true},
		{"sealed short", entryBytes("r", "r"), 5, 2, true},
		{"sealed garbage fitted to the count", entryBytes("r", garbage, "r"), 3, 3, true},
		{"sealed garbage with room to spare keeps its guess", entryBytes("r", garbage, "r"), 9, 4, true},
		{"sealed too many records trimmed", entryBytes("r", "r", "r", "r"), 2, 2, true},
		{"sealed too many with garbage", entryBytes("r", garbage, "r", "r"), 2, 2, true},
		{"sealed two stretches merged", entryBytes("r", zeros, "r", garbage, "r"), 6, 6, true},
		{"sealed placeholders trimmed before records", entryBytes("r", "p", "p", "r"), 3, 3, true},
		{"sealed framed stretch refitted", entryBytes("r", "\x00\x00\x00", "r"), 3, 3, true},
		{"sealed framed stretch kept", entryBytes("r", "\x07damaged", "r"), 4, 3, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parts := scanParts(tc.data)
			damaged := true
			if tc.want < 0 {
				parts, damaged = planTail(parts)
			} else {
				parts = planSealed(tc.data, parts, tc.want)
			}
			if damaged != tc.damaged {
				t.Fatalf("damaged = %v, want %v (parts %+v)", damaged, tc.damaged, parts)
			}
			rebuilt := rebuild(tc.data, parts)
			n, whole := countEntries(rebuilt)
			if !whole || n != tc.entries || entriesOf(parts) != n {
				t.Fatalf("rebuilt %x: %d entries (whole %v, planned %d), want %d", rebuilt, n, whole, entriesOf(parts), tc.entries)
			}
			if again, damaged := planTail(scanParts(rebuilt)); damaged && tc.want < 0 {
				t.Errorf("the rebuilt last segment needs a rebuild again: %+v", again)
			}
			var kept, cut int
			for _, p := range parts {
				if p.keep {
					kept += p.end - p.start
				} else {
					cut += p.end - p.start
				}
			}
			if kept+cut != len(tc.data) {
				t.Errorf("parts cover %d of %d bytes", kept+cut, len(tc.data))
			}
		})
	}
}

// The search for the next good record stops once it has spent its budget of
// CRC'd bytes: frames made to look like records cannot make a scan quadratic.
func TestNextEntryStartBudget(t *testing.T) {
	fake := append([]byte{recordVersion, 0}, make([]byte, 998)...) // a record's header, a wrong CRC
	var data []byte
	for range 3 {
		data = append(append(data, 0xE8, 0x07), fake...) // uvarint(1000)
	}
	good := entryBytes("r")
	data = append(data, good...)
	budget := 1 << 20
	if got := nextEntryStart(data, 0, &budget); got != len(data)-len(good) {
		t.Fatalf("nextEntryStart = %d, want the good record at %d", got, len(data)-len(good))
	}
	if spent := 1<<20 - budget; spent < 3000 {
		t.Errorf("spent %d bytes of budget on three fake 1000-byte frames", spent)
	}
	budget = 1500
	if got := nextEntryStart(data, 0, &budget); got != len(data) {
		t.Fatalf("nextEntryStart with its budget spent = %d, want the end, %d", got, len(data))
	}
}

// A read-time repair of indices before the first segment left fills them
// with placeholders, within the same limit as any gap.
func TestRepairSegmentFilesFront(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := repairSegmentFiles(dir, 1, quietLogger); !errors.Is(err, errNoSealedSegment) {
		t.Fatalf("repair in an empty directory: %v, want errNoSealedSegment", err)
	}
	far := uint64(1)<<40 + 1
	if err := os.WriteFile(filepath.Join(dir, segmentFileName(far)), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := repairSegmentFiles(dir, 1, quietLogger); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Fatalf("filling 2^40 indices before the first segment: %v, want a refusal", err)
	}
	if _, _, err := repairSegmentFiles(filepath.Join(dir, "missing"), 1, quietLogger); err == nil {
		t.Fatal("repair in a missing directory succeeded")
	}
	repaired, _, err := repairSegmentFiles(dir, far-3, quietLogger)
	if err != nil || !repaired {
		t.Fatalf("filling 3 indices before the first segment: %v, %v", repaired, err)
	}
	segs, err := listSegments(dir)
	if err != nil || len(segs) != 2 || segs[0].first != far-3 {
		t.Fatalf("segments after the fill: %+v, %v", segs, err)
	}
	if got := readSegmentFile(t, segs[0]); !bytes.Equal(got, bytes.Repeat(placeholderEntry, 3)) {
		t.Errorf("the fill holds %x, want three placeholders", got)
	}
}
