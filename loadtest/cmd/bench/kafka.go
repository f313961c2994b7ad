package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-gateway/sluice/buffer/kafka/kafkatest"
)

const (
	topic    = "beacons"
	dlqTopic = "beacons-invalid"
)

// startKafka starts franz-go's in-process fake Kafka (kfake) in bench's own
// process, on 127.0.0.1, in memory, with both of Sluice's topics. Sluice is
// pointed at it with --kafka-brokers, so bench can inject faults (Fault,
// ShufflePartitionLeaders) and read the topic afterwards. Its CPU is bench's
// ("harness cores" in the report), not Sluice's.
func startKafka(brokers int) (*kfake.Cluster, error) {
	return kfake.NewCluster(
		kfake.NumBrokers(brokers),
		kfake.SeedTopics(6, topic, dlqTopic),
		kfake.ClusterID("sluice-bench"),
		// A removed broker closes its connections (the nodes scenario).
		kfake.ListenFn(kafkatest.ListenClosingConns),
	)
}

// addPartitions grows topic by n partitions.
func addPartitions(ctx context.Context, brokers []string, topic string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreatePartitions(ctx, n, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("add %d partitions to %s: %w", n, topic, err)
	}
	return nil
}

// verification compares what the generator was told (2xx) with what is in
// Kafka. Sequence numbers are events: request i's event j is i*perReq+j.
type verification struct {
	Records       uint64   `json:"records"`     // records in the topic
	DLQRecords    uint64   `json:"dlq_records"` // records in the dead-letter topic
	Offered       uint64   `json:"offered"`     // events scheduled
	Sent          uint64   `json:"sent"`        // events written to a connection
	Acked         uint64   `json:"acked"`       // events in 2xx answers
	Found         uint64   `json:"found"`       // acknowledged events found at least once
	Missing       uint64   `json:"missing"`     // acknowledged events not found
	Duplicates    uint64   `json:"duplicates"`  // extra copies of any event
	UnackedFound  uint64   `json:"unacked_found"`
	Foreign       uint64   `json:"foreign"` // records without this run's mark
	MissingSample []uint64 `json:"missing_sample,omitempty"`
	Complete      bool     `json:"complete"` // read up to the end offsets
	ReadS         float64  `json:"read_s"`
	Order         keyOrder `json:"order"`
}

// keyOrder is the per-key order check over the whole topic: within each
// partition, a key's records must first appear in the order Sluice wrote
// them to its WAL (the sluice-wal-index header; WAL indexes survive
// restarts on one data dir). A copy of an index already seen is a
// duplicate, not a violation.
type keyOrder struct {
	Checked    uint64   `json:"checked"`    // records with a WAL index
	NoIndex    uint64   `json:"no_index"`   // records without one
	Violations uint64   `json:"violations"` // first appearances below the key's highest index so far
	Sample     []string `json:"violation_sample,omitempty"`
	Keys       int      `json:"keys"`
	// KeysMoved counts keys found in more than one partition: a partition
	// increase changes hash(key) mod partitions, and Kafka orders only
	// within a partition.
	KeysMoved int `json:"keys_moved"`

	last  map[string]uint64 // key + "\x00" + partition → highest index
	parts map[string]int32  // key → first partition seen, or -1 once seen in two
	seen  []uint64          // bitmap of indexes seen
}

func (o *keyOrder) add(r *kgo.Record) {
	var idx uint64
	ok := false
	for _, h := range r.Headers {
		if h.Key == "sluice-wal-index" {
			v, err := strconv.ParseUint(string(h.Value), 10, 64)
			idx, ok = v, err == nil
			break
		}
	}
	if !ok {
		o.NoIndex++
		return
	}
	if o.last == nil {
		o.last, o.parts = map[string]uint64{}, map[string]int32{}
	}
	o.Checked++
	w := idx / 64
	for uint64(len(o.seen)) <= w {
		o.seen = append(o.seen, make([]uint64, max(len(o.seen), 1024))...)
	}
	dup := o.seen[w]&(1<<(idx%64)) != 0
	o.seen[w] |= 1 << (idx % 64)
	switch p, ok := o.parts[string(r.Key)]; {
	case !ok:
		o.parts[string(r.Key)] = r.Partition
	case p >= 0 && p != r.Partition:
		o.parts[string(r.Key)] = -1
	}
	k := string(r.Key) + "\x00" + strconv.Itoa(int(r.Partition))
	last, had := o.last[k]
	switch {
	case !had || idx > last:
		o.last[k] = idx
	case !dup:
		o.Violations++
		if len(o.Sample) < 10 {
			o.Sample = append(o.Sample, fmt.Sprintf("key %q partition %d offset %d: WAL index %d after %d", r.Key, r.Partition, r.Offset, idx, last))
		}
	}
}

func (o *keyOrder) finish() {
	o.Keys = len(o.parts)
	for _, p := range o.parts {
		if p < 0 {
			o.KeysMoved++
		}
	}
	o.last, o.parts, o.seen = nil, nil, nil
}

