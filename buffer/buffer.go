package buffer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/wal"
)

// Config configures a Buffer. The zero value of every field means its default.
type Config struct {
	// Dir holds the WAL segments and the checkpoint. Required.
	Dir string
	// SegmentBytes is the WAL segment size. tidwall/wal keeps the tail segment
	// in memory and TruncateFront rewrites a segment, so keep it small.
	// Default 4 MiB.
	SegmentBytes int
	// MaxBatchRecords caps how many records one group commit (one fsync) takes.
	// Default 8192.
	MaxBatchRecords int
	// MaxBatchBytes caps the encoded bytes of one group commit. Default 8 MiB.
	MaxBatchBytes int
	// QueueRequests is how many Append calls may wait for the writer before
	// Append blocks. Default 4096.
	QueueRequests int
	// Linger is how long a group commit waits for more records when requests
	// were already queued as the previous one finished (the disk is busy);
	// an idle writer never waits. Zero disables it.
	Linger time.Duration
	// MaxBytes is the hard limit on the WAL's size on disk: an Append that
	// would pass it fails with ErrFull. Zero means no limit.
	MaxBytes int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the buffer's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 4 << 20
	}
	if c.MaxBatchRecords <= 0 {
		c.MaxBatchRecords = 8192
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 8 << 20
	}
	if c.QueueRequests <= 0 {
		c.QueueRequests = 4096
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// ErrClosed is returned by Append after Close has begun.
var ErrClosed = errors.New("buffer closed")

// ErrFull is wrapped by the error of an Append refused because the WAL is at
// its size limit or the disk has no space left (ENOSPC).
var ErrFull = errors.New("buffer full")

// Buffer is the WAL-backed buffer. Append may be called from any goroutine;
// one writer goroutine owns index assignment and writes.
type Buffer struct {
	cfg     Config
	log     *slog.Logger
	lockF   *os.File // holds the flock on cfg.Dir until Close
	metrics *metrics

	mu          sync.RWMutex // guards wal, broken and lastReopen across a reopen after a failed write
	wal         *wal.Log
	broken      bool          // a reopen failed: wal must not be used until one succeeds
	lastReopen  time.Time     // when the last reopen was attempted
	reopenEvery time.Duration // the most often a broken log is reopened

	reqs      chan *appendReq
	closing   chan struct{} // closed when Close begins; Append stops accepting
	stopOnce  sync.Once
	closeOnce sync.Once
	sendMu    sync.RWMutex  // Append holds R while sending on reqs; Close holds W to close it
	writerEnd chan struct{} // closed when the writer and the notifier have ended

	notices     chan notice   // the writer's commits, for notifyLoop
	notifierEnd chan struct{} // closed when notifyLoop ends
	closeErr    error

	lastIndex atomic.Uint64 // last fsynced index; written by the writer and by reopen (under mu)
	appended  chan struct{} // capacity 1: nudges the shipper after each commit

	// committed hands each group commit's frames to the shipper, so a shipper
	// that keeps up never reads the WAL: tidwall/wal holds its lock through
	// every fsync, and back-to-back commits would starve a reader. It is
	// bounded by tailBytes; when full, the shipper reads the WAL instead.
	committed chan committedBatch
	tailBytes atomic.Int64
	initAcked uint64 // checkpoint read at Open

	tailRepairs    atomic.Int64 // torn tails cut at open
	segmentRepairs atomic.Int64 // damaged sealed segments rebuilt

	ledger     *Ledger
	startIndex uint64 // where shipping starts: after the checkpoint, reconciled with the WAL

	// The WAL's extent, kept here because tidwall/wal only learns of
	// segments removed behind its back at the next open (see removeAcked).
	firstIdx atomic.Uint64 // first index still on disk
	walBytes atomic.Int64  // bytes of segment files on disk
	segBytes atomic.Int64  // bytes in the tail segment, to see tidwall cycle it
	cycles   atomic.Uint64 // segments tidwall/wal started since Open, by the same reckoning

	sealedMu sync.Mutex   // guards sealed: the shipper reads, Close closes
	sealed   sealedCursor // the shipper's reads of sealed segments
	noSpace  atomic.Bool  // the last failed write was ENOSPC; cleared by a good one

	removedSegments atomic.Int64 // segment files deleted since the last (re)open

	// failWrite, when set by a test, makes the next WriteBatch fail as a
	// poisoned log would.
	failWrite atomic.Bool
}

// committedBatch is one group commit: frames[i] is at WAL index first+i.
type committedBatch struct {
	first  uint64
	frames [][]byte
	size   int64
}

// maxTailBytes bounds the frames waiting in Buffer.committed. A shipper that
// keeps up holds a few thousand records there; one stalled by Kafka pins all
// of it for the whole outage (32 MiB made a 5-million-event backlog cost
// ~290 MiB of RSS), and reads the WAL afterwards anyway.
const maxTailBytes = 8 << 20

type appendReq struct {
	frames [][]byte // encoded records
	size   int
	done   func(first, last uint64, err error)
}

// Open locks dir, opens (or creates) the WAL in it and starts the writer.
func Open(cfg Config) (*Buffer, error) {
	cfg.setDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("open buffer: no directory given")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	lockF, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	b := &Buffer{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "buffer"),
		lockF:     lockF,
		reqs:      make(chan *appendReq, cfg.QueueRequests),
		closing:   make(chan struct{}),
		writerEnd: make(chan struct{}),

		notices:     make(chan notice, 64),
		notifierEnd: make(chan struct{}),
		appended:    make(chan struct{}, 1),
		committed:   make(chan committedBatch, 1024),

		reopenEvery: time.Second,
	}
	b.sealed.dir = cfg.Dir
	// The checkpoint first: the open checks only the segments past it.
	if b.initAcked, err = readCheckpoint(cfg.Dir); err != nil {
		// Refusing to start would crash-loop the gateway over a file whose
		// only job is to avoid duplicates; shipping the whole WAL again
		// loses nothing.
		b.log.Error("unreadable checkpoint; shipping the whole WAL again (duplicates possible)", "err", err)
		b.initAcked = 0
	}
	if b.wal, err = b.openWAL(); err != nil {
		lockF.Close()
		return nil, err
	}
	last, _ := b.wal.LastIndex()
	if b.initAcked > last && b.initAcked > 0 {
		// The open trusted the checkpoint to skip checking the segments
		// below it, but it is past the end: every segment will ship again,
		// so check them all.
		b.wal.Close()
		acked := b.initAcked
		b.wal, b.initAcked = nil, 0 // nil: the first open's full check
		if b.wal, err = b.openWAL(); err != nil {
			lockF.Close()
			return nil, err
		}
		b.initAcked = acked
		last, _ = b.wal.LastIndex()
	}
	b.lastIndex.Store(last)
	b.measureExtent()
	b.startIndex = b.reconcileCheckpoint()
	b.ledger = NewLedger()
	b.ledger.recovered(last + 1 - b.startIndex)
	b.metrics = newMetrics(cfg.Registerer, b)
	b.log.Info("buffer opened", "dir", cfg.Dir, "first_index", b.firstIdx.Load(), "last_index", last,
		"acked_index", b.initAcked, "disk_bytes", b.walBytes.Load())
	go b.notifyLoop()
	go b.writeLoop()
	return b, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock buffer dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock buffer dir %s: another process is using it", dir)
		}
		return nil, fmt.Errorf("lock buffer dir %s: %w", dir, err)
	}
	return f, nil
}

