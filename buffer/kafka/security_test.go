package kafka

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-gateway/sluice/buffer"
	"github.com/sluice-gateway/sluice/buffer/kafka/kafkatest"
)

func TestTLSFilesConfig(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	cfg, err := TLSFiles{
		CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile,
		ServerName: "kafka.internal", InsecureSkipVerify: true,
	}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "kafka.internal" ||
		!cfg.InsecureSkipVerify || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("config: roots %v, %d certificates, server name %q, skip verify %v, min version %x",
			cfg.RootCAs != nil, len(cfg.Certificates), cfg.ServerName, cfg.InsecureSkipVerify, cfg.MinVersion)
	}
	// No files: the system roots and no client certificate.
	cfg, err = TLSFiles{}.Config()
	if err != nil || cfg.RootCAs != nil || len(cfg.Certificates) != 0 || cfg.InsecureSkipVerify {
		t.Errorf("empty TLSFiles: %+v, %v; want system roots, no certificate, verification on", cfg, err)
	}
}

func TestTLSFilesErrors(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	other := kafkatest.NewPKI(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name  string
		files TLSFiles
		want  string
	}{
		{"CA file missing", TLSFiles{CAFile: missing}, "read CA file: open " + missing},
		{"CA file without PEM", TLSFiles{CAFile: garbage}, "CA file " + garbage + " holds no PEM certificate"},
		{"a key as CA", TLSFiles{CAFile: pki.ClientKeyFile}, "holds no PEM certificate"},
		{"cert without key", TLSFiles{CertFile: pki.ClientCertFile}, "a client certificate needs its key"},
		{"key without cert", TLSFiles{KeyFile: pki.ClientKeyFile}, "a client key needs its certificate"},
		{"cert file missing", TLSFiles{CertFile: missing, KeyFile: pki.ClientKeyFile}, "no such file"},
		{"cert not PEM", TLSFiles{CertFile: garbage, KeyFile: pki.ClientKeyFile}, "failed to find any PEM data in certificate input"},
		{"key of another cert", TLSFiles{CertFile: pki.ClientCertFile, KeyFile: other.ClientKeyFile}, "private key does not match public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.files.Config()
			if err == nil {
				t.Fatalf("Config() = %+v, want an error", cfg)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseSASLMechanism(t *testing.T) {
	for in, want := range map[string]string{
		"PLAIN": SASLPlain, "plain": SASLPlain, "SCRAM-SHA-256": SASLScramSHA256,
		"scram-sha-256": SASLScramSHA256, "Scram-Sha-512": SASLScramSHA512,
	} {
		if got, err := ParseSASLMechanism(in); err != nil || got != want {
			t.Errorf("ParseSASLMechanism(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GSSAPI", "OAUTHBEARER", "SCRAM-SHA-1", "PLAIN "} {
		if got, err := ParseSASLMechanism(in); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseSASLMechanism(%q) = %q, %v; want an error naming the value", in, got, err)
		}
	}
}

// TestSASLNeverShowsPassword prints the SASL settings every way a careless
// log line could.
func TestSASLNeverShowsPassword(t *testing.T) {
	const password = "hunter2-very-secret"
	s := SASL{Mechanism: SASLScramSHA512, Username: "sluice", Password: password}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("kafka", "sasl", s, "config", Config{SASL: s})
	slog.New(slog.NewTextHandler(&logs, nil)).Info("kafka", "sasl", s)
	printed := strings.Join([]string{
		logs.String(), s.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s),
		fmt.Sprintf("%v %+v", Config{SASL: s}, Config{SASL: s}),
	}, "\n")
	if strings.Contains(printed, password) {
		t.Fatalf("the password shows:\n%s", printed)
	}
	if !strings.Contains(s.String(), "SCRAM-SHA-512 as sluice") {
		t.Errorf("String() = %q, want the mechanism and user", s.String())
	}
	if got := (SASL{}).String(); got != "none" {
		t.Errorf("zero SASL String() = %q, want none", got)
	}
}

func TestNewRejectsBadSASL(t *testing.T) {
	for _, tc := range []struct {
		sasl SASL
		want string
	}{
		{SASL{Mechanism: "GSSAPI", Username: "u", Password: "p"}, `unknown SASL mechanism "GSSAPI"`},
		{SASL{Mechanism: "PLAIN", Username: "u"}, "SASL PLAIN needs a username and a password"},
		{SASL{Mechanism: "SCRAM-SHA-256", Password: "p"}, "SASL SCRAM-SHA-256 needs a username and a password"},
	} {
		s, err := New(Config{Brokers: []string{"127.0.0.1:9092"}, SASL: tc.sasl, Logger: discardLogger()})
		if err == nil {
			s.Close(context.Background())
			t.Errorf("New with SASL %v succeeded", tc.sasl)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with SASL %v: %q, want %q", tc.sasl, err, tc.want)
		}
	}
}

// checkTopics runs CheckTopics bounded by waitTimeout.
func checkTopics(t *testing.T, s *Sink, check TopicCheck) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return s.CheckTopics(ctx, check)
}

var createAll = TopicCheck{Create: true, Partitions: 3, ReplicationFactor: -1}

// shipOne sends one record through s and reads it back with a client made
// of opts, which carry the same TLS and SASL settings.
func shipOne(t *testing.T, s *Sink, brokers []string, opts ...kgo.Opt) {
	t.Helper()
	rec := newRecord(t, "user-1", `{"type":"page_view"}`, false)
	requireAllNil(t, sendAll(t, s, 1, []*buffer.Record{rec}).wait(waitTimeout))
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(testTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("record not consumed within %v", waitTimeout)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s[%d]: %v", topic, p, err) })
		for _, r := range fs.Records() {
			if !bytes.Equal(r.Value, rec.Value) {
				t.Fatalf("consumed %q, want %q", r.Value, rec.Value)
			}
			return
		}
	}
}

func TestSinkOverMutualTLS(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(pki.ServerTLS(true)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	tlsCfg, err := TLSFiles{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.TLS = tlsCfg })
	// The topics are missing: created over TLS.
	if err := checkTopics(t, s, createAll); err != nil {
		t.Fatalf("CheckTopics over TLS: %v", err)
	}
	shipOne(t, s, c.ListenAddrs(), kgo.DialTLSConfig(pki.ClientTLS(t)))
}

func TestSinkSASLMechanisms(t *testing.T) {
	const user, pass = "sluice", "s3cret"
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := newCluster(t, kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mech, user, pass))
			// The configured name's case does not matter.
			s := newSink(t, c.ListenAddrs(), func(cfg *Config) {
				cfg.SASL = SASL{Mechanism: strings.ToLower(mech), Username: user, Password: pass}
			})
			if err := checkTopics(t, s, createAll); err != nil {
				t.Fatalf("CheckTopics with %s: %v", mech, err)
			}
			var m kgo.Opt
			switch mech {
			case SASLPlain:
				m = kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism())
			case SASLScramSHA256:
				m = kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism())
			default:
				m = kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism())
			}
			shipOne(t, s, c.ListenAddrs(), m)
		})
	}
}

