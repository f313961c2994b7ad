package enrich

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
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

// clientFields are the top-level fields Sluice reads. Both snake_case and the
// camelCase of Segment-style SDKs are accepted; "event" (a track call's name)
// wins over "type" (which Segment uses for the call kind).
type clientFields struct {
	Type         json.RawMessage `json:"type"`
	Event        json.RawMessage `json:"event"`
	AnonymousID  json.RawMessage `json:"anonymous_id"`
	AnonymousID2 json.RawMessage `json:"anonymousId"`
	UserID       json.RawMessage `json:"user_id"`
	UserID2      json.RawMessage `json:"userId"`
	SentAt       json.RawMessage `json:"sent_at"`
	SentAt2      json.RawMessage `json:"sentAt"`
}

// Validate checks one element of a request body. raw must be syntactically
// valid JSON (the gateway's decoder guarantees it). It returns the event, or
// the reason it is invalid.
func Validate(raw []byte) (Event, string) {
	if !utf8.Valid(raw) {
		return Event{}, "invalid UTF-8"
	}
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Event{}, "not a JSON object"
	}
	var f clientFields
	if err := json.Unmarshal(raw, &f); err != nil {
		return Event{}, "not a JSON object: " + err.Error()
	}
	ev := Event{Raw: raw}
	var ok bool
	if ev.Type, ok = firstString(f.Event, f.Type); !ok {
		return Event{}, `"type" (or "event") must be a string`
	}
	if ev.Type == "" {
		return Event{}, `missing event type: set "type" (or "event")`
	}
	if ev.AnonymousID, ok = firstID(f.AnonymousID, f.AnonymousID2); !ok {
		return Event{}, `"anonymous_id" must be a string or a number`
	}
	if ev.UserID, ok = firstID(f.UserID, f.UserID2); !ok {
		return Event{}, `"user_id" must be a string or a number`
	}
	if ev.SentAt, ok = firstString(f.SentAt, f.SentAt2); !ok {
		return Event{}, `"sent_at" must be a string`
	}
	return ev, ""
}

// firstString returns the first present, non-null value, which must be a string.
func firstString(vals ...json.RawMessage) (string, bool) {
	for _, v := range vals {
		if len(v) == 0 || string(v) == "null" {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		return s, true
	}
	return "", true
}

// firstID is like firstString but also takes numbers, as user ids often are.
func firstID(vals ...json.RawMessage) (string, bool) {
	for _, v := range vals {
		if len(v) == 0 || string(v) == "null" {
			continue
		}
		if v[0] == '"' {
			return firstString(v)
		}
		if _, err := strconv.ParseFloat(string(v), 64); err == nil {
			return string(v), true
		}
		return "", false
	}
	return "", true
}