func (b *Buffer) openWAL() (*wal.Log, error) {
	// Repair what tidwall/wal would refuse or misread; only the first open
	// reads every segment (b.wal is still nil), a reopen the last one.
	rec, err := recoverWALAfter(b.cfg.Dir, b.log, b.wal == nil, b.initAcked)
	if err != nil {
		return nil, fmt.Errorf("open wal %s: %w", b.cfg.Dir, err)
	}
	// wal.Open modifies the options it is given, so each open gets a fresh copy.
	l, err := wal.Open(b.cfg.Dir, b.walOptions())
	if err != nil {
		return nil, fmt.Errorf("open wal %s: %w", b.cfg.Dir, err)
	}
	b.countRecovery(rec)
	return l, nil
}

func (b *Buffer) walOptions() *wal.Options {
	return &wal.Options{
		SegmentSize:      b.cfg.SegmentBytes,
		LogFormat:        wal.Binary,
		SegmentCacheSize: 2,
		AllowEmpty:       true,
		DirPerms:         0o755,
		FilePerms:        0o644,
	}
}

// Append queues already-encoded record frames (see AppendRecord) for the next
// group commit. done runs on the writer goroutine after the fsync that made
// them durable, with their first and last WAL index, or with an error; it
// must not block. Append blocks only while the writer's queue is full.
func (b *Buffer) Append(frames [][]byte, done func(first, last uint64, err error)) {
	if len(frames) == 0 {
		done(0, 0, nil)
		return
	}
	size := 0
	for _, f := range frames {
		size += len(f)
	}
	b.sendMu.RLock()
	select {
	case <-b.closing:
		b.sendMu.RUnlock()
		done(0, 0, ErrClosed)
		return
	default:
	}
	if max := b.cfg.MaxBytes; max > 0 && b.walBytes.Load()+int64(size) > max {
		b.sendMu.RUnlock()
		done(0, 0, fmt.Errorf("%w: the write-ahead log holds %d bytes, its limit is %d", ErrFull, b.walBytes.Load(), max))
		return
	}
	b.reqs <- &appendReq{frames: frames, size: size, done: done}
	b.sendMu.RUnlock()
}