// TestSinkTLSAndSASL is the usual production shape: SCRAM over TLS.
func TestSinkTLSAndSASL(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	c := newCluster(t, kfake.NumBrokers(1), kfake.TLS(pki.ServerTLS(false)),
		kfake.EnableSASL(), kfake.Superuser(SASLScramSHA512, "sluice", "s3cret"))
	tlsCfg, err := TLSFiles{CAFile: pki.CAFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) {
		cfg.TLS = tlsCfg
		cfg.SASL = SASL{Mechanism: SASLScramSHA512, Username: "sluice", Password: "s3cret"}
	})
	if err := checkTopics(t, s, createAll); err != nil {
		t.Fatal(err)
	}
	shipOne(t, s, c.ListenAddrs(), kgo.DialTLSConfig(pki.ClientTLS(t)),
		kgo.SASL(scram.Auth{User: "sluice", Pass: "s3cret"}.AsSha512Mechanism()))
}

// TestCheckTopicsTLSRefusals: a certificate problem on either side is a
// definitive answer (ErrRefused); a plaintext client at a TLS port only
// sees the connection close, which a proxy with no broker behind it does
// too, so it is not.
func TestCheckTopicsTLSRefusals(t *testing.T) {
	pki := kafkatest.NewPKI(t)
	other := kafkatest.NewPKI(t)
	c := newCluster(t, kfake.NumBrokers(1), kfake.TLS(pki.ServerTLS(true)))
	for _, tc := range []struct {
		name    string
		files   *TLSFiles
		refused bool
		want    string
	}{
		{"unknown CA", &TLSFiles{CAFile: other.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}, true, "x509: certificate signed by unknown authority"},
		{"wrong server name", &TLSFiles{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile, ServerName: "kafka.example"}, true, "x509: certificate is valid for localhost, not kafka.example"},
		{"no client certificate", &TLSFiles{CAFile: pki.CAFile}, true, "tls: certificate required"},
		{"client certificate of another CA", &TLSFiles{CAFile: pki.CAFile, CertFile: other.ClientCertFile, KeyFile: other.ClientKeyFile}, true, "tls: unknown certificate authority"},
		{"plaintext", nil, false, "is TLS missing?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t, c.ListenAddrs(), func(cfg *Config) {
				if tc.files != nil {
					tlsCfg, err := tc.files.Config()
					if err != nil {
						t.Fatal(err)
					}
					cfg.TLS = tlsCfg
				}
			})
			err := checkTopics(t, s, createAll)
			if err == nil || errors.Is(err, ErrRefused) != tc.refused || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckTopics: %v (refused %v); want refused=%v and %q", err, errors.Is(err, ErrRefused), tc.refused, tc.want)
			}
		})
	}
	// InsecureSkipVerify connects despite the unknown CA.
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) {
		tlsCfg, err := TLSFiles{CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile, InsecureSkipVerify: true}.Config()
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS = tlsCfg
	})
	if err := checkTopics(t, s, createAll); err != nil {
		t.Errorf("CheckTopics with verification off: %v", err)
	}
}

