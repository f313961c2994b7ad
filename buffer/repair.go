package buffer

// Recovery of a damaged WAL, without a person and without deleting anything
// that was not first copied (or moved) to DIR/quarantine/.
//
// tidwall/wal frames each entry as a uvarint length and the bytes, with no
// checksum; Open parses only the last segment and refuses a torn one, and
// Read parses an earlier segment the first time it needs it. It trusts each
// segment to hold exactly the entries its name and the next segment's name
// promise: a sealed segment with fewer makes Read panic (index out of range),
// and one with more shadows the first entries of the next segment through
// tidwall/wal's segment cache, which loses them silently. Our record frame is
// never empty and carries a CRC, so an entry is whole and good exactly when
// DecodeRecord accepts it, and the bytes where a good entry starts after a
// damaged stretch are found by trying every offset.
//
// Repairs therefore work segment by segment:
//   - the last segment (at every open): damage at its end (a torn write, a
//     zero-filled tail, a last record failing its CRC, a garbage or unreadable
//     file) is cut; damage before good records is replaced by placeholders;
//   - a sealed segment (at the first open, and when a read finds it broken) is
//     rebuilt when it does not hold exactly the entries it must: its good
//     records keep their indices, damaged or missing ones become placeholders,
//     and a missing or short segment is filled with placeholders up to the
//     next one.
//
// A placeholder is an entry of one byte, 0xFF, that is never a record, so
// the shipper skips it and counts it in sluice_wal_corrupt_records_total:
// that is how lost records are counted.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/tidwall/wal"
)

// quarantineDir holds bytes cut from the WAL. Nothing is deleted silently.
const quarantineDir = "quarantine"

// placeholderEntry is a tidwall/wal entry of one byte, 0xFF, standing in for
// a record lost to damage so that the records after it keep their indices.
// It fails DecodeRecord (the shipper skips and counts it), and it is not
// empty: an empty entry is what a zero-filled tail parses as.
var placeholderEntry = []byte{0x01, 0xFF}

// minRecordEntry is the smallest tidwall/wal entry holding a record frame:
// damaged bytes cannot have held more records than their length over this.
const minRecordEntry = 1 + minFrameSize

// maxPlaceholdersPerSegment bounds the placeholder segments that fill a gap:
// tidwall/wal keeps 16 bytes of memory per entry of every segment it loads.
const maxPlaceholdersPerSegment = 1 << 16

// maxGapEntries bounds the missing indices a repair fills with placeholders
// (two bytes each). A wider gap comes from a misnamed file rather than from
// lost segments, and filling it could fill the disk.
const maxGapEntries = 1 << 24

// segmentFiles lists the WAL segment files (20-digit names) in index order.
func segmentFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list wal segments: %w", err)
	}
	var out []string
	for _, e := range entries {
		if name := e.Name(); !e.IsDir() && len(name) == 20 {
			if _, err := strconv.ParseUint(name, 10, 64); err == nil {
				out = append(out, filepath.Join(dir, name))
			}
		}
	}
	sort.Strings(out) // zero-padded, so lexical order is index order
	return out, nil
}

// recovery counts what one recoverWAL repaired.
type recovery struct {
	tailRepaired     bool
	segmentsRepaired int
}

// recoverWAL repairs the WAL in dir so that tidwall/wal opens it and reads
// every index it lists: always the last segment, and the sealed ones too when
// checkSealed. Checking the sealed segments reads the whole WAL once, so only
// the first open does it; a reopen finds them as they were.
func recoverWAL(dir string, log *slog.Logger, checkSealed bool) (recovery, error) {
	return recoverWALAfter(dir, log, checkSealed, 0)
}

// recoverWALAfter is recoverWAL that skips the sealed segments whose records
// are all at or below acked: they are never read again, and a big backlog's
// acknowledged front need not be read at every start.
func recoverWALAfter(dir string, log *slog.Logger, checkSealed bool, acked uint64) (recovery, error) {
	var rec recovery
	segs, err := listSegments(dir)
	if err != nil || len(segs) == 0 {
		return rec, err
	}
	if checkSealed {
		t0 := time.Now()
		for i := 0; i+1 < len(segs); i++ {
			if segs[i+1].first > 0 && segs[i+1].first-1 <= acked {
				continue
			}
			repaired, err := repairSealed(dir, segs[i], segs[i+1].first, log)
			if err != nil {
				return rec, err
			}
			if repaired {
				rec.segmentsRepaired++
			}
		}
		log.Info("wal segments checked", "sealed", len(segs)-1, "repaired", rec.segmentsRepaired, "took", time.Since(t0))
	}
	rec.tailRepaired, err = repairTail(dir, segs[len(segs)-1], log)
	return rec, err
}