// reconcileCheckpoint returns the first index to ship. A checkpoint outside
// the WAL's range means one of them was lost or replaced (or a crash came
// between removing acknowledged segments and saving the checkpoint), and
// shipping everything still on disk is the only answer that loses nothing.
func (b *Buffer) reconcileCheckpoint() uint64 {
	first, last, acked := b.firstIdx.Load(), b.lastIndex.Load(), b.initAcked
	switch {
	case acked > last:
		// A repair cut acknowledged records (a damaged tail) or the WAL was
		// replaced. The indices past last will be used again, so the stale
		// checkpoint must go now: left in place, a restart before the next
		// checkpoint would take the new records at those indices as shipped.
		b.log.Warn("checkpoint is past the end of the WAL; shipping the whole WAL", "acked_index", acked, "last_index", last)
		if err := writeCheckpoint(b.cfg.Dir, first-1); err != nil {
			b.log.Error("reset the checkpoint past the end of the WAL", "err", err)
		}
		return first
	case acked+1 < first:
		b.log.Info("checkpoint is before the start of the WAL; shipping from its first record", "acked_index", acked, "first_index", first)
		return first
	}
	return acked + 1
}

// Ledger is the buffer's event accounting; the pipeline records what it
// takes in on it.
func (b *Buffer) Ledger() *Ledger { return b.ledger }

// DiskBytes is the size of the WAL's segment files: what the size limits
// (Config.MaxBytes, the gateway's soft limit) are measured against.
func (b *Buffer) DiskBytes() int64 { return b.walBytes.Load() }

// NoSpace reports whether the last WAL write failed for want of disk space.
func (b *Buffer) NoSpace() bool { return b.noSpace.Load() }

// measureExtent reads the WAL's first index and size from the directory after
// an open. Callers hold mu or own the Buffer exclusively.
func (b *Buffer) measureExtent() {
	first, _ := b.wal.FirstIndex()
	b.firstIdx.Store(first)
	b.removedSegments.Store(0)
	segs, err := segmentFiles(b.cfg.Dir)
	if err != nil {
		b.log.Error("measure wal size", "err", err)
		return
	}
	var total, tail int64
	for _, path := range segs {
		if info, err := os.Stat(path); err == nil {
			total, tail = total+info.Size(), info.Size()
		}
	}
	b.walBytes.Store(total)
	b.segBytes.Store(tail)
}

// LastIndex is the highest durable WAL index.
func (b *Buffer) LastIndex() uint64 { return b.lastIndex.Load() }

