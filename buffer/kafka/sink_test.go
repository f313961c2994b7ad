package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-gateway/sluice/buffer"
)

// Compile-time check: the Sink is what the shipper delivers to.
var _ buffer.Sink = (*Sink)(nil)

func TestSinkDeliversValueKeyAndHeaders(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, c.ListenAddrs(), nil)

	// Indices beyond 32 bits check HeaderWALIndex is the full decimal.
	const first = uint64(1)<<40 + 7
	var recs []*buffer.Record
	for i := range 50 {
		dl := i%5 == 3 // 10 dead letters, interleaved with valid events
		recs = append(recs, newRecord(t, fmt.Sprintf("user-%d", i%7), fmt.Sprintf(`{"n":%d,"dl":%t}`, i, dl), dl))
	}
	requireAllNil(t, sendAll(t, s, first, recs).wait(waitTimeout))

	byID := make(map[string]int, len(recs))
	for i, r := range recs {
		byID[uuid.UUID(r.ID).String()] = i
	}
	got := append(consume(t, c.ListenAddrs(), 40, testTopic), consume(t, c.ListenAddrs(), 10, testDLQ)...)
	seen := make(map[int]bool)
	for _, kr := range got {
		id, ok := header(kr, HeaderEventID)
		if !ok {
			t.Fatalf("record %s[%d]@%d has no %s header", kr.Topic, kr.Partition, kr.Offset, HeaderEventID)
		}
		i, ok := byID[id]
		if !ok {
			t.Fatalf("record with unknown %s %q", HeaderEventID, id)
		}
		if seen[i] {
			t.Fatalf("record %d delivered twice", i)
		}
		seen[i] = true
		want := recs[i]
		if parsed, err := uuid.Parse(id); err != nil || parsed != uuid.UUID(want.ID) {
			t.Errorf("record %d: %s = %q, want the UUID string of %x", i, HeaderEventID, id, want.ID)
		}
		wantTopic := testTopic
		if want.DeadLetter {
			wantTopic = testDLQ
		}
		if kr.Topic != wantTopic {
			t.Errorf("record %d (dead letter %t) landed on %q, want %q", i, want.DeadLetter, kr.Topic, wantTopic)
		}
		if !bytes.Equal(kr.Key, want.Key) || !bytes.Equal(kr.Value, want.Value) {
			t.Errorf("record %d: key/value %q/%q, want %q/%q", i, kr.Key, kr.Value, want.Key, want.Value)
		}
		wantHeaders := map[string]string{
			HeaderEventID:  uuid.UUID(want.ID).String(),
			HeaderSchema:   SchemaVersion,
			HeaderInstance: "gw-test-1",
			HeaderWALIndex: strconv.FormatUint(first+uint64(i), 10),
		}
		if len(kr.Headers) != len(wantHeaders) {
			t.Errorf("record %d: %d headers %v, want %d", i, len(kr.Headers), kr.Headers, len(wantHeaders))
		}
		for k, v := range wantHeaders {
			if gotV, ok := header(kr, k); !ok || gotV != v {
				t.Errorf("record %d: header %s = %q (present %t), want %q", i, k, gotV, ok, v)
			}
		}
	}
	if len(seen) != len(recs) {
		t.Fatalf("%d distinct records delivered, want %d", len(seen), len(recs))
	}
}

func TestSinkCustomTopics(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(2, "main-x", "dlq-x"))
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Topic, cfg.DLQTopic = "main-x", "dlq-x" })
	recs := []*buffer.Record{newRecord(t, "k", "ok", false), newRecord(t, "k", "bad", true)}
	requireAllNil(t, sendAll(t, s, 1, recs).wait(waitTimeout))
	if got := consume(t, c.ListenAddrs(), 1, "main-x"); string(got[0].Value) != "ok" {
		t.Errorf("main-x got %q, want ok", got[0].Value)
	}
	if got := consume(t, c.ListenAddrs(), 1, "dlq-x"); string(got[0].Value) != "bad" {
		t.Errorf("dlq-x got %q, want bad", got[0].Value)
	}
	if n := endOffsetSum(t, newConsumer(t, c.ListenAddrs()), testTopic, testDLQ); n != 0 {
		t.Errorf("the default topics hold %d records, want 0", n)
	}
}

