package buffer

// Offline reading of a WAL directory for Inspect and Verify. They never open
// the log through tidwall/wal (its Open repairs and rewrites files) and never
// take the directory lock (a running gateway holds it): they read the segment
// files as they are, streaming one entry at a time, so at most one entry is in
// memory however large a segment is.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// segmentFile is one WAL segment file, named by the index of its first entry.
type segmentFile struct {
	name  string
	path  string
	first uint64
	bytes int64 // the file's size; filled by statSegments only
}

// listSegments lists dir's segment files in index order. Like tidwall/wal, it
// ignores a file named index 0: no entry has that index.
func listSegments(dir string) ([]segmentFile, error) {
	paths, err := segmentFiles(dir)
	if err != nil {
		return nil, err
	}
	segs := make([]segmentFile, 0, len(paths))
	for _, p := range paths {
		name := filepath.Base(p)
		first, _ := strconv.ParseUint(name, 10, 64) // segmentFiles only lists 20-digit names
		if first > 0 {
			segs = append(segs, segmentFile{name: name, path: p, first: first})
		}
	}
	return segs, nil
}

// gatewayHoldsLock reports whether another process (a running gateway) holds
// the flock that Open takes on dir. The shared lock taken to find out is
// released at once; a gateway starting in that instant would be refused.
func gatewayHoldsLock(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("probe lock on %s: %w", dir, err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	switch {
	case err == nil:
		return false, syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, nil
	default:
		return false, fmt.Errorf("probe lock on %s: %w", dir, err)
	}
}

// entry is one step of an entryReader.
type entry struct {
	off   int64  // byte offset in the segment
	frame []byte // the entry's bytes; valid until the next call of next
	// zeros, when > 0, is a run of zero bytes: tidwall/wal reads each one
	// as an empty entry (length 0), so the run stands for zeros entries.
	zeros int64
}

// framingError says why the bytes at an offset are not a whole tidwall/wal
// entry. The format has no marker to resynchronise on, so nothing after it in
// the segment can be parsed.
type framingError struct {
	reason string
}

func (e *framingError) Error() string { return e.reason }

// entryReader streams the entries (uvarint length + bytes) of one segment.
type entryReader struct {
	r    *bufio.Reader
	size int64 // the file's size when opened: a segment that a running gateway appends to reads as that snapshot
	off  int64 // offset of the next entry
	read int64 // bytes consumed from the file
	buf  []byte
}

func newEntryReader(f io.Reader, size int64) *entryReader {
	return &entryReader{r: bufio.NewReaderSize(io.LimitReader(f, size), 64<<10), size: size}
}

// next returns the next entry, io.EOF after the last whole one, a
// *framingError for bytes that do not form an entry, or an I/O error.
func (er *entryReader) next() (entry, error) {
	e := entry{off: er.off}
	if er.off >= er.size {
		return e, io.EOF
	}
	first, err := er.r.Peek(1)
	if err != nil {
		return e, er.ioError(err)
	}
	if first[0] == 0 {
		return er.zeroRun()
	}
	size, n, err := er.readLength()
	if err != nil {
		return e, err
	}
	if left := er.size - er.off - int64(n); size > uint64(left) {
		return e, &framingError{fmt.Sprintf("torn entry: length %d but only %d bytes left in the segment", size, left)}
	}
	if uint64(cap(er.buf)) < size {
		er.buf = make([]byte, size)
	}
	e.frame = er.buf[:size]
	m, err := io.ReadFull(er.r, e.frame)
	er.read += int64(m)
	if err != nil {
		return e, er.ioError(err)
	}
	er.off += int64(n) + int64(size)
	return e, nil
}

// readLength reads an entry's uvarint length prefix and its encoded size.
func (er *entryReader) readLength() (size uint64, n int, err error) {
	var shift uint
	for n < binary.MaxVarintLen64 {
		c, err := er.r.ReadByte()
		if err == io.EOF {
			return 0, n, &framingError{fmt.Sprintf("torn entry: length prefix cut off after %d bytes", n)}
		}
		if err != nil {
			return 0, n, er.ioError(err)
		}
		er.read++
		n++
		if c < 0x80 {
			if n == binary.MaxVarintLen64 && c > 1 {
				break
			}
			return size | uint64(c)<<shift, n, nil
		}
		size |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, n, &framingError{"bad entry: length prefix overflows 64 bits"}
}

// zeroRun consumes the run of zero bytes at the reader's offset.
func (er *entryReader) zeroRun() (entry, error) {
	e := entry{off: er.off}
	for er.off < er.size {
		c, err := er.r.ReadByte()
		if err != nil {
			return e, er.ioError(err)
		}
		if c != 0 {
			return e, er.r.UnreadByte()
		}
		er.read++
		er.off++
		e.zeros++
	}
	return e, nil
}

// ioError wraps a read failure; running out of bytes before the size the file
// had when opened means it shrank while being read.
func (er *entryReader) ioError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("file ended before its size of %d bytes: it changed while being read", er.size)
	}
	return fmt.Errorf("read at offset %d: %w", er.off, err)
}

// openSegment opens a segment for streaming.
func openSegment(path string) (*os.File, *entryReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat %s: %w", path, err)
	}
	return f, newEntryReader(f, info.Size()), nil
}
