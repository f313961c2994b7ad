package buffer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is a snapshot of a WAL directory as Inspect reads it. Indices are
// tidwall/wal's: the first segment's name is the first index; the last index
// counts the last segment's entries.
type Report struct {
	Dir string `json:"dir"`
	// GatewayRunning: a gateway held the directory lock, so the numbers are
	// a snapshot of files it keeps changing.
	GatewayRunning bool   `json:"gateway_running"`
	Segments       int    `json:"segments"`
	SegmentBytes   int64  `json:"segment_bytes"`
	FirstSegment   string `json:"first_segment,omitempty"`
	LastSegment    string `json:"last_segment,omitempty"`
	FirstIndex     uint64 `json:"first_index"`
	// LastIndex is FirstIndex-1 when the log is empty.
	LastIndex uint64 `json:"last_index"`
	// LastSegmentProblems is the damage found while counting the last
	// segment's entries (a torn or zero-filled tail, bad records).
	LastSegmentProblems []Problem       `json:"last_segment_problems,omitempty"`
	Checkpoint          CheckpointState `json:"checkpoint"`
	// NextIndex is where the shipper starts at the gateway's next start:
	// after the checkpoint, or the first index when the checkpoint lies
	// outside the log.
	NextIndex     uint64 `json:"next_index"`
	BacklogEvents uint64 `json:"backlog_events"`
	// BacklogBytes is the size on disk from the entry at NextIndex on: the
	// rest of its segment plus every later segment.
	BacklogBytes int64             `json:"backlog_bytes"`
	Oldest       *OldestUnshipped  `json:"oldest_unshipped,omitempty"`
	Quarantine   QuarantineSummary `json:"quarantine"`
	// Leftovers are tidwall/wal's *.START and *.END files (a truncation that
	// the next open completes) and *.TEMP files (which it never removes).
	Leftovers []string `json:"leftovers,omitempty"`
}

// Checkpoint states.
const (
	CheckpointOK         = "ok"
	CheckpointNone       = "none"
	CheckpointUnreadable = "unreadable"
)

// CheckpointState is what the acknowledged-index file says.
type CheckpointState struct {
	State string `json:"state"` // CheckpointOK, CheckpointNone or CheckpointUnreadable
	Index uint64 `json:"index"`
	Error string `json:"error,omitempty"`
	// Note explains a checkpoint outside the log, which the shipper ignores.
	Note string `json:"note,omitempty"`
}

// OldestUnshipped is the record at Report.NextIndex.
type OldestUnshipped struct {
	Index  uint64 `json:"index"`
	TimeMs int64  `json:"time_ms,omitempty"` // Record.TimeMs: when the gateway received it
	AgeMs  int64  `json:"age_ms,omitempty"`
	Error  string `json:"error,omitempty"` // why it could not be read or decoded
}

// Age is how long the record has waited, as of the inspection.
func (o *OldestUnshipped) Age() time.Duration { return time.Duration(o.AgeMs) * time.Millisecond }

// QuarantineSummary describes the quarantine directory, where repairs move
// the bytes they cut from the WAL.
type QuarantineSummary struct {
	Files  int              `json:"files"`
	Bytes  int64            `json:"bytes"`
	Newest []QuarantineFile `json:"newest"` // up to maxListedQuarantine, newest first
}

// QuarantineFile is one file of the quarantine directory.
type QuarantineFile struct {
	Name    string    `json:"name"`
	Bytes   int64     `json:"bytes"`
	ModTime time.Time `json:"mod_time"`
}

const maxListedQuarantine = 10

// Inspect reads the WAL directory dir and reports its indices, backlog and
// quarantine. It does not lock or modify anything (see segscan.go). It fails
// when dir or a segment it needs cannot be read; Verify says why.
func Inspect(dir string) (*Report, error) {
	return inspectAt(dir, time.Now())
}

func inspectAt(dir string, now time.Time) (*Report, error) {
	running, err := gatewayHoldsLock(dir)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	r := &Report{Dir: dir, GatewayRunning: running, Checkpoint: inspectCheckpoint(dir)}
	if r.Quarantine, err = inspectQuarantine(dir); err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	if r.Leftovers, err = leftoverFiles(dir); err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	segs, err := statSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	if len(segs) == 0 {
		return r, nil
	}
	r.summarizeSegments(segs)
	if err := r.countLastSegment(segs[len(segs)-1]); err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	r.NextIndex = r.nextToShip()
	if r.NextIndex <= r.LastIndex {
		r.BacklogEvents = r.LastIndex - r.NextIndex + 1
		r.measureBacklog(segs, now)
	}
	return r, nil
}

// statSegments lists the segments with their sizes, leaving out any that a
// running gateway removed (front truncation) since the listing.
func statSegments(dir string) ([]segmentFile, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	out := segs[:0]
	for _, s := range segs {
		info, err := os.Stat(s.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stat segment: %w", err)
		}
		s.bytes = info.Size()
		out = append(out, s)
	}
	return out, nil
}

func (r *Report) summarizeSegments(segs []segmentFile) {
	r.Segments = len(segs)
	for _, s := range segs {
		r.SegmentBytes += s.bytes
	}
	r.FirstSegment, r.LastSegment = segs[0].name, segs[len(segs)-1].name
	r.FirstIndex = segs[0].first
}