// countRecovery adds what recoverWAL repaired to b's counters.
func (b *Buffer) countRecovery(rec recovery) {
	if rec.tailRepaired {
		b.tailRepairs.Add(1)
	}
	b.segmentRepairs.Add(int64(rec.segmentsRepaired))
}

// repairTail makes the last segment end with a good record (or hold nothing):
// damage at its end is cut, damage before good records becomes placeholders.
// It reports whether it changed anything.
func repairTail(dir string, seg segmentFile, log *slog.Logger) (bool, error) {
	data, err := os.ReadFile(seg.path)
	if err != nil {
		return true, replaceUnreadableTail(dir, seg, err, log)
	}
	parts, damaged := planTail(scanParts(data))
	if !damaged {
		return false, nil
	}
	qpaths, err := quarantineParts(dir, seg.name, data, parts)
	if err != nil {
		return false, fmt.Errorf("repair wal segment %s: %w", seg.name, err)
	}
	if err := writeSegments(dir, []segmentContent{{seg.name, rebuild(data, parts)}}); err != nil {
		return false, fmt.Errorf("repair wal segment %s: %w", seg.name, err)
	}
	cut := summarizeCuts(parts)
	log.Warn("wal tail repaired: damaged bytes cut and quarantined",
		"segment", seg.name, "offset", cut.offset, "bytes", cut.bytes, "placeholders", cut.placeholders,
		"quarantine", qpaths)
	return true, nil
}

// replaceUnreadableTail moves a last segment that cannot be read to the
// quarantine and leaves an empty one of the same name, so that new records
// keep the indices after the earlier segments.
func replaceUnreadableTail(dir string, seg segmentFile, readErr error, log *slog.Logger) error {
	qpath, err := moveToQuarantine(dir, seg)
	if err != nil {
		return fmt.Errorf("repair unreadable wal segment %s (%v): %w", seg.name, readErr, err)
	}
	if err := writeSegments(dir, []segmentContent{{seg.name, nil}}); err != nil {
		return fmt.Errorf("repair unreadable wal segment %s: %w", seg.name, err)
	}
	log.Warn("wal tail repaired: unreadable last segment moved to quarantine",
		"segment", seg.name, "err", readErr, "quarantine", qpath)
	return nil
}

// repairSealed makes a sealed segment hold exactly the entries from its first
// index up to next-1, the next segment's first. It reports whether it changed
// anything. A segment that frames whole with the right count is left alone,
// bad records and all: they are at their indices, and the shipper skips them.
func repairSealed(dir string, seg segmentFile, next uint64, log *slog.Logger) (bool, error) {
	data, err := os.ReadFile(seg.path)
	if err != nil {
		return true, replaceUnreadableSealed(dir, seg, next, err, log)
	}
	want := next - seg.first
	if n, whole := countEntries(data); whole && uint64(n) == want {
		return false, nil
	}
	// Each entry takes at least a byte, so only a gap can make want this big.
	if want > uint64(len(data))+maxGapEntries {
		return false, fmt.Errorf("repair wal segment %s: the next segment starts at index %d, %d indices on; "+
			"too wide a gap to fill with placeholders (a misnamed segment file?)", seg.name, next, want)
	}
	parts := planSealed(data, scanParts(data), int(want))
	qpaths, err := quarantineParts(dir, seg.name, data, parts)
	if err != nil {
		return false, fmt.Errorf("repair wal segment %s: %w", seg.name, err)
	}
	kept := entriesOf(parts)
	var files []segmentContent
	if content := rebuild(data, parts); kept > 0 && !bytes.Equal(content, data) {
		files = append(files, segmentContent{seg.name, content})
	} // with nothing kept, the first placeholder segment takes the name
	files = append(files, placeholderSegments(seg.first+uint64(kept), int(want)-kept)...)
	if err := writeSegments(dir, files); err != nil {
		return false, fmt.Errorf("repair wal segment %s: %w", seg.name, err)
	}
	cut := summarizeCuts(parts)
	log.Warn("wal segment repaired: damaged bytes quarantined, lost records replaced by placeholders",
		"segment", seg.name, "offset", cut.offset, "bytes", cut.bytes,
		"records_lost", cut.placeholders+int(want)-kept, "entries_kept", kept-cut.placeholders,
		"quarantine", qpaths)
	return true, nil
}

