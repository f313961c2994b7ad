package kafka

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-gateway/sluice/buffer"
)

// startEmbedded starts the development broker on a free 127.0.0.1 port and
// closes it when the test ends (Close is idempotent, so tests may close it
// earlier).
func startEmbedded(t *testing.T, dir string, partitions int32, topics ...string) *Embedded {
	t.Helper()
	e, err := StartEmbedded(EmbeddedConfig{
		DataDir:    dir,
		Listen:     "127.0.0.1:0",
		Topics:     topics,
		Partitions: partitions,
		Logger:     discardLogger(),
	})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// metadata returns the broker's view of the cluster and all topics.
func metadata(t *testing.T, brokers []string) kadm.Metadata {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	m, err := kadm.NewClient(cl).Metadata(ctx)
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	return m
}

// requireTopics fails unless each topic exists with its partition count.
func requireTopics(t *testing.T, brokers []string, want map[string]int) {
	t.Helper()
	m := metadata(t, brokers)
	for topic, n := range want {
		d, ok := m.Topics[topic]
		if !ok {
			t.Errorf("topic %s missing; have %v", topic, m.Topics.Names())
			continue
		}
		if d.Err != nil {
			t.Errorf("topic %s: %v", topic, d.Err)
		}
		if len(d.Partitions) != n {
			t.Errorf("topic %s has %d partitions, want %d", topic, len(d.Partitions), n)
		}
	}
}

func TestEmbeddedTopicsAndPersistence(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir, 0, testTopic, testDLQ)

	addrs := e.Addrs()
	if len(addrs) != 1 {
		t.Fatalf("Addrs = %v, want one broker", addrs)
	}
	host, port, err := net.SplitHostPort(addrs[0])
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addrs = %v, want 127.0.0.1 and the port picked for :0", addrs)
	}
	if e.Cluster() == nil {
		t.Fatal("Cluster() is nil")
	}
	requireTopics(t, addrs, map[string]int{testTopic: 6, testDLQ: 6})
	if m := metadata(t, addrs); m.Cluster != "sluice-embedded" {
		t.Errorf("cluster id %q, want sluice-embedded", m.Cluster)
	}

	s, err := New(Config{Brokers: addrs, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*buffer.Record
	for i := range 30 {
		recs = append(recs, newRecord(t, fmt.Sprintf("k%d", i%4), fmt.Sprintf("persisted-%d", i), i%6 == 0))
	}
	a := sendAll(t, s, 1, recs)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("sink Close: %v", err)
	}
	requireAllNil(t, a.wait(waitTimeout))
	e.Close()

	// Same data dir, new port: the topics and the records are still there.
	e2 := startEmbedded(t, dir, 0, testTopic, testDLQ)
	if e2.Addrs()[0] == addrs[0] {
		t.Logf("restart reused port %s", addrs[0])
	}
	requireTopics(t, e2.Addrs(), map[string]int{testTopic: 6, testDLQ: 6})
	got := make(map[string]string)
	for _, kr := range consume(t, e2.Addrs(), 25, testTopic) {
		got[string(kr.Value)] = kr.Topic
	}
	for _, kr := range consume(t, e2.Addrs(), 5, testDLQ) {
		got[string(kr.Value)] = kr.Topic
	}
	for _, r := range recs {
		want := testTopic
		if r.DeadLetter {
			want = testDLQ
		}
		if topic, ok := got[string(r.Value)]; !ok || topic != want {
			t.Errorf("record %q after restart: topic %q (found %t), want %q", r.Value, topic, ok, want)
		}
	}
}

// TestEmbeddedCreatesTopicsMissingFromReloadedDataDir: seed topics only
// apply to a new data dir, so StartEmbedded must create topics added later.
func TestEmbeddedCreatesTopicsMissingFromReloadedDataDir(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir, 0, "a")
	requireTopics(t, e.Addrs(), map[string]int{"a": 6})
	e.Close()

	e2 := startEmbedded(t, dir, 3, "a", "b")
	// a keeps the partitions it was created with; b gets the new count.
	requireTopics(t, e2.Addrs(), map[string]int{"a": 6, "b": 3})
}

func TestEmbeddedNoTopics(t *testing.T) {
	e := startEmbedded(t, t.TempDir(), 0)
	m := metadata(t, e.Addrs())
	if names := m.Topics.Names(); len(names) != 0 {
		t.Errorf("topics %v, want none", names)
	}
}

func TestEmbeddedBadListen(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	for _, tc := range []struct {
		listen string
		want   string // in the error, besides the address
	}{
		{"127.0.0.1", "missing port"},
		{"127.0.0.1:abc", "bad port"},
		{"127.0.0.1:99999", "invalid port"},
		{busy.Addr().String(), "address already in use"},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			e, err := StartEmbedded(EmbeddedConfig{DataDir: t.TempDir(), Listen: tc.listen, Topics: []string{testTopic}, Logger: discardLogger()})
			if err == nil {
				e.Close()
				t.Fatalf("StartEmbedded(Listen %q) succeeded", tc.listen)
			}
			if e != nil {
				t.Errorf("StartEmbedded returned a broker with error %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.listen) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q should name %q and say %q", msg, tc.listen, tc.want)
			}
		})
	}
}

// TestEmbeddedBadDataDirReleasesPort: a data dir that cannot be loaded fails
// StartEmbedded, and the port it bound is released.
func TestEmbeddedBadDataDirReleasesPort(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	e, err := StartEmbedded(EmbeddedConfig{DataDir: file, Listen: addr, Topics: []string{testTopic}, Logger: discardLogger()})
	if err == nil {
		e.Close()
		t.Fatalf("StartEmbedded with DataDir a regular file succeeded")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name the address", err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port %s still bound after the failed start: %v", addr, err)
	}
	ln.Close()
}

func TestEmbeddedRequiresDataDir(t *testing.T) {
	if _, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "no data dir") {
		t.Fatalf("StartEmbedded without a data dir: %v", err)
	}
}
