package buffer

import (
	"io"
	"os"
	"path/filepath"
	"sort"
)

// sealedCursor streams the shipper's reads of sealed segments (every segment
// but the tail) straight from their files, front to back.
//
// A shipper behind the writer (Kafka slow or down, or catching up after
// either) reads records the writer's in-memory hand-off no longer holds.
// Through tidwall/wal each such read takes the log's lock, which the writer
// holds across every fsync, and each segment it enters is read whole into
// memory (4 MiB and an index of its entries) under that lock, making the
// next group commit wait. A sealed segment never changes, so the cursor
// reads it on its own, 64 KiB at a time, one fresh buffer per frame and
// nothing held: a slow broker's 30 s took 40 MB of segment loads through
// tidwall/wal.
//
// Anything unusual (a damaged entry, a file that cannot be opened, the tail
// segment) makes the cursor give up the read: Buffer.read then goes through
// tidwall/wal, whose errors lead to the repair of a damaged segment.
type sealedCursor struct {
	dir  string
	f    *os.File
	er   *entryReader
	next uint64 // index of the entry er reads next
	end  uint64 // first index of the following segment
	// listed holds the first indexes of the segment files in order, the
	// tail's last, as listed when the writer had started cycles segments.
	// A read past the last sealed one lists again only if the writer has
	// started a segment since: reads from the tail must not list the
	// directory each time.
	listed     []uint64
	listedAt   uint64
	listedOnce bool

	served   uint64 // frames read by the cursor, for tests
	listings int    // directory listings, for tests
	opens    int    // segment files opened, for tests
}

// frame returns the frame at index, or ok false when the caller must read it
// through tidwall/wal: index is in the tail segment, or the file did not
// read as whole entries. cycles is the writer's count of segments started
// (Buffer.cycles).
func (c *sealedCursor) frame(index, cycles uint64) (frame []byte, ok bool) {
	switch {
	case c.f != nil && index >= c.next && index < c.end:
		// Forward in the open segment; after a rewind the shipper skips
		// the records already confirmed.
		if !c.skipTo(index) {
			return nil, false
		}
	case !c.seek(index, cycles):
		return nil, false
	}
	e, err := c.er.next()
	if err != nil || e.zeros > 0 {
		// A zero run is read by tidwall/wal as empty entries; leave that,
		// and every damaged entry, to it.
		c.close()
		return nil, false
	}
	// The frame is handed on (the sink owns the record decoded from it), so
	// the reader must not reuse its buffer for the next entry.
	c.er.buf = nil
	c.next++
	c.served++
	if c.next == c.end {
		// Done with the file: the shipper may now read from memory for
		// hours, and an open file would keep a removed segment's space.
		c.close()
	}
	return e.frame, true
}

// seek opens the sealed segment holding index and skips to its entry.
func (c *sealedCursor) seek(index, cycles uint64) bool {
	c.close()
	first, end, ok := c.segmentOf(index, cycles)
	if !ok {
		return false
	}
	f, er, err := openSegment(filepath.Join(c.dir, segmentFileName(first)))
	if err != nil {
		return false
	}
	c.opens++
	if !wholeSegment(f, er.size, end-first) {
		f.Close()
		return false
	}
	c.f, c.er, c.next, c.end = f, er, first, end
	return c.skipTo(index)
}

// skipTo reads past the entries before index in the open segment.
func (c *sealedCursor) skipTo(index uint64) bool {
	for c.next < index {
		if e, err := c.er.next(); err != nil || e.zeros > 0 {
			c.close()
			return false
		}
		c.next++
	}
	return true
}

// wholeSegment reports whether f (size bytes) frames exactly entries
// entries, none of them empty: what tidwall/wal checks by parsing a segment
// when it loads one. Damage anywhere in the file fails it before any of its
// records is shipped, as it did through tidwall/wal, so that the repair
// (which keeps every record it can recognise after the damage) sees the
// file first; a cursor that only noticed the damage on reaching it could
// have shipped misframed entries as undecodable records, lost. It streams
// through a 64 KiB buffer: about a millisecond per 4 MiB from the page
// cache, nothing allocated per entry and no lock taken.
func wholeSegment(f *os.File, size int64, entries uint64) bool {
	er := newEntryReader(io.NewSectionReader(f, 0, size), size)
	var n uint64
	for {
		e, err := er.next()
		switch {
		case err == io.EOF:
			return n == entries
		case err != nil, e.zeros > 0:
			return false
		}
		if n++; n > entries {
			return false
		}
	}
}

// segmentOf finds the sealed segment holding index: its first index and the
// first index of the segment after it. The tail segment (nothing after it)
// is not sealed.
func (c *sealedCursor) segmentOf(index, cycles uint64) (first, end uint64, ok bool) {
	find := func() (uint64, uint64, bool) {
		// The last segment whose first index is <= index, if one follows it.
		i := sort.Search(len(c.listed), func(i int) bool { return c.listed[i] > index })
		if i == 0 || i == len(c.listed) {
			return 0, 0, false
		}
		return c.listed[i-1], c.listed[i], true
	}
	if first, end, ok = find(); ok || (c.listedOnce && cycles == c.listedAt) {
		return first, end, ok
	}
	// A listing takes well under a millisecond, and happens about once per
	// segment the writer starts.
	segs, err := listSegments(c.dir)
	c.listings++
	if err != nil {
		return 0, 0, false
	}
	c.listed = c.listed[:0]
	for _, s := range segs {
		c.listed = append(c.listed, s.first)
	}
	c.listedAt, c.listedOnce = cycles, true
	return find()
}

// forget drops what the cursor knows of the files: after a repair or a
// reopen rewrote a segment.
func (c *sealedCursor) forget() {
	c.close()
	c.listed, c.listedOnce = c.listed[:0], false
}

func (c *sealedCursor) close() {
	if c.f != nil {
		c.f.Close()
		c.f, c.er = nil, nil
	}
}
