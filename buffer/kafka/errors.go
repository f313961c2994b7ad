package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-gateway/sluice/buffer"
)

// rejections are Kafka's answers that a record (or the batch that carried
// it) can never be written as it is. The shipper sends such a record again
// alone before it believes the record is at fault: franz-go fails every
// record buffered for the partition when one batch is refused.
var rejections = []error{
	kerr.MessageTooLarge,    // the record alone exceeds the batch or topic limit
	kerr.RecordListTooLarge, // the batch exceeds the broker's segment size
	kerr.InvalidRecord,      // the broker's validation refused it
	// franz-go does not retry CORRUPT_MESSAGE; a lone re-send tells a
	// corrupted transfer (it then succeeds) from a record that is bad.
	kerr.CorruptMessage,
}

// misconfigurations are answers no retry cures until an operator acts. The
// records stay in the WAL, the breaker opens and the log says it loudly.
var misconfigurations = []error{
	kerr.TopicAuthorizationFailed,
	kerr.ClusterAuthorizationFailed,
	kerr.TransactionalIDAuthorizationFailed,
	kerr.SaslAuthenticationFailed,
	kerr.IllegalSaslState,
	kerr.UnsupportedSaslMechanism,
	// franz-go returns these only after UnknownTopicRetries metadata loads
	// (4 by default) kept saying the topic does not exist.
	kerr.UnknownTopicOrPartition,
	kerr.UnknownTopicID,
	kerr.InvalidTopicException,
	kerr.InvalidRequiredAcks,
	kerr.UnsupportedVersion,
	kerr.UnsupportedForMessageFormat,
	kerr.UnsupportedCompressionType,
	kerr.PolicyViolation,
	kerr.InvalidConfig,
	kerr.InvalidRequest,
	// The producer stamps records with the current time, so a timestamp
	// out of range means the broker's clock or the topic's timestamp
	// policy is wrong, not the record: dead-lettering would drop them all.
	kerr.InvalidTimestamp,
}

// classifyProduceError wraps a produce error with the buffer's error class, so the
// shipper knows whether to re-send it, dead-letter it, or open the breaker.
// Everything not known to be a rejection or a misconfiguration is retriable:
// a record is never dropped because of an error nobody expected.
func classifyProduceError(err error) error {
	if err == nil || errors.Is(err, buffer.ErrWithheld) {
		return err // withheld by the sink's own fence: classified already
	}
	return fmt.Errorf("%w: %w", produceErrorClass(err), err)
}

func produceErrorClass(err error) error {
	switch {
	case isAny(err, rejections):
		return buffer.ErrRejected
	case isAny(err, misconfigurations), isTLSFailure(err):
		return buffer.ErrMisconfigured
	}
	return buffer.ErrRetriable
}

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// isTLSFailure reports a TLS handshake that failed on a certificate (theirs
// or ours), on a broker not speaking TLS, or on the broker's alert.
func isTLSFailure(err error) bool {
	var verify *tls.CertificateVerificationError
	var authority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var header tls.RecordHeaderError
	var op *net.OpError
	return errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &hostname) ||
		errors.As(err, &header) || errors.As(err, &op) && op.Op == "remote error"
}
