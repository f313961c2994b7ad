package enrich

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidate(t *testing.T) {
	f := func(raw string, want Event) {
		t.Helper()
		got, reason := Validate([]byte(raw))
		if reason != "" {
			t.Fatalf("Validate(%s): unexpected reason %q", raw, reason)
		}
		if !bytes.Equal(got.Raw, []byte(raw)) {
			t.Fatalf("Validate(%s): Raw = %q, want the input", raw, got.Raw)
		}
		got.Raw, want.Raw = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Validate(%s)\n got %+v\nwant %+v", raw, got, want)
		}
	}

	// A plain object with a type.
	f(`{"type":"page_view"}`, Event{Type: "page_view"})
	f(" \n\t{\"type\":\"page_view\"}", Event{Type: "page_view"})
	f(`{"type":"click","props":{"x":1,"y":[1,2]}}`, Event{Type: "click"})

	// "event" (a track call's name) wins over "type" (the Segment call kind),
	// whichever comes first.
	f(`{"type":"track","event":"Order Completed"}`, Event{Type: "Order Completed"})
	f(`{"event":"Order Completed","type":"track"}`, Event{Type: "Order Completed"})
	// A null "event" falls back to "type".
	f(`{"event":null,"type":"track"}`, Event{Type: "track"})

	// snake_case and camelCase ids.
	f(`{"type":"t","anonymous_id":"anon-1","user_id":"user-1"}`,
		Event{Type: "t", AnonymousID: "anon-1", UserID: "user-1"})
	f(`{"type":"t","anonymousId":"anon-2","userId":"user-2"}`,
		Event{Type: "t", AnonymousID: "anon-2", UserID: "user-2"})
	// snake_case is preferred when both spellings are present.
	f(`{"type":"t","anonymousId":"camel","anonymous_id":"snake","userId":"camel","user_id":"snake"}`,
		Event{Type: "t", AnonymousID: "snake", UserID: "snake"})
	// A null snake_case id falls back to the camelCase one.
	f(`{"type":"t","user_id":null,"userId":"u"}`, Event{Type: "t", UserID: "u"})

	// Numeric ids keep their text exactly, beyond float64 precision too.
	f(`{"type":"t","user_id":42}`, Event{Type: "t", UserID: "42"})
	f(`{"type":"t","userId":12345678901234567890123}`, Event{Type: "t", UserID: "12345678901234567890123"})
	f(`{"type":"t","anonymous_id":-1.50e3}`, Event{Type: "t", AnonymousID: "-1.50e3"})

	// Escapes in strings are decoded.
	f(`{"type":"a\"b\u00e9","user_id":"\u2603"}`, Event{Type: "a\"bé", UserID: "☃"})

	// sent_at and sentAt.
	f(`{"type":"t","sent_at":"2024-05-01T10:00:00Z"}`, Event{Type: "t", SentAt: "2024-05-01T10:00:00Z"})
	f(`{"type":"t","sentAt":"2024-05-01T10:00:00.123+02:00"}`, Event{Type: "t", SentAt: "2024-05-01T10:00:00.123+02:00"})
	f(`{"type":"t","sent_at":"snake","sentAt":"camel"}`, Event{Type: "t", SentAt: "snake"})
	f(`{"type":"t","sent_at":null}`, Event{Type: "t"})
}

func TestValidateInvalid(t *testing.T) {
	f := func(raw, wantReason string) {
		t.Helper()
		got, reason := Validate([]byte(raw))
		if reason != wantReason {
			t.Fatalf("Validate(%q): reason %q, want %q", raw, reason, wantReason)
		}
		if got.Raw != nil || got.Type != "" {
			t.Fatalf("Validate(%q): returned a non-zero event %+v with a reason", raw, got)
		}
	}
	const (
		missingType   = `missing event type: set "type" (or "event")`
		typeNotString = `"type" (or "event") must be a string`
		notObject     = "not a JSON object"
	)

	// Missing or empty type.
	f(`{}`, missingType)
	f(`{"user_id":"u"}`, missingType)
	f(`{"type":""}`, missingType)
	f(`{"type":null}`, missingType)
	f(`{"event":null,"type":null}`, missingType)

	// type (or event) not a string.
	f(`{"type":5}`, typeNotString)
	f(`{"type":true}`, typeNotString)
	f(`{"type":["a"]}`, typeNotString)
	f(`{"type":{"name":"a"}}`, typeNotString)
	// "event" wins, so a bad "event" is not rescued by a good "type".
	f(`{"event":7,"type":"track"}`, typeNotString)

	// Ids must be strings or numbers; sent_at must be a string.
	f(`{"type":"t","user_id":true}`, `"user_id" must be a string or a number`)
	f(`{"type":"t","userId":{}}`, `"user_id" must be a string or a number`)
	f(`{"type":"t","anonymous_id":[1]}`, `"anonymous_id" must be a string or a number`)
	f(`{"type":"t","anonymousId":false}`, `"anonymous_id" must be a string or a number`)
	f(`{"type":"t","sent_at":1714557600}`, `"sent_at" must be a string`)
	f(`{"type":"t","sentAt":{}}`, `"sent_at" must be a string`)

	// Fields over MaxFieldBytes (decoded: escapes count once).
	long := strings.Repeat("x", MaxFieldBytes+1)
	f(`{"type":"`+long+`"}`, `"type" (or "event") is 257 bytes, over the 256-byte limit`)
	f(`{"event":"`+long+`","type":"t"}`, `"type" (or "event") is 257 bytes, over the 256-byte limit`)
	f(`{"type":"t","anonymousId":"`+long+`"}`, `"anonymous_id" is 257 bytes, over the 256-byte limit`)
	f(`{"type":"t","user_id":"`+long+`"}`, `"user_id" is 257 bytes, over the 256-byte limit`)
	f(`{"type":"t","user_id":`+strings.Repeat("9", MaxFieldBytes+1)+`}`, `"user_id" is 257 bytes, over the 256-byte limit`)
	f(`{"type":"t","sent_at":"`+long+`"}`, `"sent_at" is 257 bytes, over the 256-byte limit`)
	if _, reason := Validate([]byte(`{"type":"t","user_id":"` + strings.Repeat(`\u0041`, MaxFieldBytes) + `"}`)); reason != "" {
		t.Errorf("a %d-byte id written with escapes: %q", MaxFieldBytes, reason)
	}

	// Not an object.
	f(`[{"type":"t"}]`, notObject)
	f(`[]`, notObject)
	f(`42`, notObject)
	f(`-1`, notObject)
	f(`"type"`, notObject)
	f(`null`, notObject)
	f(`true`, notObject)
	f(` `, notObject)
	f(``, notObject)

	// Invalid UTF-8, inside a string or as a lone continuation byte.
	f("{\"type\":\"a\xffb\"}", "invalid UTF-8")
	f("{\"type\":\"t\",\"user_id\":\"\xc3\"}", "invalid UTF-8")
	f("\x80", "invalid UTF-8")
	// An encoded surrogate half is not valid UTF-8 either.
	f("{\"type\":\"\xed\xa0\x80\"}", "invalid UTF-8")
}

