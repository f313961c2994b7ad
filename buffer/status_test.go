package buffer

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// The grace period: trouble reads as degraded until it has lasted DownAfter,
// so a leader election of a few seconds never reads as down.
func TestSinkHealthState(t *testing.T) {
	const downAfter = 10 * time.Second
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var h sinkHealth
	if got := h.state(t0, downAfter); got != SinkIdle {
		t.Errorf("nothing confirmed, no trouble: %q, want %q", got, SinkIdle)
	}
	h.succeeded(t0)
	if got := h.state(t0, downAfter); got != SinkUp {
		t.Errorf("after a success: %q, want %q", got, SinkUp)
	}
	h.setTrouble(true, t0)
	h.setTrouble(true, t0.Add(5*time.Second)) // still in the same spell: it began at t0
	for _, tc := range []struct {
		at   time.Duration
		want string
	}{{0, SinkDegraded}, {9 * time.Second, SinkDegraded}, {downAfter, SinkDown}, {time.Hour, SinkDown}} {
		if got := h.state(t0.Add(tc.at), downAfter); got != tc.want {
			t.Errorf("%v into trouble: %q, want %q", tc.at, got, tc.want)
		}
	}
	h.setTrouble(false, t0.Add(time.Hour))
	if got := h.state(t0.Add(time.Hour), downAfter); got != SinkUp {
		t.Errorf("trouble over: %q, want %q", got, SinkUp)
	}
	h.setTrouble(true, t0.Add(2*time.Hour)) // a new spell starts its own grace period
	if got := h.state(t0.Add(2*time.Hour+time.Second), downAfter); got != SinkDegraded {
		t.Errorf("1s into a new spell: %q, want %q", got, SinkDegraded)
	}
}

func waitState(t *testing.T, s *Shipper, want string) SinkStatus {
	t.Helper()
	var st SinkStatus
	waitUntil(t, "the sink state "+want, func() bool { st = s.Status(); return st.State == want })
	return st
}

// A sink that stops answering: the state goes degraded, the breaker opens on
// the silence, the state goes down after DownAfter, and all of it shows in
// Status and the metrics; once answers come the state is up again.
func TestShipperStatusThroughSilence(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := openBuffer(t, Config{Dir: t.TempDir()})
	sink := newMemSink()
	sink.hold = true
	s := startShipper(t, b, sink, ShipperConfig{
		Registerer: reg, DegradedAfter: 10 * time.Millisecond, DownAfter: 300 * time.Millisecond,
		Breaker: BreakerConfig{SilenceTimeout: 50 * time.Millisecond, OpenFor: 20 * time.Millisecond, ProbeRecords: 1},
	})
	if st := s.Status(); st.State != SinkIdle || st.Breaker != "closed" || st.LastSuccess != nil {
		t.Fatalf("before any record: %+v, want idle, closed, no success", st)
	}

	mustAppend(t, b, "r", 0, 3)
	sink.waitSends(t, 3)
	st := waitState(t, s, SinkDegraded)
	if st.TroubleSince == nil || st.InFlightRecords != 3 || st.BacklogRecords != 3 {
		t.Errorf("degraded: %+v, want trouble_since set, 3 in flight, backlog 3", st)
	}
	waitUntil(t, "the breaker to open on the silence", func() bool { return s.breaker.state() != gobreaker.StateClosed })
	st = waitState(t, s, SinkDown)
	if !strings.Contains(st.LastErrorText, "no answer from the sink") || st.LastError == nil {
		t.Errorf("down: last error %v %q, want the silence", st.LastError, st.LastErrorText)
	}
	if got := gatherValues(t, reg)["sluice_kafka_state"]; got != 2 {
		t.Errorf("sluice_kafka_state = %v while down, want 2", got)
	}
	if got := len(sink.sent()); got != 3 {
		t.Errorf("%d sends while the sink was silent, want the 3 first ones only", got)
	}

	for _, h := range sink.takeHeld(false) {
		sink.ack(h, nil)
	}
	drain(t, s)
	st = waitState(t, s, SinkUp)
	if st.LastSuccess == nil || st.TroubleSince != nil || st.BacklogRecords != 0 {
		t.Errorf("up again: %+v, want a last success, no trouble, no backlog", st)
	}
	if got := gatherValues(t, reg)["sluice_kafka_state"]; got != 0 {
		t.Errorf("sluice_kafka_state = %v when up, want 0", got)
	}
	// The next records are the probe that closes the breaker.
	mustAppend(t, b, "r", 3, 1)
	drain(t, s)
	waitUntil(t, "the breaker to close", func() bool { return s.breaker.state() == gobreaker.StateClosed })
}

