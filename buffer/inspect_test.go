package buffer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// inspectNow is the clock of these tests: ages are exact.
var inspectNow = time.UnixMilli(1_700_000_100_000)

func mustInspect(t *testing.T, dir string) *Report {
	t.Helper()
	r, err := inspectAt(dir, inspectNow)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	return r
}

// checkBacklog checks the backlog fields against the fixture when the shipper
// would start at next.
func checkBacklog(t *testing.T, w walFixture, r *Report, next, last uint64) {
	t.Helper()
	if r.NextIndex != next || r.BacklogEvents != last-next+1 {
		t.Errorf("next %d, backlog %d events; want %d, %d", r.NextIndex, r.BacklogEvents, next, last-next+1)
	}
	if want := w.entriesSize(next, last); r.BacklogBytes != want {
		t.Errorf("backlog %d bytes, want %d", r.BacklogBytes, want)
	}
	rec := testRecord("wal", int(next-1))
	want := OldestUnshipped{Index: next, TimeMs: rec.TimeMs, AgeMs: inspectNow.UnixMilli() - rec.TimeMs}
	if r.Oldest == nil || *r.Oldest != want {
		t.Errorf("oldest unshipped %+v, want %+v", r.Oldest, want)
	}
}

func TestInspectMatchesWhatWasWritten(t *testing.T) {
	w := writeWAL(t, 100)
	if err := writeCheckpoint(w.dir, 40); err != nil {
		t.Fatal(err)
	}
	r := mustInspect(t, w.dir)
	names := w.segmentNames(t)
	if r.Segments != len(names) || r.SegmentBytes != w.totalSize(t) ||
		r.FirstSegment != names[0] || r.LastSegment != names[len(names)-1] {
		t.Errorf("segments %d, %d bytes, %s..%s; want %d, %d, %s..%s", r.Segments, r.SegmentBytes, r.FirstSegment, r.LastSegment,
			len(names), w.totalSize(t), names[0], names[len(names)-1])
	}
	if r.FirstIndex != 1 || r.LastIndex != 100 || len(r.LastSegmentProblems) != 0 {
		t.Errorf("first %d, last %d, problems %v; want 1, 100, none", r.FirstIndex, r.LastIndex, r.LastSegmentProblems)
	}
	if r.Checkpoint != (CheckpointState{State: CheckpointOK, Index: 40}) {
		t.Errorf("checkpoint %+v", r.Checkpoint)
	}
	checkBacklog(t, w, r, 41, 100)
	if r.GatewayRunning || r.Quarantine.Files != 0 || len(r.Leftovers) != 0 {
		t.Errorf("running %v, quarantine %+v, leftovers %v", r.GatewayRunning, r.Quarantine, r.Leftovers)
	}
}

// The gateway removes whole acknowledged segments: the first index is the
// first remaining segment's name and the checkpoint lies inside it.
func TestInspectAfterFrontSegmentsRemoved(t *testing.T) {
	w := writeWAL(t, 100)
	names := w.segmentNames(t)
	if err := os.Remove(w.path(names[0])); err != nil {
		t.Fatal(err)
	}
	first := firstIndexOf(t, names[1])
	if err := writeCheckpoint(w.dir, first+2); err != nil {
		t.Fatal(err)
	}
	r := mustInspect(t, w.dir)
	if r.FirstIndex != first || r.LastIndex != 100 || r.Segments != len(names)-1 {
		t.Errorf("first %d, last %d, segments %d; want %d, 100, %d", r.FirstIndex, r.LastIndex, r.Segments, first, len(names)-1)
	}
	checkBacklog(t, w, r, first+3, 100)
}

