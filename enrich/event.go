package enrich

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Event is one client event that passed validation.
type Event struct {
	// Raw is the event object as the client sent it; it becomes the payload.
	Raw []byte
	// Fields read from Raw.
	Type        string
	AnonymousID string
	UserID      string
	SentAt      string
}

// Invalid is an event that parsed but failed validation; it is routed to the
// dead-letter topic with its reason and raw bytes, never dropped.
type Invalid struct {
	Raw    []byte
	Reason string
}

// Meta is what the gateway knows about the request that carried a batch.
type Meta struct {
	ReceivedAt    time.Time
	RemoteAddr    netip.Addr
	XForwardedFor string
	UserAgent     string
	Origin        string
	Referer       string
	Source        string // the write key's source, if any
}

// The top-level fields Sluice reads. Both snake_case and the camelCase of
// Segment-style SDKs are accepted, as encoding/json would match them (exact
// or case-insensitive; the last duplicate wins); "event" (a track call's name)
// wins over "type" (which Segment uses for the call kind).
const (
	fieldType = iota
	fieldEvent
	fieldAnonymousID
	fieldAnonymousID2
	fieldUserID
	fieldUserID2
	fieldSentAt
	fieldSentAt2
	numFields
)

var fieldNames = [numFields]string{"type", "event", "anonymous_id", "anonymousId", "user_id", "userId", "sent_at", "sentAt"}

func fieldIndex(key string) int {
	for i, name := range fieldNames {
		if len(key) == len(name) && strings.EqualFold(key, name) {
			return i
		}
	}
	return -1
}

// MaxFieldBytes caps each field Sluice reads (type, the ids, sent_at),
// decoded. The ids become the Kafka record key, which every consumer and the
// broker's index hold: a 60 KiB "anonymous_id" is abuse, not an id (e-mail
// addresses, the longest ids in common use, stop at 254).
const MaxFieldBytes = 256

// Validate checks one element of a request body. raw must be syntactically
// valid JSON (the gateway's decoder guarantees it). It returns the event, or
// the reason it is invalid. One gjson pass over the top level reads the
// fields; nested values are skipped, not decoded.
func Validate(raw []byte) (Event, string) {
	if !utf8.Valid(raw) {
		return Event{}, "invalid UTF-8"
	}
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Event{}, "not a JSON object"
	}
	var f [numFields]gjson.Result
	gjson.ParseBytes(trimmed).ForEach(func(k, v gjson.Result) bool {
		if i := fieldIndex(k.Str); i >= 0 {
			f[i] = v
		}
		return true
	})
	ev := Event{Raw: raw}
	var ok bool
	if ev.Type, ok = firstString(f[fieldEvent], f[fieldType]); !ok {
		return Event{}, `"type" (or "event") must be a string`
	}
	if ev.Type == "" {
		return Event{}, `missing event type: set "type" (or "event")`
	}
	if ev.AnonymousID, ok = firstID(f[fieldAnonymousID], f[fieldAnonymousID2]); !ok {
		return Event{}, `"anonymous_id" must be a string or a number`
	}
	if ev.UserID, ok = firstID(f[fieldUserID], f[fieldUserID2]); !ok {
		return Event{}, `"user_id" must be a string or a number`
	}
	if ev.SentAt, ok = firstString(f[fieldSentAt], f[fieldSentAt2]); !ok {
		return Event{}, `"sent_at" must be a string`
	}
	for _, fl := range [...]struct{ name, v string }{{`"type" (or "event")`, ev.Type}, {`"anonymous_id"`, ev.AnonymousID}, {`"user_id"`, ev.UserID}, {`"sent_at"`, ev.SentAt}} {
		if len(fl.v) > MaxFieldBytes {
			return Event{}, fmt.Sprintf("%s is %d bytes, over the %d-byte limit", fl.name, len(fl.v), MaxFieldBytes)
		}
	}
	return ev, ""
}

// firstString returns the first present, non-null value, which must be a string.
func firstString(vals ...gjson.Result) (string, bool) {
	for _, v := range vals {
		switch v.Type {
		case gjson.Null: // absent or null
			continue
		case gjson.String:
			return v.Str, true
		}
		return "", false
	}
	return "", true
}

// firstID is like firstString but also takes numbers, as user ids often are.
func firstID(vals ...gjson.Result) (string, bool) {
	for _, v := range vals {
		switch v.Type {
		case gjson.Null:
			continue
		case gjson.String:
			return v.Str, true
		case gjson.Number:
			return v.Raw, true
		}
		return "", false
	}
	return "", true
}