// javaMurmur2 is org.apache.kafka.common.utils.Utils.murmur2, transcribed
// from the Java source with int32 arithmetic (Java int) and >>> as an
// unsigned shift. It is deliberately independent of franz-go.
func javaMurmur2(data []byte) int32 {
	length := int32(len(data))
	var seed uint32 = 0x9747b28c
	const m int32 = 0x5bd1e995
	const r = 24
	h := int32(seed) ^ length
	length4 := length / 4
	for i := int32(0); i < length4; i++ {
		i4 := i * 4
		k := int32(data[i4]) + int32(data[i4+1])<<8 + int32(data[i4+2])<<16 + int32(data[i4+3])<<24
		k *= m
		k ^= int32(uint32(k) >> r)
		k *= m
		h *= m
		h ^= k
	}
	switch length % 4 {
	case 3:
		h ^= int32(data[(length&^3)+2]) << 16
		fallthrough
	case 2:
		h ^= int32(data[(length&^3)+1]) << 8
		fallthrough
	case 1:
		h ^= int32(data[length&^3])
		h *= m
	}
	h ^= int32(uint32(h) >> 13)
	h *= m
	h ^= int32(uint32(h) >> 15)
	return h
}

// javaPartition is the Java client's keyed partition choice:
// Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions.
func javaPartition(hash int32, numPartitions int) int32 {
	return (hash & 0x7fffffff) % int32(numPartitions)
}

// kafkaMurmur2Vectors are the expected values of Kafka's own
// UtilsTest.testMurmur2 (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
var kafkaMurmur2Vectors = []struct {
	key  string
	hash int32
}{
	{"21", -973932308},
	{"foobar", -790332482},
	{"a-little-bit-long-string", -985981536},
	{"a-little-bit-longer-string", -1486304829},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
	{"abc", 479470107},
}

func TestJavaMurmur2MatchesKafkaVectors(t *testing.T) {
	for _, v := range kafkaMurmur2Vectors {
		if got := javaMurmur2([]byte(v.key)); got != v.hash {
			t.Errorf("javaMurmur2(%q) = %d, Kafka's UtilsTest expects %d", v.key, got, v.hash)
		}
	}
}

// TestSinkPartitionsLikeJavaClient checks where keyed records land: on the
// partition the Java client would pick (murmur2), which is also franz-go's
// StickyKeyPartitioner(nil) choice.
func TestSinkPartitionsLikeJavaClient(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, c.ListenAddrs(), nil)

	var keys [][]byte
	for _, v := range kafkaMurmur2Vectors {
		keys = append(keys, []byte(v.key))
	}
	for i := range 150 {
		keys = append(keys, fmt.Appendf(nil, "anon-%d", i))
	}
	// Bytes >= 0x80 are negative Java bytes: the & 0xff must be right.
	keys = append(keys, []byte{0xff, 0x80, 0x7f, 0x00, 0xc3}, []byte("ü-ß-漢字"), bytes.Repeat([]byte{0xfe}, 37))
	// A zero-length but non-nil key is hashed, as Java hashes byte[0].
	keys = append(keys, []byte{})

	var recs []*buffer.Record
	for i, k := range keys {
		r := newRecord(t, "", fmt.Sprintf("v%d", i), false)
		r.Key = k
		recs = append(recs, r)
	}
	requireAllNil(t, sendAll(t, s, 1, recs).wait(waitTimeout))

	franz := kgo.StickyKeyPartitioner(nil).ForTopic(testTopic)
	landed := make(map[string]int32)
	for _, kr := range consume(t, c.ListenAddrs(), len(recs), testTopic) {
		landed[string(kr.Value)] = kr.Partition
	}
	used := make(map[int32]bool)
	for i, k := range keys {
		p, ok := landed[fmt.Sprintf("v%d", i)]
		if !ok {
			t.Fatalf("record %d (key %q) not consumed", i, k)
		}
		used[p] = true
		if want := javaPartition(javaMurmur2(k), testPartitions); p != want {
			t.Errorf("key %q landed on partition %d, the Java client picks %d", k, p, want)
		}
		if want := franz.Partition(&kgo.Record{Key: k}, testPartitions); int(p) != want {
			t.Errorf("key %q landed on partition %d, kgo.StickyKeyPartitioner(nil) picks %d", k, p, want)
		}
	}
	// Against the published Java hashes, with no murmur2 implementation in between.
	for _, v := range kafkaMurmur2Vectors {
		p := landed[fmt.Sprintf("v%d", indexOfKey(keys, v.key))]
		if want := javaPartition(v.hash, testPartitions); p != want {
			t.Errorf("key %q landed on partition %d; Kafka's murmur2 %d gives %d", v.key, p, v.hash, want)
		}
	}
	if len(used) != testPartitions {
		t.Errorf("%d keys used only partitions %v of %d", len(keys), used, testPartitions)
	}
}

