package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluice-gateway/sluice/buffer"
	"github.com/sluice-gateway/sluice/buffer/kafka"
	"github.com/sluice-gateway/sluice/enrich"
	"github.com/sluice-gateway/sluice/gateway"
)

type serveConfig struct {
	listen, adminListen string
	dataDir             string
	maxBodyBytes        int
	maxEventBytes       int
	maxBatchEvents      int
	maxHeaderBytes      int
	ack                 string
	ackTimeout          time.Duration
	trustedProxies      string
	corsOrigins         string
	writeKeys           string
	rateLimit           float64
	readTimeout         time.Duration
	writeTimeout        time.Duration
	idleTimeout         time.Duration
	maxConns            int
	maxConnsPerIP       int
	rateBurst           int
	ipAnonymize         string
	ipHashSaltFile      string
	workers, intakeSize int

	kafkaBrokers        string
	embeddedKafkaListen string
	topic, dlqTopic     string
	compression         string
	clientID            string
	linger              time.Duration
	metadataMaxAge      time.Duration
	kafka               kafkaFlags

	bufferMaxBytes  byteSize
	bufferSoftBytes byteSize // 0: 80 % of bufferMaxBytes
	bufferWhenFull  string
	walLinger       time.Duration

	checkpointInterval time.Duration
	catchUpRate        float64
	shipMaxInFlight    int
	drainTimeout       time.Duration
	shutdownDelay      time.Duration
	logLevel           string
	logFormat          string
	pprof              bool
}

