package buffer

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Ledger accounts for every event the gateway takes in, so that at every
// scrape
//
//	received = shipped + dropped + refused + buffered
//
// holds exactly: all of its counters change under one lock and are exported
// together by one Collect. received counts events of requests that passed
// admission (source="http") and the unshipped WAL records found at start
// (source="recovered"). shipped is by kind (event, dead_letter: the invalid
// events). dropped is by reason, events lost after their client got a 2xx
// (--ack=enqueue write failures, --buffer-when-full=drop-newest, damaged WAL
// records). refused is by reason, events whose client got an error after
// admission (a failed or refused WAL write with --ack=disk). buffered is the
// events in the enrichment pipeline plus the WAL records not yet shipped.
type Ledger struct {
	mu       sync.Mutex
	received [2]uint64 // by source
	shipped  [2]uint64 // by kind
	dropped  map[string]uint64
	refused  map[string]uint64
	pending  int64 // received, not yet written to the WAL (or failed)
	backlog  int64 // written to the WAL, not yet shipped (or skipped)
	descs    [5]*prometheus.Desc
}

const (
	sourceHTTP = iota
	sourceRecovered
)

// Drop and refusal reasons.
const (
	ReasonWALWrite      = "wal_write"      // the WAL write failed
	ReasonBufferFull    = "buffer_full"    // the WAL is at its size limit or the disk is full
	ReasonEnrich        = "enrich"         // the enrichment step failed
	ReasonCorruptRecord = "corrupt_record" // a WAL record was damaged on disk and skipped
	// ReasonRejectedBySink: the sink refused the record and then its dead
	// letter, each sent alone; retrying could never succeed.
	ReasonRejectedBySink = "rejected_by_kafka"
)

// NewLedger returns an empty ledger. A Buffer makes its own (Buffer.Ledger)
// and exports it with its metrics.
func NewLedger() *Ledger {
	l := &Ledger{dropped: map[string]uint64{}, refused: map[string]uint64{}}
	for _, r := range []string{ReasonWALWrite, ReasonBufferFull, ReasonEnrich, ReasonCorruptRecord, ReasonRejectedBySink} {
		l.dropped[r] = 0
	}
	for _, r := range []string{ReasonWALWrite, ReasonBufferFull, ReasonEnrich} {
		l.refused[r] = 0
	}
	l.descs = [5]*prometheus.Desc{
		prometheus.NewDesc("sluice_events_received_total",
			"Events taken in: from HTTP requests that passed admission (source=http), or found unshipped in the WAL at start (source=recovered). received = shipped + dropped + refused + buffered.",
			[]string{"source"}, nil),
		prometheus.NewDesc("sluice_events_shipped_total",
			"Events confirmed by Kafka, by kind: event (main topic) or dead_letter (invalid events, dead-letter topic).",
			[]string{"kind"}, nil),
		prometheus.NewDesc("sluice_events_dropped_total",
			"Events lost after their client got a 2xx, by reason.",
			[]string{"reason"}, nil),
		prometheus.NewDesc("sluice_events_refused_total",
			"Events whose client got an error after admission (it may retry), by reason.",
			[]string{"reason"}, nil),
		prometheus.NewDesc("sluice_events_buffered",
			"Events in the enrichment pipeline or in the WAL and not yet shipped.",
			nil, nil),
	}
	return l
}

// Received counts n events of a request entering the pipeline.
func (l *Ledger) Received(n int) {
	l.mu.Lock()
	l.received[sourceHTTP] += uint64(n)
	l.pending += int64(n)
	l.mu.Unlock()
}

// ReceivedDropped counts n events taken in and dropped at once (the
// drop-newest policy at the size limit).
func (l *Ledger) ReceivedDropped(n int, reason string) {
	l.mu.Lock()
	l.received[sourceHTTP] += uint64(n)
	l.dropped[reason] += uint64(n)
	l.mu.Unlock()
}

// NotWritten settles n received events that never reached the WAL: refused
// when their client was told (it got an error), dropped when it already had
// its 2xx.
func (l *Ledger) NotWritten(n int, reason string, clientTold bool) {
	l.mu.Lock()
	l.pending -= int64(n)
	if clientTold {
		l.refused[reason] += uint64(n)
	} else {
		l.dropped[reason] += uint64(n)
	}
	l.mu.Unlock()
}

// written moves n events from the pipeline to the WAL backlog.
func (l *Ledger) written(n int) {
	l.mu.Lock()
	l.pending -= int64(n)
	l.backlog += int64(n)
	l.mu.Unlock()
}

// recovered counts WAL records this process did not write but will ship: the
// backlog found at start, or whole entries a failed write left behind.
func (l *Ledger) recovered(n uint64) {
	l.mu.Lock()
	l.received[sourceRecovered] += n
	l.backlog += int64(n)
	l.mu.Unlock()
}

// settled moves records out of the backlog as the acknowledged index passes
// them: shipped events and dead letters, skipped corrupt records, and
// records dropped because the sink rejected them and their dead letter.
func (l *Ledger) settled(events, deadLetters, corrupt, rejected uint64) {
	l.mu.Lock()
	l.shipped[0] += events
	l.shipped[1] += deadLetters
	l.dropped[ReasonCorruptRecord] += corrupt
	l.dropped[ReasonRejectedBySink] += rejected
	l.backlog -= int64(events + deadLetters + corrupt + rejected)
	l.mu.Unlock()
}

// LedgerSnapshot is the ledger at one instant, keyed like its metrics:
// "received/http", "shipped/event", "dropped/buffer_full", "refused/wal_write",
// and "buffered".
type LedgerSnapshot map[string]uint64

// Snapshot copies the ledger under its lock.
func (l *Ledger) Snapshot() LedgerSnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := LedgerSnapshot{
		"received/http":       l.received[sourceHTTP],
		"received/recovered":  l.received[sourceRecovered],
		"shipped/event":       l.shipped[0],
		"shipped/dead_letter": l.shipped[1],
		"buffered":            uint64(max(0, l.pending+l.backlog)),
	}
	for r, v := range l.dropped {
		s["dropped/"+r] = v
	}
	for r, v := range l.refused {
		s["refused/"+r] = v
	}
	return s
}

// Balance returns both sides of the equation, for tests and the status page.
func (l *Ledger) Balance() (received, accountedFor uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	received = l.received[0] + l.received[1]
	accountedFor = l.shipped[0] + l.shipped[1] + uint64(l.pending+l.backlog)
	for _, v := range l.dropped {
		accountedFor += v
	}
	for _, v := range l.refused {
		accountedFor += v
	}
	return received, accountedFor
}

// Describe implements prometheus.Collector.
func (l *Ledger) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range l.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one consistent snapshot.
func (l *Ledger) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	defer l.mu.Unlock()
	counter := func(d *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	counter(l.descs[0], l.received[sourceHTTP], "http")
	counter(l.descs[0], l.received[sourceRecovered], "recovered")
	counter(l.descs[1], l.shipped[0], "event")
	counter(l.descs[1], l.shipped[1], "dead_letter")
	for r, v := range l.dropped {
		counter(l.descs[2], v, r)
	}
	for r, v := range l.refused {
		counter(l.descs[3], v, r)
	}
	ch <- prometheus.MustNewConstMetric(l.descs[4], prometheus.GaugeValue, float64(l.pending+l.backlog))
}
