package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
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
		{[]string{"--workers=-1"}, "--workers must not be negative"},
		{[]string{"--intake-queue=0"}, "--intake-queue must be positive"},
		{[]string{"--topic="}, "--topic and --dlq-topic must not be empty"},
		{[]string{"--dlq-topic=beacons"}, "--topic and --dlq-topic must differ"},
		{[]string{"--kafka-linger=-1ms"}, "--kafka-linger must not be negative"},
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