// writeLoop is the only goroutine that writes to the WAL. It ends when reqs is
// closed and drained.
func (b *Buffer) writeLoop() {
	defer func() {
		close(b.notices)
		<-b.notifierEnd
		close(b.writerEnd)
	}()
	var (
		batch  wal.Batch
		group  []*appendReq
		linger *time.Timer
	)
	if b.cfg.Linger > 0 {
		linger = time.NewTimer(time.Hour)
		linger.Stop()
	}
	for {
		// A request already waiting when the last commit ends means the
		// disk is the bottleneck: then, and only then, linger briefly so
		// the next fsync carries more records. An idle writer commits a
		// lone request at once.
		var req *appendReq
		busy := true
		select {
		case req = <-b.reqs:
		default:
			busy = false
			req = <-b.reqs
		}
		if req == nil {
			return // reqs closed and drained
		}
		group = append(group[:0], req)
		n, size := len(req.frames), req.size
		var timeout <-chan time.Time
		if busy && linger != nil {
			linger.Reset(b.cfg.Linger)
			timeout = linger.C
		}
	more:
		for n < b.cfg.MaxBatchRecords && size < b.cfg.MaxBatchBytes {
			var r *appendReq
			var ok bool
			if timeout == nil {
				select {
				case r, ok = <-b.reqs:
				default:
					break more
				}
			} else {
				select {
				case r, ok = <-b.reqs:
				case <-timeout:
					timeout = nil
					continue
				}
			}
			if !ok {
				break more
			}
			group = append(group, r)
			n += len(r.frames)
			size += r.size
		}
		if timeout != nil {
			linger.Stop()
		}
		b.commit(&batch, group, n, size)
		group = make([]*appendReq, 0, cap(group)) // the notifier owns the old one
	}
}

func (b *Buffer) commit(batch *wal.Batch, group []*appendReq, n, size int) {
	start := b.lastIndex.Load() + 1
	idx := start
	for _, r := range group {
		for _, f := range r.frames {
			batch.Write(idx, f)
			idx++
		}
	}
	t0 := time.Now()
	err := b.writeBatch(batch)
	if errors.Is(err, errWALUnavailable) {
		batch.Clear()
		b.metrics.writeErrors.Inc()
		b.notices <- notice{group: group, err: err}
		return
	}
	b.metrics.fsyncSeconds.Observe(time.Since(t0).Seconds())
	batch.Clear()
	if err != nil {
		b.metrics.writeErrors.Inc()
		err = fmt.Errorf("write wal: %w", err)
		if errors.Is(err, syscall.ENOSPC) {
			b.noSpace.Store(true)
			err = fmt.Errorf("%w: %w", ErrFull, err)
		}
		b.log.Error("wal write failed; reopening the log", "records", n, "bytes", size, "err", err)
		b.reopen()
		b.notices <- notice{group: group, err: err}
		return
	}
	b.noSpace.Store(false)
	b.account(group)
	b.ledger.written(n)
	b.metrics.batchRecords.Observe(float64(n))
	b.metrics.appendedRecords.Add(float64(n))
	b.metrics.appendedBytes.Add(float64(size))
	b.lastIndex.Store(idx - 1)
	b.handToShipper(start, group, n, size)
	select {
	case b.appended <- struct{}{}:
	default:
	}
	b.notices <- notice{group: group, first: start}
}

// notice is one commit's outcome for its appenders: first is the index of
// the group's first record, or err says why none was written.
type notice struct {
	group []*appendReq
	first uint64
	err   error
}

// notifyLoop runs the appenders' done callbacks, in commit order, while the
// writer is already in its next write and fsync: waking the handlers of a
// commit's requests took about a quarter of the writer's time under load,
// time no fsync ran.
func (b *Buffer) notifyLoop() {
	defer close(b.notifierEnd)
	for n := range b.notices {
		idx := n.first
		for _, r := range n.group {
			if n.err != nil {
				r.done(0, 0, n.err)
				continue
			}
			last := idx + uint64(len(r.frames)) - 1
			r.done(idx, last, nil)
			idx = last + 1
		}
	}
}

