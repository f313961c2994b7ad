package kafka

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// logRecorder is a slog handler that keeps every record, at every level.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}

// find returns the attributes of the records at level whose message starts
// with prefix.
func (l *logRecorder) find(level slog.Level, prefix string) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.recs {
		if r.Level != level || !strings.HasPrefix(r.Message, prefix) {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		out = append(out, attrs)
	}
	return out
}

// newBareCluster is a one-broker kfake cluster with only the given topics.
func newBareCluster(t *testing.T, topics []string, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(2, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// topicPartitions lists topics on c: name → partition count.
func topicPartitions(t *testing.T, c *kfake.Cluster, opts ...kgo.Opt) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(c.ListenAddrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	details, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for name, d := range details {
		out[name] = len(d.Partitions)
	}
	return out
}

// countRequests counts the requests with key that reach c, leaving them
// to the cluster.
func countRequests(c *kfake.Cluster, key kmsg.Key) func() int {
	var mu sync.Mutex
	n := 0
	c.ControlKey(key.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		n++
		mu.Unlock()
		return nil, nil, false
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func TestCheckTopicsExistingCreatesNothing(t *testing.T) {
	c := newBareCluster(t, []string{testTopic, testDLQ})
	creates := countRequests(c, kmsg.CreateTopics)
	s := newSink(t, c.ListenAddrs(), nil)
	if err := checkTopics(t, s, createAll); err != nil {
		t.Fatal(err)
	}
	if n := creates(); n != 0 {
		t.Errorf("%d CreateTopics requests for topics that exist", n)
	}
}

func TestCheckTopicsCreatesMissing(t *testing.T) {
	c := newBareCluster(t, []string{testTopic}) // the dead-letter topic is missing
	logs := &logRecorder{}
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Logger = slog.New(logs) })
	if err := checkTopics(t, s, TopicCheck{Create: true, Partitions: 5, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	got := topicPartitions(t, c)
	if got[testTopic] != 2 || got[testDLQ] != 5 {
		t.Errorf("partitions %v, want %s kept at 2 and %s created with 5", got, testTopic, testDLQ)
	}
	created := logs.find(slog.LevelInfo, "created kafka topic")
	if len(created) != 1 || created[0]["topic"] != testDLQ || created[0]["partitions"] != "5" || created[0]["replication_factor"] != "1" {
		t.Errorf("creation log lines %v, want one for %s with 5 partitions, replication 1", created, testDLQ)
	}
	// A second check (the next start) finds both and creates nothing.
	creates := countRequests(c, kmsg.CreateTopics)
	if err := checkTopics(t, s, createAll); err != nil || creates() != 0 {
		t.Errorf("second check: %v, %d creates; want nil, 0", err, creates())
	}
}

// TestCheckTopicsBrokerDefaults: -1 leaves partitions and replication to
// the brokers' defaults.
func TestCheckTopicsBrokerDefaults(t *testing.T) {
	c := newBareCluster(t, nil, kfake.DefaultNumPartitions(4))
	s := newSink(t, c.ListenAddrs(), nil)
	if err := checkTopics(t, s, TopicCheck{Create: true, Partitions: -1, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	if got := topicPartitions(t, c); got[testTopic] != 4 || got[testDLQ] != 4 {
		t.Errorf("partitions %v, want the broker default 4 for both", got)
	}
}

func TestCheckTopicsCreateDisabled(t *testing.T) {
	c := newBareCluster(t, []string{testDLQ})
	s := newSink(t, c.ListenAddrs(), nil)
	err := checkTopics(t, s, TopicCheck{Create: false})
	if !errors.Is(err, ErrRefused) || err.Error() != "topic beacons does not exist and topic creation is disabled" {
		t.Errorf("CheckTopics: %v; want ErrRefused naming the topic", err)
	}
	if _, ok := topicPartitions(t, c)[testTopic]; ok {
		t.Errorf("%s was created with creation disabled", testTopic)
	}
}

// producerACLs is what a producer principal usually gets: Describe and Write
// on the gateway's topics, no Create.
func producerACLs() []kfake.ACL {
	var acls []kfake.ACL
	for _, op := range []kmsg.ACLOperation{kmsg.ACLOperationDescribe, kmsg.ACLOperationWrite} {
		acls = append(acls, kfake.ACL{
			Resource: kmsg.ACLResourceTypeTopic, Name: "beacons", Pattern: kmsg.ACLResourcePatternTypePrefixed,
			Operation: op, Allow: true,
		})
	}
	return acls
}

// aclCluster has SASL and ACLs on, an admin superuser and a producer user
// with acls.
func aclCluster(t *testing.T, topics []string, acls ...kfake.ACL) *kfake.Cluster {
	return newBareCluster(t, topics, kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser(SASLPlain, "admin", "admin"),
		kfake.User(SASLPlain, "producer", "p4ss", acls...))
}

func asProducer(cfg *Config) {
	cfg.SASL = SASL{Mechanism: SASLPlain, Username: "producer", Password: "p4ss"}
}

func TestCheckTopicsCreateDenied(t *testing.T) {
	c := aclCluster(t, []string{testDLQ}, producerACLs()...)
	s := newSink(t, c.ListenAddrs(), asProducer)
	err := checkTopics(t, s, createAll)
	const want = "topic beacons does not exist and could not be created: TOPIC_AUTHORIZATION_FAILED"
	if !errors.Is(err, ErrRefused) || !errors.Is(err, kerr.TopicAuthorizationFailed) || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("CheckTopics: %v; want ErrRefused starting %q", err, want)
	}
	// With the topic there, the same principal passes the check.
	admin := kgo.SASL(plain.Auth{User: "admin", Pass: "admin"}.AsMechanism())
	if _, ok := topicPartitions(t, c, admin)[testTopic]; ok {
		t.Fatalf("%s exists after a denied create", testTopic)
	}
	adminSink := newSink(t, c.ListenAddrs(), func(cfg *Config) {
		cfg.SASL = SASL{Mechanism: SASLPlain, Username: "admin", Password: "admin"}
	})
	if err := checkTopics(t, adminSink, createAll); err != nil {
		t.Fatalf("admin creating the topic: %v", err)
	}
	if err := checkTopics(t, s, createAll); err != nil {
		t.Errorf("producer check with the topics present: %v", err)
	}
}

func TestCheckTopicsDescribeDenied(t *testing.T) {
	c := aclCluster(t, []string{testTopic, testDLQ}) // the producer has no ACLs
	s := newSink(t, c.ListenAddrs(), asProducer)
	err := checkTopics(t, s, createAll)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("CheckTopics: %v; want ErrRefused with TOPIC_AUTHORIZATION_FAILED", err)
	}
}

// answerCreateTopics makes the cluster answer CreateTopics with code for
// every topic (0 and no topics at all with omit).
func answerCreateTopics(c *kfake.Cluster, code int16, omit bool) {
	c.ControlKey(kmsg.CreateTopics.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		creq := req.(*kmsg.CreateTopicsRequest)
		resp := creq.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, rt := range creq.Topics {
			if omit {
				break
			}
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = code
			st.ErrorMessage = kmsg.StringPtr("answered by the test")
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

func TestCheckTopicsCreateAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    int16
		omit    bool
		refused bool
		want    string // the whole error; empty for success
	}{
		// Another gateway created it between our metadata and our create.
		{name: "already exists", code: kerr.TopicAlreadyExists.Code},
		{name: "policy violation", code: kerr.PolicyViolation.Code, refused: true,
			want: "topic beacons does not exist and could not be created: POLICY_VIOLATION: Request parameters do not satisfy the configured policy. (answered by the test)"},
		{name: "bad replication factor", code: kerr.InvalidReplicationFactor.Code, refused: true,
			want: "topic beacons does not exist and could not be created: INVALID_REPLICATION_FACTOR"},
		// Retriable: the broker may still create it; not a reason to stop.
		{name: "timed out", code: kerr.RequestTimedOut.Code,
			want: "topic beacons does not exist and creating it did not finish: REQUEST_TIMED_OUT"},
		{name: "topic missing from the answer", omit: true, want: "create topic beacons: no answer for it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newBareCluster(t, []string{testDLQ})
			answerCreateTopics(c, tc.code, tc.omit)
			err := checkTopics(t, newSink(t, c.ListenAddrs(), nil), createAll)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckTopics: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Errorf("CheckTopics: %v, want %q", err, tc.want)
			case errors.Is(err, ErrRefused) != tc.refused:
				t.Errorf("CheckTopics: %v is ErrRefused %v, want %v", err, !tc.refused, tc.refused)
			}
		})
	}
}

// TestCheckTopicsMetadataTopicError: a topic error other than "unknown" in
// the metadata is definitive unless Kafka calls it retriable.
func TestCheckTopicsMetadataTopicError(t *testing.T) {
	for _, tc := range []struct {
		code    int16
		refused bool
	}{
		{kerr.InvalidTopicException.Code, true},
		{kerr.LeaderNotAvailable.Code, false}, // the topic exists, its leader is moving
	} {
		c := newBareCluster(t, []string{testTopic, testDLQ})
		c.ControlKey(kmsg.Metadata.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			mreq := req.(*kmsg.MetadataRequest)
			resp := mreq.ResponseKind().(*kmsg.MetadataResponse)
			for _, rt := range mreq.Topics {
				st := kmsg.NewMetadataResponseTopic()
				st.Topic = rt.Topic
				st.ErrorCode = tc.code
				resp.Topics = append(resp.Topics, st)
			}
			return resp, nil, true
		})
		err := checkTopics(t, newSink(t, c.ListenAddrs(), nil), createAll)
		if tc.refused {
			if !errors.Is(err, ErrRefused) || !strings.HasPrefix(err.Error(), "topic beacons: "+kerr.ErrorForCode(tc.code).Error()) {
				t.Errorf("metadata code %d: %v, want ErrRefused naming the topic", tc.code, err)
			}
		} else if err != nil {
			t.Errorf("metadata code %d: %v, want nil", tc.code, err)
		}
	}
}

func TestCheckTopicsUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	s := newSink(t, []string{addr}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = s.CheckTopics(ctx, createAll)
	if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("CheckTopics against %s: %v; want a connection error that is not ErrRefused", addr, err)
	}
}

// TestCheckTopicsSilentBroker: a broker that accepts connections and never
// answers holds franz-go's connection attempt for its 10s dial timeout;
// CheckTopics still returns when ctx ends.
func TestCheckTopicsSilentBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	held.Add(1)
	go func() { // accept and hold every connection until the listener closes
		defer held.Done()
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { ln.Close(); held.Wait() })
	s := newSink(t, []string{ln.Addr().String()}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err = s.CheckTopics(ctx, createAll)
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("CheckTopics returned after %v with a 500ms context", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrRefused) {
		t.Errorf("CheckTopics: %v; want the deadline, not ErrRefused", err)
	}
}

// TestCheckTopicsWarnsSmallMaxMessageBytes: a topic whose max.message.bytes
// is below the batch size would reject the largest batches.
func TestCheckTopicsWarnsSmallMaxMessageBytes(t *testing.T) {
	c := newBareCluster(t, []string{testTopic})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	small := "100000"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"max.message.bytes": &small}, testDLQ); err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Logger = slog.New(logs) })
	if err := checkTopics(t, s, createAll); err != nil {
		t.Fatal(err)
	}
	warns := logs.find(slog.LevelWarn, "the topic's max.message.bytes is below")
	if len(warns) != 1 || warns[0]["topic"] != testDLQ || warns[0]["max_message_bytes"] != small ||
		warns[0]["batch_max_bytes"] != "1000012" {
		t.Errorf("warnings %v, want one for %s (100000 < 1000012)", warns, testDLQ)
	}
	// A batch size within the limit: no warning.
	logs2 := &logRecorder{}
	s2 := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Logger = slog.New(logs2); cfg.BatchMaxBytes = 100000 })
	if err := checkTopics(t, s2, createAll); err != nil {
		t.Fatal(err)
	}
	if warns := logs2.find(slog.LevelWarn, ""); len(warns) != 0 {
		t.Errorf("warnings with a batch size at the limit: %v", warns)
	}
}

