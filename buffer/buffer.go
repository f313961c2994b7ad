package buffer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
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
	sendMu    sync.RWMutex // Append holds R while sending on reqs; Close holds W to close it
	writerEnd chan struct{}
	closeErr  error

	lastIndex atomic.Uint64 // last fsynced index; written by the writer and by reopen (under mu)
	appended  chan struct{} // capacity 1: nudges the shipper after each commit

	// committed hands each group commit's frames to the shipper, so a shipper
	// that keeps up never reads the WAL: tidwall/wal holds its lock through
	// every fsync, and back-to-back commits would starve a reader. It is
	// bounded by tailBytes; when full, the shipper reads the WAL instead.
	committed chan committedBatch
	tailBytes atomic.Int64
	initAcked uint64 // checkpoint read at Open

	tailRepairs atomic.Int64 // torn tails cut at open

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

// maxTailBytes bounds the frames waiting in Buffer.committed.
const maxTailBytes = 32 << 20

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
		appended:  make(chan struct{}, 1),
		committed: make(chan committedBatch, 1024),

		reopenEvery: time.Second,
	}
	if b.wal, err = b.openWAL(); err != nil {
		lockF.Close()
		return nil, err
	}
	if b.initAcked, err = readCheckpoint(cfg.Dir); err != nil {
		// Refusing to start would crash-loop the gateway over a file whose
		// only job is to avoid duplicates; shipping the whole WAL again
		// loses nothing.
		b.log.Error("unreadable checkpoint; shipping the whole WAL again (duplicates possible)", "err", err)
		b.initAcked = 0
	}
	last, _ := b.wal.LastIndex()
	b.lastIndex.Store(last)
	b.metrics = newMetrics(cfg.Registerer, b)
	first, _ := b.wal.FirstIndex()
	b.log.Info("buffer opened", "dir", cfg.Dir, "first_index", first, "last_index", last, "acked_index", b.initAcked)
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
	// wal.Open modifies the options it is given, so each open gets a fresh copy.
	l, err := wal.Open(b.cfg.Dir, b.walOptions())
	if errors.Is(err, wal.ErrCorrupt) {
		// A crash mid-write leaves a torn tail that tidwall/wal refuses;
		// cut it back to the last whole entry (quarantined) and retry once.
		if _, rerr := repairTail(b.cfg.Dir, b.log); rerr != nil {
			return nil, fmt.Errorf("open wal %s: %w (repair: %v)", b.cfg.Dir, err, rerr)
		}
		b.tailRepairs.Add(1)
		l, err = wal.Open(b.cfg.Dir, b.walOptions())
	}
	if err != nil {
		return nil, fmt.Errorf("open wal %s: %w", b.cfg.Dir, err)
	}
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
	b.reqs <- &appendReq{frames: frames, size: size, done: done}
	b.sendMu.RUnlock()
}

// LastIndex is the highest durable WAL index.
func (b *Buffer) LastIndex() uint64 { return b.lastIndex.Load() }

// writeLoop is the only goroutine that writes to the WAL. It ends when reqs is
// closed and drained.
func (b *Buffer) writeLoop() {
	defer close(b.writerEnd)
	var (
		batch wal.Batch
		group []*appendReq
	)
	for req := range b.reqs {
		group = append(group[:0], req)
		n, size := len(req.frames), req.size
		// Take whatever else queued up while the previous fsync ran: the
		// batch grows with the load, and an idle writer adds no latency.
	more:
		for n < b.cfg.MaxBatchRecords && size < b.cfg.MaxBatchBytes {
			select {
			case r, ok := <-b.reqs:
				if !ok {
					break more
				}
				group = append(group, r)
				n += len(r.frames)
				size += r.size
			default:
				break more
			}
		}
		b.commit(&batch, group, n, size)
		clear(group)
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
		for _, r := range group {
			r.done(0, 0, err)
		}
		return
	}
	b.metrics.fsyncSeconds.Observe(time.Since(t0).Seconds())
	batch.Clear()
	if err != nil {
		b.metrics.writeErrors.Inc()
		b.log.Error("wal write failed; reopening the log", "records", n, "bytes", size, "err", err)
		b.reopen()
		for _, r := range group {
			r.done(0, 0, fmt.Errorf("write wal: %w", err))
		}
		return
	}
	b.metrics.batchRecords.Observe(float64(n))
	b.metrics.appendedRecords.Add(float64(n))
	b.metrics.appendedBytes.Add(float64(size))
	b.lastIndex.Store(idx - 1)
	b.handToShipper(start, group, n, size)
	select {
	case b.appended <- struct{}{}:
	default:
	}
	idx = start
	for _, r := range group {
		last := idx + uint64(len(r.frames)) - 1
		r.done(idx, last, nil)
		idx = last + 1
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
		if wait > 0 {
			return errWALUnavailable
		}
		if !b.reopen() {
			return errWALUnavailable
		}
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
	b.lastIndex.Store(last)
	b.log.Warn("wal reopened", "last_index", last)
	return true
}

// read returns the frame at index. Only the shipper goroutine calls it.
func (b *Buffer) read(index uint64) ([]byte, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.broken {
		return nil, errWALUnavailable
	}
	return b.wal.Read(index)
}

func (b *Buffer) firstIndex() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i, _ := b.wal.FirstIndex()
	return i
}

func (b *Buffer) truncateFront(index uint64) error {
	b.mu.RLock()
	if b.broken {
		b.mu.RUnlock()
		return errWALUnavailable
	}
	err := b.wal.TruncateFront(index)
	b.mu.RUnlock()
	if err != nil && !errors.Is(err, wal.ErrOutOfRange) {
		b.log.Error("wal truncate failed; reopening the log", "index", index, "err", err)
		b.reopen()
		return fmt.Errorf("truncate wal front to %d: %w", index, err)
	}
	return nil
}

// diskBytes is the size of the WAL segments on disk, the measure of the
// buffer's high-watermark.
func (b *Buffer) diskBytes() int64 {
	entries, err := os.ReadDir(b.cfg.Dir)
	if err != nil {
		return 0
	}
	var total int64
	for _, e := range entries {
		if len(e.Name()) < 20 || e.IsDir() {
			continue
		}
		if info, err := e.Info(); err == nil {
			total += info.Size()
		}
	}
	return total
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
		b.lockF.Close()
		b.metrics.unregister()
		b.log.Info("buffer closed", "last_index", b.lastIndex.Load())
	})
	return b.closeErr
}
