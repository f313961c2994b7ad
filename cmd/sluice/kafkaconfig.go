package main

// The production Kafka flags of serve: TLS, SASL, batch size and the
// startup topic check.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice/buffer/kafka"
)

type kafkaFlags struct {
	tls                   bool
	tlsCA                 string
	tlsCert, tlsKey       string
	tlsServerName         string
	tlsInsecureSkipVerify bool

	saslMechanism    string
	saslUsername     string
	saslPassword     string
	saslPasswordFile string

	batchMaxBytes byteSize

	createTopics      bool
	topicPartitions   int
	topicReplication  int
	checkTopicTimeout time.Duration
}

func (k *kafkaFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&k.tls, "kafka-tls", false, "connect to the brokers with TLS")
	fs.StringVar(&k.tlsCA, "kafka-tls-ca", "", "PEM file of the CA certificates that sign the brokers' (default: the system's roots)")
	fs.StringVar(&k.tlsCert, "kafka-tls-cert", "", "PEM client certificate, with --kafka-tls-key, for brokers that require mutual TLS")
	fs.StringVar(&k.tlsKey, "kafka-tls-key", "", "PEM private key of --kafka-tls-cert")
	fs.StringVar(&k.tlsServerName, "kafka-tls-server-name", "", "name checked against the brokers' certificates instead of each broker's host")
	fs.BoolVar(&k.tlsInsecureSkipVerify, "kafka-tls-insecure-skip-verify", false, "accept any broker certificate: anyone on the path can impersonate the brokers (tests only)")
	fs.StringVar(&k.saslMechanism, "kafka-sasl-mechanism", "", "SASL authentication: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: none)")
	fs.StringVar(&k.saslUsername, "kafka-sasl-username", "", "SASL user name")
	fs.StringVar(&k.saslPassword, "kafka-sasl-password", "", "SASL password; prefer --kafka-sasl-password-file, since a command-line value shows in ps")
	fs.StringVar(&k.saslPasswordFile, "kafka-sasl-password-file", "", "file holding the SASL password (a trailing newline is ignored)")
	k.batchMaxBytes = kafka.DefaultBatchMaxBytes
	fs.Var(&k.batchMaxBytes, "kafka-batch-max-bytes", "largest producer batch before compression (like the topic's max.message.bytes)")
	fs.BoolVar(&k.createTopics, "kafka-create-topics", true, "at start, create --topic and --dlq-topic if they are missing")
	fs.IntVar(&k.topicPartitions, "kafka-topic-partitions", 6, "partitions of the topics Sluice creates, on the embedded broker too (-1: the brokers' num.partitions)")
	fs.IntVar(&k.topicReplication, "kafka-topic-replication", -1, "replication factor of the topics Sluice creates (-1: the brokers' default.replication.factor)")
	fs.DurationVar(&k.checkTopicTimeout, "kafka-check-timeout", 10*time.Second,
		"at start, longest wait for the brokers to answer the topic check; without an answer Sluice serves anyway and the buffer holds the events")
}

// namedFlag is a flag's name and whether it was given a value.
type namedFlag struct {
	name string
	set  bool
}

// tlsOptions are the TLS flags that only mean something with --kafka-tls.
func (k *kafkaFlags) tlsOptions() []namedFlag {
	return []namedFlag{
		{"--kafka-tls-ca", k.tlsCA != ""},
		{"--kafka-tls-cert", k.tlsCert != ""},
		{"--kafka-tls-key", k.tlsKey != ""},
		{"--kafka-tls-server-name", k.tlsServerName != ""},
		{"--kafka-tls-insecure-skip-verify", k.tlsInsecureSkipVerify},
	}
}

// saslOptions are the SASL flags that only mean something with a mechanism.
func (k *kafkaFlags) saslOptions() []namedFlag {
	return []namedFlag{
		{"--kafka-sasl-username", k.saslUsername != ""},
		{"--kafka-sasl-password", k.saslPassword != ""},
		{"--kafka-sasl-password-file", k.saslPasswordFile != ""},
	}
}

