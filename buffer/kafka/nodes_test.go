package kafka

import (
	"net"
	"strconv"
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

	w := startKeyedWriter(t, r, keys, time.Millisecond)
	defer w.halt() // on a failed test, before the cleanups close the buffer
	r.shippedPast(t, "records shipping normally", 200)

	addr := c.ListenAddrs()[0]
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if err := c.RemoveNode(0); err != nil {
		t.Fatal(err)
	}
	r.shippedPast(t, "shipping with broker 0 gone", 500)
	if _, _, err := c.AddNode(0, port); err != nil {
		t.Fatalf("add broker 0 back on %s: %v", addr, err)
	}
	r.shippedPast(t, "shipping with broker 0 back", 2000)

	n := r.checkShippedInOrder(t, c, w)
	t.Logf("%d records through a broker removed and added back", n)
}
