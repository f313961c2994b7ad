package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TopicCheck says what Sink.CheckTopics does about missing topics.
type TopicCheck struct {
	// Create creates missing topics; false makes a missing topic an error.
	Create bool
	// Partitions and ReplicationFactor of the topics it creates; -1 leaves
	// the choice to the brokers (num.partitions, default.replication.factor).
	Partitions        int32
	ReplicationFactor int16
}

// ErrRefused marks a broker's definitive answer that the Sink cannot work as
// configured: a missing topic it may not create, rejected credentials, a
// certificate that does not verify. Retrying cannot help; an operator must.
// Any other CheckTopics error means no broker answered in time, which the
// write-ahead buffer rides out.
var ErrRefused = errors.New("refused by kafka")

// refusedError is an error that matches ErrRefused and reads as its cause.
type refusedError struct{ err error }

func (e refusedError) Error() string        { return e.err.Error() }
func (e refusedError) Unwrap() error        { return e.err }
func (e refusedError) Is(target error) bool { return target == ErrRefused }

func refused(format string, args ...any) error {
	return refusedError{fmt.Errorf(format, args...)}
}

// CheckTopics makes sure the event and dead-letter topics exist, creating
// missing ones when check allows, and warns when a topic's max.message.bytes
// is below the producer's batch size. ctx bounds it: a broker that does not
// answer yields a plain error, a broker that says no yields ErrRefused.
func (s *Sink) CheckTopics(ctx context.Context, check TopicCheck) error {
	// franz-go does not let ctx cut short a broker connection it is opening
	// (a broker that accepts and stays silent holds it for the client's
	// dial timeout), so the bound is kept here. A check still running when
	// ctx ends finishes in the background on the same client.
	done := make(chan error, 1)
	go func() { done <- s.checkTopics(ctx, check) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("check topics %s and %s: %w", s.cfg.Topic, s.cfg.DLQTopic, context.Cause(ctx))
	}
}

func (s *Sink) checkTopics(ctx context.Context, check TopicCheck) error {
	adm := kadm.NewClient(s.client)
	topics := []string{s.cfg.Topic, s.cfg.DLQTopic}
	missing, err := s.missingTopics(ctx, topics)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		if !check.Create {
			return refused("topic %s does not exist and topic creation is disabled", missing[0])
		}
		if err := s.createTopics(ctx, adm, missing, check); err != nil {
			return err
		}
	}
	s.warnSmallMaxMessageBytes(ctx, adm, topics)
	return nil
}

// missingTopics asks the brokers which of topics do not exist. It asks them
// directly: the client's metadata cache may hold an answer from before a
// topic was created.
func (s *Sink) missingTopics(ctx context.Context, topics []string) ([]string, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, s.client)
	if err != nil {
		return nil, classify(fmt.Errorf("describe topics %v: %w", topics, err))
	}
	codes := make(map[string]int16, len(resp.Topics))
	for _, rt := range resp.Topics {
		if rt.Topic != nil {
			codes[*rt.Topic] = rt.ErrorCode
		}
	}
	var missing []string
	for _, t := range topics {
		code, ok := codes[t]
		err := kerr.ErrorForCode(code)
		switch {
		case !ok || errors.Is(err, kerr.UnknownTopicOrPartition):
			missing = append(missing, t)
		case err != nil && !kerr.IsRetriable(err):
			return nil, refused("topic %s: %w", t, err)
		}
		// A retriable error (a leader election, a topic still being
		// created) means the topic exists.
	}
	return missing, nil
}

// createTopics creates missing. Another gateway creating the same topic at
// the same moment is success; a retriable answer is inconclusive.
func (s *Sink) createTopics(ctx context.Context, adm *kadm.Client, missing []string, check TopicCheck) error {
	resp, err := adm.CreateTopics(ctx, check.Partitions, check.ReplicationFactor, nil, missing...)
	if err != nil {
		return classify(fmt.Errorf("create topics %v: %w", missing, err))
	}
	for _, t := range missing {
		r, ok := resp[t]
		switch {
		case !ok:
			return fmt.Errorf("create topic %s: no answer for it", t)
		case r.Err == nil:
			s.cfg.Logger.Info("created kafka topic", "topic", t,
				"partitions", r.NumPartitions, "replication_factor", r.ReplicationFactor)
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
		case kerr.IsRetriable(r.Err):
			return fmt.Errorf("topic %s does not exist and creating it did not finish: %w", t, r.Err)
		default:
			return refused("topic %s does not exist and could not be created: %w%s", t, r.Err, detail(r.ErrMessage))
		}
	}
	return nil
}

// detail formats a broker's optional error message.
func detail(msg string) string {
	if msg == "" {
		return ""
	}
	return " (" + msg + ")"
}

// warnSmallMaxMessageBytes warns when a topic takes smaller batches than the
// producer builds: the brokers would reject every batch that large. It is
// advice only, so a principal without DescribeConfigs (common for
// producers) just skips it.
func (s *Sink) warnSmallMaxMessageBytes(ctx context.Context, adm *kadm.Client, topics []string) {
	configs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		s.cfg.Logger.Debug("cannot read the topics' max.message.bytes; not comparing it with the batch size", "err", err)
		return
	}
	for _, rc := range configs {
		if rc.Err != nil {
			s.cfg.Logger.Debug("cannot read a topic's max.message.bytes; not comparing it with the batch size", "topic", rc.Name, "err", rc.Err)
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if limit, err := strconv.ParseInt(*c.Value, 10, 64); err == nil && limit < int64(s.cfg.BatchMaxBytes) {
				s.cfg.Logger.Warn("the topic's max.message.bytes is below the producer's batch size: the brokers will reject the largest batches; lower the batch size or raise the topic's limit",
					"topic", rc.Name, "max_message_bytes", limit, "batch_max_bytes", s.cfg.BatchMaxBytes)
			}
		}
	}
}

// definitiveErrors are broker answers that no retry can change.
var definitiveErrors = []error{
	kerr.SaslAuthenticationFailed,
	kerr.UnsupportedSaslMechanism,
	kerr.IllegalSaslState,
	kerr.TopicAuthorizationFailed,
	kerr.ClusterAuthorizationFailed,
}

// classify marks err as refused when a broker answered it definitively:
// an authentication or authorization failure, or a TLS handshake that
// failed on a certificate (theirs or ours) or on a broker not speaking TLS.
// Anything else (refused or timed-out connections, a context deadline) is
// the brokers being unreachable.
func classify(err error) error {
	for _, d := range definitiveErrors {
		if errors.Is(err, d) {
			return refusedError{err}
		}
	}
	var verify *tls.CertificateVerificationError
	var header tls.RecordHeaderError
	var op *net.OpError
	switch {
	case errors.As(err, &verify), errors.As(err, &header):
		return refusedError{err}
	case errors.As(err, &op) && op.Op == "remote error":
		// A TLS alert from the broker: it rejected our certificate (or lack
		// of one) or our TLS parameters.
		return refusedError{err}
	}
	return err
}
