package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TLSFiles names what a TLS connection to the brokers is built from.
type TLSFiles struct {
	// CAFile holds the PEM certificates that sign the brokers'; empty trusts
	// the system's roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its key, for
	// brokers that require one (mutual TLS): both or neither.
	CertFile, KeyFile string
	// ServerName is checked against the brokers' certificates instead of
	// each broker's host, for brokers reached through another name.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate. Anyone on the path
	// can then impersonate the brokers: for tests and emergencies only.
	InsecureSkipVerify bool
}

// Config reads the files into the client's TLS configuration.
func (f TLSFiles) Config() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         f.ServerName,
		InsecureSkipVerify: f.InsecureSkipVerify, //nolint:gosec // the operator's explicit, loudly logged choice
	}
	if f.CAFile != "" {
		pool, err := LoadCAPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" || f.KeyFile != "" {
		cert, err := LoadClientCert(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// LoadCAPool reads a PEM file of CA certificates. A file without a single
// certificate is an error: trusting nothing would fail every connection
// later with a less clear message.
func LoadCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// LoadClientCert reads a PEM client certificate and its private key, and
// checks that they belong together.
func LoadClientCert(certFile, keyFile string) (tls.Certificate, error) {
	switch {
	case certFile == "":
		return tls.Certificate{}, errors.New("a client key needs its certificate")
	case keyFile == "":
		return tls.Certificate{}, errors.New("a client certificate needs its key")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// The SASL mechanisms the Sink speaks.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL authenticates the client to the brokers. The zero value is none.
// Its String and LogValue never show the password.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (any case).
	Mechanism string
	Username  string
	Password  string
}

// ParseSASLMechanism returns the canonical name of a mechanism.
func ParseSASLMechanism(name string) (string, error) {
	switch m := strings.ToUpper(name); m {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		return m, nil
	}
	return "", fmt.Errorf("unknown SASL mechanism %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", name)
}

// Enabled reports whether s asks for authentication.
func (s SASL) Enabled() bool { return s.Mechanism != "" }

// String names the mechanism and user, never the password, so a SASL value
// printed by mistake leaks nothing.
func (s SASL) String() string {
	if !s.Enabled() {
		return "none"
	}
	return s.Mechanism + " as " + s.Username
}

// GoString keeps the password out of %#v.
func (s SASL) GoString() string { return "kafka.SASL{" + s.String() + "}" }

// LogValue keeps the password out of logs.
func (s SASL) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the password out of JSON, as when a log handler
// encodes a whole Config.
func (s SASL) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// mechanism is the franz-go mechanism for s.
func (s SASL) mechanism() (sasl.Mechanism, error) {
	name, err := ParseSASLMechanism(s.Mechanism)
	if err != nil {
		return nil, err
	}
	if s.Username == "" || s.Password == "" {
		return nil, fmt.Errorf("SASL %s needs a username and a password", name)
	}
	switch name {
	case SASLPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	default:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	}
}

// connectionOpts are the client options for TLS and SASL.
func connectionOpts(cfg Config) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.TLS))
	}
	if cfg.SASL.Enabled() {
		m, err := cfg.SASL.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}
