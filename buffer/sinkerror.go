package buffer

import "errors"

// The classes of the errors a Sink passes to its done callback. A Sink wraps
// its own error with one of them (fmt.Errorf("%w: %w", buffer.ErrRejected,
// err)) so the shipper can tell them apart with errors.Is; an error wrapping
// none of them is retriable, so a Sink that does not classify loses nothing.
var (
	// ErrRetriable marks a failure that says nothing about the record: a
	// timeout, a broker down, a leader moving. The record is sent again, in
	// WAL order, once the circuit breaker lets the shipper send.
	ErrRetriable = errors.New("retriable sink error")

	// ErrRejected marks a definitive refusal of the record as it is (too
	// large, invalid). The record goes to the dead-letter topic once it is
	// refused again when sent alone: a batch refused as a whole fails
	// every record in it, and only a lone send names the culprit.
	ErrRejected = errors.New("record rejected by the sink")

	// ErrMisconfigured marks a refusal no retry can cure without an
	// operator: authorization, authentication, a missing topic, an invalid
	// setting. It opens the circuit breaker at once and is logged at error
	// level; the record stays in the WAL and is sent again later.
	ErrMisconfigured = errors.New("sink misconfigured or not authorized")

	// ErrWithheld marks a record the sink did not write because an earlier
	// record failed: written now, it could land ahead of that one, which the
	// shipper re-sends first. It is re-sent like a retriable failure but
	// says nothing about the sink's health.
	ErrWithheld = errors.New("withheld after an earlier failure")
)

// Resumer is implemented by a Sink that withholds records after a failure
// (ErrWithheld) to keep them in order. The shipper calls Resume before it
// sends again after any failed, rejected or withheld record, once nothing
// it sent is in flight and it has taken every answer in: records sent from
// then on may be written.
type Resumer interface {
	Resume()
}

// errorClass names the class of a Sink error, for logs and the status page.
func errorClass(err error) string {
	switch {
	case errors.Is(err, ErrRejected):
		return "rejected"
	case errors.Is(err, ErrMisconfigured):
		return "misconfigured"
	case errors.Is(err, ErrWithheld):
		return "withheld"
	default:
		return "retriable"
	}
}
