package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/buffer"
)

const bufferUsage = `Usage:
  sluice buffer inspect [--json] DIR   indices, backlog and quarantine of a WAL directory
  sluice buffer verify [--json] DIR    read every segment, check framing, every record's CRC
                                       and segment contiguity; exit 1 if damage is found

DIR is the WAL directory or the gateway's --data-dir (its wal/ is used). Both
only read files: they take no lock and are safe next to a running gateway,
whose files they then see as a snapshot.
`

// bufferCmd runs "sluice buffer inspect|verify". Usage errors are
// configErrors (exit 2); damage found by verify is an error (exit 1).
func bufferCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return configError{errors.New("buffer: want a subcommand, inspect or verify\n\n" + bufferUsage)}
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "inspect":
		return bufferInspect(rest, stdout)
	case "verify":
		return bufferVerify(rest, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, bufferUsage)
		return flag.ErrHelp
	default:
		return configError{fmt.Errorf("buffer: unknown subcommand %q\n\n%s", sub, bufferUsage)}
	}
}

func bufferInspect(args []string, stdout io.Writer) error {
	dir, asJSON, err := parseBufferArgs("inspect", args)
	if err != nil {
		return err
	}
	rep, err := buffer.Inspect(dir)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, rep)
	}
	printInspect(stdout, rep)
	return nil
}

func bufferVerify(args []string, stdout io.Writer) error {
	dir, asJSON, err := parseBufferArgs("verify", args)
	if err != nil {
		return err
	}
	rep, err := buffer.Verify(dir)
	if err != nil {
		return err
	}
	if asJSON {
		err = writeJSON(stdout, rep)
	} else {
		printVerify(stdout, rep)
	}
	if err == nil && !rep.Clean() {
		err = fmt.Errorf("damage found in %s: %s", rep.Dir, plural(rep.ProblemCount(), "problem"))
	}
	return err
}

// parseBufferArgs parses "[--json] DIR", flags before or after DIR.
func parseBufferArgs(name string, args []string) (dir string, asJSON bool, err error) {
	fs := flag.NewFlagSet("buffer "+name, flag.ContinueOnError)
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sluice buffer %s [--json] DIR\n", name)
		fs.PrintDefaults()
	}
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return "", false, err
	}
	if err != nil {
		return "", false, configError{err}
	}
	if len(positional) != 1 {
		return "", false, configError{fmt.Errorf("buffer %s wants one DIR, got %d arguments", name, len(positional))}
	}
	dir, err = walDir(positional[0])
	return dir, *jsonOut, err
}

// parseInterspersed parses fs's flags wherever they stand among args and
// returns the other arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// walDir resolves the directory to read: the WAL directory itself, or the
// gateway's --data-dir, which keeps its WAL in wal/.
func walDir(dir string) (string, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return "", configError{fmt.Errorf("DIR: %w", err)}
	}
	if !info.IsDir() {
		return "", configError{fmt.Errorf("DIR %s is not a directory", dir)}
	}
	if sub, err := os.Stat(filepath.Join(dir, "wal")); err == nil && sub.IsDir() {
		return filepath.Join(dir, "wal"), nil
	}
	return dir, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// line prints one "label: value" line of the inspect report.
func line(w io.Writer, label, format string, args ...any) {
	fmt.Fprintf(w, "%-18s%s\n", label+":", fmt.Sprintf(format, args...))
}

// more prints a continuation line under the previous one's value.
func more(w io.Writer, format string, args ...any) {
	line(w, "", format, args...)
}

func printInspect(w io.Writer, r *buffer.Report) {
	line(w, "directory", "%s", r.Dir)
	if r.GatewayRunning {
		line(w, "gateway", "running (it holds the directory lock): these numbers are a snapshot")
	} else {
		line(w, "gateway", "not running")
	}
	if r.Segments == 0 {
		line(w, "segments", "0: no WAL segment files here")
	} else {
		line(w, "segments", "%d, %s, %s .. %s", r.Segments, sizeText(r.SegmentBytes), r.FirstSegment, r.LastSegment)
		printIndices(w, r)
	}
	printCheckpoint(w, r.Checkpoint)
	if r.Segments > 0 {
		printBacklog(w, r)
	}
	printQuarantine(w, r.Quarantine)
	if len(r.Leftovers) > 0 {
		line(w, "wal leftovers", "%s", strings.Join(r.Leftovers, " "))
	}
}

