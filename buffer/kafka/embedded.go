package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EmbeddedConfig configures the in-process development broker.
type EmbeddedConfig struct {
	// DataDir persists the broker's topics across restarts. Required.
	DataDir string
	// Listen is host:port; port 0 picks a free one. Default 127.0.0.1:9092.
	Listen string
	// Topics are created with Partitions partitions if missing. Default 6.
	Topics     []string
	Partitions int32
	Logger     *slog.Logger
}

// Embedded is a single-node kfake broker. It is for development and tests:
// franz-go's fake cluster, not Apache Kafka.
type Embedded struct {
	cluster *kfake.Cluster
}

// StartEmbedded starts the broker and makes sure cfg.Topics exist.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		// kfake would silently keep everything in memory.
		return nil, errors.New("start embedded kafka: no data dir")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:9092"
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka listen address %q: bad port", cfg.Listen)
	}
	c, err := kfake.NewCluster(
		kfake.Ports(port),
		// kfake binds 127.0.0.1; honour the host the operator asked for.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
		kfake.DataDir(cfg.DataDir),
		kfake.SeedTopics(cfg.Partitions, cfg.Topics...),
		kfake.ClusterID("sluice-embedded"),
	)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka on %s: %w", cfg.Listen, err)
	}
	e := &Embedded{cluster: c}
	// Seed topics apply only to a new data dir; a reloaded one may lack some.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.ensureTopics(ctx, cfg.Topics, cfg.Partitions); err != nil {
		c.Close()
		return nil, err
	}
	cfg.Logger.Warn("started the embedded DEVELOPMENT Kafka broker (kfake); set --kafka-brokers for production",
		"addr", e.Addrs()[0], "data_dir", cfg.DataDir, "topics", cfg.Topics)
	return e, nil
}

func (e *Embedded) ensureTopics(ctx context.Context, topics []string, partitions int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
	if err != nil {
		return fmt.Errorf("embedded kafka admin client: %w", err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for _, r := range resp {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// Addrs are the broker's host:port addresses.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Cluster exposes the fake cluster to tests (faults, leader moves).
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the broker and persists its state.
func (e *Embedded) Close() { e.cluster.Close() }
