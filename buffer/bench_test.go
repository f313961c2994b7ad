package buffer

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The benchmarks in this file write and fsync real files: run them on the
// file system the WAL will live on. They use b.TempDir() unless
// SLUICE_BENCH_DIR names a directory to create their files in. On tmpfs an
// fsync costs nothing and the figures say nothing about a disk.
//
//	go test ./buffer -run '^$' -bench . -benchtime 2s

// benchSizes are the group sizes: concurrent callers, records per Append,
// records per plain write+fsync.
var benchSizes = []int{1, 16, 64, 256, 1024}

// benchFrame is the frame of a realistic enriched event: a ~316-byte JSON
// envelope keyed by user id, 358 bytes encoded. Every i gives a distinct id.
func benchFrame(i int) []byte {
	r := Record{TimeMs: 1_795_000_000_000 + int64(i), Key: fmt.Appendf(nil, "user-%06d", i%100_000)}
	binary.BigEndian.PutUint64(r.ID[8:], uint64(i))
	r.Value = fmt.Appendf(nil, `{"id":"%032x","received_at":"2026-11-22T01:20:21.757Z","type":"Product Viewed",`+
		`"user_id":"user-%06d","context":{"ip":"203.0.113.0","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",`+
		`"ua":{"browser":"Chrome","os":"Linux"}},"payload":{"event":"Product Viewed","sku":"SKU-%06d"}}`,
		r.ID, i%100_000, i)
	return AppendRecord(nil, &r)
}

func benchFrames(n int) [][]byte {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = benchFrame(i)
	}
	return frames
}

var warnTmpfs sync.Once

// benchDir is an empty directory for one benchmark run, removed afterwards.
func benchDir(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	if root := os.Getenv("SLUICE_BENCH_DIR"); root != "" {
		var err error
		if dir, err = os.MkdirTemp(root, "sluice-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) == nil && int64(st.Type) == 0x01021994 { // TMPFS_MAGIC
		warnTmpfs.Do(func() {
			fmt.Fprintf(os.Stderr, "WARNING: %s is on tmpfs: fsync is free there; set SLUICE_BENCH_DIR to a directory on disk\n", dir)
		})
	}
	return dir
}

// histogramOf returns the sample sum and count of the histogram name in reg.
func histogramOf(b *testing.B, reg *prometheus.Registry, name string) (sum float64, count uint64) {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleSum(), h.GetSampleCount()
		}
	}
	b.Fatalf("no histogram %s", name)
	return 0, 0
}

// BenchmarkAppend measures the buffer's group commit. One op is one record
// made durable (ns/op is per record).
//
//	callers=C: C goroutines each Append one record and wait for its done, as
//	           handlers of single-event requests do; the writer groups them.
//	group=N:   one goroutine Appends N records at a time and waits, as one
//	           enrich worker with an N-event request does.
func BenchmarkAppend(b *testing.B) {
	frames := benchFrames(4096)
	for _, c := range benchSizes {
		b.Run(fmt.Sprintf("callers=%d", c), func(b *testing.B) { benchAppend(b, frames, c, 1) })
	}
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("group=%d", n), func(b *testing.B) { benchAppend(b, frames, 1, n) })
	}
}

func benchAppend(b *testing.B, frames [][]byte, callers, group int) {
	reg := prometheus.NewRegistry()
	buf, err := Open(Config{Dir: benchDir(b), Logger: quietLogger, Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := buf.Close(); err != nil {
			b.Error(err)
		}
	}()
	var claimed atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(frames[0])))
	b.ResetTimer()
	for range callers {
		wg.Go(func() {
			done := make(chan error, 1)
			cb := func(_, _ uint64, err error) { done <- err }
			for {
				from := int(claimed.Add(int64(group))) - group
				if from >= b.N {
					return
				}
				batch := make([][]byte, min(group, b.N-from))
				for i := range batch {
					batch[i] = frames[(from+i)%len(frames)]
				}
				buf.Append(batch, cb)
				if err := <-done; err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	recs, fsyncs := histogramOf(b, reg, "sluice_wal_group_commit_records")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(recs/float64(fsyncs), "records/fsync")
}

// BenchmarkPlainWriteFsync is the disk's ceiling for the WAL: the bytes
// tidwall/wal writes for records=N frames (uvarint length + frame each), in
// one write(2) to an O_APPEND file followed by one fsync, as tidwall's
// WriteBatch does, without the log, the writer goroutine or the callers. One
// op is one record.
func BenchmarkPlainWriteFsync(b *testing.B) {
	frames := benchFrames(1024)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			var batch []byte
			ends := []int{0} // ends[k]: bytes of the first k entries
			for _, fr := range frames[:n] {
				batch = binary.AppendUvarint(batch, uint64(len(fr)))
				batch = append(batch, fr...)
				ends = append(ends, len(batch))
			}
			f, err := os.OpenFile(filepath.Join(benchDir(b), "plain"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(int64(len(frames[0])))
			b.ResetTimer()
			fsyncs := 0
			for done := 0; done < b.N; done += n {
				if _, err := f.Write(batch[:ends[min(n, b.N-done)]]); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				fsyncs++
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.N)/float64(fsyncs), "records/fsync")
		})
	}
}

type nopSink struct{}

func (nopSink) Send(index uint64, _ *Record, done func(uint64, error)) { done(index, nil) }

// BenchmarkRead measures the read path of a shipper that is behind: a WAL of
// 200 000 records written beforehand, read back after a reopen (so nothing
// comes from the writer's in-memory hand-off).
//
//	shipper: one op is a whole drain by a Shipper into a sink that confirms
//	         at once (WAL reads, decoding, window and acknowledgement
//	         bookkeeping); see records/s and ns/record.
//	wal:     one op is Read of one record from a reopened Buffer's log plus
//	         DecodeRecord, in order, with nothing else in the loop.
func BenchmarkRead(b *testing.B) {
	const records = 200_000
	dir := benchDir(b)
	buf, err := Open(Config{Dir: dir, Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	frames := benchFrames(1024)
	done := make(chan error, 1)
	for n := 0; n < records; n += len(frames) {
		buf.Append(frames[:min(len(frames), records-n)], func(_, _ uint64, err error) { done <- err })
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	if err := buf.Close(); err != nil {
		b.Fatal(err)
	}

	b.Run("shipper", func(b *testing.B) {
		b.StopTimer()
		for range b.N {
			os.Remove(filepath.Join(dir, checkpointFile)) // ship everything again
			buf, err := Open(Config{Dir: dir, Logger: quietLogger})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			s := NewShipper(buf, nopSink{}, ShipperConfig{CheckpointInterval: time.Hour, TruncateInterval: time.Hour, Logger: quietLogger})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err = s.Drain(ctx)
			b.StopTimer()
			cancel()
			s.Close()
			if cerr := buf.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				b.Fatal(err)
			}
			if got := s.AckedIndex(); got != records {
				b.Fatalf("shipped up to index %d, want %d", got, records)
			}
		}
		b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(records*b.N), "ns/record")
	})

	b.Run("wal", func(b *testing.B) {
		buf, err := Open(Config{Dir: dir, Logger: quietLogger})
		if err != nil {
			b.Fatal(err)
		}
		defer buf.Close()
		var rec Record
		b.ResetTimer()
		for i := range b.N {
			frame, err := buf.read(uint64(i%records) + 1)
			if err != nil {
				b.Fatal(err)
			}
			if err := DecodeRecord(frame, &rec); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
}