// replaceUnreadableSealed moves a sealed segment that cannot be read to the
// quarantine and fills its indices with placeholders.
func replaceUnreadableSealed(dir string, seg segmentFile, next uint64, readErr error, log *slog.Logger) error {
	want := next - seg.first
	if want > maxGapEntries {
		return fmt.Errorf("repair unreadable wal segment %s (%v): the next segment starts at index %d, "+
			"too many indices on to fill with placeholders", seg.name, readErr, next)
	}
	qpath, err := moveToQuarantine(dir, seg)
	if err != nil {
		return fmt.Errorf("repair unreadable wal segment %s (%v): %w", seg.name, readErr, err)
	}
	if err := writeSegments(dir, placeholderSegments(seg.first, int(want))); err != nil {
		return fmt.Errorf("repair unreadable wal segment %s: %w", seg.name, err)
	}
	log.Warn("wal segment repaired: unreadable segment moved to quarantine, its records replaced by placeholders",
		"segment", seg.name, "err", readErr, "records_lost", want, "quarantine", qpath)
	return nil
}

// entryAt parses the tidwall/wal entry at off: its record frame and where it
// ends. ok is false when the bytes there do not frame a whole entry.
func entryAt(data []byte, off int) (frame []byte, end int, ok bool) {
	size, n := binary.Uvarint(data[off:])
	if n <= 0 || size > uint64(len(data)-off-n) {
		return nil, 0, false
	}
	end = off + n + int(size)
	return data[off+n : end], end, true
}

func isRecord(frame []byte) bool {
	var r Record
	return DecodeRecord(frame, &r) == nil
}

// countEntries counts data's whole entries the way tidwall/wal does, and
// reports whether they fill it (no torn bytes at the end). It checks no CRC.
func countEntries(data []byte) (n int, whole bool) {
	for off := 0; off < len(data); n++ {
		_, end, ok := entryAt(data, off)
		if !ok {
			return n, false
		}
		off = end
	}
	return n, true
}

// part is a stretch of a segment's bytes and what a rebuild makes of it.
type part struct {
	start, end int // byte range in the segment as found
	kind       partKind
	// entries is how many entries the stretch holds after the rebuild.
	entries int
	// keep: the bytes stay as they are; otherwise they go to the quarantine
	// and entries placeholders take their place.
	keep bool
	// framed is, for damaged bytes, how many entries they frame as when they
	// frame whole up to the next good record (a bit flip inside a record, an
	// entry too short to be one), or -1.
	framed int
}

type partKind int

const (
	goodRecords  partKind = iota
	placeholders          // an earlier repair's: their count is exact
	damagedBytes
	cutBytes // quarantined, replaced by nothing
)

// bound is the most entries damaged bytes can have held: what they frame as,
// or else one per smallest record. Counting a stretch too many entries only
// re-sends the records after it; too few could skip them as already shipped.
func (p part) bound() int { return max(p.framed, (p.end-p.start)/minRecordEntry) }

// cut makes p a stretch whose bytes are quarantined and replaced by nothing.
func (p *part) cut() { p.kind, p.entries, p.keep = cutBytes, 0, false }

// scanParts splits a segment into runs of good records, runs of placeholders
// (an earlier repair's, whose count is exact: guessing it again could move
// the records after them) and the damaged stretches between them. A damaged
// stretch ends where the next good record or placeholder starts, found by
// trying every offset: the CRC makes a false record start unlikely.
func scanParts(data []byte) []part {
	var parts []part
	budget := max(scanBudgetFloor, scanBudgetPerByte*len(data))
	for off := 0; off < len(data); {
		if end, n := entryRun(data, off, isRecord); n > 0 {
			parts = append(parts, part{start: off, end: end, kind: goodRecords, entries: n, keep: true})
			off = end
			continue
		}
		if end, n := entryRun(data, off, isPlaceholder); n > 0 {
			parts = append(parts, part{start: off, end: end, kind: placeholders, entries: n, keep: true})
			off = end
			continue
		}
		next := nextEntryStart(data, off+1, &budget)
		parts = append(parts, damagedPart(data, off, next))
		off = next
	}
	return parts
}

