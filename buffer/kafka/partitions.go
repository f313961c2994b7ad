package kafka

import (
	"cmp"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-gateway/sluice/buffer"
)

// partitionTracker counts the records in flight per partition: franz-go
// picks the partition inside Produce, and tells it through the partitioned
// hook; the promise ends the count. It is a kgo hook.
type partitionTracker struct {
	mu    sync.Mutex
	parts map[topicPartition]*partitionCount
}

type topicPartition struct {
	topic     string
	partition int32
}

type partitionCount struct {
	inFlight int64
	leader   int32
}

var _ kgo.HookProduceRecordPartitioned = (*partitionTracker)(nil)

func newPartitionTracker() *partitionTracker {
	return &partitionTracker{parts: map[topicPartition]*partitionCount{}}
}

// OnProduceRecordPartitioned counts a record in flight on its partition. A
// record failed before franz-go partitioned it (too large, client closed)
// never comes here, so the record remembers that it was counted.
func (t *partitionTracker) OnProduceRecordPartitioned(r *kgo.Record, leader int32) {
	o, ok := r.Context.(*outRecord)
	if !ok {
		return
	}
	o.counted = topicPartition{r.Topic, r.Partition}
	o.isCounted = true
	t.mu.Lock()
	defer t.mu.Unlock()
	pc := t.parts[o.counted]
	if pc == nil {
		pc = &partitionCount{}
		t.parts[o.counted] = pc
	}
	pc.inFlight++
	pc.leader = leader
}

// answered ends the count of o, called from its promise.
func (t *partitionTracker) answered(o *outRecord) {
	if !o.isCounted {
		return
	}
	t.mu.Lock()
	t.parts[o.counted].inFlight--
	t.mu.Unlock()
}

// snapshot lists every partition seen, by topic and partition.
func (t *partitionTracker) snapshot() []buffer.PartitionInFlight {
	t.mu.Lock()
	out := make([]buffer.PartitionInFlight, 0, len(t.parts))
	for tp, pc := range t.parts {
		out = append(out, buffer.PartitionInFlight{Topic: tp.topic, Partition: tp.partition, Leader: pc.leader, InFlight: pc.inFlight})
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b buffer.PartitionInFlight) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}

// InFlightPartitions implements buffer.PartitionReporter: the records sent
// to each partition and not yet answered.
func (s *Sink) InFlightPartitions() []buffer.PartitionInFlight { return s.partitions.snapshot() }