// bitmap is loadgen's -acked-out file: bit i of word i/64 is request i.
type bitmap []uint64

func (b bitmap) has(i uint64) bool {
	w := i / 64
	return w < uint64(len(b)) && b[w]&(1<<(i%64)) != 0
}

func (b bitmap) count() uint64 {
	var n uint64
	for _, w := range b {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

// findMark returns the sequence number in a record value's
// "mark":"<runID>-<digits>", if the value has one of this run.
func findMark(value []byte, needle []byte) (uint64, bool) {
	i := bytes.Index(value, needle)
	if i < 0 {
		return 0, false
	}
	d := value[i+len(needle):]
	const digits = 12
	if len(d) < digits {
		return 0, false
	}
	var v uint64
	for _, c := range d[:digits] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// markRun is one generator run id whose events verifyRuns looks for:
// sequence s belongs to request s/PerReq; Slots requests were scheduled,
// SentReqs written to a connection, Acked answered 2xx.
type markRun struct {
	ID       string
	PerReq   int
	Slots    uint64
	SentReqs uint64
	Acked    bitmap
}

// verifyTopic reads the whole topic from the start and checks every
// acknowledged event of the run is there.
func verifyTopic(ctx context.Context, brokers []string, runID string, perReq int, slots, sentReqs uint64, acked bitmap, limit time.Duration) (*verification, error) {
	vs, err := verifyRuns(ctx, brokers, []markRun{{ID: runID, PerReq: perReq, Slots: slots, SentReqs: sentReqs, Acked: acked}}, limit)
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

// verifyRuns reads the whole topic once, from the start, and checks for
// each run that every acknowledged event is there. The topic-wide counts
// (Records, DLQRecords, Complete, ReadS) are the same in every result;
// Foreign counts the records of none of the runs. Memory: one byte per
// scheduled event, whatever the topic holds.
func verifyRuns(ctx context.Context, brokers []string, runs []markRun, limit time.Duration) ([]*verification, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	vs := make([]*verification, len(runs))
	seen := make([][]uint8, len(runs))
	ids := make([][]byte, len(runs))
	for i, r := range runs {
		vs[i] = &verification{Offered: r.Slots * uint64(r.PerReq), Sent: r.SentReqs * uint64(r.PerReq), Acked: r.Acked.count() * uint64(r.PerReq)}
		seen[i] = make([]uint8, r.Slots*uint64(r.PerReq))
		ids[i] = []byte(r.ID + "-")
	}

	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	ac := kadm.NewClient(adm)
	ends, err := ac.ListEndOffsets(ctx, topic, dlqTopic)
	if err == nil {
		err = ends.Error()
	}
	starts, err2 := ac.ListStartOffsets(ctx, topic)
	adm.Close()
	if err != nil || err2 != nil {
		return nil, fmt.Errorf("list offsets: %v %v", err, err2)
	}
	var records, dlq, foreign uint64
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic == dlqTopic {
			dlq += uint64(o.Offset)
			return
		}
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	starts.Each(func(o kadm.ListedOffset) {
		if e, ok := want[o.Partition]; ok && o.Offset >= e {
			delete(want, o.Partition)
		}
	})

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	markKey := []byte(`"mark":"`)
	var order keyOrder
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			records++
			order.add(r)
			if e, ok := want[r.Partition]; ok && r.Offset+1 >= e {
				delete(want, r.Partition)
			}
			run, seq, ok := findRunMark(r.Value, markKey, ids)
			if !ok || seq >= uint64(len(seen[run])) {
				foreign++
				return
			}
			if seen[run][seq] < 255 {
				seen[run][seq]++
			}
		})
	}
	complete := len(want) == 0
	order.finish()
	readS := round3(time.Since(start).Seconds())
	for i, r := range runs {
		v := vs[i]
		v.Records, v.DLQRecords, v.Foreign, v.Complete, v.ReadS, v.Order = records, dlq, foreign, complete, readS, order
		for seq, n := range seen[i] {
			isAcked := r.Acked.has(uint64(seq) / uint64(r.PerReq))
			if n > 1 {
				v.Duplicates += uint64(n - 1)
			}
			switch {
			case isAcked && n > 0:
				v.Found++
			case isAcked:
				v.Missing++
				if len(v.MissingSample) < 10 {
					v.MissingSample = append(v.MissingSample, uint64(seq))
				}
			case n > 0:
				v.UnackedFound++
			}
		}
	}
	return vs, nil
}

// findRunMark finds a record value's "mark":"<id>-<12 digits>" and returns
// which of ids (each "<id>-") it belongs to and its sequence number.
func findRunMark(value, markKey []byte, ids [][]byte) (int, uint64, bool) {
	i := bytes.Index(value, markKey)
	if i < 0 {
		return 0, 0, false
	}
	rest := value[i+len(markKey):]
	for run, id := range ids {
		if bytes.HasPrefix(rest, id) {
			seq, ok := findMark(rest, id)
			return run, seq, ok
		}
	}
	return 0, 0, false
}