// TestCheckTopicsConfigsUnreadable: without DescribeConfigs the comparison
// is skipped at debug level and the check still passes.
func TestCheckTopicsConfigsUnreadable(t *testing.T) {
	t.Run("request fails", func(t *testing.T) {
		c := newBareCluster(t, []string{testTopic, testDLQ})
		c.ControlKey(kmsg.DescribeConfigs.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			return nil, errors.New("closing the connection"), true
		})
		logs := &logRecorder{}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Logger = slog.New(logs) })
		if err := s.CheckTopics(ctx, createAll); err != nil {
			t.Fatal(err)
		}
		if got := logs.find(slog.LevelDebug, "cannot read the topics' max.message.bytes"); len(got) != 1 {
			t.Errorf("debug lines %v, want one", got)
		}
	})
	t.Run("topic denied", func(t *testing.T) {
		c := aclCluster(t, []string{testTopic, testDLQ}, producerACLs()...) // no DescribeConfigs
		logs := &logRecorder{}
		s := newSink(t, c.ListenAddrs(), func(cfg *Config) { asProducer(cfg); cfg.Logger = slog.New(logs) })
		if err := checkTopics(t, s, createAll); err != nil {
			t.Fatal(err)
		}
		got := logs.find(slog.LevelDebug, "cannot read the topics' max.message.bytes")
		if len(got) != 1 || !strings.Contains(got[0]["err"], "TOPIC_AUTHORIZATION_FAILED") {
			t.Errorf("debug lines %v, want one with TOPIC_AUTHORIZATION_FAILED", got)
		}
	})
	t.Run("error per topic", func(t *testing.T) {
		c := newBareCluster(t, []string{testTopic, testDLQ})
		c.ControlKey(kmsg.DescribeConfigs.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			dreq := req.(*kmsg.DescribeConfigsRequest)
			resp := dreq.ResponseKind().(*kmsg.DescribeConfigsResponse)
			for _, r := range dreq.Resources {
				rr := kmsg.NewDescribeConfigsResponseResource()
				rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
				rr.ErrorCode = kerr.InvalidRequest.Code
				resp.Resources = append(resp.Resources, rr)
			}
			return resp, nil, true
		})
		logs := &logRecorder{}
		s := newSink(t, c.ListenAddrs(), func(cfg *Config) { cfg.Logger = slog.New(logs) })
		if err := checkTopics(t, s, createAll); err != nil {
			t.Fatal(err)
		}
		got := logs.find(slog.LevelDebug, "cannot read a topic's max.message.bytes")
		if len(got) != 2 || !strings.Contains(got[0]["err"], "INVALID_REQUEST") {
			t.Errorf("debug lines %v, want one per topic with INVALID_REQUEST", got)
		}
	})
}