// kafkaRejectsSASL makes the cluster answer every SaslAuthenticate the way
// Apache Kafka answers a wrong password (kfake itself just closes the
// connection). It returns how many it answered.
func kafkaRejectsSASL(c *kfake.Cluster) func() int {
	var mu sync.Mutex
	n := 0
	c.ControlKey(kmsg.SASLAuthenticate.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		n++
		mu.Unlock()
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr("Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512")
		return resp, nil, true
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func TestCheckTopicsWrongPassword(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(SASLScramSHA512, "sluice", "s3cret"))
	wrong := func(cfg *Config) { cfg.SASL = SASL{Mechanism: SASLScramSHA512, Username: "sluice", Password: "wrong"} }

	answered := kafkaRejectsSASL(c)
	err := checkTopics(t, newSink(t, c.ListenAddrs(), wrong), createAll)
	if !errors.Is(err, ErrRefused) || !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Errorf("wrong password, Kafka's answer: %v; want ErrRefused with SASL_AUTHENTICATION_FAILED", err)
	}
	if !strings.Contains(fmt.Sprint(err), "SASL_AUTHENTICATION_FAILED") || strings.Contains(fmt.Sprint(err), "wrong") {
		t.Errorf("error %q: want the broker's code and never the password", err)
	}
	if answered() == 0 {
		t.Error("the SASL control function never ran: the test did not exercise Kafka's answer")
	}
}

// TestCheckTopicsWrongPasswordKfake pins kfake's own answer to a wrong
// password, a closed connection: indistinguishable from a broker going
// away, so not ErrRefused; the caller logs it and starts.
func TestCheckTopicsWrongPasswordKfake(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(SASLPlain, "sluice", "s3cret"))
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) {
		cfg.SASL = SASL{Mechanism: SASLPlain, Username: "sluice", Password: "wrong"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout/20)
	defer cancel()
	if err := s.CheckTopics(ctx, createAll); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("CheckTopics: %v, want an error that is not ErrRefused", err)
	}
}
