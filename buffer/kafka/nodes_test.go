package kafka

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-gateway/sluice/buffer"
	"github.com/sluice-gateway/sluice/buffer/kafka/kafkatest"
)

// TestShipperThroughBrokerRemovedAndAdded: a broker leaves the cluster (its
// partitions get new leaders) and comes back on the same address while
// records keep coming; everything ships, in per-key order.
func TestShipperThroughBrokerRemovedAndAdded(t *testing.T) {
	// Removing a broker closes its connections, as a real broker's exit does.
	c := newCluster(t, kfake.ListenFn(kafkatest.ListenClosingConns))
	r := newShipRig(t, c, buffer.ShipperConfig{
		Breaker: buffer.BreakerConfig{OpenFor: 100 * time.Millisecond, ProbeRecords: 5, SilenceTimeout: 2 * time.Second},
	})
	keys := []string{"alice", "bob", "carol", "dave", "erin", "frank"}

	var mu sync.Mutex
	written := map[uint64]bool{}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			first, last, err := r.tryAppend(keyedRecords(keys, len(keys), -1))
			if err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			mu.Lock()
			for i := first; i <= last; i++ {
				written[i] = true
			}
			mu.Unlock()
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-stopped
	}()
	shippedPast := func(what string, n uint64) {
		t.Helper()
		target := r.buf.LastIndex() + n
		waitFor(t, what, func() bool { return r.ship.AckedIndex() >= target })
	}
	shippedPast("records shipping normally", 200)

	addr := c.ListenAddrs()[0]
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if err := c.RemoveNode(0); err != nil {
		t.Fatal(err)
	}
	shippedPast("shipping with broker 0 gone", 500)
	if _, _, err := c.AddNode(0, port); err != nil {
		t.Fatalf("add broker 0 back on %s: %v", addr, err)
	}
	shippedPast("shipping with broker 0 back", 2000)

	close(stop)
	<-stopped
	r.drain(t)
	mu.Lock()
	defer mu.Unlock()
	got := consume(t, c.ListenAddrs(), len(written), testTopic)
	checkWALOrder(t, got, written)
	t.Logf("%d records through a broker removed and added back", len(got))
}
