package buffer

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Sink states Status reports.
const (
	// SinkIdle: nothing confirmed since start and no trouble seen (no
	// traffic yet). Not "up": nothing has proven the sink reachable.
	SinkIdle = "idle"
	// SinkUp: records are confirmed and nothing is wrong.
	SinkUp = "up"
	// SinkDegraded: in trouble (failing, silent, breaker not closed) for
	// less than ShipperConfig.DownAfter: a leader election, a slow broker.
	SinkDegraded = "degraded"
	// SinkDown: in trouble for DownAfter or longer.
	SinkDown = "down"
)

// SinkStatus is the shipper's view of its sink, for the status page.
type SinkStatus struct {
	State        string     `json:"state"` // SinkIdle, SinkUp, SinkDegraded or SinkDown
	TroubleSince *time.Time `json:"trouble_since,omitempty"`
	Breaker      string     `json:"breaker"` // closed, half-open or open
	BreakerSince time.Time  `json:"breaker_since"`

	BacklogRecords uint64 `json:"backlog_records"`
	// BacklogBytes is the WAL's size on disk in proportion to the share of
	// its records not yet confirmed: exact to within a segment.
	BacklogBytes              int64      `json:"backlog_bytes_estimate"`
	OldestUnshippedAt         *time.Time `json:"oldest_unshipped_at,omitempty"`
	OldestUnshippedAgeSeconds float64    `json:"oldest_unshipped_age_seconds"`
	InFlightRecords           int64      `json:"in_flight_records"`
	AckedIndex                uint64     `json:"acked_index"`
	LastIndex                 uint64     `json:"last_index"`

	LastSuccess   *time.Time `json:"last_success,omitempty"`
	LastError     *time.Time `json:"last_error,omitempty"`
	LastErrorText string     `json:"last_error_text,omitempty"`

	// Partitions is where the in-flight records went, when the sink can
	// tell (PartitionReporter).
	Partitions []PartitionInFlight `json:"partitions,omitempty"`
}

// PartitionReporter is implemented by a Sink that knows where its records in
// flight went; Status and the metrics include what it reports.
type PartitionReporter interface {
	InFlightPartitions() []PartitionInFlight
}

// PartitionInFlight counts the records sent to one partition and not yet
// answered.
type PartitionInFlight struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Leader    int32  `json:"leader"` // broker id, as last seen
	InFlight  int64  `json:"in_flight"`
}

// BufferStatus is the write-ahead buffer as the status page shows it.
type BufferStatus struct {
	DiskBytes  int64  `json:"disk_bytes"`
	MaxBytes   int64  `json:"max_bytes,omitempty"` // the hard limit; 0 means none
	DiskFull   bool   `json:"disk_full"`
	FirstIndex uint64 `json:"first_index"`
	LastIndex  uint64 `json:"last_index"`
	AckedIndex uint64 `json:"acked_index"`
}

// sinkHealth is what Status reports beyond counters. The run goroutine
// writes it, Status reads it from any goroutine.
type sinkHealth struct {
	mu            sync.Mutex
	lastSuccess   time.Time
	lastError     time.Time
	lastErrorText string
	troubleSince  time.Time // zero while not in trouble
}

func (h *sinkHealth) succeeded(at time.Time) {
	h.mu.Lock()
	h.lastSuccess = at
	h.mu.Unlock()
}

func (h *sinkHealth) failed(text string) {
	h.mu.Lock()
	h.lastError, h.lastErrorText = time.Now(), text
	h.mu.Unlock()
}

// setTrouble starts or ends a spell of trouble.
func (h *sinkHealth) setTrouble(trouble bool, now time.Time) {
	h.mu.Lock()
	switch {
	case trouble && h.troubleSince.IsZero():
		h.troubleSince = now
	case !trouble:
		h.troubleSince = time.Time{}
	}
	h.mu.Unlock()
}

// state is the sink's state at now; a spell of trouble becomes "down" only
// after downAfter.
func (h *sinkHealth) state(now time.Time, downAfter time.Duration) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !h.troubleSince.IsZero() && now.Sub(h.troubleSince) >= downAfter:
		return SinkDown
	case !h.troubleSince.IsZero():
		return SinkDegraded
	case h.lastSuccess.IsZero():
		return SinkIdle
	}
	return SinkUp
}