// entryRun is the end of the run of entries starting at off whose frames
// satisfy is, and its length.
func entryRun(data []byte, off int, is func(frame []byte) bool) (end, n int) {
	for end = off; end < len(data); n++ {
		frame, next, ok := entryAt(data, end)
		if !ok || !is(frame) {
			break
		}
		end = next
	}
	return end, n
}

func isPlaceholder(frame []byte) bool {
	return bytes.Equal(frame, placeholderEntry[1:])
}

// scanBudgetPerByte bounds the bytes the search for good records may check
// the CRC of, per byte of the segment (and at least scanBudgetFloor). A
// record's key can be made of fake frame headers, each of which costs a CRC
// over a long frame; past the budget the rest of the segment counts as
// damaged, which quarantines it, so a scan never holds up an open for long.
const (
	scanBudgetPerByte = 64
	scanBudgetFloor   = 64 << 20
)

// nextEntryStart is the first offset from from on where a good record or a
// placeholder starts, or len(data) (also once budget is spent).
func nextEntryStart(data []byte, from int, budget *int) int {
	for off := from; off < len(data) && *budget > 0; off++ {
		frame, _, ok := entryAt(data, off)
		switch {
		case !ok:
		case isPlaceholder(frame):
			return off
		case hasRecordHeader(frame):
			*budget -= len(frame)
			if isRecord(frame) {
				return off
			}
		}
	}
	return len(data)
}

// hasRecordHeader is DecodeRecord's check before the CRC: cheap, and failed
// by all but one in 2^15 offsets of random bytes.
func hasRecordHeader(frame []byte) bool {
	return len(frame) >= minFrameSize && frame[0] == recordVersion && frame[1]&^knownFlags == 0
}

// damagedPart is the damaged stretch data[start:end], kept as it is for now.
func damagedPart(data []byte, start, end int) part {
	p := part{start: start, end: end, kind: damagedBytes, framed: -1}
	if n, whole := countEntries(data[start:end]); whole {
		p.framed = n
	}
	p.entries, p.keep = p.bound(), false
	if p.framed >= 0 {
		p.entries, p.keep = p.framed, true
	}
	return p
}

// planTail cuts what follows the last good record of the last segment, and
// reports whether the segment needs a rebuild. Damaged bytes before good
// records keep the count they frame as, which is what tidwall/wal read before
// (the brief's rule: the shipper skips them); if they do not frame whole they
// become placeholders, as many as they can have held records.
func planTail(parts []part) ([]part, bool) {
	if n := len(parts); n > 0 && parts[n-1].kind != goodRecords {
		parts[n-1].cut()
	}
	for _, p := range parts {
		if !p.keep {
			return parts, true
		}
	}
	return parts, false
}

// planSealed fits a sealed segment's parts to the want entries it must hold.
// Damage at its end is cut (the caller fills its indices with placeholders).
// The count being known, one damaged stretch gets exactly the entries the rest
// leaves room for, up to what it can have held; it stays as it is only if
// that is what it frames as. With several damaged stretches, the good records
// between them could not be placed for sure: all of it becomes one stretch.
func planSealed(data []byte, parts []part, want int) []part {
	if n := len(parts); n > 0 && parts[n-1].kind == damagedBytes {
		parts[n-1].cut()
	}
	parts = mergeDamaged(data, parts)
	for i := range parts {
		if p := &parts[i]; p.kind == damagedBytes {
			room := want - (entriesOf(parts) - p.entries)
			p.entries = max(0, min(room, p.bound()))
			p.keep = p.entries == p.framed
		}
	}
	return trimEntries(data, parts, entriesOf(parts)-want)
}