// validateKafka checks the Kafka flags, reading the certificate, key and
// password files, so a typo stops the start instead of every connection.
func (c *serveConfig) validateKafka(check func(bool, string, ...any)) {
	k := &c.kafka
	if len(splitList(c.kafkaBrokers)) == 0 {
		// The embedded broker is plaintext without authentication: security
		// flags meant for a real cluster would silently do nothing.
		security := append([]namedFlag{{"--kafka-tls", k.tls}, {"--kafka-sasl-mechanism", k.saslMechanism != ""}},
			append(k.tlsOptions(), k.saslOptions()...)...)
		for _, f := range security {
			check(!f.set, "%s needs --kafka-brokers: the embedded development broker has no TLS or SASL", f.name)
		}
	}
	k.validateTLS(check)
	k.validateSASL(check)
	check(k.batchMaxBytes >= c.minBatchMaxBytes() && k.batchMaxBytes <= maxBatchMaxBytes,
		"--kafka-batch-max-bytes must be between %d (the largest event with its envelope: --max-event-bytes + 2 × --max-header-bytes + 4KiB) and %d, got %d",
		c.minBatchMaxBytes(), int64(maxBatchMaxBytes), int64(k.batchMaxBytes))
	check(k.topicPartitions == -1 || (k.topicPartitions >= 1 && k.topicPartitions <= math.MaxInt32),
		"--kafka-topic-partitions must be -1 (the brokers' default) or positive, got %d", k.topicPartitions)
	check(k.topicReplication == -1 || (k.topicReplication >= 1 && k.topicReplication <= math.MaxInt16),
		"--kafka-topic-replication must be -1 (the brokers' default) or between 1 and %d, got %d", math.MaxInt16, k.topicReplication)
	check(k.checkTopicTimeout > 0, "--kafka-check-timeout must be positive")
}

// maxBatchMaxBytes is franz-go's largest request (BrokerMaxWriteBytes'
// default): a batch must fit in one produce request.
const maxBatchMaxBytes byteSize = 100 << 20

// minBatchMaxBytes is the smallest batch that holds the largest event in its
// envelope (payload, user agent raw and parsed, referer, origin, ids). A
// record over the limit cannot be produced at all.
func (c *serveConfig) minBatchMaxBytes() byteSize {
	return byteSize(c.maxEventBytes + 2*c.maxHeaderBytes + 4<<10)
}

func (k *kafkaFlags) validateTLS(check func(bool, string, ...any)) {
	for _, f := range k.tlsOptions() {
		check(!f.set || k.tls, "%s needs --kafka-tls", f.name)
	}
	if k.tlsCA != "" {
		_, err := kafka.LoadCAPool(k.tlsCA)
		check(err == nil, "--kafka-tls-ca: %v", err)
	}
	switch {
	case k.tlsCert != "" && k.tlsKey == "":
		check(false, "--kafka-tls-cert needs --kafka-tls-key")
	case k.tlsKey != "" && k.tlsCert == "":
		check(false, "--kafka-tls-key needs --kafka-tls-cert")
	case k.tlsCert != "":
		_, err := kafka.LoadClientCert(k.tlsCert, k.tlsKey)
		check(err == nil, "--kafka-tls-cert/--kafka-tls-key: %v", err)
	}
}

func (k *kafkaFlags) validateSASL(check func(bool, string, ...any)) {
	if k.saslMechanism == "" {
		for _, f := range k.saslOptions() {
			check(!f.set, "%s needs --kafka-sasl-mechanism", f.name)
		}
		return
	}
	_, err := kafka.ParseSASLMechanism(k.saslMechanism)
	check(err == nil, "--kafka-sasl-mechanism: %v", err)
	check(k.saslUsername != "", "--kafka-sasl-mechanism needs --kafka-sasl-username")
	switch {
	case k.saslPassword != "" && k.saslPasswordFile != "":
		check(false, "--kafka-sasl-password and --kafka-sasl-password-file exclude each other")
	case k.saslPassword == "" && k.saslPasswordFile == "":
		check(false, "--kafka-sasl-mechanism needs --kafka-sasl-password-file (or --kafka-sasl-password)")
	case k.saslPasswordFile != "":
		_, err := readPasswordFile(k.saslPasswordFile)
		check(err == nil, "--kafka-sasl-password-file: %v", err)
	}
}

