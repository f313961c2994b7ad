package buffer

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg             prometheus.Registerer
	collectors      []prometheus.Collector
	fsyncSeconds    prometheus.Histogram
	batchRecords    prometheus.Histogram
	appendedRecords prometheus.Counter
	appendedBytes   prometheus.Counter
	writeErrors     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, b *Buffer) *metrics {
	m := &metrics{
		reg: reg,
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_wal_fsync_duration_seconds",
			Help:    "Duration of one WAL group commit (write and fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_wal_group_commit_records",
			Help:    "Records written by one group commit (one fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		appendedRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_wal_appended_records_total",
			Help: "Records made durable in the WAL.",
		}),
		appendedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_wal_appended_bytes_total",
			Help: "Encoded record bytes made durable in the WAL.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_wal_write_errors_total",
			Help: "Group commits that failed; each one reopens the log.",
		}),
	}
	m.collectors = []prometheus.Collector{
		b.ledger,
		m.fsyncSeconds, m.batchRecords, m.appendedRecords, m.appendedBytes, m.writeErrors,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sluice_wal_segment_repairs_total",
			Help: "Damaged sealed WAL segments rebuilt, at open or when a read found them broken: damaged bytes are quarantined, lost records become placeholders that sluice_wal_corrupt_records_total counts as they are skipped.",
		}, func() float64 { return float64(b.segmentRepairs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_wal_last_index",
			Help: "Highest durable WAL index.",
		}, func() float64 { return float64(b.LastIndex()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sluice_wal_tail_repairs_total",
			Help: "Torn WAL tails cut back to the last whole entry at open (the cut bytes are quarantined).",
		}, func() float64 { return float64(b.tailRepairs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_buffer_disk_full",
			Help: "1 while the last WAL write failed for want of disk space (ENOSPC), else 0.",
		}, func() float64 {
			if b.NoSpace() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_buffer_disk_bytes",
			Help: "Bytes of WAL segments on disk.",
		}, func() float64 { return float64(b.DiskBytes()) }),
	}
	if reg != nil {
		for _, c := range m.collectors {
			reg.MustRegister(c)
		}
	}
	return m
}

// unregister lets a test or a restart in the same process register afresh.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
