// Package kafka is the buffer's Kafka Sink (franz-go), the embedded
// development broker (kfake) and the tail consumer.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/sluice-gateway/sluice/buffer"
)

// Header keys every record carries. Together they let a consumer deduplicate
// (event id) and a recovering gateway find what already landed (instance and
// WAL index).
const (
	HeaderEventID  = "sluice-event-id"
	HeaderSchema   = "sluice-schema"
	HeaderInstance = "sluice-instance"
	HeaderWALIndex = "sluice-wal-index"
	// SchemaVersion is the envelope version written in HeaderSchema.
	SchemaVersion = "1"
)

// Config configures the Sink. The zero value of every field means its default.
type Config struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// Topic receives valid events. Default "beacons".
	Topic string
	// DLQTopic receives events that failed validation. Default "beacons-invalid".
	DLQTopic string
	// Compression is one of lz4, zstd, snappy, gzip, none. Default lz4: zstd
	// took 15 % of the gateway's CPU in profiles (lz4 3.5 %) on small batches.
	Compression string
	// ClientID names the producer to the brokers. Default "sluice".
	ClientID string
	// InstanceID identifies this gateway in HeaderInstance.
	InstanceID string
	// Linger is how long the producer waits to fill a batch. Default 5ms; a
	// negative value means no wait (zero already means the default).
	Linger time.Duration
	// BatchMaxBytes caps one producer batch before compression, like the
	// brokers' max.message.bytes; a record larger than it cannot be sent.
	// Default 1000012, Kafka's classic max.message.bytes.
	BatchMaxBytes int32
	// TLS, when set, encrypts the connections to the brokers (see TLSFiles).
	TLS *tls.Config
	// SASL authenticates to the brokers; the zero value means none.
	SASL SASL
	// MetadataMaxAge is how often the producer refreshes its view of the
	// cluster even when nothing failed: how long before records go to
	// partitions added to the topic. Default 1m (franz-go's and the Java
	// client's is 5m).
	MetadataMaxAge time.Duration
	// MaxBufferedRecords bounds records the producer holds; keep it above the
	// shipper's MaxInFlight so Send never blocks. Default 20000.
	MaxBufferedRecords int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the client's kprom metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = "beacons"
	}
	if c.DLQTopic == "" {
		c.DLQTopic = "beacons-invalid"
	}
	if c.Compression == "" {
		c.Compression = "lz4"
	}
	if c.ClientID == "" {
		c.ClientID = "sluice"
	}
	switch {
	case c.Linger == 0:
		c.Linger = 5 * time.Millisecond
	case c.Linger < 0:
		c.Linger = 0
	}
	if c.BatchMaxBytes <= 0 {
		c.BatchMaxBytes = DefaultBatchMaxBytes
	}
	if c.MaxBufferedRecords <= 0 {
		c.MaxBufferedRecords = 20000
	}
	if c.MetadataMaxAge <= 0 {
		c.MetadataMaxAge = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// DefaultBatchMaxBytes is Kafka's classic max.message.bytes (also
// franz-go's default): batches no larger fit any topic left at its default.
const DefaultBatchMaxBytes = 1000012

// CompressionCodec maps a --kafka-compression value to franz-go's codec.
func CompressionCodec(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("unknown compression %q (want zstd, lz4, snappy, gzip or none)", name)
}

// Sink produces buffer records to Kafka: acks=all, idempotent, keyed records
// partitioned like the Java client (murmur2), so other producers agree.
type Sink struct {
	cfg        Config
	client     *kgo.Client
	instance   []byte            // cfg.InstanceID, the header value every record shares
	partitions *partitionTracker // records in flight per partition, for the status page
	fence      *sendFence        // holds records back after a failure, for per-key order
}

// New creates the producer. It does not wait for the brokers: the WAL holds
// records until Kafka is reachable.
func New(cfg Config) (*Sink, error) {
	cfg.setDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka sink: no brokers")
	}
	compression, err := compressionOpt(cfg.Compression)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	opts, err := connectionOpts(cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	fence := newSendFence()
	opts = append(opts,
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		compression,
		kgo.ProducerLinger(cfg.Linger),
		kgo.ProducerBatchMaxBytes(cfg.BatchMaxBytes),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		kgo.MetadataMaxAge(cfg.MetadataMaxAge),
		// A nil hasher is Kafka's murmur2, the Java client's default.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		// franz-go's defaults already retry forever (no delivery timeout),
		// which is what a WAL-backed producer wants: a record is never dropped
		// because it waited too long.
		// The fence hears from franz-go's log when a batch failed: see sendFence.
		kgo.WithLogger(fenceLogger{kgoLogger{cfg.Logger.With("component", "kafka")}, fence}),
	)
	if cfg.Registerer != nil {
		opts = append(opts, kgo.WithHooks(kprom.NewMetrics("sluice_kafka_client", kprom.Registerer(cfg.Registerer))))
	}
	partitions := newPartitionTracker()
	opts = append(opts, kgo.WithHooks(partitions))
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	return &Sink{cfg: cfg, client: client, instance: []byte(cfg.InstanceID), partitions: partitions, fence: fence}, nil
}

// Send implements buffer.Sink. done gets the produce error wrapped in its
// buffer class (classifyProduceError): buffer.ErrRejected,
// buffer.ErrMisconfigured, buffer.ErrWithheld or buffer.ErrRetriable.
func (s *Sink) Send(index uint64, rec *buffer.Record, done func(uint64, error)) {
	fence, ok := s.fence.admit()
	if !ok {
		done(index, buffer.ErrWithheld)
		return
	}
	topic := s.cfg.Topic
	if rec.DeadLetter {
		topic = s.cfg.DLQTopic
	}
	// One allocation for the record, its headers and their variable values:
	// the per-record allocations were a visible share of the gateway's CPU.
	o := &outRecord{fence: fence}
	const n = 36 // a UUID's canonical length
	vals := appendUUID(o.buf[:0], uuid.UUID(rec.ID))
	vals = strconv.AppendUint(vals, index, 10)
	o.headers = [4]kgo.RecordHeader{
		{Key: HeaderEventID, Value: vals[:n:n]},
		{Key: HeaderSchema, Value: schemaBytes},
		{Key: HeaderInstance, Value: s.instance},
		{Key: HeaderWALIndex, Value: vals[n:]},
	}
	// The record's Context is o itself: franz-go cancels a batch not yet
	// written when its first record's context is done (the fence), and
	// hooks find o there without a lookup.
	o.kr = kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: o.headers[:], Context: o}
	s.client.Produce(context.Background(), &o.kr, func(_ *kgo.Record, err error) {
		s.partitions.answered(o)
		if err != nil && o.isCounted && !errors.Is(err, buffer.ErrWithheld) {
			// It failed from a partition's buffer, which franz-go fails
			// whole. A record failed before it was partitioned (too
			// large) failed alone: the records after it may go on.
			s.fence.raise()
		}
		done(index, classifyProduceError(err))
	})
}