func serveFlags(c *serveConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", ":8080", "public HTTP address")
	fs.StringVar(&c.adminListen, "admin-listen", ":9090", "admin HTTP address: /metrics, /healthz, /readyz")
	fs.StringVar(&c.dataDir, "data-dir", "./data", "directory for the write-ahead buffer (wal/) and the embedded broker (kafka/)")
	fs.IntVar(&c.maxBodyBytes, "max-body-bytes", 1<<20, "largest request body accepted; larger ones get 413")
	fs.IntVar(&c.maxEventBytes, "max-event-bytes", 64<<10, "largest single event; larger ones go to the dead-letter topic, truncated")
	fs.IntVar(&c.maxBatchEvents, "max-batch-events", 1000, "most events in one request; more get 413")
	fs.IntVar(&c.maxHeaderBytes, "max-header-bytes", 16<<10, "largest request line plus headers (cookies included); larger get 431")
	fs.StringVar(&c.ack, "ack", "disk", "when a client gets its 2xx: disk (after fsync) or enqueue (after validation; a crash can lose the last milliseconds)")
	fs.DurationVar(&c.ackTimeout, "ack-timeout", 10*time.Second, "longest a request waits for its WAL write before it gets 503")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed")
	fs.DurationVar(&c.readTimeout, "read-timeout", 10*time.Second, "longest a client may take to send a whole request, headers and body (slow clients are cut off)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 10*time.Second, "longest writing an answer may take")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 60*time.Second, "how long an idle keep-alive connection stays open")
	fs.IntVar(&c.maxConns, "max-conns", 262144, "most open public connections; more are refused")
	fs.IntVar(&c.maxConnsPerIP, "max-conns-per-ip", 0, "most connections from one peer address (0: no cap; behind a load balancer the peer is the balancer)")
	fs.Float64Var(&c.rateLimit, "rate-limit", 0, "requests per second allowed per client IP (beacons and pixels), over it 429 + Retry-After (0: no limit)")
	fs.IntVar(&c.rateBurst, "rate-limit-burst", 0, "requests a client may send at once above --rate-limit (0: twice the rate, at least 10)")
	fs.StringVar(&c.writeKeys, "write-keys", "", `file of "key source-name" lines; when set, every beacon and pixel needs a known key (Basic auth user, X-Write-Key or ?key=) and its source is recorded`)
	fs.StringVar(&c.corsOrigins, "cors-origins", "", "comma-separated origins whose pages may read answers: https://shop.example.com or https://*.example.com (empty: any origin)")
	fs.StringVar(&c.ipAnonymize, "ip-anonymize", "none", "what of the client address is recorded: none, truncate (IPv4 /24, IPv6 /48) or hash (HMAC-SHA-256 with --ip-hash-salt-file)")
	fs.StringVar(&c.ipHashSaltFile, "ip-hash-salt-file", "", "file holding the secret salt (16 bytes or more) for --ip-anonymize=hash")
	fs.IntVar(&c.workers, "workers", 0, "enrichment workers (0: one per core)")
	fs.IntVar(&c.intakeSize, "intake-queue", 4096, "requests waiting for enrichment before new ones get 503")
	fs.StringVar(&c.kafkaBrokers, "kafka-brokers", "", "comma-separated Kafka brokers; empty starts the embedded development broker")
	fs.StringVar(&c.embeddedKafkaListen, "embedded-kafka-listen", "127.0.0.1:9092", "address of the embedded broker (used without --kafka-brokers)")
	fs.StringVar(&c.topic, "topic", "beacons", "Kafka topic for events")
	fs.StringVar(&c.dlqTopic, "dlq-topic", "beacons-invalid", "Kafka topic for events that failed validation")
	fs.StringVar(&c.compression, "kafka-compression", "lz4", "producer compression: lz4, zstd (smaller, ~4x the CPU), snappy, gzip or none")
	fs.StringVar(&c.clientID, "kafka-client-id", "sluice", "Kafka client id")
	fs.DurationVar(&c.linger, "kafka-linger", 5*time.Millisecond, "how long the producer waits to fill a batch (0: no wait)")
	fs.DurationVar(&c.metadataMaxAge, "kafka-metadata-max-age", time.Minute, "how often the producer refreshes cluster metadata unprompted: the longest before new partitions get records")
	c.kafka.register(fs)
	c.bufferMaxBytes = 10 << 30
	fs.Var(&c.bufferMaxBytes, "buffer-max-bytes", "hard limit of the write-ahead buffer on disk (e.g. 10GiB, 500MB); at it --buffer-when-full applies")
	fs.Var(&c.bufferSoftBytes, "buffer-soft-bytes", "soft limit: past it clients that can retry get 503 + Retry-After while pixels and sendBeacon are still accepted (default 80% of --buffer-max-bytes)")
	fs.StringVar(&c.bufferWhenFull, "buffer-when-full", "reject", "at the hard limit or on a full disk: reject (503 + Retry-After) or drop-newest (202, events dropped and counted)")
	fs.DurationVar(&c.walLinger, "wal-linger", 200*time.Microsecond, "while the disk is busy, how long a group commit waits for more records (0: never; an idle writer never waits)")
	fs.IntVar(&c.shipMaxInFlight, "ship-max-in-flight", 4096, "most records handed to the Kafka producer and not yet acknowledged (what it holds while Kafka is slow or down)")
	fs.Float64Var(&c.catchUpRate, "ship-catchup-rate", 50000, "most records per second read back from the WAL to catch up after an outage, so catching up leaves CPU for live requests (0: no cap)")
	fs.DurationVar(&c.checkpointInterval, "checkpoint-interval", time.Second, "most often the shipped position is persisted; bounds duplicates after a crash")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "at shutdown, longest wait for the buffer to drain to Kafka (the rest ships on the next start)")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 0, "at shutdown, time between /readyz failing and the listener closing (set ~5s behind a load balancer)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&c.pprof, "pprof", false, "serve /debug/pprof on the admin port")
	return fs
}

