package buffer

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckpointRoundTrip(t *testing.T) {
	dir := t.TempDir()
	f := func(index uint64) {
		t.Helper()
		if err := writeCheckpoint(dir, index); err != nil {
			t.Fatalf("write %d: %v", index, err)
		}
		got, err := readCheckpoint(dir)
		if err != nil || got != index {
			t.Fatalf("read after writing %d: %d, %v", index, got, err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != checkpointFile {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("after writing %d the directory holds %v, want only %s (no temporary file)", index, names, checkpointFile)
		}
	}
	f(0)
	f(1)
	f(12345)
	f(3) // going back is the caller's business; the file just holds the value
	f(1<<64 - 1)
}

func TestCheckpointMissing(t *testing.T) {
	got, err := readCheckpoint(t.TempDir())
	if err != nil || got != 0 {
		t.Fatalf("readCheckpoint of a directory without one = %d, %v; want 0, nil", got, err)
	}
}

func TestCheckpointParse(t *testing.T) {
	f := func(content string, want uint64) {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, checkpointFile), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readCheckpoint(dir)
		if err != nil || got != want {
			t.Fatalf("readCheckpoint(%q) = %d, %v; want %d", content, got, err, want)
		}
	}
	f("42\n", 42)
	f("42", 42)
	f(" 42 \n", 42)
	f("18446744073709551615\n", 1<<64-1)
}

func TestCheckpointGarbage(t *testing.T) {
	tests := map[string]string{
		"empty":          "",
		"newline only":   "\n",
		"words":          "not a number\n",
		"negative":       "-1\n",
		"fraction":       "1.5\n",
		"hex":            "0x10\n",
		"overflow":       "18446744073709551616\n",
		"two numbers":    "1 2\n",
		"zero bytes":     "\x00\x00\x00\x00",
		"number and NUL": "12\x00",
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, checkpointFile), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got, err := readCheckpoint(dir); err == nil {
				t.Fatalf("readCheckpoint(%q) = %d, want an error", content, got)
			}
		})
	}
}

// A checkpoint that is a directory cannot be read or replaced: both report it.
func TestCheckpointUnusable(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, checkpointFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := readCheckpoint(dir); err == nil {
		t.Error("readCheckpoint of a directory succeeded")
	}
	if err := writeCheckpoint(dir, 1); err == nil {
		t.Error("writeCheckpoint over a directory succeeded")
	}
	if err := writeCheckpoint(filepath.Join(dir, "missing"), 1); err == nil {
		t.Error("writeCheckpoint into a missing directory succeeded")
	}
}
