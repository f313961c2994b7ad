package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const tailTopic = "tail-one" // one partition, so the order is total

func newTailCluster(t *testing.T) *kfake.Cluster {
	return newCluster(t, kfake.SeedTopics(1, tailTopic))
}

// produceValues writes values to topic synchronously, in order.
func produceValues(t *testing.T, brokers []string, topic string, values ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, v := range values {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %q: %v", v, err)
		}
	}
}

func runTail(t *testing.T, ctx context.Context, cfg TailConfig) string {
	t.Helper()
	var out bytes.Buffer
	if err := Tail(ctx, cfg, &out); err != nil {
		t.Fatalf("Tail: %v", err)
	}
	return out.String()
}

func TestTailFromBeginningMaxRecords(t *testing.T) {
	c := newTailCluster(t)
	values := []string{"first", `{"event":"page"}`, "third value", "4", "fifth"}
	produceValues(t, c.ListenAddrs(), tailTopic, values...)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, max := range []int{len(values), 2, 1} {
		got := runTail(t, ctx, TailConfig{Brokers: c.ListenAddrs(), Topic: tailTopic, FromBeginning: true, MaxRecords: max})
		if want := strings.Join(values[:max], "\n") + "\n"; got != want {
			t.Errorf("MaxRecords %d: Tail wrote %q, want %q", max, got, want)
		}
	}
}

func TestTailManyPartitions(t *testing.T) {
	c := newCluster(t)
	// Spread over the six partitions with keys; Tail reads them all.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(testTopic))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	var recs []*kgo.Record
	for i := range 60 {
		v := fmt.Sprintf("value-%02d", i)
		want = append(want, v)
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "key-%d", i), Value: []byte(v)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err = cl.ProduceSync(ctx, recs...).FirstErr()
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}

	out := runTail(t, ctx, TailConfig{Brokers: c.ListenAddrs(), Topic: testTopic, FromBeginning: true, MaxRecords: len(want)})
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	slices.Sort(lines)
	if !slices.Equal(lines, want) || !strings.HasSuffix(out, "\n") {
		t.Errorf("Tail wrote %q, want the %d values one per line", out, len(want))
	}
}

// signalWriter collects output and closes wrote on the first write.
type signalWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	once  sync.Once
	wrote chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.once.Do(func() { close(w.wrote) })
	return w.buf.Write(p)
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestTailReturnsNilOnCancel cancels a Tail that is streaming (it has
// written what there was and waits for more): Tail returns nil.
func TestTailReturnsNilOnCancel(t *testing.T) {
	c := newTailCluster(t)
	produceValues(t, c.ListenAddrs(), tailTopic, "only")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &signalWriter{wrote: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- Tail(ctx, TailConfig{Brokers: c.ListenAddrs(), Topic: tailTopic, FromBeginning: true}, w)
	}()

	select {
	case <-w.wrote:
	case err := <-done:
		t.Fatalf("Tail returned %v before writing anything", err)
	case <-time.After(waitTimeout):
		t.Fatal("Tail wrote nothing")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Tail after cancel = %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Tail did not return after its context was cancelled")
	}
	if got := w.String(); got != "only\n" {
		t.Errorf("Tail wrote %q, want %q", got, "only\n")
	}
}

func TestTailReturnsNilAtDeadlineWithNothingToRead(t *testing.T) {
	c := newTailCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if got := runTail(t, ctx, TailConfig{Brokers: c.ListenAddrs(), Topic: tailTopic}); got != "" {
		t.Errorf("Tail of an empty topic wrote %q", got)
	}
}

// TestTailFromEndSkipsOldRecords: without FromBeginning, Tail prints only
// what arrives after it started.
func TestTailFromEndSkipsOldRecords(t *testing.T) {
	c := newTailCluster(t)
	produceValues(t, c.ListenAddrs(), tailTopic, "old-1", "old-2")

	// The consumer fetches only once it has resolved the end offset, so its
	// first fetch means anything produced from then on is "new".
	fetching := make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		once.Do(func() { close(fetching) })
		return nil, nil, false // observe only; the control stays installed
	})

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Tail(ctx, TailConfig{Brokers: c.ListenAddrs(), Topic: tailTopic, MaxRecords: 1}, &out) }()
	select {
	case <-fetching:
	case <-ctx.Done():
		t.Fatal("Tail never fetched")
	}
	produceValues(t, c.ListenAddrs(), tailTopic, "new")
	if err := <-done; err != nil {
		t.Fatalf("Tail: %v", err)
	}
	if got := out.String(); got != "new\n" {
		t.Errorf("Tail wrote %q, want only the new record", got)
	}
}

type failingWriter struct{}

var errWrite = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestTailReturnsWriteError(t *testing.T) {
	c := newTailCluster(t)
	produceValues(t, c.ListenAddrs(), tailTopic, "a", "b")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, max := range []int{0, 2} {
		err := Tail(ctx, TailConfig{Brokers: c.ListenAddrs(), Topic: tailTopic, FromBeginning: true, MaxRecords: max}, failingWriter{})
		if !errors.Is(err, errWrite) {
			t.Errorf("MaxRecords %d: Tail = %v, want the writer's error", max, err)
		}
	}
}
