package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// quarantineDir holds bytes cut from the WAL. Nothing is deleted silently.
const quarantineDir = "quarantine"

// CorruptionError says where a WAL segment stopped parsing.
type CorruptionError struct {
	Segment string
	Offset  int64
	Err     error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal segment %s corrupt at offset %d: %v", e.Segment, e.Offset, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

var errNoTornTail = errors.New("the last segment parses whole")

// repairTail cuts the last segment back to its last whole entry (tidwall/wal's
// uvarint length + bytes) and moves the cut bytes to a quarantine file. A torn
// tail is what a crash in the middle of a write leaves; tidwall/wal refuses to
// open it.
func repairTail(dir string, log *slog.Logger) (*CorruptionError, error) {
	segs, err := segmentFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, errNoTornTail
	}
	path := segs[len(segs)-1]
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("repair wal tail: %w", err)
	}
	off := lastWholeEntryEnd(data)
	if off == len(data) {
		return nil, errNoTornTail
	}
	cerr := &CorruptionError{Segment: filepath.Base(path), Offset: int64(off), Err: errors.New("torn entry at the tail")}
	qpath, err := quarantine(dir, filepath.Base(path), off, data[off:])
	if err != nil {
		return nil, err
	}
	if err := truncateFile(path, int64(off)); err != nil {
		return nil, err
	}
	log.Warn("wal tail repaired: torn entry cut and quarantined",
		"segment", cerr.Segment, "offset", off, "bytes", len(data)-off, "quarantine", qpath)
	return cerr, nil
}

// lastWholeEntryEnd is the length of data's prefix made of whole entries.
func lastWholeEntryEnd(data []byte) int {
	off := 0
	for off < len(data) {
		size, n := binary.Uvarint(data[off:])
		if n <= 0 || uint64(len(data)-off-n) < size {
			break
		}
		off += n + int(size)
	}
	return off
}

// quarantine writes cut bytes to quarantine/<segment>.<offset>.<unix-nanos>
// and makes the file durable before anything is cut from the WAL.
func quarantine(dir, segment string, offset int, b []byte) (string, error) {
	qdir := filepath.Join(dir, quarantineDir)
	if err := os.MkdirAll(qdir, 0o755); err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	path := filepath.Join(qdir, segment+"."+strconv.Itoa(offset)+"."+strconv.FormatInt(time.Now().UnixNano(), 10))
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

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	return nil
}

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
