package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// checkpointFile holds the highest WAL index whose record, and every record
// before it, Kafka has acknowledged.
const checkpointFile = "acked"

// readCheckpoint returns the persisted acknowledged index, 0 when none was saved.
func readCheckpoint(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse checkpoint %s: %w", filepath.Join(dir, checkpointFile), err)
	}
	return v, nil
}

// writeCheckpoint persists index atomically: temp file, fsync, rename, fsync of
// the directory. A crash leaves either the old or the new value, never a torn one.
func writeCheckpoint(dir string, index uint64) error {
	final := filepath.Join(dir, checkpointFile)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	_, werr := f.WriteString(strconv.FormatUint(index, 10) + "\n")
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write checkpoint %s: %w", tmp, werr)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