// The oldest unshipped event is the first unconfirmed record's receive time,
// whether the shipper has read it or the open breaker kept it unread.
func TestShipperStatusOldestUnshipped(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := openBuffer(t, Config{Dir: t.TempDir()})
	sink := newMemSink()
	sink.hold = true
	s := startShipper(t, b, sink, ShipperConfig{Registerer: reg,
		Breaker: BreakerConfig{SilenceTimeout: 20 * time.Millisecond, OpenFor: time.Hour}})
	recTime := func(i int) time.Time { r := testRecord("r", i); return time.UnixMilli(r.TimeMs).UTC() }
	oldest := func(want time.Time) {
		t.Helper()
		waitUntil(t, "oldest unshipped "+want.String(), func() bool {
			st := s.Status()
			return st.OldestUnshippedAt != nil && st.OldestUnshippedAt.Equal(want)
		})
	}

	mustAppend(t, b, "r", 0, 3)
	sink.waitSends(t, 3)
	oldest(recTime(0))
	st := s.Status()
	if wantAge := time.Since(recTime(0)).Seconds(); st.OldestUnshippedAgeSeconds < wantAge-60 || st.OldestUnshippedAgeSeconds > wantAge+60 {
		t.Errorf("oldest age %vs, want about %vs", st.OldestUnshippedAgeSeconds, wantAge)
	}
	if got := gatherValues(t, reg)["sluice_buffer_oldest_unshipped_age_seconds"]; got < st.OldestUnshippedAgeSeconds {
		t.Errorf("sluice_buffer_oldest_unshipped_age_seconds = %v, want at least %v", got, st.OldestUnshippedAgeSeconds)
	}
	held := sink.takeHeld(true)
	sink.ack(held[0], nil)
	oldest(recTime(1))

	// The silence opens the breaker for an hour; then the held records are
	// confirmed and new ones arrive: the shipper does not read them, yet
	// the oldest is the first of them.
	waitUntil(t, "the breaker to open", func() bool { return s.breaker.state() == gobreaker.StateOpen })
	for _, h := range held[1:] {
		sink.ack(h, nil)
	}
	waitUntil(t, "records 1..3 confirmed", func() bool { return s.AckedIndex() == 3 })
	mustAppend(t, b, "r", 3, 2)
	oldest(recTime(3))
	if got := len(sink.sent()); got != 3 {
		t.Errorf("%d sends with the breaker open, want 3", got)
	}
	s.Close()
	if st := s.Status(); st.BacklogRecords != 2 || st.BacklogBytes <= 0 {
		t.Errorf("backlog %d records, %d bytes; want 2 and some bytes", st.BacklogRecords, st.BacklogBytes)
	}
}

func TestShipperStatusNoBacklog(t *testing.T) {
	b := openBuffer(t, Config{Dir: t.TempDir()})
	s := startShipper(t, b, newMemSink(), ShipperConfig{})
	mustAppend(t, b, "r", 0, 5)
	drain(t, s)
	st := waitState(t, s, SinkUp)
	if st.OldestUnshippedAt != nil || st.OldestUnshippedAgeSeconds != 0 || st.BacklogBytes != 0 || st.AckedIndex != 5 || st.LastIndex != 5 {
		t.Errorf("drained: %+v, want no oldest, no backlog bytes, indices 5", st)
	}
	bs := s.BufferStatus()
	if bs.DiskBytes <= 0 || bs.LastIndex != 5 || bs.AckedIndex != 5 || bs.DiskFull || bs.FirstIndex != 1 {
		t.Errorf("buffer status %+v", bs)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Errorf("status does not encode: %v", err)
	}
}

// partitionSink is a memSink that reports partitions.
type partitionSink struct {
	*memSink
	parts []PartitionInFlight
}

func (p partitionSink) InFlightPartitions() []PartitionInFlight { return slices.Clone(p.parts) }

func TestShipperStatusPartitions(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := openBuffer(t, Config{Dir: t.TempDir(), Registerer: reg})
	parts := []PartitionInFlight{{Topic: "beacons", Partition: 0, Leader: 1, InFlight: 4}, {Topic: "beacons", Partition: 1, Leader: 2}}
	s := startShipper(t, b, partitionSink{newMemSink(), parts}, ShipperConfig{Registerer: reg})
	if got := s.Status().Partitions; !slices.Equal(got, parts) {
		t.Errorf("Status().Partitions = %v, want %v", got, parts)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_kafka_partition_in_flight_records" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			found[strings.Join(labels, ",")] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"partition=0,topic=beacons": 4, "partition=1,topic=beacons": 0}
	if len(found) != len(want) || found["partition=0,topic=beacons"] != 4 || found["partition=1,topic=beacons"] != 0 {
		t.Errorf("sluice_kafka_partition_in_flight_records = %v, want %v", found, want)
	}
}
