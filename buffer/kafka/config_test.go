package kafka

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-gateway/sluice/buffer"
)

// TestConfigProducerSettings checks what New hands franz-go for linger,
// batch size and client id, defaults included.
func TestConfigProducerSettings(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cfg        Config
		linger     time.Duration
		batchBytes int32
		clientID   string
	}{
		{"defaults", Config{}, 5 * time.Millisecond, DefaultBatchMaxBytes, "sluice"},
		{"no linger", Config{Linger: -1}, 0, DefaultBatchMaxBytes, "sluice"},
		{"set", Config{Linger: 20 * time.Millisecond, BatchMaxBytes: 4 << 20, ClientID: "edge-7"}, 20 * time.Millisecond, 4 << 20, "edge-7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t, []string{"127.0.0.1:9092"}, func(c *Config) {
				c.Linger, c.BatchMaxBytes, c.ClientID = tc.cfg.Linger, tc.cfg.BatchMaxBytes, tc.cfg.ClientID
			})
			if got := s.client.OptValue(kgo.ProducerLinger); got != tc.linger {
				t.Errorf("linger %v, want %v", got, tc.linger)
			}
			if got := s.client.OptValue(kgo.ProducerBatchMaxBytes); got != tc.batchBytes {
				t.Errorf("batch max bytes %v, want %d", got, tc.batchBytes)
			}
			if got := s.client.OptValue(kgo.ClientID); got != tc.clientID {
				t.Errorf("client id %v, want %q", got, tc.clientID)
			}
			if got := s.client.OptValue(kgo.DialTLSConfig); got != (*tls.Config)(nil) {
				t.Errorf("TLS config %v without TLS", got)
			}
		})
	}
}

// TestSinkBatchMaxBytesBoundsRecords: a record larger than BatchMaxBytes
// fails at once with MESSAGE_TOO_LARGE; smaller ones ship.
func TestSinkBatchMaxBytesBoundsRecords(t *testing.T) {
	c := newCluster(t)
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.BatchMaxBytes = 4096 })
	big := newRecord(t, "k", strings.Repeat("x", 5000), false)
	small := newRecord(t, "k", strings.Repeat("x", 1000), false)
	errs := sendAll(t, s, 1, []*buffer.Record{big, small}).wait(waitTimeout)
	if !errors.Is(errs[1], kerr.MessageTooLarge) {
		t.Errorf("5000-byte record with a 4096-byte batch limit: %v, want MESSAGE_TOO_LARGE", errs[1])
	}
	if errs[2] != nil {
		t.Errorf("1000-byte record: %v", errs[2])
	}
	consume(t, c.ListenAddrs(), 1, testTopic)
}
