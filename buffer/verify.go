package buffer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// ProblemKind names a kind of damage Verify finds.
type ProblemKind string

const (
	// ProblemTorn: bytes that do not form a whole entry (a write cut short);
	// nothing after them in the segment can be parsed.
	ProblemTorn ProblemKind = "torn-entry"
	// ProblemZeroTail: the segment ends in zero bytes, which tidwall/wal
	// reads as empty entries (what a crash on some file systems leaves).
	ProblemZeroTail ProblemKind = "zero-filled-tail"
	// ProblemZeroRun: zero bytes (empty entries) followed by more data.
	ProblemZeroRun ProblemKind = "zero-bytes"
	// ProblemBadRecord: a whole entry whose record frame does not decode
	// (CRC mismatch, unknown version, truncated field...).
	ProblemBadRecord ProblemKind = "bad-record"
	// ProblemGap: indices missing between two segments.
	ProblemGap ProblemKind = "gap"
	// ProblemOverlap: a segment starts before the previous one ends.
	ProblemOverlap ProblemKind = "overlap"
	// ProblemUnreadable: a file that cannot be opened or read.
	ProblemUnreadable ProblemKind = "unreadable"
	// ProblemCheckpoint: the acknowledged-index file does not parse.
	ProblemCheckpoint ProblemKind = "bad-checkpoint"
	// ProblemNoSegments: the directory holds no segment at all; a WAL always
	// has at least one, even when empty.
	ProblemNoSegments ProblemKind = "no-segments"
)

// Problem is one piece of damage, located by segment file, byte offset in it
// and the WAL index the bytes there hold (or would hold).
type Problem struct {
	Segment string      `json:"segment"`
	Offset  int64       `json:"offset"`
	Index   uint64      `json:"index"`
	Kind    ProblemKind `json:"kind"`
	Reason  string      `json:"reason"`
}

func (p Problem) String() string {
	if p.Segment == "" { // not in a segment: the checkpoint, or no segments at all
		return fmt.Sprintf("%s: %s", p.Kind, p.Reason)
	}
	return fmt.Sprintf("%s offset %d index %d: %s: %s", p.Segment, p.Offset, p.Index, p.Kind, p.Reason)
}

// maxListedProblems bounds VerifyReport.Problems: a WAL written with another
// record version would otherwise list every record. The rest are counted.
const maxListedProblems = 1000

// VerifyReport is what Verify found.
type VerifyReport struct {
	Dir string `json:"dir"`
	// GatewayRunning: a gateway held the directory lock, so the files may
	// have changed during the walk; a torn entry at the very end of the last
	// segment may be a write in progress.
	GatewayRunning bool      `json:"gateway_running"`
	Segments       int       `json:"segments"`
	Records        int64     `json:"records"`    // record frames decoded
	BytesRead      int64     `json:"bytes_read"` // bytes read from segment files
	Problems       []Problem `json:"problems"`
	Unlisted       int       `json:"unlisted_problems"` // found beyond maxListedProblems
	// Notes are observations that are not damage, such as a segment a
	// running gateway removed by truncation during the walk.
	Notes []string `json:"notes,omitempty"`
}

// Clean reports whether no damage was found.
func (v *VerifyReport) Clean() bool { return len(v.Problems) == 0 && v.Unlisted == 0 }

// ProblemCount is the number of problems found, listed or not.
func (v *VerifyReport) ProblemCount() int { return len(v.Problems) + v.Unlisted }

func (v *VerifyReport) add(p Problem) {
	if len(v.Problems) < maxListedProblems {
		v.Problems = append(v.Problems, p)
		return
	}
	v.Unlisted++
}