func printIndices(w io.Writer, r *buffer.Report) {
	line(w, "first index", "%d", r.FirstIndex)
	if r.LastIndex < r.FirstIndex {
		line(w, "last index", "%d (the log is empty)", r.LastIndex)
	} else {
		line(w, "last index", "%d", r.LastIndex)
	}
	// A whole segment of bad records is verify's to list; show the start.
	const shown = 5
	for i, p := range r.LastSegmentProblems[:min(shown, len(r.LastSegmentProblems))] {
		label := ""
		if i == 0 {
			label = "last segment"
		}
		line(w, label, "%s", p)
	}
	if n := len(r.LastSegmentProblems); n > shown {
		more(w, "... and %d more (run sluice buffer verify)", n-shown)
	}
}

func printCheckpoint(w io.Writer, c buffer.CheckpointState) {
	switch c.State {
	case buffer.CheckpointNone:
		line(w, "acked index", "none")
	case buffer.CheckpointUnreadable:
		line(w, "acked index", "unreadable: %s", c.Error)
	default:
		line(w, "acked index", "%d", c.Index)
	}
	if c.Note != "" {
		more(w, "%s", c.Note)
	}
}

func printBacklog(w io.Writer, r *buffer.Report) {
	if r.BacklogEvents == 0 {
		line(w, "backlog", "0 events")
		return
	}
	line(w, "backlog", "%d events, %s, from index %d", r.BacklogEvents, sizeText(r.BacklogBytes), r.NextIndex)
	switch o := r.Oldest; {
	case o == nil:
	case o.Error != "":
		line(w, "oldest unshipped", "index %d: %s", o.Index, o.Error)
	default:
		line(w, "oldest unshipped", "index %d, received %s, %s ago", o.Index,
			time.UnixMilli(o.TimeMs).UTC().Format(time.RFC3339Nano), o.Age().Round(time.Second))
	}
}

func printQuarantine(w io.Writer, q buffer.QuarantineSummary) {
	line(w, "quarantine", "%s, %s", plural(q.Files, "file"), sizeText(q.Bytes))
	for _, f := range q.Newest {
		more(w, "%s  %s  %s", f.ModTime.UTC().Format(time.RFC3339), f.Name, sizeText(f.Bytes))
	}
	if q.Files > len(q.Newest) {
		more(w, "... and %d older", q.Files-len(q.Newest))
	}
}

func printVerify(w io.Writer, r *buffer.VerifyReport) {
	fmt.Fprintf(w, "verifying %s\n", r.Dir)
	if r.GatewayRunning {
		fmt.Fprintln(w, "a gateway is running (it holds the directory lock): files may change while they are read,"+
			" and a torn entry at the end of the last segment may be a write in progress")
	}
	for _, p := range r.Problems {
		fmt.Fprintln(w, p)
	}
	if r.Unlisted > 0 {
		fmt.Fprintf(w, "... and %d more problems\n", r.Unlisted)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	verdict := "clean"
	if !r.Clean() {
		verdict = plural(r.ProblemCount(), "problem")
	}
	fmt.Fprintf(w, "%s, %s checked, %d bytes read: %s\n",
		plural(r.Segments, "segment"), plural(int(r.Records), "record"), r.BytesRead, verdict)
}

// plural is "1 thing" or "n things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// sizeText is "n bytes", with a binary-prefixed size added from 1 KiB on.
func sizeText(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	v, unit := float64(n)/1024, 0
	for v >= 1024 && unit < 4 {
		v /= 1024
		unit++
	}
	return fmt.Sprintf("%d bytes (%.1f %ciB)", n, v, "KMGTP"[unit])
}