// account adds a commit's bytes to the WAL's size, mirroring tidwall/wal's
// entry format (uvarint length + data) and its rule for starting a segment,
// so that a new segment file is made durable in its directory before any of
// its records is acknowledged: tidwall/wal fsyncs the file, not the directory.
func (b *Buffer) account(group []*appendReq) {
	var written int64
	seg := b.segBytes.Load()
	cycled := false
	if seg > int64(b.cfg.SegmentBytes) {
		seg, cycled = 0, true
	}
	for _, r := range group {
		for _, f := range r.frames {
			n := int64(uvarintLen(uint64(len(f))) + len(f))
			written += n
			if seg += n; seg >= int64(b.cfg.SegmentBytes) {
				seg, cycled = 0, true
			}
		}
	}
	b.segBytes.Store(seg)
	b.walBytes.Add(written)
	if cycled {
		b.cycles.Add(1)
		if err := syncDir(b.cfg.Dir); err != nil {
			b.log.Error("sync wal directory after a new segment", "err", err)
		}
	}
}

// handToShipper offers a commit's frames to the shipper. The frames are never
// written again (the WAL holds its own copy), so sharing them is safe.
func (b *Buffer) handToShipper(first uint64, group []*appendReq, n, size int) {
	if b.tailBytes.Load()+int64(size) > maxTailBytes {
		return
	}
	frames := make([][]byte, 0, n)
	for _, r := range group {
		frames = append(frames, r.frames...)
	}
	select {
	case b.committed <- committedBatch{first: first, frames: frames, size: int64(size)}:
		b.tailBytes.Add(int64(size))
	default:
	}
}

// errWALUnavailable is returned while the log is broken (a reopen failed).
var errWALUnavailable = errors.New("wal unavailable after a failed write; retrying")

func (b *Buffer) writeBatch(batch *wal.Batch) error {
	b.mu.RLock()
	broken, wait := b.broken, b.reopenEvery-time.Since(b.lastReopen)
	b.mu.RUnlock()
	if broken {
		if wait <= 0 && b.reopen() {
			broken = false
		}
	}
	if broken {
		if b.noSpace.Load() {
			return fmt.Errorf("%w: no space left on the device: %w", ErrFull, errWALUnavailable)
		}
		return errWALUnavailable
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.failWrite.CompareAndSwap(true, false) {
		b.wal.Close() // the next WriteBatch fails with wal.ErrClosed
	}
	return b.wal.WriteBatch(batch)
}

// reopen replaces a log that failed a write: tidwall/wal leaves it poisoned,
// and retrying the same index would corrupt it. Open repairs what it can.
// When the reopen fails the log is marked broken and never used again (its
// in-memory state may hold the failed entries); writes fail fast and a later
// write retries the reopen. It reports whether the log is usable.
func (b *Buffer) reopen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reopenLocked("after a failure")
}

func (b *Buffer) reopenLocked(why string) bool {
	b.lastReopen = time.Now()
	if !b.broken {
		b.wal.Close()
	}
	l, err := b.openWAL()
	if err != nil {
		b.broken = true
		b.log.Error("wal reopen failed; appends fail until a reopen succeeds", "retry_every", b.reopenEvery, "err", err)
		return false
	}
	b.wal, b.broken = l, false
	last, _ := l.LastIndex()
	if prev := b.lastIndex.Swap(last); last > prev {
		// A failed write can leave whole entries behind: their clients got
		// an error, yet they are in the log and will ship (duplicates of the
		// client's retry, never a loss).
		b.log.Warn("wal reopened with entries of a failed write", "entries", last-prev)
		b.ledger.recovered(last - prev)
	}
	b.measureExtent()
	b.log.Warn("wal reopened", "why", why, "last_index", last)
	return true
}