// mergeDamaged turns everything from the first damaged stretch to the last
// into one.
func mergeDamaged(data []byte, parts []part) []part {
	first, last := -1, -1
	for i, p := range parts {
		if p.kind == damagedBytes {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first == last {
		return parts
	}
	merged := damagedPart(data, parts[first].start, parts[last].end)
	return append(append(parts[:first:first], merged), parts[last+1:]...)
}

// trimEntries drops excess entries: more entries than the segment's indices
// would take the next segment's. Placeholders go first, as they hold no
// record, then records from the end.
func trimEntries(data []byte, parts []part, excess int) []part {
	parts, excess = dropEntries(data, parts, excess, func(p part) bool { return p.kind == placeholders })
	parts, _ = dropEntries(data, parts, excess, func(part) bool { return true })
	return parts
}

// dropEntries drops up to excess entries, from the end, of the parts that
// satisfy which, and returns what is left to drop.
func dropEntries(data []byte, parts []part, excess int, which func(part) bool) ([]part, int) {
	for i := len(parts) - 1; i >= 0 && excess > 0; i-- {
		p := &parts[i]
		if !which(*p) {
			continue
		}
		drop := min(excess, p.entries)
		excess -= drop
		switch {
		case drop == 0:
		case !p.keep:
			p.entries -= drop
		case drop == p.entries:
			p.cut()
		default:
			split := entriesEnd(data, p.start, p.entries-drop)
			tail := part{start: split, end: p.end, kind: cutBytes}
			p.end, p.entries = split, p.entries-drop
			parts = append(parts[:i+1], append([]part{tail}, parts[i+1:]...)...)
		}
	}
	return parts, excess
}

// entriesEnd is the offset after n whole entries starting at off.
func entriesEnd(data []byte, off, n int) int {
	for ; n > 0; n-- {
		_, off, _ = entryAt(data, off)
	}
	return off
}

func entriesOf(parts []part) int {
	n := 0
	for _, p := range parts {
		n += p.entries
	}
	return n
}

// rebuild is the segment the parts describe.
func rebuild(data []byte, parts []part) []byte {
	out := make([]byte, 0, len(data))
	for _, p := range parts {
		if p.keep {
			out = append(out, data[p.start:p.end]...)
		} else {
			out = append(out, bytes.Repeat(placeholderEntry, p.entries)...)
		}
	}
	return out
}

// cutSummary sums up the stretches a rebuild cuts, for the log.
type cutSummary struct {
	offset       int // of the first cut byte
	bytes        int
	placeholders int
}

func summarizeCuts(parts []part) cutSummary {
	d := cutSummary{offset: -1}
	for _, p := range parts {
		if !p.keep {
			if d.offset < 0 {
				d.offset = p.start
			}
			d.bytes += p.end - p.start
			d.placeholders += p.entries
		}
	}
	return d
}

// quarantineParts copies every run of bytes the parts cut to the quarantine,
// one file per contiguous run, before anything is rewritten.
func quarantineParts(dir, segment string, data []byte, parts []part) ([]string, error) {
	var paths []string
	for i := 0; i < len(parts); {
		if parts[i].keep {
			i++
			continue
		}
		start := parts[i].start
		for i < len(parts) && !parts[i].keep {
			i++
		}
		end := parts[i-1].end
		if start == end {
			continue
		}
		path, err := quarantine(dir, segment, start, data[start:end])
		if err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// quarantine writes cut bytes to quarantine/<segment>.<offset>.<unix-nanos>
// and makes the file durable before anything is cut from the WAL.
func quarantine(dir, segment string, offset int, b []byte) (string, error) {
	qdir, path, err := quarantinePath(dir, segment, offset)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("quarantine %s: %w", path, err)
	}
	return path, syncDir(qdir)
}

// moveToQuarantine moves a whole segment file, which could not be read, to
// the quarantine: renaming needs none of its bytes.
func moveToQuarantine(dir string, seg segmentFile) (string, error) {
	qdir, path, err := quarantinePath(dir, seg.name, 0)
	if err != nil {
		return "", err
	}
	if err := os.Rename(seg.path, path); err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	if err := syncDir(qdir); err != nil {
		return "", err
	}
	return path, syncDir(dir)
}

func quarantinePath(dir, segment string, offset int) (qdir, path string, err error) {
	qdir = filepath.Join(dir, quarantineDir)
	if err := os.MkdirAll(qdir, 0o755); err != nil {
		return "", "", fmt.Errorf("quarantine: %w", err)
	}
	name := segment + "." + strconv.Itoa(offset) + "." + strconv.FormatInt(time.Now().UnixNano(), 10)
	return qdir, filepath.Join(qdir, name), nil
}

// segmentFileName is tidwall/wal's name for the segment starting at index.
func segmentFileName(index uint64) string { return fmt.Sprintf("%020d", index) }

// segmentContent is a segment file to write.
type segmentContent struct {
	name string
	data []byte
}

// placeholderSegments are the segment files that fill n indices from first
// with placeholders.
func placeholderSegments(first uint64, n int) []segmentContent {
	var files []segmentContent
	for n > 0 {
		k := min(n, maxPlaceholdersPerSegment)
		files = append(files, segmentContent{segmentFileName(first), bytes.Repeat(placeholderEntry, k)})
		first += uint64(k)
		n -= k
	}
	return files
}

// writeSegments writes segment files in dir, in order, each through a
// temporary file renamed over the old one, then makes the directory durable.
// Should it stop halfway, the next repair finds a consistent, if still
// damaged, WAL: each file is whole, old or new.
func writeSegments(dir string, files []segmentContent) error {
	for _, f := range files {
		if err := writeFileSynced(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("rewrite wal segment: %w", err)
		}
	}
	return syncDir(dir)
}

// writeFileSynced replaces path with content atomically. The temporary name
// is one tidwall/wal ignores; a crash leaves it for the next repair to reuse.
func writeFileSynced(path string, content []byte) error {
	tmp := path + ".TEMP"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// errSegmentShort stands for tidwall/wal's panic on a sealed segment with
// fewer entries than its indices.
var errSegmentShort = errors.New("wal segment holds fewer entries than its indices")

// readEntry reads the frame at index. tidwall/wal panics (index out of range)
// reading a sealed segment that lost entries since the open; that becomes an
// error read can repair.
func (b *Buffer) readEntry(index uint64) (frame []byte, err error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.broken {
		return nil, errWALUnavailable
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("read wal index %d: %w: %v", index, errSegmentShort, p)
		}
	}()
	return b.wal.Read(index)
}

// isSegmentDamage tells whether a read failed on the segment file's contents
// (bad framing, too few entries) or on reading the file at all.
func isSegmentDamage(err error) bool {
	var pathErr *fs.PathError
	return errors.Is(err, wal.ErrCorrupt) || errors.Is(err, errSegmentShort) || errors.As(err, &pathErr)
}

// repairSegmentHolding rebuilds the sealed segment holding index after a read
// of it failed with cause, and reopens the log so that tidwall/wal forgets
// what it read of it. It holds b.mu throughout: a rare pause for the writer,
// and no write, truncation or reopen can run under the repair.
func (b *Buffer) repairSegmentHolding(index uint64, cause error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken {
		return errWALUnavailable
	}
	repaired, seg, err := repairSegmentFiles(b.cfg.Dir, index, b.log)
	if err != nil {
		return fmt.Errorf("read wal index %d: %w (repair: %w)", index, cause, err)
	}
	if !repaired {
		return fmt.Errorf("read wal index %d: %w (its segment %s is whole on disk)", index, cause, seg)
	}
	b.segmentRepairs.Add(1)
	if !b.reopenLocked("to forget a repaired segment") {
		return errWALUnavailable
	}
	return nil
}

var errNoSealedSegment = errors.New("no sealed segment on disk holds the index")

// repairSegmentFiles repairs the files that should hold index: its sealed
// segment, or, when the segments holding it are gone from the front of the
// WAL, placeholders from index up to the first one left. The last segment is
// not sealed: tidwall/wal keeps it in memory, so a read never finds it damaged.
func repairSegmentFiles(dir string, index uint64, log *slog.Logger) (repaired bool, segment string, err error) {
	segs, err := listSegments(dir)
	if err != nil {
		return false, "", err
	}
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first > index }) - 1
	switch {
	case i < 0 && len(segs) > 0:
		return true, "", fillFront(dir, index, segs[0].first, log)
	case i < 0 || i+1 >= len(segs):
		return false, "", errNoSealedSegment
	}
	repaired, err = repairSealed(dir, segs[i], segs[i+1].first, log)
	return repaired, segs[i].name, err
}

// fillFront fills the indices from index up to first, the first segment's,
// with placeholders: the segments that held them are gone.
func fillFront(dir string, index, first uint64, log *slog.Logger) error {
	if first-index > maxGapEntries {
		return fmt.Errorf("indices %d to %d are in no segment: too many to fill with placeholders", index, first-1)
	}
	if err := writeSegments(dir, placeholderSegments(index, int(first-index))); err != nil {
		return err
	}
	log.Warn("wal segment repaired: the segments before the first one left are gone, their records replaced by placeholders",
		"segment", segmentFileName(index), "offset", 0, "records_lost", first-index, "quarantine", []string{})
	return nil
}