// Resume implements buffer.Resumer: the shipper has taken every failure in
// and re-sends in WAL order from here.
func (s *Sink) Resume() { s.fence.resume() }

// outRecord is a record on its way to Kafka with room for its header values
// (a 36-byte UUID and up to 20 digits of WAL index). It is also the record's
// context.Context, done when the sink's fence rises (see sendFence).
type outRecord struct {
	kr        kgo.Record
	headers   [4]kgo.RecordHeader
	buf       [56]byte
	fence     <-chan struct{} // closed when the fence rises
	counted   topicPartition  // where partitionTracker counted it in flight
	isCounted bool
}

func (o *outRecord) Deadline() (time.Time, bool) { return time.Time{}, false }
func (o *outRecord) Done() <-chan struct{}       { return o.fence }
func (o *outRecord) Value(any) any               { return nil }
func (o *outRecord) Err() error {
	select {
	case <-o.fence:
		return buffer.ErrWithheld
	default:
		return nil
	}
}

var schemaBytes = []byte(SchemaVersion)

// appendUUID writes id in its canonical 8-4-4-4-12 form.
func appendUUID(dst []byte, id uuid.UUID) []byte {
	const hex = "0123456789abcdef"
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[b>>4], hex[b&0xf])
	}
	return dst
}

// Close flushes what it can within ctx and closes the client. Records not yet
// acknowledged fail their callbacks; they are still in the WAL.
func (s *Sink) Close(ctx context.Context) error {
	err := s.client.Flush(ctx)
	s.client.Close()
	if err != nil {
		return fmt.Errorf("flush kafka producer: %w", err)
	}
	return nil
}

// Ping checks that a broker answers, for the startup log.
func (s *Sink) Ping(ctx context.Context) error { return s.client.Ping(ctx) }

// kgoLogger adapts slog to franz-go's logger, at warn and above only: the
// client's info logs are per-connection chatter.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error(msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn(msg, keyvals...)
	default:
		k.l.Debug(msg, keyvals...)
	}
}
