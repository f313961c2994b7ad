package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-gateway/sluice/buffer/kafka"
	"github.com/sluice-gateway/sluice/buffer/kafka/kafkatest"
)

// parseServe parses args (after the SLUICE_* environment) and validates them
// as serve does, without starting anything.
func parseServe(t *testing.T, args ...string) (*serveConfig, error) {
	t.Helper()
	var c serveConfig
	fs := serveFlags(&c)
	fs.SetOutput(io.Discard)
	if err := parseFlags(fs, args); err != nil {
		return &c, configError{err}
	}
	if err := c.validate(); err != nil {
		return &c, configError{err}
	}
	return &c, nil
}

func TestServeConfigValidation(t *testing.T) {
	if _, err := parseServe(t); err != nil {
		t.Errorf("defaults: %v", err)
	}
	// Port 0 on both listeners asks for two free ports: no clash.
	if _, err := parseServe(t, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--embedded-kafka-listen", "127.0.0.1:0"); err != nil {
		t.Errorf("port 0 listeners: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string // the error names the flag
	}{
		{[]string{"--ack=maybe"}, `--ack: unknown ack mode "maybe"`},
		{[]string{"--kafka-compression=brotli"}, `--kafka-compression: unknown compression "brotli"`},
		{[]string{"--listen", "nonsense"}, `--listen "nonsense": want host:port`},
		{[]string{"--admin-listen", "9090"}, `--admin-listen "9090"`},
		{[]string{"--embedded-kafka-listen", "localhost"}, `--embedded-kafka-listen "localhost"`},
		{[]string{"--listen", ":8080", "--admin-listen", ":8080"}, "--listen and --admin-listen must differ"},
		{[]string{"--data-dir="}, "--data-dir must not be empty"},
		{[]string{"--max-body-bytes=0"}, "--max-body-bytes must be positive"},
		{[]string{"--max-event-bytes=0"}, "--max-event-bytes"},
		{[]string{"--ack-timeout=0s"}, "--ack-timeout must be positive"},
		{[]string{"--trusted-proxies=10.0.0.0/33"}, "--trusted-proxies"},
		{[]string{"--cors-origins=https://shop.example.com,example.org"}, `--cors-origins: CORS origin "example.org"`},
		{[]string{"--ip-anonymize=scramble"}, `--ip-anonymize: unknown ip anonymization "scramble"`},
		{[]string{"--ip-anonymize=hash"}, "--ip-anonymize: ip hashing needs a secret salt"},
		{[]string{"--ip-anonymize=hash", "--ip-hash-salt-file=/nonexistent/salt"}, "--ip-hash-salt-file: open /nonexistent/salt"},
		{[]string{"--buffer-max-bytes=10"}, "--buffer-max-bytes must be at least 64MiB"},
		{[]string{"--buffer-max-bytes=1GiB", "--buffer-soft-bytes=2GiB"}, "--buffer-soft-bytes (2.0 GiB) must not exceed --buffer-max-bytes (1.0 GiB)"},
		{[]string{"--buffer-max-bytes=lots"}, `"lots" is not a size`},
		{[]string{"--buffer-when-full=panic"}, `--buffer-when-full: unknown policy "panic"`},
		{[]string{"--wal-linger=1s"}, "--wal-linger must be between 0 and 10ms"},
		{[]string{"--ship-catchup-rate=-1"}, "--ship-catchup-rate must not be negative"},
		{[]string{"--ship-max-in-flight=0"}, "--ship-max-in-flight must be between 1 and 16384, got 0"},
		{[]string{"--ship-max-in-flight=20000"}, "--ship-max-in-flight must be between 1 and 16384, got 20000"},
		{[]string{"--rate-limit=-5"}, "--rate-limit must not be negative"},
		{[]string{"--read-timeout=0s"}, "--read-timeout, --write-timeout and --idle-timeout must be positive"},
		{[]string{"--max-conns=0"}, "--max-conns must be positive"},
		{[]string{"--max-conns-per-ip=-1"}, "--max-conns-per-ip must not be negative"},
		{[]string{"--rate-limit-burst=-1"}, "--rate-limit-burst must not be negative"},
		{[]string{"--write-keys=/nonexistent/keys"}, "--write-keys: write keys: open /nonexistent/keys"},
		{[]string{"--workers=-1"}, "--workers must not be negative"},
		{[]string{"--intake-queue=0"}, "--intake-queue must be positive"},
		{[]string{"--topic="}, "--topic and --dlq-topic must not be empty"},
		{[]string{"--dlq-topic=beacons"}, "--topic and --dlq-topic must differ"},
		{[]string{"--kafka-linger=-1ms"}, "--kafka-linger must not be negative"},
		{[]string{"--kafka-metadata-max-age=10ms"}, "--kafka-metadata-max-age must be at least 1s, got 10ms"},
		{[]string{"--checkpoint-interval=0s"}, "--checkpoint-interval must be positive"},
		{[]string{"--drain-timeout=-1s"}, "--drain-timeout must not be negative"},
		{[]string{"--shutdown-delay=-1s"}, "--shutdown-delay must not be negative"},
		{[]string{"--log-level=loud"}, "--log-level"},
		{[]string{"--log-format=xml"}, `--log-format "xml": want text or json`},
		{[]string{"--kafka-brokers=kafka1,kafka2:9092"}, `--kafka-brokers: "kafka1" is not host:port`},
		// Unparseable values fail in the flag package, which names the flag.
		{[]string{"--drain-timeout=soon"}, `invalid value "soon" for flag -drain-timeout`},
		{[]string{"--workers=many"}, `invalid value "many" for flag -workers`},
		{[]string{"--pprof=sometimes"}, `invalid boolean value "sometimes" for -pprof`},
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
	} {
		_, err := parseServe(t, tc.args...)
		var ce configError
		if !errors.As(err, &ce) {
			t.Errorf("%v: error %v, want a configError", tc.args, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %q does not contain %q", tc.args, err, tc.want)
		}
	}
	// Every problem is reported at once, not one per run.
	_, err := parseServe(t, "--ack=maybe", "--log-format=xml")
	if err == nil || !strings.Contains(err.Error(), "--ack") || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("two invalid flags: %v, want both named", err)
	}
}

func TestServeConfigEnv(t *testing.T) {
	t.Setenv("SLUICE_ACK", "maybe")
	if _, err := parseServe(t); err == nil || !strings.Contains(err.Error(), `--ack: unknown ack mode "maybe"`) {
		t.Errorf("SLUICE_ACK=maybe: %v, want the --ack error", err)
	}
	// The command line wins over the environment.
	c, err := parseServe(t, "--ack=enqueue")
	if err != nil || c.ack != "enqueue" {
		t.Errorf("SLUICE_ACK=maybe --ack=enqueue: ack %q, err %v; want enqueue, nil", c.ack, err)
	}

	t.Setenv("SLUICE_ACK", "enqueue")
	t.Setenv("SLUICE_KAFKA_COMPRESSION", "lz4")
	t.Setenv("SLUICE_DRAIN_TIMEOUT", "7s")
	t.Setenv("SLUICE_PPROF", "true")
	t.Setenv("SLUICE_EMBEDDED_KAFKA_LISTEN", "127.0.0.1:0")
	c, err = parseServe(t, "--drain-timeout=9s")
	if err != nil {
		t.Fatal(err)
	}
	if c.ack != "enqueue" || c.compression != "lz4" || !c.pprof || c.embeddedKafkaListen != "127.0.0.1:0" {
		t.Errorf("env not applied: ack %q, compression %q, pprof %v, embedded %q", c.ack, c.compression, c.pprof, c.embeddedKafkaListen)
	}
	if c.drainTimeout != 9*time.Second {
		t.Errorf("drain timeout %v, want the command line's 9s over SLUICE_DRAIN_TIMEOUT=7s", c.drainTimeout)
	}

	t.Setenv("SLUICE_DRAIN_TIMEOUT", "soon")
	if _, err := parseServe(t); err == nil || !strings.Contains(err.Error(), `invalid SLUICE_DRAIN_TIMEOUT="soon"`) {
		t.Errorf("SLUICE_DRAIN_TIMEOUT=soon: %v, want an error naming the variable", err)
	}
	// A bad variable for a flag the command line sets is never looked at.
	if c, err := parseServe(t, "--drain-timeout=3s"); err != nil || c.drainTimeout != 3*time.Second {
		t.Errorf("SLUICE_DRAIN_TIMEOUT=soon --drain-timeout=3s: %v, %v; want 3s, nil", c.drainTimeout, err)
	}
}

// runBinary runs the built binary with args and env, bounded by a timeout.
func runBinary(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBinary(t), args...)
	cmd.Env = cleanEnv(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("sluice %v still running after 20s (killed); stderr:\n%s", args, errb.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("sluice %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// TestCLIExitStatus runs the binary: invalid configuration exits 2 with a
// message naming the flag (or variable), before opening anything.
func TestCLIExitStatus(t *testing.T) {
	sluiceBinary(t) // skips under -short
	// Should a case wrongly pass validation, these keep the gateway off the
	// default ports and out of ./data until the timeout kills it.
	dataDir := t.TempDir()
	safe := func(args ...string) []string {
		return append([]string{"--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0",
			"--embedded-kafka-listen=127.0.0.1:0", "--data-dir=" + dataDir}, args...)
	}
	for _, tc := range []struct {
		name         string
		env          []string
		args         []string
		code         int
		want         []string // in stderr
		wantNot      []string // not in stderr
		stdoutPrefix string
	}{
		{name: "ack", args: safe("--ack=maybe"), code: 2, want: []string{"invalid configuration", "--ack", "maybe"}},
		{name: "compression", args: safe("--kafka-compression=brotli"), code: 2, want: []string{"--kafka-compression", "brotli"}},
		{name: "listen", args: safe("--listen", "nonsense"), code: 2, want: []string{`--listen "nonsense"`}},
		{name: "serve listen", args: append([]string{"serve"}, safe("--listen", "nonsense")...), code: 2, want: []string{`--listen "nonsense"`}},
		{name: "unparseable", args: safe("--drain-timeout=soon"), code: 2, want: []string{"-drain-timeout"}},
		{name: "env", env: []string{"SLUICE_ACK=maybe"}, args: safe(), code: 2, want: []string{"--ack", "maybe"}},
		{name: "env unparseable", env: []string{"SLUICE_CHECKPOINT_INTERVAL=often"}, args: safe(), code: 2, want: []string{"SLUICE_CHECKPOINT_INTERVAL"}},
		// The flag overrides the variable: only --log-format is reported.
		{name: "flag over env", env: []string{"SLUICE_ACK=maybe"}, args: safe("--ack=disk", "--log-format=xml"), code: 2,
			want: []string{"--log-format"}, wantNot: []string{"--ack"}},
		{name: "version", args: []string{"version"}, code: 0, stdoutPrefix: "sluice "},
		{name: "help", args: []string{"help"}, code: 0, stdoutPrefix: "sluice: HTTP beacon ingestion gateway"},
		{name: "serve -h", args: []string{"serve", "-h"}, code: 0, want: []string{"-data-dir", "SLUICE_DATA_DIR"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, want: []string{`unknown command "frobnicate"`, "Usage:"}},
		{name: "tail empty brokers", args: []string{"tail", "--kafka-brokers=,"}, code: 2, want: []string{"--kafka-brokers is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runBinary(t, tc.env, tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr mentions %q:\n%s", w, stderr)
				}
			}
			if !strings.HasPrefix(stdout, tc.stdoutPrefix) {
				t.Errorf("stdout %q, want it to start with %q", stdout, tc.stdoutPrefix)
			}
		})
	}
}

// writeFile writes content to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServeConfigKafkaValidation(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	other := kafkatest.NewPKI(t)
	dir := t.TempDir()
	garbage := writeFile(t, dir, "garbage.pem", "not PEM\n")
	password := writeFile(t, dir, "password", "s3cret\n")
	empty := writeFile(t, dir, "empty", "\n")
	missing := filepath.Join(dir, "missing")
	brokers := "--kafka-brokers=kafka1:9093"

	// Valid production settings.
	for _, args := range [][]string{
		{brokers, "--kafka-tls"},
		{brokers, "--kafka-tls", "--kafka-tls-ca", pki.CAFile, "--kafka-tls-cert", pki.ClientCertFile,
			"--kafka-tls-key", pki.ClientKeyFile, "--kafka-tls-server-name=kafka.internal"},
		{brokers, "--kafka-tls", "--kafka-tls-insecure-skip-verify"},
		{brokers, "--kafka-sasl-mechanism=scram-sha-512", "--kafka-sasl-username=sluice", "--kafka-sasl-password-file", password},
		{brokers, "--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=sluice", "--kafka-sasl-password=s3cret"}, // a warning, not an error
		{brokers, "--kafka-batch-max-bytes=4MiB", "--kafka-topic-partitions=-1", "--kafka-topic-replication=3", "--kafka-create-topics=false"},
		// The largest events still fit the default batch size.
		{"--max-event-bytes=524288", "--kafka-batch-max-bytes=1000012"},
		{"--kafka-linger=0", "--kafka-compression=zstd", "--kafka-client-id=edge-1", "--kafka-check-timeout=1s"},
	} {
		if _, err := parseServe(t, args...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		// The embedded broker has neither TLS nor SASL.
		{[]string{"--kafka-tls"}, "--kafka-tls needs --kafka-brokers: the embedded development broker has no TLS or SASL"},
		{[]string{"--kafka-tls", "--kafka-tls-ca", pki.CAFile}, "--kafka-tls-ca needs --kafka-brokers"},
		{[]string{"--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=u", "--kafka-sasl-password=p"}, "--kafka-sasl-mechanism needs --kafka-brokers"},
		{[]string{"--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=u", "--kafka-sasl-password=p"}, "--kafka-sasl-password needs --kafka-brokers"},
		// TLS options need --kafka-tls.
		{[]string{brokers, "--kafka-tls-ca", pki.CAFile}, "--kafka-tls-ca needs --kafka-tls"},
		{[]string{brokers, "--kafka-tls-insecure-skip-verify"}, "--kafka-tls-insecure-skip-verify needs --kafka-tls"},
		{[]string{brokers, "--kafka-tls-server-name=k"}, "--kafka-tls-server-name needs --kafka-tls"},
		{[]string{brokers, "--kafka-tls", "--kafka-tls-cert", pki.ClientCertFile}, "--kafka-tls-cert needs --kafka-tls-key"},
		{[]string{brokers, "--kafka-tls", "--kafka-tls-key", pki.ClientKeyFile}, "--kafka-tls-key needs --kafka-tls-cert"},
		{[]string{brokers, "--kafka-tls", "--kafka-tls-ca", missing}, "--kafka-tls-ca: read CA file: open " + missing},
		{[]string{brokers, "--kafka-tls", "--kafka-tls-ca", garbage}, "--kafka-tls-ca: CA file " + garbage + " holds no PEM certificate"},
		{[]string{brokers, "--kafka-tls", "--kafka-tls-cert", garbage, "--kafka-tls-key", pki.ClientKeyFile}, "--kafka-tls-cert/--kafka-tls-key: client certificate " + garbage},
		{[]string{brokers, "--kafka-tls", "--kafka-tls-cert", pki.ClientCertFile, "--kafka-tls-key", other.ClientKeyFile}, "private key does not match public key"},
		{[]string{brokers, "--kafka-tls", "--kafka-tls-cert", pki.ClientCertFile, "--kafka-tls-key", missing}, "--kafka-tls-cert/--kafka-tls-key: client certificate"},
		// SASL.
		{[]string{brokers, "--kafka-sasl-username=u"}, "--kafka-sasl-username needs --kafka-sasl-mechanism"},
		{[]string{brokers, "--kafka-sasl-password-file", password}, "--kafka-sasl-password-file needs --kafka-sasl-mechanism"},
		{[]string{brokers, "--kafka-sasl-mechanism=GSSAPI", "--kafka-sasl-username=u", "--kafka-sasl-password=p"}, `--kafka-sasl-mechanism: unknown SASL mechanism "GSSAPI"`},
		{[]string{brokers, "--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-password=p"}, "--kafka-sasl-mechanism needs --kafka-sasl-username"},
		{[]string{brokers, "--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=u"}, "--kafka-sasl-mechanism needs --kafka-sasl-password-file (or --kafka-sasl-password)"},
		{[]string{brokers, "--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=u", "--kafka-sasl-password=p", "--kafka-sasl-password-file", password}, "--kafka-sasl-password and --kafka-sasl-password-file exclude each other"},
		{[]string{brokers, "--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=u", "--kafka-sasl-password-file", missing}, "--kafka-sasl-password-file: open " + missing},
		{[]string{brokers, "--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=u", "--kafka-sasl-password-file", empty}, "--kafka-sasl-password-file: " + empty + " is empty"},
		// Producer and topic settings.
		{[]string{"--kafka-batch-max-bytes=64KiB"}, "--kafka-batch-max-bytes must be between 102400 (the largest event with its envelope"},
		{[]string{"--max-event-bytes=524288", "--kafka-batch-max-bytes=512KiB"}, "--kafka-batch-max-bytes must be between 561152"},
		{[]string{"--kafka-batch-max-bytes=101MiB"}, "and 104857600, got 105906176"},
		{[]string{"--kafka-batch-max-bytes=lots"}, `invalid value "lots" for flag -kafka-batch-max-bytes`},
		{[]string{"--kafka-topic-partitions=0"}, "--kafka-topic-partitions must be -1 (the brokers' default) or positive, got 0"},
		{[]string{"--kafka-topic-partitions=-2"}, "--kafka-topic-partitions must be -1"},
		{[]string{"--kafka-topic-partitions=4294967296"}, "--kafka-topic-partitions must be -1"},
		{[]string{"--kafka-topic-replication=0"}, "--kafka-topic-replication must be -1 (the brokers' default) or between 1 and 32767, got 0"},
		{[]string{"--kafka-topic-replication=32768"}, "--kafka-topic-replication must be -1"},
		{[]string{"--kafka-check-timeout=0s"}, "--kafka-check-timeout must be positive"},
	} {
		_, err := parseServe(t, tc.args...)
		var ce configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want a configError containing %q", tc.args, err, tc.want)
		}
	}
}

func TestServeConfigKafkaEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SLUICE_KAFKA_BROKERS", "kafka1:9093")
	t.Setenv("SLUICE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
	t.Setenv("SLUICE_KAFKA_SASL_USERNAME", "sluice")
	t.Setenv("SLUICE_KAFKA_SASL_PASSWORD_FILE", writeFile(t, dir, "pw", "from-file\n"))
	t.Setenv("SLUICE_KAFKA_BATCH_MAX_BYTES", "2MiB")
	t.Setenv("SLUICE_KAFKA_CREATE_TOPICS", "false")
	c, err := parseServe(t)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.sinkConfig([]string{"kafka1:9093"}, "gw")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SASL != (kafka.SASL{Mechanism: "SCRAM-SHA-256", Username: "sluice", Password: "from-file"}) ||
		cfg.BatchMaxBytes != 2<<20 || c.kafka.createTopics {
		t.Errorf("env not applied: SASL %v (password %q), batch %d, create topics %v",
			cfg.SASL, cfg.SASL.Password, cfg.BatchMaxBytes, c.kafka.createTopics)
	}
}

func TestSinkConfigFromFlags(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "password", "s3cret\r\n")
	c, err := parseServe(t, "--kafka-brokers=kafka1:9093", "--topic=ev", "--dlq-topic=ev-dlq",
		"--kafka-tls", "--kafka-tls-ca", pki.CAFile, "--kafka-tls-cert", pki.ClientCertFile, "--kafka-tls-key", pki.ClientKeyFile,
		"--kafka-tls-server-name=kafka.internal", "--kafka-sasl-mechanism=scram-sha-512", "--kafka-sasl-username=sluice",
		"--kafka-sasl-password-file", pwFile, "--kafka-linger=0", "--kafka-batch-max-bytes=2MiB",
		"--kafka-compression=zstd", "--kafka-client-id=edge-1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.sinkConfig([]string{"kafka1:9093"}, "gw-1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.TLS.RootCAs == nil || len(cfg.TLS.Certificates) != 1 || cfg.TLS.ServerName != "kafka.internal" || cfg.TLS.InsecureSkipVerify {
		t.Errorf("TLS config %+v: want the CA, the client certificate, the server name and verification on", cfg.TLS)
	}
	if cfg.SASL != (kafka.SASL{Mechanism: kafka.SASLScramSHA512, Username: "sluice", Password: "s3cret"}) {
		t.Errorf("SASL %v with password %q, want SCRAM-SHA-512 as sluice with the file's line", cfg.SASL, cfg.SASL.Password)
	}
	if cfg.Linger >= 0 || cfg.BatchMaxBytes != 2<<20 || cfg.Compression != "zstd" || cfg.ClientID != "edge-1" ||
		cfg.Topic != "ev" || cfg.DLQTopic != "ev-dlq" || cfg.InstanceID != "gw-1" {
		t.Errorf("producer config %+v: want no linger (negative), 2MiB batches, zstd, edge-1, ev/ev-dlq, gw-1", cfg)
	}

	// Without security flags: plaintext, no SASL, the flag's linger.
	c, err = parseServe(t, "--kafka-brokers=kafka1:9093", "--kafka-linger=7ms", "--kafka-metadata-max-age=20s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = c.sinkConfig(nil, "gw"); err != nil || cfg.TLS != nil || cfg.SASL.Enabled() || cfg.Linger != 7*time.Millisecond || cfg.MetadataMaxAge != 20*time.Second {
		t.Errorf("plain config: TLS %v, SASL %v, linger %v, metadata max age %v, err %v", cfg.TLS, cfg.SASL, cfg.Linger, cfg.MetadataMaxAge, err)
	}
}

// TestSinkConfigFilesGone: files that vanish between validation and start
// fail the start with the file named.
func TestSinkConfigFilesGone(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "password", "s3cret")
	ca := writeFile(t, dir, "ca.pem", readFile(t, pki.CAFile))
	c, err := parseServe(t, "--kafka-brokers=kafka1:9093", "--kafka-tls", "--kafka-tls-ca", ca,
		"--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=u", "--kafka-sasl-password-file", pwFile)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(pwFile)
	if _, err := c.sinkConfig(nil, "gw"); err == nil || !strings.Contains(err.Error(), "kafka SASL password: open "+pwFile) {
		t.Errorf("password file gone: %v", err)
	}
	os.Remove(ca)
	if _, err := c.sinkConfig(nil, "gw"); err == nil || !strings.Contains(err.Error(), "kafka TLS: read CA file: open "+ca) {
		t.Errorf("CA file gone: %v", err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		"s3cret":       "s3cret",
		"s3cret\n":     "s3cret",
		"s3cret\r\n":   "s3cret",
		"s3cret\n\n":   "s3cret\n",  // only one line ending is the file's
		" s3 cret \n":  " s3 cret ", // spaces can be part of a password
		"multi\nline":  "multi\nline",
		"\ttabbed\t\n": "\ttabbed\t",
	} {
		got, err := readPasswordFile(writeFile(t, dir, "pw", content))
		if err != nil || got != want {
			t.Errorf("file %q: %q, %v; want %q", content, got, err, want)
		}
	}
	for _, content := range []string{"", "\n", "\r\n"} {
		if got, err := readPasswordFile(writeFile(t, dir, "pw", content)); err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("file %q: %q, %v; want an 'is empty' error", content, got, err)
		}
	}
}