func indexOfKey(keys [][]byte, key string) int {
	for i, k := range keys {
		if string(k) == key {
			return i
		}
	}
	return -1
}

// checkPerKeyOrder fails unless, for each key, the consumed values are
// seqValue(key, 0), seqValue(key, 1), ... in offset order, all on one partition.
func checkPerKeyOrder(t *testing.T, got []*kgo.Record, perKey map[string]int) {
	t.Helper()
	next := make(map[string]int)
	part := make(map[string]int32)
	lastOff := make(map[string]int64)
	for _, kr := range got {
		k := string(kr.Key)
		if p, ok := part[k]; ok {
			if p != kr.Partition {
				t.Fatalf("key %s on partitions %d and %d", k, p, kr.Partition)
			}
			if kr.Offset <= lastOff[k] {
				t.Fatalf("key %s: offset %d after %d in the fetched order", k, kr.Offset, lastOff[k])
			}
		}
		part[k], lastOff[k] = kr.Partition, kr.Offset
		if want := seqValue(k, next[k]); string(kr.Value) != want {
			t.Fatalf("key %s: record at offset %d is %q, want %q (send order broken)", k, kr.Offset, kr.Value, want)
		}
		next[k]++
	}
	for k, n := range perKey {
		if next[k] != n {
			t.Errorf("key %s: %d records consumed, want %d", k, next[k], n)
		}
	}
}

// interleavedRecords is n records round-robin over keys, each value the
// key's own sequence number.
func interleavedRecords(t *testing.T, keys []string, n int) ([]*buffer.Record, map[string]int) {
	perKey := make(map[string]int)
	recs := make([]*buffer.Record, 0, n)
	for i := range n {
		// A skewed pattern, so batches hold uneven runs per key.
		k := keys[(i*i+i/3)%len(keys)]
		recs = append(recs, newRecord(t, k, seqValue(k, perKey[k]), false))
		perKey[k]++
	}
	return recs, perKey
}

func TestSinkPreservesPerKeyOrder(t *testing.T) {
	c := newCluster(t)
	// A short linger and small batches make many produce requests in flight.
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Linger = time.Millisecond })
	recs, perKey := interleavedRecords(t, []string{"alice", "bob", "carol", "dave"}, 4000)
	requireAllNil(t, sendAll(t, s, 1, recs).wait(waitTimeout))
	checkPerKeyOrder(t, consume(t, c.ListenAddrs(), len(recs), testTopic), perKey)
}

// produceError answers every partition of a produce request with code.
func produceError(kreq kmsg.Request, code *kerr.Error) kmsg.Response {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code.Code
			sp.BaseOffset = -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// TestSinkRetriesThroughProduceOutage fails the first produce requests with
// a retriable error and checks franz-go retries: no record is failed while
// Kafka is down, every record is acknowledged once it is back, none is lost
// or duplicated, and per-key order holds across the retries.
func TestSinkRetriesThroughProduceOutage(t *testing.T) {
	// franz-go retries a batch that failed with a retriable error after a
	// metadata refresh, which MetadataMinAge (5s by default) rate-limits:
	// each round of failures costs about 5s, so keep the outage short.
	const failures = 4
	c := newCluster(t)
	recs, perKey := interleavedRecords(t, []string{"k1", "k2", "k3", "k4", "k5"}, 600)
	idx := make([]uint64, len(recs))
	for i := range idx {
		idx[i] = uint64(i) + 1
	}
	a := newAcks(t, idx)

	var failed atomic.Int32
	outageOver := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		n := failed.Add(1)
		if settled := a.count(); settled != 0 {
			t.Errorf("%d records settled during the outage (before failure %d)", settled, n)
		}
		// KeepControl is sticky and DropControl overrides it: keep the
		// control for the first failures, drop it with the last.
		c.KeepControl()
		if n == failures {
			c.DropControl()
			close(outageOver)
		}
		return produceError(kreq, kerr.NotEnoughReplicas), nil, true
	})

	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Linger = time.Millisecond })
	for i, r := range recs {
		s.Send(idx[i], r, a.done)
	}

	select {
	case <-outageOver:
	case <-time.After(waitTimeout):
		t.Fatalf("only %d of %d produce requests were failed", failed.Load(), failures)
	}
	requireAllNil(t, a.wait(waitTimeout))
	checkPerKeyOrder(t, consume(t, c.ListenAddrs(), len(recs), testTopic), perKey)
}

