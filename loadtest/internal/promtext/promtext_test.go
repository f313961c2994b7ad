package promtext

import (
	"strings"
	"testing"
)

const scrape0 = `# HELP sluice_events_total x
# TYPE sluice_events_total counter
sluice_events_total{outcome="accepted"} 10
sluice_events_total{outcome="invalid"} 1
sluice_wal_fsync_duration_seconds_bucket{le="0.001"} 5
sluice_wal_fsync_duration_seconds_bucket{le="0.002"} 9
sluice_wal_fsync_duration_seconds_bucket{le="+Inf"} 10
sluice_wal_fsync_duration_seconds_sum 0.01
sluice_wal_fsync_duration_seconds_count 10
sluice_buffer_backlog_records 3
`

const scrape1 = `sluice_events_total{outcome="accepted"} 110
sluice_events_total{outcome="invalid"} 1
sluice_wal_fsync_duration_seconds_bucket{le="0.001"} 5
sluice_wal_fsync_duration_seconds_bucket{le="0.002"} 100
sluice_wal_fsync_duration_seconds_bucket{le="+Inf"} 110
sluice_wal_fsync_duration_seconds_sum 0.21
sluice_wal_fsync_duration_seconds_count 110
sluice_buffer_backlog_records 0
`

func TestParseAndDelta(t *testing.T) {
	m0, err := Parse(strings.NewReader(scrape0))
	if err != nil {
		t.Fatal(err)
	}
	m1, err := Parse(strings.NewReader(scrape1))
	if err != nil {
		t.Fatal(err)
	}
	if got := m1.Get("sluice_events_total", `outcome="accepted"`) - m0.Get("sluice_events_total", `outcome="accepted"`); got != 100 {
		t.Errorf("accepted delta %v", got)
	}
	if got := m0.Sum("sluice_events_total"); got != 11 {
		t.Errorf("sum over labels %v", got)
	}
	if got := m0.Sum("sluice_buffer_backlog_records"); got != 3 {
		t.Errorf("backlog %v", got)
	}
	// Over the interval: 0 in le=0.001, 91 in (0.001, 0.002], 9 above.
	if got := BucketQuantile(m0, m1, "sluice_wal_fsync_duration_seconds", 0.5); got != 0.002 {
		t.Errorf("p50 %v, want 0.002", got)
	}
	if got := BucketQuantile(m0, m1, "sluice_wal_fsync_duration_seconds", 0.99); got != 0.002 {
		t.Errorf("p99 beyond the last finite bucket %v, want that bucket's bound 0.002", got)
	}
}

func TestHas(t *testing.T) {
	m, err := Parse(strings.NewReader(scrape1 + "sluice_events_buffered 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Has("sluice_events_buffered") || !m.Has("sluice_events_total") {
		t.Error("a series that is there (value 0, or labelled) not found")
	}
	if m.Has("sluice_events_received_total") || m.Has("sluice_events") {
		t.Error("a series that is not there found")
	}
}