// Verify reads every segment of the WAL in dir, checks its tidwall/wal
// framing and decodes every record (CRC included), checks that each segment
// starts where the previous one ends, and that the checkpoint parses. It does
// not lock or modify anything. The error is for a directory it cannot read at
// all; damage is reported in the VerifyReport.
func Verify(dir string) (*VerifyReport, error) {
	running, err := gatewayHoldsLock(dir)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	v := &VerifyReport{Dir: dir, GatewayRunning: running, Segments: len(segs), Problems: []Problem{}}
	if len(segs) == 0 {
		v.add(Problem{Kind: ProblemNoSegments, Reason: "no WAL segment files (20-digit names) in " + dir})
	}
	var expect uint64 // first index of the next segment; 0 when unknown
	for _, s := range segs {
		v.checkContiguity(s, expect)
		entries, known := v.verifySegment(s)
		expect = 0
		if known {
			expect = s.first + entries
		}
	}
	v.verifyCheckpoint(dir)
	return v, nil
}

// checkContiguity checks that s starts at expect, the index after the
// previous segment's last entry.
func (v *VerifyReport) checkContiguity(s segmentFile, expect uint64) {
	p := Problem{Segment: s.name, Index: expect}
	switch {
	case expect == 0 || s.first == expect:
		return
	case s.first > expect:
		p.Kind = ProblemGap
		p.Reason = fmt.Sprintf("indices %d..%d are in no segment: the previous segment ends at %d", expect, s.first-1, expect-1)
	default:
		p.Kind = ProblemOverlap
		p.Reason = fmt.Sprintf("segment starts at index %d but the previous one runs to %d: indices %d..%d are in both",
			s.first, expect-1, s.first, expect-1)
	}
	v.add(p)
}

// verifySegment walks one segment. It returns how many entries the segment
// holds, as tidwall/wal would count them up to any tear, and whether that
// count is known (it is not when the file could not be read).
func (v *VerifyReport) verifySegment(s segmentFile) (entries uint64, known bool) {
	f, er, err := openSegment(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		v.Notes = append(v.Notes, s.name+": removed during the walk (front truncation by a running gateway)")
		return 0, false
	}
	if err != nil {
		v.add(Problem{Segment: s.name, Index: s.first, Kind: ProblemUnreadable, Reason: err.Error()})
		return 0, false
	}
	defer f.Close()
	defer func() { v.BytesRead += er.read }()
	index := s.first
	var rec Record
	for {
		e, err := er.next()
		if err == io.EOF {
			return index - s.first, true
		}
		if err != nil {
			return index - s.first, v.readFailed(s, e.off, index, err)
		}
		if e.zeros > 0 {
			v.add(zeroProblem(s, e, index, er.size))
			index += uint64(e.zeros)
			continue
		}
		v.Records++
		if err := DecodeRecord(e.frame, &rec); err != nil {
			v.add(Problem{Segment: s.name, Offset: e.off, Index: index, Kind: ProblemBadRecord, Reason: err.Error()})
		}
		index++
	}
}

// readFailed records why a segment walk stopped early and reports whether
// the entry count so far is still meaningful (a tear ends the segment's
// entries; an I/O error leaves the rest unknown).
func (v *VerifyReport) readFailed(s segmentFile, off int64, index uint64, err error) bool {
	var fe *framingError
	if errors.As(err, &fe) {
		v.add(Problem{Segment: s.name, Offset: off, Index: index, Kind: ProblemTorn, Reason: fe.reason})
		return true
	}
	v.add(Problem{Segment: s.name, Offset: off, Index: index, Kind: ProblemUnreadable, Reason: err.Error()})
	return false
}

func zeroProblem(s segmentFile, e entry, index uint64, size int64) Problem {
	p := Problem{Segment: s.name, Offset: e.off, Index: index, Kind: ProblemZeroRun}
	last := index + uint64(e.zeros) - 1
	if e.off+e.zeros == size {
		p.Kind = ProblemZeroTail
		p.Reason = fmt.Sprintf("the last %d bytes are zeros, read by tidwall/wal as empty entries %d..%d", e.zeros, index, last)
		return p
	}
	p.Reason = fmt.Sprintf("%d zero bytes, read by tidwall/wal as empty entries %d..%d", e.zeros, index, last)
	return p
}

func (v *VerifyReport) verifyCheckpoint(dir string) {
	if _, err := readCheckpoint(dir); err != nil {
		v.add(Problem{Kind: ProblemCheckpoint, Reason: err.Error()})
	}
}