// readPasswordFile reads a secret file as written by editors, echo and
// Kubernetes secrets: one trailing line ending is not part of the password.
func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return pw, nil
}

// kafkaWarnings are the valid but risky settings, logged at start.
func (c *serveConfig) kafkaWarnings() []string {
	k := &c.kafka
	var w []string
	if k.tls && k.tlsInsecureSkipVerify {
		w = append(w, "--kafka-tls-insecure-skip-verify: broker certificates are NOT verified; anyone on the network path can impersonate the brokers and read the events and the credentials")
	}
	if mech, _ := kafka.ParseSASLMechanism(k.saslMechanism); mech == kafka.SASLPlain && !k.tls {
		w = append(w, "--kafka-sasl-mechanism=PLAIN without --kafka-tls sends the password in clear text")
	}
	return w
}

// sinkConfig is the producer's configuration from the flags (validated:
// errors here mean a file changed since).
func (c *serveConfig) sinkConfig(brokers []string, instance string) (kafka.Config, error) {
	cfg := kafka.Config{
		Brokers: brokers, Topic: c.topic, DLQTopic: c.dlqTopic, Compression: c.compression,
		ClientID: c.clientID, InstanceID: instance, Linger: c.linger,
		BatchMaxBytes: int32(c.kafka.batchMaxBytes), MetadataMaxAge: c.metadataMaxAge,
	}
	if c.linger == 0 {
		cfg.Linger = -1 // the Config's zero means its default; the flag's zero means no wait
	}
	k := &c.kafka
	if k.tls {
		tlsCfg, err := kafka.TLSFiles{
			CAFile: k.tlsCA, CertFile: k.tlsCert, KeyFile: k.tlsKey,
			ServerName: k.tlsServerName, InsecureSkipVerify: k.tlsInsecureSkipVerify,
		}.Config()
		if err != nil {
			return kafka.Config{}, fmt.Errorf("kafka TLS: %w", err)
		}
		cfg.TLS = tlsCfg
	}
	if k.saslMechanism != "" {
		mech, _ := kafka.ParseSASLMechanism(k.saslMechanism)
		cfg.SASL = kafka.SASL{Mechanism: mech, Username: k.saslUsername, Password: k.saslPassword}
		if k.saslPasswordFile != "" {
			pw, err := readPasswordFile(k.saslPasswordFile)
			if err != nil {
				return kafka.Config{}, fmt.Errorf("kafka SASL password: %w", err)
			}
			cfg.SASL.Password = pw
		}
	}
	return cfg, nil
}

// checkKafkaTopics runs the startup topic check within --kafka-check-timeout.
// Only a broker's definitive no stops the start (a missing topic it will not
// create, rejected credentials or certificates): Kafka being unreachable must
// not keep the gateway from accepting, since the write-ahead buffer holds
// the events until it is back (DESIGN.md: /readyz never fails because Kafka
// is down).
func checkKafkaTopics(ctx context.Context, c *serveConfig, sink *kafka.Sink, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, c.kafka.checkTopicTimeout)
	defer cancel()
	err := sink.CheckTopics(ctx, kafka.TopicCheck{
		Create:            c.kafka.createTopics,
		Partitions:        int32(c.kafka.topicPartitions),
		ReplicationFactor: int16(c.kafka.topicReplication),
	})
	switch {
	case err == nil:
		log.Info("kafka topics are ready", "topic", c.topic, "dlq_topic", c.dlqTopic)
		return nil
	case errors.Is(err, kafka.ErrRefused):
		return fmt.Errorf("kafka: %w", err)
	default:
		log.Warn("kafka: the topic check got no answer; serving anyway, the write-ahead buffer keeps the events until Kafka answers",
			"timeout", c.kafka.checkTopicTimeout.String(), "err", err)
		return nil
	}
}