func TestKafkaWarnings(t *testing.T) {
	const brokers = "--kafka-brokers=kafka1:9093"
	sasl := func(mech string) []string {
		return []string{"--kafka-sasl-mechanism=" + mech, "--kafka-sasl-username=u", "--kafka-sasl-password=p"}
	}
	for _, tc := range []struct {
		args []string
		want []string // substrings, one per warning
	}{
		{[]string{brokers}, nil},
		{append([]string{brokers}, sasl("plain")...), []string{"PLAIN without --kafka-tls sends the password in clear text"}},
		{append([]string{brokers, "--kafka-tls"}, sasl("PLAIN")...), nil},
		{append([]string{brokers}, sasl("SCRAM-SHA-256")...), nil},
		{[]string{brokers, "--kafka-tls", "--kafka-tls-insecure-skip-verify"}, []string{"broker certificates are NOT verified"}},
	} {
		c, err := parseServe(t, tc.args...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		got := c.kafkaWarnings()
		if len(got) != len(tc.want) {
			t.Errorf("%v: warnings %q, want %d", tc.args, got, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%v: warning %q, want %q", tc.args, got[i], w)
			}
		}
	}
}

func TestByteSizeString(t *testing.T) {
	for b, want := range map[byteSize]string{10 << 30: "10 GiB", 64 << 20: "64 MiB", 1000012: "1000012", 1536: "1.5 KiB", 0: "0 B"} {
		if got := b.String(); got != want {
			t.Errorf("byteSize(%d).String() = %q, want %q", int64(b), got, want)
		}
	}
}

// newKfake starts a one-broker kfake cluster for a process test.
func newKfake(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestCLIKafkaStartRefused runs the binary against brokers that answer a
// definitive no: the start stops with exit status 1 and the broker's
// answer, before serving, and never prints the password.
func TestCLIKafkaStartRefused(t *testing.T) {
	sluiceBinary(t) // skips under -short
	const password = "pr0ducer-s3cret"
	pki := kafkatest.NewPKI(t)
	other := kafkatest.NewPKI(t)
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "password", password+"\n")
	producerACLs := []kfake.ACL{}
	for _, op := range []kmsg.ACLOperation{kmsg.ACLOperationDescribe, kmsg.ACLOperationWrite} {
		producerACLs = append(producerACLs, kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "beacons",
			Pattern: kmsg.ACLResourcePatternTypePrefixed, Operation: op, Allow: true})
	}
	asProducer := []string{"--kafka-sasl-mechanism=PLAIN", "--kafka-sasl-username=producer", "--kafka-sasl-password-file=" + pwFile}

	for _, tc := range []struct {
		name    string
		cluster func(t *testing.T) *kfake.Cluster
		args    []string
		want    string
	}{
		{
			name: "topic not creatable",
			cluster: func(t *testing.T) *kfake.Cluster {
				return newKfake(t, kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser("PLAIN", "admin", "admin"),
					kfake.User("PLAIN", "producer", password, producerACLs...), kfake.SeedTopics(1, "beacons-invalid"))
			},
			args: asProducer,
			want: "sluice serve: kafka: topic beacons does not exist and could not be created: TOPIC_AUTHORIZATION_FAILED",
		},
		{
			name:    "topic creation disabled",
			cluster: func(t *testing.T) *kfake.Cluster { return newKfake(t, kfake.SeedTopics(1, "beacons")) },
			args:    []string{"--kafka-create-topics=false"},
			want:    "sluice serve: kafka: topic beacons-invalid does not exist and topic creation is disabled",
		},
		{
			name: "wrong password",
			cluster: func(t *testing.T) *kfake.Cluster {
				c := newKfake(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "producer", "the-right-one"))
				// Apache Kafka's answer; kfake itself just closes the connection.
				c.ControlKey(kmsg.SASLAuthenticate.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
					c.KeepControl()
					resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
					resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
					resp.ErrorMessage = kmsg.StringPtr("Authentication failed: Invalid username or password")
					return resp, nil, true
				})
				return c
			},
			args: asProducer,
			want: "SASL_AUTHENTICATION_FAILED",
		},
		{
			name:    "broker certificate of an unknown CA",
			cluster: func(t *testing.T) *kfake.Cluster { return newKfake(t, kfake.TLS(pki.ServerTLS(false))) },
			args:    []string{"--kafka-tls", "--kafka-tls-ca=" + other.CAFile},
			want:    "x509: certificate signed by unknown authority",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cluster(t)
			args := append([]string{"serve", "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0",
				"--data-dir=" + t.TempDir(), "--kafka-brokers=" + c.ListenAddrs()[0]}, tc.args...)
			code, _, stderr := runBinary(t, nil, args...)
			if code != 1 {
				t.Errorf("exit status %d, want 1; stderr:\n%s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if strings.Contains(stderr, "listening") {
				t.Errorf("the gateway served before the check failed:\n%s", stderr)
			}
			if strings.Contains(stderr, password) {
				t.Errorf("stderr shows the password:\n%s", stderr)
			}
		})
	}
}