// validateStdlib is the encoding/json implementation Validate replaced: the
// oracle of FuzzValidate.
func validateStdlib(raw []byte) (Event, string) {
	if !utf8.Valid(raw) {
		return Event{}, "invalid UTF-8"
	}
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Event{}, "not a JSON object"
	}
	var f struct {
		Type         json.RawMessage `json:"type"`
		Event        json.RawMessage `json:"event"`
		AnonymousID  json.RawMessage `json:"anonymous_id"`
		AnonymousID2 json.RawMessage `json:"anonymousId"`
		UserID       json.RawMessage `json:"user_id"`
		UserID2      json.RawMessage `json:"userId"`
		SentAt       json.RawMessage `json:"sent_at"`
		SentAt2      json.RawMessage `json:"sentAt"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return Event{}, "not a JSON object: " + err.Error()
	}
	str := func(vals ...json.RawMessage) (string, bool) {
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
	id := func(vals ...json.RawMessage) (string, bool) {
		for _, v := range vals {
			if len(v) == 0 || string(v) == "null" {
				continue
			}
			if v[0] == '"' {
				return str(v)
			}
			if _, err := strconv.ParseFloat(string(v), 64); err == nil {
				return string(v), true
			}
			return "", false
		}
		return "", true
	}
	ev := Event{Raw: raw}
	var ok bool
	if ev.Type, ok = str(f.Event, f.Type); !ok || ev.Type == "" {
		return Event{}, "type"
	}
	if ev.AnonymousID, ok = id(f.AnonymousID, f.AnonymousID2); !ok {
		return Event{}, "anonymous_id"
	}
	if ev.UserID, ok = id(f.UserID, f.UserID2); !ok {
		return Event{}, "user_id"
	}
	if ev.SentAt, ok = str(f.SentAt, f.SentAt2); !ok {
		return Event{}, "sent_at"
	}
	for _, v := range []string{ev.Type, ev.AnonymousID, ev.UserID, ev.SentAt} {
		if len(v) > MaxFieldBytes {
			return Event{}, "too long"
		}
	}
	return ev, ""
}

// FuzzValidate checks Validate against encoding/json on valid JSON: the same
// verdict and the same fields.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`{"type":"a"}`, `{"event":"e","type":"t"}`, `{"TYPE":"a"}`, `{"type":"a","type":"b"}`,
		`{"type":"a","anonymousId":42,"userId":"u","sentAt":"2026"}`, `{"type":1}`, `{"type":null,"event":"x"}`,
		`{"type":"a\u00e9\n\"q\""}`, `{"type":"a","user_id":true}`, `[1]`, `"x"`, `{"type":"a","nested":{"type":"no"}}`,
		`{"type":"\ud800"}`, `{"type":"a","user_id":-1.5e3}`, `{"Type":"a","type":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		got, gotReason := Validate(raw)
		want, wantReason := validateStdlib(raw)
		if (gotReason == "") != (wantReason == "") {
			t.Fatalf("Validate(%q): reason %q; encoding/json: %q", raw, gotReason, wantReason)
		}
		if gotReason != "" {
			return
		}
		if got.Type != want.Type || got.AnonymousID != want.AnonymousID || got.UserID != want.UserID || got.SentAt != want.SentAt {
			t.Fatalf("Validate(%q) = %+v; encoding/json %+v", raw, got, want)
		}
	})
}