// validate checks everything that can be checked before opening anything.
func (c *serveConfig) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	for name, addr := range map[string]string{"--listen": c.listen, "--admin-listen": c.adminListen, "--embedded-kafka-listen": c.embeddedKafkaListen} {
		_, _, err := net.SplitHostPort(addr)
		check(err == nil, "%s %q: want host:port", name, addr)
	}
	// Port 0 asks the kernel for a free port, so two port-0 addresses never collide.
	_, port, _ := net.SplitHostPort(c.listen)
	check(c.listen != c.adminListen || port == "0", "--listen and --admin-listen must differ (the admin port is never the public one)")
	check(c.dataDir != "", "--data-dir must not be empty")
	check(c.maxBodyBytes > 0, "--max-body-bytes must be positive, got %d", c.maxBodyBytes)
	// Kafka's default message.max.bytes is about 1 MB; the envelope adds the
	// request context to the event.
	check(c.maxEventBytes > 0 && c.maxEventBytes <= 512<<10, "--max-event-bytes must be between 1 and 524288, got %d", c.maxEventBytes)
	_, err := gateway.ParseAckMode(c.ack)
	check(err == nil, "--ack: %v", err)
	check(c.ackTimeout > 0, "--ack-timeout must be positive")
	check(c.maxBatchEvents > 0, "--max-batch-events must be positive, got %d", c.maxBatchEvents)
	check(c.maxHeaderBytes >= 4096, "--max-header-bytes must be at least 4096, got %d", c.maxHeaderBytes)
	_, err = enrich.ParseTrustedProxies(c.trustedProxies)
	check(err == nil, "--trusted-proxies: %v", err)
	check(c.rateLimit >= 0, "--rate-limit must not be negative")
	check(c.readTimeout > 0 && c.writeTimeout > 0 && c.idleTimeout > 0, "--read-timeout, --write-timeout and --idle-timeout must be positive")
	check(c.maxConns > 0, "--max-conns must be positive")
	check(c.maxConnsPerIP >= 0, "--max-conns-per-ip must not be negative")
	check(c.rateBurst >= 0, "--rate-limit-burst must not be negative")
	if c.writeKeys != "" {
		_, err = gateway.LoadWriteKeys(c.writeKeys)
		check(err == nil, "--write-keys: %v", err)
	}
	err = gateway.ValidateCORSOrigins(splitList(c.corsOrigins))
	check(err == nil, "--cors-origins: %v", err)
	_, err = c.ipAnonymizer()
	check(err == nil, "%v", err)
	check(c.workers >= 0, "--workers must not be negative")
	check(c.intakeSize > 0, "--intake-queue must be positive")
	check(c.topic != "" && c.dlqTopic != "", "--topic and --dlq-topic must not be empty")
	check(c.topic != c.dlqTopic, "--topic and --dlq-topic must differ")
	_, err = kafka.CompressionCodec(c.compression)
	check(err == nil, "--kafka-compression: %v", err)
	check(c.linger >= 0, "--kafka-linger must not be negative")
	check(c.metadataMaxAge >= time.Second, "--kafka-metadata-max-age must be at least 1s, got %v", c.metadataMaxAge)
	check(c.bufferMaxBytes >= 64<<20, "--buffer-max-bytes must be at least 64MiB, got %s", c.bufferMaxBytes)
	check(c.bufferSoftBytes <= c.bufferMaxBytes, "--buffer-soft-bytes (%s) must not exceed --buffer-max-bytes (%s)", c.bufferSoftBytes, c.bufferMaxBytes)
	_, err = gateway.ParseWhenFull(c.bufferWhenFull)
	check(err == nil, "--buffer-when-full: %v", err)
	check(c.walLinger >= 0 && c.walLinger <= 10*time.Millisecond, "--wal-linger must be between 0 and 10ms, got %v", c.walLinger)
	check(c.checkpointInterval > 0, "--checkpoint-interval must be positive")
	check(c.catchUpRate >= 0, "--ship-catchup-rate must not be negative")
	// The producer buffers at most 20 000 records (kafka.Config.MaxBufferedRecords):
	// more in flight would block the shipper inside Send.
	check(c.shipMaxInFlight >= 1 && c.shipMaxInFlight <= 16384, "--ship-max-in-flight must be between 1 and 16384, got %d", c.shipMaxInFlight)
	check(c.drainTimeout >= 0, "--drain-timeout must not be negative")
	check(c.shutdownDelay >= 0, "--shutdown-delay must not be negative")
	_, err = parseLevel(c.logLevel)
	check(err == nil, "--log-level: %v", err)
	check(c.logFormat == "text" || c.logFormat == "json", "--log-format %q: want text or json", c.logFormat)
	for _, b := range splitList(c.kafkaBrokers) {
		_, _, err := net.SplitHostPort(b)
		check(err == nil, "--kafka-brokers: %q is not host:port", b)
	}
	c.validateKafka(check)
	return errors.Join(errs...)
}

