package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// walFixture is a WAL directory written through Open and Append and closed,
// with the frames it holds, so tests can predict where each entry lies.
type walFixture struct {
	dir    string
	frames [][]byte // frames[i] is at WAL index i+1
}

// fixtureSegmentBytes makes segments of about 26 test records.
const fixtureSegmentBytes = 1024

// writeWAL appends n test records in group commits of 7 and closes the
// buffer. It fails the test if the last segment ended up empty (a batch that
// filled a segment exactly): the damage cases need a last entry to cut.
func writeWAL(t *testing.T, n int) walFixture {
	t.Helper()
	w := walFixture{dir: t.TempDir(), frames: testFrames("wal", 0, n)}
	b := openBuffer(t, Config{Dir: w.dir, SegmentBytes: fixtureSegmentBytes})
	for i := 0; i < n; i += 7 {
		if r := appendWait(t, b, w.frames[i:min(i+7, n)]); r.err != nil {
			t.Fatalf("append: %v", r.err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatalf("close buffer: %v", err)
	}
	names := w.segmentNames(t)
	if len(names) < 4 {
		t.Fatalf("fixture has %d segments, the tests need at least 4", len(names))
	}
	if w.size(t, names[len(names)-1]) == 0 {
		t.Fatalf("fixture's last segment is empty; change the record count")
	}
	return w
}

// segmentNames lists the 20-digit file names in the fixture's directory.
func (w walFixture) segmentNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if len(e.Name()) == 20 {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

func (w walFixture) path(name string) string { return filepath.Join(w.dir, name) }

func (w walFixture) size(t *testing.T, name string) int64 {
	t.Helper()
	info, err := os.Stat(w.path(name))
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

func (w walFixture) totalSize(t *testing.T) int64 {
	var total int64
	for _, n := range w.segmentNames(t) {
		total += w.size(t, n)
	}
	return total
}

// entrySize is what tidwall/wal stores for frame: uvarint length + bytes.
func entrySize(frame []byte) int64 {
	return int64(uvarintLen(uint64(len(frame))) + len(frame))
}

// entriesSize is the stored size of the entries first..last.
func (w walFixture) entriesSize(first, last uint64) int64 {
	var n int64
	for i := first; i <= last; i++ {
		n += entrySize(w.frames[i-1])
	}
	return n
}

func firstIndexOf(t *testing.T, name string) uint64 {
	t.Helper()
	i, err := strconv.ParseUint(name, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// locate returns the segment holding index and the entry's offset in it.
func (w walFixture) locate(t *testing.T, index uint64) (string, int64) {
	t.Helper()
	names := w.segmentNames(t)
	for i := len(names) - 1; i >= 0; i-- {
		if first := firstIndexOf(t, names[i]); first <= index {
			return names[i], w.entriesSize(first, index-1)
		}
	}
	t.Fatalf("no segment holds index %d", index)
	return "", 0
}

func (w walFixture) last(t *testing.T) string {
	names := w.segmentNames(t)
	return names[len(names)-1]
}

func appendToFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
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

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// flipByte flips one bit of the byte at off.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, path, off, []byte{data[off] ^ 0x10})
}

// where is the part of a Problem a test predicts exactly.
type where struct {
	Segment string
	Offset  int64
	Index   uint64
	Kind    ProblemKind
}

func locations(ps []Problem) []where {
	out := make([]where, len(ps))
	for i, p := range ps {
		out[i] = where{p.Segment, p.Offset, p.Index, p.Kind}
	}
	return out
}

func TestVerifyCleanWAL(t *testing.T) {
	w := writeWAL(t, 100)
	if err := writeCheckpoint(w.dir, 40); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(w.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Clean() || v.ProblemCount() != 0 {
		t.Fatalf("clean WAL reported problems: %v", v.Problems)
	}
	if v.Records != 100 || v.BytesRead != w.totalSize(t) || v.Segments != len(w.segmentNames(t)) {
		t.Errorf("records %d, bytes %d, segments %d; want 100, %d, %d",
			v.Records, v.BytesRead, v.Segments, w.totalSize(t), len(w.segmentNames(t)))
	}
	if v.GatewayRunning {
		t.Error("gateway reported running with no buffer open")
	}
}

// TestVerifyDamage damages a fresh WAL one way per case and checks that
// Verify names each problem's segment, offset, index and kind.
func TestVerifyDamage(t *testing.T) {
	const n = 100
	cases := map[string]struct {
		damage func(t *testing.T, w walFixture) []where
		reason string // in the first problem's reason
	}{
		"flipped byte in a record": {
			damage: func(t *testing.T, w walFixture) []where {
				seg, off := w.locate(t, 50)
				flipByte(t, w.path(seg), off+1+10) // past the 1-byte length, inside the id
				return []where{{seg, off, 50, ProblemBadRecord}}
			},
			reason: "crc",
		},
		"tail cut mid-entry": {
			damage: func(t *testing.T, w walFixture) []where {
				seg, off := w.locate(t, n)
				if err := os.Truncate(w.path(seg), off+5); err != nil {
					t.Fatal(err)
				}
				return []where{{seg, off, n, ProblemTorn}}
			},
			reason: "only 4 bytes left",
		},
		"length prefix cut": {
			damage: func(t *testing.T, w walFixture) []where {
				seg := w.last(t)
				size := w.size(t, seg)
				appendToFile(t, w.path(seg), []byte{0x85})
				return []where{{seg, size, n + 1, ProblemTorn}}
			},
			reason: "length prefix cut off",
		},
		"length prefix overflows": {
			damage: func(t *testing.T, w walFixture) []where {
				seg := w.last(t)
				size := w.size(t, seg)
				appendToFile(t, w.path(seg), bytes.Repeat([]byte{0xff}, 11))
				return []where{{seg, size, n + 1, ProblemTorn}}
			},
			reason: "overflows",
		},
		"huge length is not allocated": {
			damage: func(t *testing.T, w walFixture) []where {
				seg := w.last(t)
				size := w.size(t, seg)
				appendToFile(t, w.path(seg), binary.AppendUvarint(nil, 1<<50))
				return []where{{seg, size, n + 1, ProblemTorn}}
			},
			reason: "length 1125899906842624",
		},
		"zeros appended": {
			damage: func(t *testing.T, w walFixture) []where {
				seg := w.last(t)
				size := w.size(t, seg)
				appendToFile(t, w.path(seg), make([]byte, 64))
				return []where{{seg, size, n + 1, ProblemZeroTail}}
			},
			reason: "empty entries 101..164",
		},
		// A zeroed entry in the middle reads as one empty entry per byte, so
		// the segment holds more entries than its successor's name allows.
		"entry zeroed in the middle": {
			damage: func(t *testing.T, w walFixture) []where {
				seg, off := w.locate(t, 10)
				names := w.segmentNames(t)
				size := entrySize(w.frames[9])
				overwrite(t, w.path(seg), off, make([]byte, size))
				next := firstIndexOf(t, names[1])
				return []where{{seg, off, 10, ProblemZeroRun}, {names[1], 0, next + uint64(size) - 1, ProblemOverlap}}
			},
			reason: "zero bytes",
		},
		"middle segment deleted": {
			damage: func(t *testing.T, w walFixture) []where {
				names := w.segmentNames(t)
				if err := os.Remove(w.path(names[1])); err != nil {
					t.Fatal(err)
				}
				return []where{{names[2], 0, firstIndexOf(t, names[1]), ProblemGap}}
			},
			reason: "are in no segment",
		},
		"segment renamed below its start": {
			damage: func(t *testing.T, w walFixture) []where {
				last := w.last(t)
				first := firstIndexOf(t, last)
				renamed := segmentName(first - 3)
				if err := os.Rename(w.path(last), w.path(renamed)); err != nil {
					t.Fatal(err)
				}
				return []where{{renamed, 0, first, ProblemOverlap}}
			},
			reason: "are in both",
		},
		"unreadable checkpoint": {
			damage: func(t *testing.T, w walFixture) []where {
				if err := os.WriteFile(filepath.Join(w.dir, checkpointFile), []byte("forty\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return []where{{"", 0, 0, ProblemCheckpoint}}
			},
			reason: "parse checkpoint",
		},
		"unreadable segment": {
			damage: func(t *testing.T, w walFixture) []where {
				if os.Geteuid() == 0 {
					t.Skip("root reads files whatever their mode")
				}
				names := w.segmentNames(t)
				if err := os.Chmod(w.path(names[1]), 0); err != nil {
					t.Fatal(err)
				}
				// The segment's entry count is unknown, so its successor is not
				// checked for a gap.
				return []where{{names[1], 0, firstIndexOf(t, names[1]), ProblemUnreadable}}
			},
			reason: "permission denied",
		},
		// Works as root too: the open succeeds and the first read fails.
		"segment that fails to read": {
			damage: func(t *testing.T, w walFixture) []where {
				names := w.segmentNames(t)
				if err := os.Remove(w.path(names[1])); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(t.TempDir(), w.path(names[1])); err != nil {
					t.Fatal(err)
				}
				return []where{{names[1], 0, firstIndexOf(t, names[1]), ProblemUnreadable}}
			},
			reason: "is a directory",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			w := writeWAL(t, n)
			want := tc.damage(t, w)
			v, err := Verify(w.dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := locations(v.Problems); !slices.Equal(got, want) {
				t.Fatalf("problems\n got %+v\nwant %+v\n(%v)", got, want, v.Problems)
			}
			if !strings.Contains(v.Problems[0].Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", v.Problems[0].Reason, tc.reason)
			}
			if v.Clean() {
				t.Error("Clean() with problems listed")
			}
		})
	}
}

func segmentName(index uint64) string { return fmt.Sprintf("%020d", index) }

func TestVerifyEmptyDirectory(t *testing.T) {
	v, err := Verify(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := locations(v.Problems); !slices.Equal(got, []where{{"", 0, 0, ProblemNoSegments}}) {
		t.Errorf("problems %+v, want one no-segments", v.Problems)
	}
}

func TestVerifyMissingDirectory(t *testing.T) {
	if _, err := Verify(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("Verify of a missing directory returned no error")
	}
}

// TestVerifyListsAtMostMaxProblems writes a segment of 1-byte frames by hand:
// every one is a bad record, and only maxListedProblems are listed.
func TestVerifyListsAtMostMaxProblems(t *testing.T) {
	dir := t.TempDir()
	const bad = maxListedProblems + 5
	seg := bytes.Repeat([]byte{1, 7}, bad) // length 1, frame {7}
	if err := os.WriteFile(filepath.Join(dir, segmentName(1)), seg, 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Problems) != maxListedProblems || v.Unlisted != 5 || v.ProblemCount() != bad || v.Records != bad {
		t.Errorf("listed %d, unlisted %d, count %d, records %d; want %d, 5, %d, %d",
			len(v.Problems), v.Unlisted, v.ProblemCount(), v.Records, maxListedProblems, bad, bad)
	}
	if last := v.Problems[len(v.Problems)-1]; last.Offset != 2*(maxListedProblems-1) || last.Index != maxListedProblems {
		t.Errorf("last listed problem %v", last)
	}
}

// A running gateway removes acknowledged segments; one that vanishes between
// the listing and its reading is a note, not damage.
func TestVerifySegmentRemovedDuringWalk(t *testing.T) {
	v := &VerifyReport{}
	_, known := v.verifySegment(segmentFile{name: segmentName(1), path: filepath.Join(t.TempDir(), segmentName(1)), first: 1})
	if known || len(v.Problems) != 0 || len(v.Notes) != 1 || !strings.Contains(v.Notes[0], "removed during the walk") {
		t.Errorf("known %v, problems %v, notes %q", known, v.Problems, v.Notes)
	}
}

func TestVerifyWhileGatewayRuns(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir, SegmentBytes: fixtureSegmentBytes})
	mustAppend(t, b, "live", 0, 60)
	v, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !v.GatewayRunning || !v.Clean() || v.Records != 60 {
		t.Errorf("running %v, problems %v, records %d; want true, none, 60", v.GatewayRunning, v.Problems, v.Records)
	}
}

func TestProblemString(t *testing.T) {
	f := func(p Problem, want string) {
		t.Helper()
		if got := p.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	f(Problem{Segment: "00000000000000000001", Offset: 40, Index: 2, Kind: ProblemBadRecord, Reason: "bad record: crc"},
		"00000000000000000001 offset 40 index 2: bad-record: bad record: crc")
	f(Problem{Kind: ProblemCheckpoint, Reason: "parse checkpoint x"}, "bad-checkpoint: parse checkpoint x")
}