func TestInspectCheckpoint(t *testing.T) {
	cases := map[string]struct {
		checkpoint  string // file content; "" for no file
		removeFirst bool   // remove the first segment
		state       string
		next        uint64 // 0: the first index
		note        string
	}{
		"none":         {state: CheckpointNone},
		"unreadable":   {checkpoint: "forty", state: CheckpointUnreadable},
		"last segment": {checkpoint: "90\n", state: CheckpointOK, next: 91},
		"past the end": {checkpoint: "500\n", state: CheckpointOK, note: "past the last index 100"},
		// A lost checkpoint after segments were removed.
		"before the start": {removeFirst: true, state: CheckpointNone, note: "before the first index"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			w := writeWAL(t, 100)
			if tc.checkpoint != "" {
				if err := os.WriteFile(filepath.Join(w.dir, checkpointFile), []byte(tc.checkpoint), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			first := uint64(1)
			if tc.removeFirst {
				names := w.segmentNames(t)
				first = firstIndexOf(t, names[1])
				if err := os.Remove(w.path(names[0])); err != nil {
					t.Fatal(err)
				}
			}
			r := mustInspect(t, w.dir)
			if r.Checkpoint.State != tc.state || !strings.Contains(r.Checkpoint.Note, tc.note) || (tc.note == "") != (r.Checkpoint.Note == "") {
				t.Errorf("checkpoint %+v, want state %s and note %q", r.Checkpoint, tc.state, tc.note)
			}
			if tc.state == CheckpointUnreadable && !strings.Contains(r.Checkpoint.Error, "parse checkpoint") {
				t.Errorf("checkpoint error %q", r.Checkpoint.Error)
			}
			next := tc.next
			if next == 0 {
				next = first
			}
			checkBacklog(t, w, r, next, 100)
		})
	}
}

func TestInspectAllShipped(t *testing.T) {
	w := writeWAL(t, 100)
	if err := writeCheckpoint(w.dir, 100); err != nil {
		t.Fatal(err)
	}
	r := mustInspect(t, w.dir)
	if r.NextIndex != 101 || r.BacklogEvents != 0 || r.BacklogBytes != 0 || r.Oldest != nil {
		t.Errorf("next %d, backlog %d events %d bytes, oldest %+v; want 101, 0, 0, nil", r.NextIndex, r.BacklogEvents, r.BacklogBytes, r.Oldest)
	}
}

func TestInspectTornTail(t *testing.T) {
	w := writeWAL(t, 100)
	seg, off := w.locate(t, 100)
	if err := os.Truncate(w.path(seg), off+5); err != nil {
		t.Fatal(err)
	}
	r := mustInspect(t, w.dir)
	if r.LastIndex != 99 {
		t.Errorf("last index %d, want 99", r.LastIndex)
	}
	if got := locations(r.LastSegmentProblems); !slices.Equal(got, []where{{seg, off, 100, ProblemTorn}}) {
		t.Errorf("last segment problems %+v", r.LastSegmentProblems)
	}
}

func TestInspectUndecodableOldest(t *testing.T) {
	w := writeWAL(t, 100)
	if err := writeCheckpoint(w.dir, 40); err != nil {
		t.Fatal(err)
	}
	seg, off := w.locate(t, 41)
	flipByte(t, w.path(seg), off+12)
	r := mustInspect(t, w.dir)
	if r.Oldest == nil || r.Oldest.Index != 41 || r.Oldest.TimeMs != 0 || !strings.Contains(r.Oldest.Error, "crc") {
		t.Errorf("oldest %+v, want index 41 with a crc error", r.Oldest)
	}
	if want := w.entriesSize(41, 100); r.BacklogBytes != want {
		t.Errorf("backlog %d bytes, want %d", r.BacklogBytes, want)
	}
}

// Hand-written segments: an empty log (everything truncated) and a zero byte
// (an empty entry) where the next record should be.
func TestInspectHandWrittenSegments(t *testing.T) {
	t.Run("empty log", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, segmentName(101)), nil)
		if err := writeCheckpoint(dir, 100); err != nil {
			t.Fatal(err)
		}
		r := mustInspect(t, dir)
		if r.FirstIndex != 101 || r.LastIndex != 100 || r.BacklogEvents != 0 || r.Oldest != nil {
			t.Errorf("first %d, last %d, backlog %d, oldest %+v; want 101, 100, 0, nil", r.FirstIndex, r.LastIndex, r.BacklogEvents, r.Oldest)
		}
	})
	t.Run("zero byte at the next index", func(t *testing.T) {
		dir := t.TempDir()
		rec := testRecord("hand", 0)
		frame := AppendRecord(nil, &rec)
		seg := append([]byte{byte(len(frame))}, frame...)
		seg = append(seg, 0, 0, 0)
		writeFile(t, filepath.Join(dir, segmentName(5)), seg)
		if err := writeCheckpoint(dir, 6); err != nil {
			t.Fatal(err)
		}
		r := mustInspect(t, dir)
		if r.LastIndex != 8 || r.BacklogEvents != 2 || r.BacklogBytes != 2 {
			t.Errorf("last %d, backlog %d events %d bytes; want 8, 2, 2", r.LastIndex, r.BacklogEvents, r.BacklogBytes)
		}
		if r.Oldest == nil || r.Oldest.Index != 7 || !strings.Contains(r.Oldest.Error, "shorter than the minimum") {
			t.Errorf("oldest %+v", r.Oldest)
		}
		if got := locations(r.LastSegmentProblems); !slices.Equal(got, []where{{segmentName(5), entrySize(frame), 6, ProblemZeroTail}}) {
			t.Errorf("last segment problems %+v", r.LastSegmentProblems)
		}
	})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestInspectQuarantineAndLeftovers(t *testing.T) {
	w := writeWAL(t, 100)
	qdir := filepath.Join(w.dir, quarantineDir)
	if err := os.Mkdir(qdir, 0o755); err != nil {
		t.Fatal(err)
	}
	var wantNewest []string
	var wantBytes int64
	base := time.Unix(1_700_000_000, 0)
	for i := range 12 {
		name := segmentName(uint64(i+1)) + ".17.170000000000000000" + string(rune('a'+i))
		writeFile(t, filepath.Join(qdir, name), make([]byte, i+1))
		if err := os.Chtimes(filepath.Join(qdir, name), base, base.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
		wantBytes += int64(i + 1)
		wantNewest = append([]string{name}, wantNewest...)
	}
	leftovers := []string{segmentName(7) + ".START.TEMP", segmentName(9) + ".TEMP"}
	for _, name := range leftovers {
		writeFile(t, w.path(name), []byte("x"))
	}
	r := mustInspect(t, w.dir)
	var newest []string
	for _, f := range r.Quarantine.Newest {
		newest = append(newest, f.Name)
	}
	if r.Quarantine.Files != 12 || r.Quarantine.Bytes != wantBytes || !slices.Equal(newest, wantNewest[:10]) {
		t.Errorf("quarantine %d files %d bytes, newest %v; want 12, %d, %v", r.Quarantine.Files, r.Quarantine.Bytes, newest, wantBytes, wantNewest[:10])
	}
	if !slices.Equal(r.Leftovers, leftovers) {
		t.Errorf("leftovers %v, want %v", r.Leftovers, leftovers)
	}
	if r.LastIndex != 100 || r.Segments != len(w.segmentNames(t)) {
		t.Errorf("leftovers counted as segments: last %d, segments %d", r.LastIndex, r.Segments)
	}
}

func TestInspectWhileGatewayRuns(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir, SegmentBytes: fixtureSegmentBytes})
	mustAppend(t, b, "live", 0, 60)
	r := mustInspect(t, dir)
	if !r.GatewayRunning || r.LastIndex != 60 || r.BacklogEvents != 60 {
		t.Errorf("running %v, last %d, backlog %d; want true, 60, 60", r.GatewayRunning, r.LastIndex, r.BacklogEvents)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustInspect(t, dir); r.GatewayRunning {
		t.Error("gateway reported running after Close released the lock")
	}
}

func TestInspectEmptyDirectory(t *testing.T) {
	r := mustInspect(t, t.TempDir())
	if r.Segments != 0 || r.Checkpoint.State != CheckpointNone || r.Oldest != nil {
		t.Errorf("report %+v", r)
	}
}

func TestInspectFailures(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		if _, err := Inspect(filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Error("no error")
		}
	})
	t.Run("last segment unreadable", func(t *testing.T) {
		w := writeWAL(t, 100)
		last := w.last(t)
		if err := os.Remove(w.path(last)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(t.TempDir(), w.path(last)); err != nil {
			t.Fatal(err)
		}
		_, err := Inspect(w.dir)
		if err == nil || !strings.Contains(err.Error(), "count entries of the last segment "+last) {
			t.Errorf("error %v, want one naming the last segment", err)
		}
	})
	t.Run("quarantine unreadable", func(t *testing.T) {
		w := writeWAL(t, 100)
		writeFile(t, filepath.Join(w.dir, quarantineDir), []byte("not a directory"))
		if _, err := Inspect(w.dir); err == nil || !strings.Contains(err.Error(), "quarantine") {
			t.Errorf("error %v, want one about the quarantine", err)
		}
	})
}