// ipAnonymizer builds --ip-anonymize, reading the salt file for hash.
func (c *serveConfig) ipAnonymizer() (enrich.IPAnonymizer, error) {
	var salt []byte
	if c.ipHashSaltFile != "" {
		b, err := os.ReadFile(c.ipHashSaltFile)
		if err != nil {
			return enrich.IPAnonymizer{}, fmt.Errorf("--ip-hash-salt-file: %w", err)
		}
		salt = bytes.TrimSpace(b)
	}
	z, err := enrich.NewIPAnonymizer(c.ipAnonymize, salt)
	if err != nil {
		return z, fmt.Errorf("--ip-anonymize: %w", err)
	}
	return z, nil
}

// softBytes is --buffer-soft-bytes, defaulting to 80 % of the hard limit.
func (c *serveConfig) softBytes() int64 {
	if c.bufferSoftBytes > 0 {
		return int64(c.bufferSoftBytes)
	}
	return int64(c.bufferMaxBytes) / 5 * 4
}

// byteSize is a flag holding a size such as 10GiB, 500MB or 1048576.
type byteSize int64

// String is the size in binary units when they are exact (10 GiB), else in
// bytes: a rounded "977 KiB" would misstate 1000012.
func (b byteSize) String() string {
	s := humanize.IBytes(uint64(b))
	if n, err := humanize.ParseBytes(s); err != nil || n != uint64(b) {
		return strconv.FormatInt(int64(b), 10)
	}
	return s
}