// TestSinkCloseFailsInFlightRecords closes the sink while every produce fails:
// Close must give up at its deadline and every callback must get an error,
// not hang (the records are still in the WAL).
func TestSinkCloseFailsInFlightRecords(t *testing.T) {
	c := newCluster(t)
	outage := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
	defer outage.Remove()

	s := newSink(t, c.ListenAddrs(), nil)
	var recs []*buffer.Record
	for i := range 200 {
		recs = append(recs, newRecord(t, fmt.Sprintf("k%d", i%13), fmt.Sprintf("v%d", i), i%10 == 0))
	}
	a := sendAll(t, s, 1, recs)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := outage.Wait(ctx, 3); err != nil {
		t.Fatalf("produce was never attempted: %v", err)
	}
	if n := a.count(); n != 0 {
		t.Fatalf("%d records settled while every produce fails", n)
	}

	const deadline = 500 * time.Millisecond
	closeCtx, closeCancel := context.WithTimeout(context.Background(), deadline)
	defer closeCancel()
	start := time.Now()
	err := s.Close(closeCtx)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	// Flush gives up at the deadline; closing the client after it is quick.
	if elapsed > deadline+3*time.Second {
		t.Errorf("Close took %v with a %v deadline", elapsed, deadline)
	}

	errs := a.wait(5 * time.Second)
	kinds := make(map[string]int)
	for i, err := range errs {
		if err == nil {
			t.Errorf("index %d was acknowledged although every produce failed", i)
			continue
		}
		kinds[err.Error()]++
	}
	t.Logf("Close returned after %v: %v; callback errors: %v", elapsed, err, kinds)
	if !errors.Is(errs[1], kgo.ErrClientClosed) {
		t.Errorf("callback error %v, want kgo.ErrClientClosed", errs[1])
	}
}

// TestSinkCloseFlushesBufferedRecords checks Close waits for buffered
// records: by the time it returns nil every callback has run with nil.
func TestSinkCloseFlushesBufferedRecords(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Linger = time.Second })
	var recs []*buffer.Record
	for i := range 500 {
		recs = append(recs, newRecord(t, fmt.Sprintf("k%d", i%17), fmt.Sprintf("v%d", i), false))
	}
	a := sendAll(t, s, 1, recs)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := a.count(); n != len(recs) {
		t.Fatalf("Close returned with %d of %d callbacks run", n, len(recs))
	}
	requireAllNil(t, a.wait(time.Second))
	consume(t, c.ListenAddrs(), len(recs), testTopic)

	// A Send after Close still settles its record exactly once, with an error.
	late := newAcks(t, []uint64{1000})
	s.Send(1000, newRecord(t, "k", "late", false), late.done)
	if err := late.wait(5 * time.Second)[1000]; err == nil {
		t.Errorf("Send after Close acknowledged the record")
	}
}

