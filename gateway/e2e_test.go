package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"

	"github.com/sluice-gateway/sluice/buffer"
	"github.com/sluice-gateway/sluice/buffer/kafka"
	"github.com/sluice-gateway/sluice/enrich"
	"github.com/sluice-gateway/sluice/gateway"
)

// TestEndToEnd drives the whole designed path in one process: 32 keep-alive
// connections POST 10,000 events as single objects, arrays and NDJSON through
// the gateway, the intake queue and workers, the WAL and the shipper into an
// in-process Kafka (kfake); then every event is consumed exactly once with its
// envelope filled.
func TestEndToEnd(t *testing.T) {
	const (
		conns  = 32
		events = 10000
	)
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	st := startStack(t, "e2e")
	gw, emb := st.gw, st.emb

	// Connection c sends events c, c+conns, c+2*conns, ... cycling through
	// the three body shapes.
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- sendAll(gw.Addr(), c, conns, events)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	found := consumeAll(t, emb.Addrs(), "beacons", events)
	for n := range events {
		if found[n] != 1 {
			t.Errorf("event %d found %d times", n, found[n])
		}
	}

	st.close(t)
}

// stack is the whole gateway in one process, wired as cmd/sluice wires it,
// shipping to an embedded kfake.
type stack struct {
	emb  *kafka.Embedded
	buf  *buffer.Buffer
	sink *kafka.Sink
	ship *buffer.Shipper
	pipe *enrich.Pipeline
	gw   *gateway.Server
}

func startStack(t *testing.T, instance string) *stack {
	t.Helper()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	st := &stack{}
	var err error
	st.emb, err = kafka.StartEmbedded(kafka.EmbeddedConfig{
		DataDir: filepath.Join(dir, "kafka"), Listen: "127.0.0.1:0", Topics: []string{"beacons", "beacons-invalid"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.emb.Close)
	if st.buf, err = buffer.Open(buffer.Config{Dir: filepath.Join(dir, "wal"), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if st.sink, err = kafka.New(kafka.Config{Brokers: st.emb.Addrs(), InstanceID: instance, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	st.ship = buffer.NewShipper(st.buf, st.sink, buffer.ShipperConfig{Registerer: reg})
	st.pipe = enrich.New(st.buf, enrich.Config{Registerer: reg})
	if st.gw, err = gateway.New(gateway.Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Registry: reg}, st.pipe); err != nil {
		t.Fatal(err)
	}
	if err := st.gw.Start(); err != nil {
		t.Fatal(err)
	}
	return st
}

// close runs the shutdown sequence of cmd/sluice, in order.
func (st *stack) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.gw.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	st.pipe.Close()
	st.buf.StopWrites()
	if err := st.ship.Drain(ctx); err != nil {
		t.Error(err)
	}
	st.ship.Close()
	if err := st.sink.Close(ctx); err != nil {
		t.Error(err)
	}
	if err := st.buf.Close(); err != nil {
		t.Error(err)
	}
	if err := st.gw.Close(ctx); err != nil {
		t.Error(err)
	}
}

func sendAll(addr string, conn, stride, total int) error {
	client := &fasthttp.HostClient{Addr: addr, MaxConns: 1}
	defer client.CloseIdleConnections()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	event := func(n int) string {
		return fmt.Sprintf(`{"type":"e2e","n":%d,"anonymous_id":"anon-%d","sent_at":"2026-01-01T00:00:00Z"}`, n, n%97)
	}
	var ns []int
	for n := conn; n < total; n += stride {
		ns = append(ns, n)
	}
	for shape := 0; len(ns) > 0; shape++ {
		var body, ct string
		take := min(len(ns), 1+shape%20)
		switch shape % 3 {
		case 0: // one object, as sendBeacon sends it
			take, ct, body = 1, "text/plain;charset=UTF-8", event(ns[0])
		case 1: // a JSON array
			parts := make([]string, take)
			for i := range take {
				parts[i] = event(ns[i])
			}
			ct, body = "application/json", "["+strings.Join(parts, ",")+"]"
		case 2: // NDJSON
			var sb strings.Builder
			for i := range take {
				sb.WriteString(event(ns[i]) + "\n")
			}
			ct, body = "application/x-ndjson", sb.String()
		}
		req.Reset()
		req.SetRequestURI("http://" + addr + "/v1/beacon")
		req.Header.SetMethod("POST")
		req.Header.SetContentType(ct)
		req.SetBodyString(body)
		if err := client.DoTimeout(req, resp, 15*time.Second); err != nil {
			return fmt.Errorf("connection %d: %w", conn, err)
		}
		if resp.StatusCode() != 204 {
			return fmt.Errorf("connection %d: status %d: %s", conn, resp.StatusCode(), resp.Body())
		}
		ns = ns[take:]
	}
	return nil
}

type envelope struct {
	ID         string `json:"id"`
	ReceivedAt string `json:"received_at"`
	SentAt     string `json:"sent_at"`
	Type       string `json:"type"`
	AnonID     string `json:"anonymous_id"`
	Context    struct {
		IP string `json:"ip"`
	} `json:"context"`
	Payload struct {
		N *int `json:"n"`
	} `json:"payload"`
}

// consumeAll reads topic from the start until want distinct events are seen
// (then a little longer, to catch duplicates), checking each envelope.
func consumeAll(t *testing.T, brokers []string, topic string, want int) map[int]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	found := map[int]int{}
	ids := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	// Once every event is seen, one more empty poll shows nothing extra is queued.
	for extraPolls := 0; extraPolls < 1; {
		if time.Now().After(deadline) {
			t.Fatalf("found %d of %d events before the deadline", len(found), want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(_ string, _ int32, err error) {
			if err != context.DeadlineExceeded {
				t.Fatalf("fetch: %v", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			var env envelope
			if err := json.Unmarshal(r.Value, &env); err != nil {
				t.Fatalf("record %s: %v", r.Value, err)
			}
			if env.ID == "" || env.ReceivedAt == "" || env.Type != "e2e" || env.SentAt == "" ||
				env.Context.IP != "127.0.0.1" || env.Payload.N == nil || string(r.Key) != env.AnonID {
				t.Fatalf("incomplete envelope %s (key %q)", r.Value, r.Key)
			}
			if ids[env.ID] {
				t.Errorf("event id %s twice", env.ID)
			}
			ids[env.ID] = true
			if h := header(r, kafka.HeaderEventID); h != env.ID {
				t.Errorf("header %s = %q, envelope id %q", kafka.HeaderEventID, h, env.ID)
			}
			found[*env.Payload.N]++
		})
		if len(found) >= want && fs.NumRecords() == 0 {
			extraPolls++
		}
	}
	return found
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