func (b *byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > math.MaxInt64 {
		return fmt.Errorf("%q is not a size (want e.g. 10GiB, 500MB or a number of bytes)", s)
	}
	*b = byteSize(n)
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

func newLogger(c *serveConfig, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.logLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string) error {
	var c serveConfig
	if err := parseFlags(serveFlags(&c), args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return configError{err}
	}
	if err := c.validate(); err != nil {
		return configError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return runServe(ctx, &c, newLogger(&c, os.Stderr))
}

// runServe runs the gateway until ctx ends, then shuts it down in the order
// that loses nothing: readiness, listener, intake, WAL writer, shipper, Kafka.
func runServe(ctx context.Context, c *serveConfig, log *slog.Logger) error {
	ack, _ := gateway.ParseAckMode(c.ack)
	proxies, _ := enrich.ParseTrustedProxies(c.trustedProxies)
	anonymizer, _ := c.ipAnonymizer()
	var writeKeys gateway.WriteKeys
	if c.writeKeys != "" {
		var err error
		if writeKeys, err = gateway.LoadWriteKeys(c.writeKeys); err != nil {
			return err // changed since validation
		}
	}
	if err := os.MkdirAll(c.dataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	instance, err := instanceID(c.dataDir, log)
	if err != nil {
		return err
	}
	log = log.With("instance", instance)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	buf, err := buffer.Open(buffer.Config{
		Dir: filepath.Join(c.dataDir, "wal"), MaxBytes: int64(c.bufferMaxBytes), Linger: c.walLinger,
		Logger: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	brokers := splitList(c.kafkaBrokers)
	var embedded *kafka.Embedded
	if len(brokers) == 0 {
		embedded, err = kafka.StartEmbedded(kafka.EmbeddedConfig{
			DataDir:    filepath.Join(c.dataDir, "kafka"),
			Listen:     c.embeddedKafkaListen,
			Topics:     []string{c.topic, c.dlqTopic},
			Partitions: int32(c.kafka.topicPartitions),
			Logger:     log,
		})
		if err != nil {
			buf.Close()
			return err
		}
		brokers = embedded.Addrs()
	}
	for _, w := range c.kafkaWarnings() {
		log.Warn(w)
	}
	sinkCfg, err := c.sinkConfig(brokers, instance)
	if err != nil {
		closeAll(buf, embedded)
		return err
	}
	sinkCfg.Logger, sinkCfg.Registerer = log, reg
	sink, err := kafka.New(sinkCfg)
	if err != nil {
		closeAll(buf, embedded)
		return err
	}
	if embedded == nil { // the embedded broker made its topics itself
		if err := checkKafkaTopics(ctx, c, sink, log); err != nil {
			sink.Close(context.Background()) // nothing was produced: nothing to flush
			closeAll(buf, embedded)
			return err
		}
	}
	shipper := buffer.NewShipper(buf, sink, buffer.ShipperConfig{
		CheckpointInterval: c.checkpointInterval, Logger: log, Registerer: reg,
		DeadLetter: enrich.DeadLetterRecord, CatchUpRate: c.catchUpRate, MaxInFlight: c.shipMaxInFlight,
	})
	pipeline := enrich.New(buf, enrich.Config{
		Workers: c.workers, QueueSize: c.intakeSize, TrustedProxies: proxies, IP: anonymizer, Ledger: buf.Ledger(),
		Logger: log, Registerer: reg,
	})
	whenFull, _ := gateway.ParseWhenFull(c.bufferWhenFull)
	gw, err := gateway.New(gateway.Config{
		Listen: c.listen, AdminListen: c.adminListen, MaxBodyBytes: c.maxBodyBytes, MaxEventBytes: c.maxEventBytes,
		MaxBatchEvents: c.maxBatchEvents, MaxHeaderBytes: c.maxHeaderBytes,
		Ack: ack, AckTimeout: c.ackTimeout, Pprof: c.pprof, Logger: log, Registry: reg,
		CORSOrigins: splitList(c.corsOrigins), WriteKeys: writeKeys,
		RateLimit:   gateway.RateLimit{PerSecond: c.rateLimit, Burst: c.rateBurst, Proxies: proxies},
		ReadTimeout: c.readTimeout, WriteTimeout: c.writeTimeout, IdleTimeout: c.idleTimeout,
		MaxConns: c.maxConns, MaxConnsPerIP: c.maxConnsPerIP,
		Status: map[string]gateway.StatusSource{
			"sink":   gateway.StatusFunc(func() any { return shipper.Status() }),
			"buffer": gateway.StatusFunc(func() any { return shipper.BufferStatus() }),
		},
		Buffer: gateway.BufferLimits{
			Used: buf.DiskBytes, Soft: c.softBytes(), Hard: int64(c.bufferMaxBytes), WhenFull: whenFull,
		},
	}, pipeline)
	if err == nil {
		err = gw.Start()
	}
	if err != nil {
		pipeline.Close()
		// Kafka may be down with a backlog in flight: do not wait on it, the
		// WAL still has every record.
		flushCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		sink.Close(flushCtx)
		cancel()
		shipper.Close()
		closeAll(buf, embedded)
		return err
	}
	log.Info("sluice is serving", "brokers", strings.Join(brokers, ","), "kafka_tls", sinkCfg.TLS != nil,
		"kafka_sasl", sinkCfg.SASL, "data_dir", c.dataDir)

	<-ctx.Done()
	return shutdown(c, log, gw, pipeline, buf, shipper, sink, embedded)
}

// shutdown is the written sequence of DESIGN.md; each step logs its duration.
// A second signal cuts the drain short: what is left stays in the WAL.
func shutdown(c *serveConfig, log *slog.Logger, gw *gateway.Server, pipeline *enrich.Pipeline,
	buf *buffer.Buffer, shipper *buffer.Shipper, sink *kafka.Sink, embedded *kafka.Embedded) error {
	begin := time.Now()
	step := func(name string, t0 time.Time, args ...any) {
		log.Info("shutdown: "+name, append([]any{"took", time.Since(t0).Round(time.Microsecond)}, args...)...)
	}
	// A second signal cuts every wait short; each wait also has its own bound.
	again, stopAgain := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopAgain()

	t := time.Now()
	gw.SetReady(false)
	if c.shutdownDelay > 0 {
		select { // lets load balancers see /readyz fail before the listener closes
		case <-time.After(c.shutdownDelay):
		case <-again.Done():
		}
	}
	step("readiness false", t)

	var errs []error
	t = time.Now()
	// In-flight requests end within their WAL wait (--ack-timeout) plus the
	// time to write the answer.
	listenerCtx, cancelListener := context.WithTimeout(again, c.ackTimeout+5*time.Second)
	listenerErr := gw.Shutdown(listenerCtx)
	cancelListener()
	if listenerErr != nil {
		// Cut short by a second signal: requests still in flight get 503
		// from the closed intake; nothing acknowledged is lost.
		log.Warn("shutdown: listener wait cut short", "err", listenerErr)
		step("listener closed, in-flight requests cut short", t)
	} else {
		step("listener closed, in-flight requests finished", t)
	}

	t = time.Now()
	pipeline.Close()
	buf.StopWrites()
	step("intake drained into the WAL", t, "last_index", buf.LastIndex())

	t = time.Now()
	drainCtx, cancelDrain := context.WithTimeout(again, c.drainTimeout)
	defer cancelDrain()
	if err := shipper.Drain(drainCtx); err != nil {
		log.Warn("shutdown: drain incomplete; the rest ships on the next start", "err", err)
	}
	step("shipper drained", t, "acked_index", shipper.AckedIndex(), "backlog", shipper.Backlog())

	// The producer flushes before the shipper saves its checkpoint, so
	// records Kafka acknowledges in the flush are not re-sent next start.
	t = time.Now()
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := sink.Close(flushCtx); err != nil {
		log.Warn("shutdown: kafka producer", "err", err)
	}
	cancel()
	shipper.Close()
	step("kafka producer closed, checkpoint saved", t, "acked_index", shipper.AckedIndex())

	t = time.Now()
	if err := buf.Close(); err != nil {
		errs = append(errs, err)
	}
	if embedded != nil {
		embedded.Close()
	}
	adminCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	// Close repeats Shutdown's error, which was handled above: a cut-short
	// wait is not a failed shutdown and must not turn the exit status to 1.
	if err := gw.Close(adminCtx); err != nil && err != listenerErr {
		errs = append(errs, err)
	}
	cancel()
	step("wal and admin closed", t)
	log.Info("shutdown complete", "took", time.Since(begin).Round(time.Millisecond))
	return errors.Join(errs...)
}

func closeAll(buf *buffer.Buffer, embedded *kafka.Embedded) {
	if embedded != nil {
		embedded.Close()
	}
	buf.Close()
}

// instanceID is this gateway's stable identity, stored in the data dir so it
// survives restarts; it is written in every record's headers. The file is
// made durable (file and directory fsync); an empty or damaged one, which
// only a crash during the very first start can leave, is replaced with a
// warning rather than stopping the gateway.
func instanceID(dataDir string, log *slog.Logger) (string, error) {
	path := filepath.Join(dataDir, "instance-id")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if _, perr := uuid.Parse(id); perr == nil {
			return id, nil
		}
		log.Warn("instance id file is damaged; writing a new id", "path", path, "content", id)
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read instance id: %w", err)
	}
	id := uuid.NewString()
	if err := writeFileDurably(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("write instance id: %w", err)
	}
	return id, nil
}

// writeFileDurably writes path through a temp file, fsync, rename and an
// fsync of the directory.
func writeFileDurably(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