func TestSinkCloseIdleReturnsNil(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, c.ListenAddrs(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestSinkPingUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	s := newSink(t, []string{addr}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Ping(ctx); err == nil {
		t.Fatalf("Ping of %s with nothing listening succeeded", addr)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no brokers", Config{}, "no brokers"},
		{"empty broker list", Config{Brokers: []string{}}, "no brokers"},
		{"bad compression", Config{Brokers: []string{"127.0.0.1:9092"}, Compression: "brotli"}, `unknown compression "brotli"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = discardLogger()
			s, err := New(tc.cfg)
			if err == nil {
				s.Close(context.Background())
				t.Fatalf("New(%+v) succeeded", tc.cfg)
			}
			if s != nil {
				t.Errorf("New returned a sink with error %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestCompressionCodec(t *testing.T) {
	for _, tc := range []struct {
		name string
		want kgo.CompressionCodec
	}{
		{"zstd", kgo.ZstdCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"snappy", kgo.SnappyCompression()},
		{"gzip", kgo.GzipCompression()},
		{"none", kgo.NoCompression()},
		{"ZSTD", kgo.ZstdCompression()},
		{"Gzip", kgo.GzipCompression()},
	} {
		got, err := CompressionCodec(tc.name)
		if err != nil {
			t.Errorf("CompressionCodec(%q): %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("CompressionCodec(%q) = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	for _, name := range []string{"", "brotli", "zstd ", "lz-4", "snapy", "NONE!"} {
		got, err := CompressionCodec(name)
		if err == nil {
			t.Errorf("CompressionCodec(%q) = %+v, want an error", name, got)
			continue
		}
		if !strings.Contains(err.Error(), strconv.Quote(name)) {
			t.Errorf("CompressionCodec(%q) error %q does not name the value", name, err)
		}
	}
}

// TestSinkAppliesCompression checks the configured codec is the one the
// batches carry (Kafka's attribute codes: none 0, gzip 1, snappy 2, lz4 3,
// zstd 4), and that the empty default is lz4.
func TestSinkAppliesCompression(t *testing.T) {
	c := newCluster(t)
	want := map[string]uint8{"": 3, "zstd": 4, "lz4": 3, "LZ4": 3, "snappy": 2, "gzip": 1, "none": 0}
	for name := range want {
		s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Compression = name })
		// Very compressible, so franz-go keeps the compressed form.
		rec := newRecord(t, "codec="+name, strings.Repeat("beacon ", 200), false)
		requireAllNil(t, sendAll(t, s, 1, []*buffer.Record{rec}).wait(waitTimeout))
	}
	for _, kr := range consume(t, c.ListenAddrs(), len(want), testTopic) {
		name := strings.TrimPrefix(string(kr.Key), "codec=")
		if got := kr.Attrs.CompressionType(); got != want[name] {
			t.Errorf("Compression %q: batch codec %d, want %d", name, got, want[name])
		}
	}
}

func TestSinkRegistersClientMetrics(t *testing.T) {
	c := newCluster(t)
	reg := prometheus.NewRegistry()
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Registerer = reg })
	requireAllNil(t, sendAll(t, s, 1, []*buffer.Record{newRecord(t, "k", "v", false)}).wait(waitTimeout))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var written float64
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		if mf.GetName() == "sluice_kafka_client_write_bytes_total" {
			for _, m := range mf.GetMetric() {
				written += m.GetCounter().GetValue()
			}
		}
	}
	if written == 0 {
		t.Errorf("sluice_kafka_client_write_bytes_total is 0 or missing among %v", names)
	}
	// Closing unregisters the client's metrics, so a new sink can use the
	// same registry (a second registration would panic in promauto).
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Registerer = reg })
}

// TestSinkOversizeRecordFailsFast documents what happens to a record larger
// than franz-go's default batch limit (1000012 bytes, Kafka's default
// max.message.bytes): its callback fails at once with MESSAGE_TOO_LARGE, a
// non-retriable error, while records after it still ship.
func TestSinkOversizeRecordFailsFast(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, c.ListenAddrs(), nil)
	big := newRecord(t, "k", strings.Repeat("x", 1000100), false)
	small := newRecord(t, "k", "small", false)
	errs := sendAll(t, s, 1, []*buffer.Record{big, small}).wait(waitTimeout)
	if !errors.Is(errs[1], kerr.MessageTooLarge) {
		t.Errorf("oversize record: done error %v, want MESSAGE_TOO_LARGE", errs[1])
	}
	if errs[2] != nil {
		t.Errorf("record after the oversize one: %v", errs[2])
	}
	consume(t, c.ListenAddrs(), 1, testTopic)
}