// read returns the frame at index. Only the shipper goroutine calls it.
func (b *Buffer) read(index uint64) ([]byte, error) {
	b.sealedMu.Lock()
	defer b.sealedMu.Unlock()
	if frame, ok := b.sealed.frame(index, b.cycles.Load()); ok {
		return frame, nil
	}
	frame, err := b.readEntry(index)
	if !isSegmentDamage(err) {
		return frame, err
	}
	// The segment file holding index is damaged: rebuild it (the damage
	// quarantined, lost records as placeholders) and read again.
	b.sealed.forget()
	if err := b.repairSegmentHolding(index, err); err != nil {
		return nil, err
	}
	return b.readEntry(index)
}

func (b *Buffer) firstIndex() uint64 { return b.firstIdx.Load() }

// compactAfterSegments is how many segment files removeAcked deletes before
// it reopens the log, so that tidwall/wal's list of segments stays short.
const compactAfterSegments = 256

// removeAcked deletes the segment files all of whose records are at or below
// acked, oldest first so that no gap can appear, never the tail segment, and
// returns how many it deleted. tidwall/wal's TruncateFront would instead
// rewrite the segment holding the new first index while holding the lock
// every group commit needs: it stalled all writes for 50–200 ms each time.
// Deleting whole files needs only our own lock (against a reopen), and
// tidwall/wal never reads the deleted records: the shipper reads only past
// acked. tidwall/wal's in-memory list keeps naming the deleted files until
// the next open; every compactAfterSegments deletions the log is reopened
// (one read of the tail segment, a few milliseconds) to forget them.
func (b *Buffer) removeAcked(acked uint64) (int, error) {
	b.mu.RLock()
	if b.broken {
		b.mu.RUnlock()
		return 0, errWALUnavailable
	}
	removed, err := b.removeSegmentsThrough(acked)
	b.mu.RUnlock()
	if removed > 0 {
		if serr := syncDir(b.cfg.Dir); serr != nil && err == nil {
			err = serr
		}
		if b.removedSegments.Add(int64(removed)) >= compactAfterSegments {
			b.mu.Lock()
			if !b.broken {
				b.reopenLocked("to forget removed segments")
			}
			b.mu.Unlock()
		}
	}
	return removed, err
}

func (b *Buffer) removeSegmentsThrough(acked uint64) (removed int, err error) {
	segs, err := segmentFiles(b.cfg.Dir)
	if err != nil {
		return 0, err
	}
	for i := 0; i+1 < len(segs); i++ {
		next, err := strconv.ParseUint(filepath.Base(segs[i+1]), 10, 64)
		if err != nil || next == 0 || next-1 > acked {
			break
		}
		info, err := os.Stat(segs[i])
		if err != nil {
			return removed, fmt.Errorf("remove acknowledged segment: %w", err)
		}
		if err := os.Remove(segs[i]); err != nil {
			return removed, fmt.Errorf("remove acknowledged segment: %w", err)
		}
		removed++
		b.walBytes.Add(-info.Size())
		b.firstIdx.Store(next)
	}
	return removed, nil
}

// StopWrites stops accepting appends and returns once the writer has
// committed everything already queued. The WAL stays open for the shipper to
// drain. Idempotent.
func (b *Buffer) StopWrites() {
	b.stopOnce.Do(func() {
		close(b.closing)
		b.sendMu.Lock()
		close(b.reqs)
		b.sendMu.Unlock()
		<-b.writerEnd
	})
}

// Close stops writes (see StopWrites), closes the WAL and releases the
// directory lock. Close the Shipper first. Idempotent.
func (b *Buffer) Close() error {
	b.closeOnce.Do(func() {
		b.StopWrites()
		b.mu.Lock()
		if b.broken {
			b.closeErr = fmt.Errorf("close wal %s: %w", b.cfg.Dir, errWALUnavailable)
		} else if err := b.wal.Close(); err != nil && !errors.Is(err, wal.ErrClosed) {
			b.closeErr = fmt.Errorf("close wal %s: %w", b.cfg.Dir, err)
		}
		b.mu.Unlock()
		b.sealedMu.Lock()
		b.sealed.close()
		b.sealedMu.Unlock()
		b.lockF.Close()
		b.metrics.unregister()
		b.log.Info("buffer closed", "last_index", b.lastIndex.Load())
	})
	return b.closeErr
}
