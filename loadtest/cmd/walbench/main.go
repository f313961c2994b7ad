// Command walbench measures the throughput of Sluice's WAL (package buffer)
// against the disk's own ceiling, in one run:
//
//	go run ./loadtest/cmd/walbench [-dir DIR] [-duration 3s] [-rounds 3] [-callers 1,16,64,256]
//
// Each round, for each C in -callers, it opens a fresh buffer and has C
// goroutines append one ~358-byte enriched-event frame each and wait for its
// fsync, over and over, as C concurrent single-event requests do. It pauses
// them every -slice to write the same frames (with tidwall/wal's length
// prefix) to a plain O_APPEND file for a slice, one write(2) + fsync per
// batch, at the batch size the buffer reached in the slice before: its mean
// records per group commit, read from its own sluice_wal_group_commit_records
// histogram. Alternating in short slices makes both kinds see the same disk
// when other processes use it. It prints a markdown table of the medians
// over the rounds; "Sluice / plain" is the WAL's throughput as a share of
// what the disk allows at the same batch size.
//
// Run it on the file system the WAL lives on (not tmpfs: fsync is free there)
// and on a quiet machine.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-gateway/sluice/buffer"
	"github.com/sluice-gateway/sluice/loadtest/internal/fsyncprobe"
	"github.com/sluice-gateway/sluice/loadtest/internal/hist"

	"github.com/sluice-gateway/sluice/loadtest/internal/stats"
)

type config struct {
	dir              string // where round directories are created
	duration, warmup time.Duration
	slice            time.Duration // alternation period of the two kinds
	rounds           int
	callers          []int
}

func main() {
	var cfg config
	var callers string
	flag.StringVar(&cfg.dir, "dir", "", "directory to create the WAL and plain files in (default: a temp dir on the working directory's file system)")
	flag.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured time of each round of each kind")
	flag.DurationVar(&cfg.slice, "slice", 500*time.Millisecond, "each round alternates the buffer and plain write+fsync in slices of this length")
	flag.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "unmeasured start of each Sluice round")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds; the table shows their medians")
	flag.StringVar(&callers, "callers", "1,16,64,256", "concurrent appenders of one record each, comma-separated")
	flag.Parse()
	for _, s := range strings.Split(callers, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			fatalf("bad -callers %q", callers)
		}
		cfg.callers = append(cfg.callers, c)
	}
	if cfg.rounds < 1 || cfg.duration <= 0 || cfg.slice <= 0 || cfg.warmup < 0 {
		fatalf("-rounds must be ≥ 1, -duration and -slice > 0")
	}
	root, cleanup, err := workDir(cfg.dir)
	if err != nil {
		fatalf("%v", err)
	}
	cfg.dir = root
	err = run(cfg, os.Stdout, os.Stderr)
	cleanup()
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "walbench: "+format+"\n", args...)
	os.Exit(1)
}

// workDir creates the directory the run works in, under dir or, by default,
// under the temp dir if it shares the working directory's file system and is
// not tmpfs, else under the working directory.
func workDir(dir string) (string, func(), error) {
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", nil, err
		}
		dir = wd
		tmp := os.TempDir()
		if fsType(tmp) == "tmpfs" {
			fmt.Fprintf(os.Stderr, "walbench: WARNING: %s is tmpfs (fsync is free there); using %s instead\n", tmp, wd)
		} else if sameDevice(tmp, wd) {
			dir = tmp
		}
	}
	if fsType(dir) == "tmpfs" {
		fmt.Fprintf(os.Stderr, "walbench: WARNING: %s is tmpfs: fsync is free there, the figures say nothing about a disk\n", dir)
	}
	d, err := os.MkdirTemp(dir, "walbench-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

func sameDevice(a, b string) bool {
	var sa, sb syscall.Stat_t
	return syscall.Stat(a, &sa) == nil && syscall.Stat(b, &sb) == nil && sa.Dev == sb.Dev
}

// fsType names the file system dir is on, from statfs(2)'s magic number.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch m := int64(st.Type); m {
	case 0x01021994:
		return "tmpfs"
	case 0xEF53:
		return "ext2/3/4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794C7630:
		return "overlayfs"
	case 0x2FC12FC2:
		return "zfs"
	default:
		return fmt.Sprintf("magic %#x", m)
	}
}