// startExternal starts sluice serve against external brokers and waits for
// it to listen.
func startExternal(t *testing.T, name string, args ...string) *sluiceProc {
	t.Helper()
	p := spawnSluice(t, name, t.TempDir(), args...)
	t.Cleanup(func() {
		if t.Failed() {
			p.dumpLog(50)
		}
	})
	l := p.waitLine(30*time.Second, "listening", nil)
	p.public, p.admin = l.str("public"), l.str("admin")
	return p
}

// TestProcessKafkaSilentAtStart: brokers that accept connections but never
// answer do not keep the gateway from serving: the topic check gives up
// after --kafka-check-timeout, says so, and beacons are accepted into the
// write-ahead buffer.
func TestProcessKafkaSilentAtStart(t *testing.T) {
	sluiceBinary(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	held.Add(1)
	go func() { // accept and hold every connection, answer nothing
		defer held.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { silent.Close(); held.Wait() })

	t0 := time.Now()
	p := startExternal(t, "gw", "--kafka-brokers="+silent.Addr().String(), "--kafka-check-timeout=1s")
	warn := p.waitLine(time.Second, "kafka: the topic check got no answer", nil)
	if took := time.Since(t0); warn.str("timeout") != "1s" || took > 8*time.Second { // franz-go alone would wait 10s
		t.Errorf("warning %s after %v: want timeout 1s, soon after it", warn.raw, took)
	}
	if code, body := p.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with Kafka silent: %d %q, want 200", code, body)
	}
	client := &http.Client{Timeout: 15 * time.Second}
	code, _, body, err := post(client, "http://"+p.public+"/v1/beacon", "application/json", `{"type":"page_view"}`)
	if err != nil || code != http.StatusNoContent {
		t.Errorf("beacon with Kafka silent: %d %q %v, want 204", code, body, err)
	}
}