func (h *sinkHealth) fill(st *SinkStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st.TroubleSince = timeOrNil(h.troubleSince)
	st.LastSuccess = timeOrNil(h.lastSuccess)
	st.LastError = timeOrNil(h.lastError)
	st.LastErrorText = h.lastErrorText
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// Status reports the sink's state, backlog and recent history. It is safe
// to call from any goroutine.
func (s *Shipper) Status() SinkStatus {
	now := time.Now()
	st := SinkStatus{
		State:           s.health.state(now, s.cfg.DownAfter),
		Breaker:         s.breaker.state().String(),
		BreakerSince:    s.breaker.since().UTC(),
		BacklogRecords:  s.Backlog(),
		BacklogBytes:    s.backlogBytes(),
		InFlightRecords: s.inFlightN.Load(),
		AckedIndex:      s.AckedIndex(),
		LastIndex:       s.buf.LastIndex(),
	}
	s.health.fill(&st)
	if at, ok := s.oldestUnshipped(); ok {
		st.OldestUnshippedAt = timeOrNil(at)
		st.OldestUnshippedAgeSeconds = max(0, now.Sub(at).Seconds())
	}
	if pr, ok := s.sink.(PartitionReporter); ok {
		st.Partitions = pr.InFlightPartitions()
	}
	return st
}

// BufferStatus reports the write-ahead buffer's size and indices.
func (s *Shipper) BufferStatus() BufferStatus {
	return BufferStatus{
		DiskBytes:  s.buf.DiskBytes(),
		MaxBytes:   s.buf.cfg.MaxBytes,
		DiskFull:   s.buf.NoSpace(),
		FirstIndex: s.buf.firstIndex(),
		LastIndex:  s.buf.LastIndex(),
		AckedIndex: s.AckedIndex(),
	}
}

// backlogBytes estimates the unconfirmed records' bytes from the WAL's size
// and record count: the buffer does not keep per-record sizes.
func (s *Shipper) backlogBytes() int64 {
	backlog := s.Backlog()
	first, last := s.buf.firstIndex(), s.buf.LastIndex()
	if backlog == 0 || last < first {
		return 0
	}
	records := last - first + 1
	return int64(float64(s.buf.DiskBytes()) * float64(min(backlog, records)) / float64(records))
}

// oldestUnshipped is when the first unconfirmed record was received.
func (s *Shipper) oldestUnshipped() (time.Time, bool) {
	ms := s.oldestMs.Load()
	if ms <= 0 || s.Backlog() == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// publish refreshes, on the run goroutine, what other goroutines read:
// records in flight, the oldest unconfirmed record's time, and whether the
// sink is in trouble.
func (s *Shipper) publish(now time.Time) {
	s.inFlightN.Store(int64(s.inFlight))
	s.publishOldest()
	silent := s.inFlight > 0 && now.Sub(s.waitingSince) >= s.cfg.DegradedAfter
	s.health.setTrouble(s.failing || silent || s.breakerTrouble(), now)
}

// breakerTrouble: an open breaker is trouble; a half-open one only while
// records wait for its probes. With nothing to send it stays half-open until
// records come (only answers close it), and nothing is at risk meanwhile.
func (s *Shipper) breakerTrouble() bool {
	switch s.breaker.state() {
	case gobreaker.StateOpen:
		return true
	case gobreaker.StateHalfOpen:
		return s.acked < s.buf.LastIndex()
	}
	return false
}

// publishOldest finds the receive time of record acked+1: in the window if
// it was read, else (the breaker kept the shipper from reading it) from one
// read of the WAL, done once per index.
func (s *Shipper) publishOldest() {
	first := s.acked + 1
	switch {
	case first > s.buf.LastIndex():
		s.oldestMs.Store(0)
	case first < s.readUpTo:
		s.oldestMs.Store(s.times[first%uint64(len(s.times))])
	case first != s.oldestIndex:
		s.oldestIndex = first
		s.oldestMs.Store(s.peekTime(first))
	}
}

// peekTime is the TimeMs of the record at index, or 0 if it cannot be read.
func (s *Shipper) peekTime(index uint64) int64 {
	frame, err := s.frameAt(index)
	if err != nil {
		return 0
	}
	var rec Record
	if DecodeRecord(frame, &rec) != nil {
		return 0
	}
	return rec.TimeMs
}

// checkSilence opens the breaker when records in flight have heard nothing
// for SilenceTimeout, then restarts the count so that a lasting silence
// reports once per SilenceTimeout.
func (s *Shipper) checkSilence(now time.Time) {
	timeout := s.breaker.cfg.SilenceTimeout
	if s.inFlight == 0 || now.Sub(s.waitingSince) < timeout {
		return
	}
	cause := fmt.Sprintf("no answer from the sink for %v with %d records in flight", now.Sub(s.waitingSince).Round(time.Millisecond), s.inFlight)
	s.health.failed(cause)
	s.breaker.failed(cause, true)
	s.waitingSince = now
}

// healthInterval is the period of the health tick: a fraction of the
// shortest wait it watches, so states change close to on time.
func (s *Shipper) healthInterval() time.Duration {
	shortest := min(s.cfg.DegradedAfter, s.cfg.DownAfter, s.breaker.cfg.SilenceTimeout)
	return max(shortest/4, time.Millisecond)
}

// Values of sluice_kafka_state.
var sinkStateValue = map[string]float64{SinkIdle: 0, SinkUp: 0, SinkDegraded: 1, SinkDown: 2}

func (s *Shipper) statusCollectors() []prometheus.Collector {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_kafka_state",
			Help: "The sink as Status sees it: 0 up (or idle: nothing sent yet), 1 degraded (in trouble for less than the grace period), 2 down.",
		}, func() float64 { return sinkStateValue[s.health.state(time.Now(), s.cfg.DownAfter)] }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_buffer_oldest_unshipped_age_seconds",
			Help: "Age of the oldest event in the WAL not yet confirmed by Kafka (its receive time); 0 with no backlog.",
		}, func() float64 {
			if at, ok := s.oldestUnshipped(); ok {
				return max(0, time.Since(at).Seconds())
			}
			return 0
		}),
	}
	if pr, ok := s.sink.(PartitionReporter); ok {
		cs = append(cs, partitionCollector{pr, prometheus.NewDesc("sluice_kafka_partition_in_flight_records",
			"Records sent to a partition and not yet answered.", []string{"topic", "partition"}, nil)})
	}
	return cs
}

// partitionCollector exports a PartitionReporter's counts at each scrape.
type partitionCollector struct {
	src  PartitionReporter
	desc *prometheus.Desc
}

func (c partitionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c partitionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.src.InFlightPartitions() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(p.InFlight),
			p.Topic, strconv.FormatInt(int64(p.Partition), 10))
	}
}