// frame is a realistic enriched event as the buffer stores it: a ~316-byte
// JSON envelope keyed by user id, 358 bytes encoded; i makes it distinct.
func frame(i int) []byte {
	r := buffer.Record{TimeMs: 1_795_000_000_000 + int64(i), Key: fmt.Appendf(nil, "user-%06d", i%100_000)}
	binary.BigEndian.PutUint64(r.ID[8:], uint64(i))
	r.Value = fmt.Appendf(nil, `{"id":"%032x","received_at":"2026-11-22T01:20:21.757Z","type":"Product Viewed",`+
		`"user_id":"user-%06d","context":{"ip":"203.0.113.0","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",`+
		`"ua":{"browser":"Chrome","os":"Linux"}},"payload":{"event":"Product Viewed","sku":"SKU-%06d"}}`,
		r.ID, i%100_000, i)
	return buffer.AppendRecord(nil, &r)
}

// result is one round for one C.
type result struct {
	events, secs float64 // records made durable by the buffer, measured time
	recs, fsync  histo   // the buffer's group commit sizes and durations
	plainEvents  float64 // records written by the plain write+fsync
	plainSecs    float64
	plainLat     hist.Histogram
}

// round runs a fresh buffer in a new directory under root with c goroutines
// each appending one record and waiting for its fsync. After warmup it
// alternates slices of the buffer's work and of plain write+fsync at the
// batch size the buffer reached in the slice before, each kind for d in
// all: both see the same disk, whatever else uses it.
func round(root string, frames [][]byte, c int, warmup, d, slice time.Duration) (result, error) {
	dir, err := os.MkdirTemp(root, "wal-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	reg := prometheus.NewRegistry()
	buf, err := buffer.Open(buffer.Config{Dir: dir, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return result{}, err
	}
	var (
		gate     sync.RWMutex // appenders hold R for one append; W pauses them
		durable  atomic.Int64
		stop     atomic.Bool
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for g := range c {
		wg.Go(func() {
			done := make(chan error, 1)
			cb := func(_, _ uint64, err error) { done <- err }
			for i := g; ; i += c {
				gate.RLock()
				if stop.Load() {
					gate.RUnlock()
					return
				}
				buf.Append([][]byte{frames[i%len(frames)]}, cb)
				err := <-done
				if err == nil {
					durable.Add(1)
				}
				gate.RUnlock()
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	time.Sleep(warmup)
	gate.Lock()
	var r result
	for n := max(1, int(d/slice)); n > 0 && firstErr == nil; n-- {
		h0, n0, t0 := gather(reg), durable.Load(), time.Now()
		gate.Unlock()
		time.Sleep(slice)
		gate.Lock() // every append under way is durable
		h1, n1, t1 := gather(reg), durable.Load(), time.Now()
		recs := sub(h1["sluice_wal_group_commit_records"], h0["sluice_wal_group_commit_records"])
		r.events += float64(n1 - n0)
		r.secs += t1.Sub(t0).Seconds()
		r.recs = add(r.recs, recs)
		r.fsync = add(r.fsync, sub(h1["sluice_wal_fsync_duration_seconds"], h0["sluice_wal_fsync_duration_seconds"]))
		if recs.count == 0 {
			continue
		}
		batch := max(1, int(math.Round(recs.sum/float64(recs.count))))
		p, err := plain(root, frames, batch, slice)
		if err != nil {
			firstErr = err
			break
		}
		r.plainEvents += float64(p.N * batch)
		r.plainSecs += float64(p.N) / p.PerSecond
		r.plainLat.Merge(p.Hist)
	}
	stop.Store(true)
	gate.Unlock()
	wg.Wait()
	if err := buf.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr == nil && (r.recs.count == 0 || r.plainSecs == 0) {
		firstErr = errors.New("no group commit in the measured time")
	}
	return r, firstErr
}

// plain writes batch records (frames with tidwall/wal's uvarint length
// prefix, exactly the bytes a group commit of that size appends) with one
// write and one fsync per batch, for d.
func plain(root string, frames [][]byte, batch int, d time.Duration) (fsyncprobe.Result, error) {
	var b []byte
	for i := range batch {
		f := frames[i%len(frames)]
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return fsyncprobe.Batch(root, b, d)
}

// histo is a Prometheus histogram: cumulative counts per upper bound.
type histo struct {
	bounds []float64
	cum    []uint64
	count  uint64
	sum    float64
}

func gather(reg *prometheus.Registry) map[string]histo {
	mfs, err := reg.Gather()
	if err != nil {
		panic(err) // only our own, valid collectors are registered
	}
	out := map[string]histo{}
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_HISTOGRAM || len(mf.GetMetric()) != 1 {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		var x histo
		for _, b := range h.GetBucket() {
			x.bounds = append(x.bounds, b.GetUpperBound())
			x.cum = append(x.cum, b.GetCumulativeCount())
		}
		x.count, x.sum = h.GetSampleCount(), h.GetSampleSum()
		out[mf.GetName()] = x
	}
	return out
}

// sub is the histogram of the observations made between b and a.
func sub(a, b histo) histo {
	d := histo{bounds: a.bounds, cum: slices.Clone(a.cum), count: a.count - b.count, sum: a.sum - b.sum}
	for i := range d.cum {
		if i < len(b.cum) {
			d.cum[i] -= b.cum[i]
		}
	}
	return d
}

// add sums two histograms with the same buckets; the zero histo is neutral.
func add(a, b histo) histo {
	if a.bounds == nil {
		return b
	}
	d := histo{bounds: a.bounds, cum: slices.Clone(a.cum), count: a.count + b.count, sum: a.sum + b.sum}
	for i := range d.cum {
		if i < len(b.cum) {
			d.cum[i] += b.cum[i]
		}
	}
	return d
}

// quantile estimates the q-quantile as Prometheus's histogram_quantile does:
// linear interpolation inside the bucket that holds it (from 0 for the
// first bucket); the highest finite bound when it falls in +Inf's.
func (h histo) quantile(q float64) float64 {
	if h.count == 0 || len(h.bounds) == 0 {
		return math.NaN()
	}
	rank := q * float64(h.count)
	lower, below := 0.0, uint64(0)
	for i, ub := range h.bounds {
		if float64(h.cum[i]) >= rank {
			if h.cum[i] == below {
				return ub
			}
			return lower + (ub-lower)*(rank-float64(below))/float64(h.cum[i]-below)
		}
		lower, below = ub, h.cum[i]
	}
	return h.bounds[len(h.bounds)-1]
}

// row collects one C's rounds.
type row struct {
	events, perFsync, p50, p99, plainEvents, plainP50, plainP99, ratio []float64
}

func run(cfg config, out, progress io.Writer) error {
	frames := make([][]byte, 4096)
	for i := range frames {
		frames[i] = frame(i)
	}
	rows := make([]row, len(cfg.callers))
	start := time.Now()
	for n := 1; n <= cfg.rounds; n++ {
		for i, c := range cfg.callers {
			r, err := round(cfg.dir, frames, c, cfg.warmup, cfg.duration, cfg.slice)
			if err != nil {
				return fmt.Errorf("round %d, C=%d: %w", n, c, err)
			}
			w := &rows[i]
			events, plainEvents := r.events/r.secs, r.plainEvents/r.plainSecs
			w.events = append(w.events, events)
			w.perFsync = append(w.perFsync, r.recs.sum/float64(r.recs.count))
			w.p50, w.p99 = append(w.p50, r.fsync.quantile(0.50)), append(w.p99, r.fsync.quantile(0.99))
			w.plainEvents = append(w.plainEvents, plainEvents)
			w.plainP50 = append(w.plainP50, r.plainLat.ValueAtQuantile(50).Seconds())
			w.plainP99 = append(w.plainP99, r.plainLat.ValueAtQuantile(99).Seconds())
			w.ratio = append(w.ratio, events/plainEvents)
			fmt.Fprintf(progress, "round %d C=%-4d sluice %8.0f events/s at %6.1f records/fsync | plain %8.0f events/s | ratio %.3f\n",
				n, c, events, w.perFsync[len(w.perFsync)-1], plainEvents, events/plainEvents)
		}
	}
	fmt.Fprintf(out, "WAL vs plain write+fsync: %d-byte frames (+2-byte length) in %s (%s), medians of %d rounds of %s + %s "+
		"in %s slices, %d CPUs, %s, took %s\n\n",
		len(frames[0]), cfg.dir, fsType(cfg.dir), cfg.rounds, cfg.duration, cfg.duration, cfg.slice,
		runtime.NumCPU(), runtime.Version(), time.Since(start).Round(time.Second))
	fmt.Fprintln(out, "| C | Sluice WAL events/s | records per fsync | Sluice fsync p50 / p99 | plain write+fsync events/s (same batch) | plain fsync p50 / p99 | Sluice / plain |")
	fmt.Fprintln(out, "|---:|---:|---:|---:|---:|---:|---:|")
	ms := func(s float64) string { return strconv.FormatFloat(s*1000, 'f', 2, 64) }
	for i, c := range cfg.callers {
		w := rows[i]
		fmt.Fprintf(out, "| %d | %.0f | %.1f | %s / %s ms | %.0f | %s / %s ms | **%.3f** |\n",
			c, stats.Median(w.events), stats.Median(w.perFsync), ms(stats.Median(w.p50)), ms(stats.Median(w.p99)),
			stats.Median(w.plainEvents), ms(stats.Median(w.plainP50)), ms(stats.Median(w.plainP99)), stats.Median(w.ratio))
	}
	return nil
}