// countLastSegment sets LastIndex from the last segment's entries, counted as
// tidwall/wal does, and records any damage found on the way.
func (r *Report) countLastSegment(last segmentFile) error {
	v := &VerifyReport{}
	entries, known := v.verifySegment(last)
	if !known {
		return fmt.Errorf("count entries of the last segment %s: %s", last.name, whyUnknown(v))
	}
	r.LastIndex = last.first + entries - 1
	r.LastSegmentProblems = v.Problems
	return nil
}

// whyUnknown is why verifySegment could not count a segment: it was removed
// (a note) or unreadable (its last problem).
func whyUnknown(v *VerifyReport) string {
	if len(v.Notes) > 0 {
		return v.Notes[0]
	}
	return v.Problems[len(v.Problems)-1].Reason
}

// nextToShip is the index the shipper starts from, as Shipper.startIndex
// decides it from the checkpoint.
func (r *Report) nextToShip() uint64 {
	acked := r.Checkpoint.Index
	switch {
	case acked > r.LastIndex:
		r.Checkpoint.Note = fmt.Sprintf("past the last index %d: the next start ships the whole WAL again", r.LastIndex)
		return r.FirstIndex
	case acked+1 < r.FirstIndex:
		r.Checkpoint.Note = fmt.Sprintf("before the first index %d: the next start ships from the first index", r.FirstIndex)
		return r.FirstIndex
	}
	return acked + 1
}

// measureBacklog finds the entry at NextIndex: its offset gives the backlog's
// bytes, its record the age of the oldest unshipped event. When it cannot be
// read, the backlog counts its whole segment.
func (r *Report) measureBacklog(segs []segmentFile, now time.Time) {
	i := len(segs) - 1
	for segs[i].first > r.NextIndex {
		i--
	}
	for _, s := range segs[i+1:] {
		r.BacklogBytes += s.bytes
	}
	r.Oldest = &OldestUnshipped{Index: r.NextIndex}
	off, frame, err := findEntry(segs[i], r.NextIndex)
	r.BacklogBytes += segs[i].bytes - off
	if err != nil {
		r.Oldest.Error = err.Error()
		return
	}
	var rec Record
	if err := DecodeRecord(frame, &rec); err != nil {
		r.Oldest.Error = err.Error()
		return
	}
	r.Oldest.TimeMs = rec.TimeMs
	r.Oldest.AgeMs = now.UnixMilli() - rec.TimeMs
}

// findEntry streams segment s up to the entry at index and returns its offset
// and bytes. On failure the offset is where the entry starts if known, else 0.
func findEntry(s segmentFile, index uint64) (int64, []byte, error) {
	f, er, err := openSegment(s.path)
	if err != nil {
		return 0, nil, fmt.Errorf("read segment %s: %w", s.name, err)
	}
	defer f.Close()
	for at := s.first; ; at++ {
		e, err := er.next()
		if err == io.EOF {
			return 0, nil, fmt.Errorf("segment %s ends before index %d", s.name, index)
		}
		if err != nil {
			return 0, nil, fmt.Errorf("segment %s offset %d: %w", s.name, e.off, err)
		}
		if e.zeros > 0 {
			if index < at+uint64(e.zeros) {
				return e.off + int64(index-at), nil, nil
			}
			at += uint64(e.zeros) - 1
			continue
		}
		if at == index {
			return e.off, e.frame, nil
		}
	}
}

func inspectCheckpoint(dir string) CheckpointState {
	if _, err := os.Stat(filepath.Join(dir, checkpointFile)); errors.Is(err, fs.ErrNotExist) {
		return CheckpointState{State: CheckpointNone}
	}
	index, err := readCheckpoint(dir)
	if err != nil {
		return CheckpointState{State: CheckpointUnreadable, Error: err.Error()}
	}
	return CheckpointState{State: CheckpointOK, Index: index}
}

func inspectQuarantine(dir string) (QuarantineSummary, error) {
	q := QuarantineSummary{Newest: []QuarantineFile{}}
	entries, err := os.ReadDir(filepath.Join(dir, quarantineDir))
	if errors.Is(err, fs.ErrNotExist) {
		return q, nil
	}
	if err != nil {
		return q, fmt.Errorf("list quarantine: %w", err)
	}
	files := []QuarantineFile{}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || e.IsDir() {
			continue // removed since the listing, or not ours
		}
		files = append(files, QuarantineFile{Name: e.Name(), Bytes: info.Size(), ModTime: info.ModTime()})
		q.Bytes += info.Size()
	}
	q.Files = len(files)
	slices.SortFunc(files, func(a, b QuarantineFile) int {
		if c := b.ModTime.Compare(a.ModTime); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	q.Newest = files[:min(len(files), maxListedQuarantine)]
	return q, nil
}

// leftoverFiles lists tidwall/wal's temporary segment files in dir.
func leftoverFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if len(name) <= 20 || e.IsDir() {
			continue
		}
		if _, err := strconv.ParseUint(name[:20], 10, 64); err != nil {
			continue
		}
		switch name[20:] {
		case ".START", ".END", ".TEMP", ".START.TEMP", ".END.TEMP":
			out = append(out, name)
		}
	}
	return out, nil
}
