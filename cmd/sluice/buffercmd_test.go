package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/buffer"
)

// writeDataDir writes n records into <data-dir>/wal through the buffer, as
// the gateway does, saves acked as the checkpoint and returns the data dir.
func writeDataDir(t *testing.T, n int, acked int) string {
	t.Helper()
	dataDir := t.TempDir()
	walDir := filepath.Join(dataDir, "wal")
	b, err := buffer.Open(buffer.Config{Dir: walDir, SegmentBytes: 1024, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	frames := make([][]byte, n)
	for i := range frames {
		rec := buffer.Record{TimeMs: time.Now().UnixMilli(), Key: []byte("k"), Value: []byte(`{"event":"view"}`)}
		frames[i] = buffer.AppendRecord(nil, &rec)
	}
	done := make(chan error, 1)
	b.Append(frames, func(_, _ uint64, err error) { done <- err })
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		err = errors.New("append not done within 20s")
	}
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(walDir, "acked"), []byte(strconv.Itoa(acked)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dataDir
}

// damageFirstRecord flips a byte inside the first record of the WAL in dataDir.
func damageFirstRecord(t *testing.T, dataDir string) {
	t.Helper()
	path := filepath.Join(dataDir, "wal", "00000000000000000001")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[10] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBufferExitStatus checks the exit status of "sluice buffer" through run:
// 0 clean, 1 damage, 2 usage.
func TestBufferExitStatus(t *testing.T) {
	clean := writeDataDir(t, 50, 20)
	damaged := writeDataDir(t, 50, 20)
	damageFirstRecord(t, damaged)
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f := func(want int, args ...string) {
		t.Helper()
		if got := run(append([]string{"buffer"}, args...)); got != want {
			t.Errorf("sluice buffer %s: exit status %d, want %d", strings.Join(args, " "), got, want)
		}
	}
	f(0, "verify", clean)
	f(0, "verify", filepath.Join(clean, "wal"))
	f(0, "inspect", clean)
	f(0, "inspect", "--json", clean)
	f(1, "verify", damaged)
	f(1, "verify", "--json", damaged)
	f(0, "inspect", damaged) // inspect reports; only verify judges
	f(1, "verify", t.TempDir())
	f(2, "verify", filepath.Join(t.TempDir(), "missing"))
	f(2, "inspect", filepath.Join(t.TempDir(), "missing"))
	f(2, "verify", notADir)
	f(2, "verify")
	f(2, "verify", clean, clean)
	f(2, "verify", "--bogus", clean)
	f(2, "frobnicate", clean)
	f(2)
	f(0, "verify", "-h")
	f(0, "help")
}

func TestBufferInspectJSON(t *testing.T) {
	dataDir := writeDataDir(t, 50, 20)
	var out bytes.Buffer
	if err := bufferCmd([]string{"inspect", dataDir, "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	var r buffer.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out.String())
	}
	if r.Dir != filepath.Join(dataDir, "wal") || r.FirstIndex != 1 || r.LastIndex != 50 || r.Checkpoint.Index != 20 ||
		r.BacklogEvents != 30 || r.Oldest == nil || r.Oldest.Index != 21 || r.Oldest.Error != "" {
		t.Errorf("report %+v", r)
	}
}

func TestBufferInspectText(t *testing.T) {
	dataDir := writeDataDir(t, 50, 20)
	var out bytes.Buffer
	if err := bufferCmd([]string{"inspect", dataDir}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"directory:        " + filepath.Join(dataDir, "wal") + "\n",
		"gateway:          not running\n",
		"first index:      1\n",
		"last index:       50\n",
		"acked index:      20\n",
		"backlog:          30 events, ",
		"oldest unshipped: index 21, received ",
		"quarantine:       0 files, 0 bytes\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestBufferInspectTextDamagedTail appends seven undecodable 1-byte entries
// to the last segment: inspect counts them and shows the first five problems.
func TestBufferInspectTextDamagedTail(t *testing.T) {
	dataDir := writeDataDir(t, 50, 20)
	walDir := filepath.Join(dataDir, "wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for _, e := range entries {
		if len(e.Name()) == 20 {
			last = e.Name() // ReadDir sorts by name
		}
	}
	f, err := os.OpenFile(filepath.Join(walDir, last), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(bytes.Repeat([]byte{1, 7}, 7))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := bufferCmd([]string{"inspect", dataDir}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"last index:       57\n",
		"last segment:     " + last + " offset ",
		"index 51: bad-record: ",
		"... and 2 more (run sluice buffer verify)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), ": bad-record: "); n != 5 {
		t.Errorf("%d problems shown, want 5:\n%s", n, out.String())
	}
}

func TestBufferVerifyText(t *testing.T) {
	dataDir := writeDataDir(t, 50, 20)
	var out bytes.Buffer
	if err := bufferCmd([]string{"verify", dataDir}, &out); err != nil {
		t.Fatalf("verify clean: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "50 records checked") || !strings.HasSuffix(out.String(), ": clean\n") {
		t.Errorf("clean verify output:\n%s", out.String())
	}
	damageFirstRecord(t, dataDir)
	out.Reset()
	err := bufferCmd([]string{"verify", dataDir}, &out)
	var ce configError
	if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), "damage found") {
		t.Errorf("verify damaged: error %v, want damage found", err)
	}
	if want := "00000000000000000001 offset 0 index 1: bad-record: "; !strings.Contains(out.String(), want) {
		t.Errorf("verify output lacks %q:\n%s", want, out.String())
	}
	if !strings.HasSuffix(out.String(), ": 1 problem\n") {
		t.Errorf("verify summary:\n%s", out.String())
	}
}

func TestBufferHelp(t *testing.T) {
	var out bytes.Buffer
	if err := bufferCmd([]string{"help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "sluice buffer verify") {
		t.Errorf("help: error %v, output %q", err, out.String())
	}
}

func TestParseInterspersed(t *testing.T) {
	f := func(args []string, wantJSON bool, want ...string) {
		t.Helper()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		j := fs.Bool("json", false, "")
		got, err := parseInterspersed(fs, args)
		if err != nil || *j != wantJSON || !slices.Equal(got, want) {
			t.Errorf("%q: got %q json=%v err=%v; want %q json=%v", args, got, *j, err, want, wantJSON)
		}
	}
	f(nil, false)
	f([]string{"d"}, false, "d")
	f([]string{"--json", "d"}, true, "d")
	f([]string{"d", "--json"}, true, "d")
	f([]string{"a", "--json", "b"}, true, "a", "b")
}

func TestSizeText(t *testing.T) {
	f := func(n int64, want string) {
		t.Helper()
		if got := sizeText(n); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", n, got, want)
		}
	}
	f(0, "0 bytes")
	f(1023, "1023 bytes")
	f(1536, "1536 bytes (1.5 KiB)")
	f(3<<30, "3221225472 bytes (3.0 GiB)")
}

func TestPlural(t *testing.T) {
	f := func(n int, want string) {
		t.Helper()
		if got := plural(n, "record"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
	f(0, "0 records")
	f(1, "1 record")
	f(2, "2 records")
}