// TestProcessKafkaTLSAndSASL is the production shape end to end: mutual TLS
// and SCRAM-SHA-512 with the password in a file, topics missing at start
// and created with the configured partitions, a beacon shipped, a clean
// SIGTERM, and the password in no log line.
func TestProcessKafkaTLSAndSASL(t *testing.T) {
	sluiceBinary(t)
	const password = "scr4m-s3cret"
	pki := kafkatest.NewPKI(t)
	c := newKfake(t, kfake.TLS(pki.ServerTLS(true)), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "sluice", password))
	pwFile := writeFile(t, t.TempDir(), "password", password+"\n")
	p := startExternal(t, "gw", "--kafka-brokers="+c.ListenAddrs()[0],
		"--kafka-tls", "--kafka-tls-ca="+pki.CAFile, "--kafka-tls-cert="+pki.ClientCertFile, "--kafka-tls-key="+pki.ClientKeyFile,
		"--kafka-sasl-mechanism=SCRAM-SHA-512", "--kafka-sasl-username=sluice", "--kafka-sasl-password-file="+pwFile,
		"--kafka-topic-partitions=3", "--kafka-topic-replication=1", "--kafka-compression=zstd", "--kafka-batch-max-bytes=2MiB")
	for _, topic := range []string{"beacons", "beacons-invalid"} {
		l := p.waitLine(time.Second, "created kafka topic", func(l logLine) bool { return l.str("topic") == topic })
		if l.str("partitions") != "3" || l.str("replication_factor") != "1" {
			t.Errorf("created %s: %s; want 3 partitions, replication 1", topic, l.raw)
		}
	}
	serving := p.waitLine(time.Second, "sluice is serving", nil)
	if serving.str("kafka_tls") != "true" || serving.str("kafka_sasl") != "SCRAM-SHA-512 as sluice" {
		t.Errorf("serving line %s: want kafka_tls true and the SASL mechanism and user", serving.raw)
	}

	run := randomRun()
	client := &http.Client{Timeout: 15 * time.Second}
	if code, _, body, err := post(client, "http://"+p.public+"/v1/beacon", "application/json", eventJSON(run, 1)); err != nil || code != http.StatusNoContent {
		t.Fatalf("beacon: %d %q %v, want 204", code, body, err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DialTLSConfig(pki.ClientTLS(t)),
		kgo.SASL(scram.Auth{User: "sluice", Pass: password}.AsSha512Mechanism()),
		kgo.ConsumeTopics("beacons"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) == 0 && ctx.Err() == nil {
		fs := consumer.PollFetches(ctx)
		fs.EachError(func(topic string, part int32, err error) {
			if ctx.Err() == nil {
				t.Fatalf("fetch %s[%d]: %v", topic, part, err)
			}
		})
		got = append(got, fs.Records()...)
	}
	if len(got) != 1 || !strings.Contains(string(got[0].Value), eventJSON(run, 1)) {
		t.Fatalf("consumed %d records (%v), want the one beacon of run %s", len(got), got, run)
	}
	p.stopGracefully(60 * time.Second)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if strings.Contains(l.raw, password) {
			t.Errorf("a log line shows the password: %s", l.raw)
		}
	}
}

func TestServeConfigIPHashSalt(t *testing.T) {
	salt := filepath.Join(t.TempDir(), "salt")
	if err := os.WriteFile(salt, []byte("a-secret-salt-of-enough-bytes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseServe(t, "--ip-anonymize=hash", "--ip-hash-salt-file="+salt)
	if err != nil {
		t.Fatal(err)
	}
	z, err := c.ipAnonymizer()
	if err != nil {
		t.Fatal(err)
	}
	if got := z.Apply(netip.MustParseAddr("192.0.2.1")); len(got) != 32 || got == "192.0.2.1" {
		t.Errorf("hashed address %q", got)
	}
}
