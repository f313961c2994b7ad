package enrich

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/mileusna/useragent"

	"github.com/sluice-gateway/sluice/buffer"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

const (
	chromeUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	iPhoneUA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)

var (
	fixedID = uuid.MustParse("01901a2b-3c4d-7e5f-8a9b-0c1d2e3f4a5b")
	// Not UTC, and with nanoseconds: the envelope converts to UTC and keeps them.
	fixedTime = time.Date(2024, 6, 1, 14, 30, 15, 123456789, time.FixedZone("CEST", 2*3600))
)

const fixedTimeUTC = "2024-06-01T12:30:15.123456789Z"

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	got = append(bytes.Clone(got), '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("output differs from %s (run go test -update if the change is intended)\n got %s\nwant %s", path, got, want)
	}
}

// decodeJSON checks b is valid JSON and unmarshals it, keeping numbers as text.
func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return m
}

func uaContext(ua string) Context {
	c := Context{UserAgent: ua}
	if ua != "" {
		c.UA = useragent.Parse(ua)
	}
	return c
}

func TestAppendEnvelope(t *testing.T) {
	type obj = map[string]any
	tests := map[string]struct {
		ev   Event
		ctx  Context
		want obj
	}{
		"envelope_chrome": {
			ev: Event{
				Raw:         []byte(`{"event":"Order Completed","type":"track","userId":"u-1","anonymousId":"a-1","sentAt":"2024-06-01T12:30:14Z","properties":{"total":19.99,"items":[1,2]}}`),
				Type:        "Order Completed",
				AnonymousID: "a-1",
				UserID:      "u-1",
				SentAt:      "2024-06-01T12:30:14Z",
			},
			ctx: func() Context {
				c := uaContext(chromeUA)
				c.IP = "198.51.100.1"
				c.Origin = "https://shop.example"
				c.Referer = "https://shop.example/cart?x=\"1\""
				c.Source = "web"
				return c
			}(),
			want: obj{
				"id": fixedID.String(), "received_at": fixedTimeUTC, "sent_at": "2024-06-01T12:30:14Z",
				"type": "Order Completed", "anonymous_id": "a-1", "user_id": "u-1",
				"context": obj{
					"ip": "198.51.100.1", "user_agent": chromeUA,
					"ua": obj{
						"browser": "Chrome", "browser_version": "124.0.0.0",
						"os": "Windows", "os_version": "10.0", "device": "desktop",
					},
					"origin": "https://shop.example", "referer": "https://shop.example/cart?x=\"1\"", "source": "web",
				},
				"payload": obj{
					"event": "Order Completed", "type": "track", "userId": "u-1", "anonymousId": "a-1",
					"sentAt":     "2024-06-01T12:30:14Z",
					"properties": obj{"total": json.Number("19.99"), "items": []any{json.Number("1"), json.Number("2")}},
				},
			},
		},
		"envelope_iphone": {
			ev: Event{
				Raw:         []byte(`{"type":"screen_view","anonymous_id":"a-2"}`),
				Type:        "screen_view",
				AnonymousID: "a-2",
			},
			ctx: func() Context {
				c := uaContext(iPhoneUA)
				c.IP = "2001:db8::7"
				return c
			}(),
			want: obj{
				"id": fixedID.String(), "received_at": fixedTimeUTC, "type": "screen_view", "anonymous_id": "a-2",
				"context": obj{
					"ip": "2001:db8::7", "user_agent": iPhoneUA,
					"ua": obj{
						"browser": "Safari", "browser_version": "17.4",
						"os": "iOS", "os_version": "17.4", "device": "mobile",
					},
				},
				"payload": obj{"type": "screen_view", "anonymous_id": "a-2"},
			},
		},
		// No user agent, no ids, no sent_at, no origin: all omitted.
		"envelope_minimal": {
			ev:  Event{Raw: []byte(`{"type":"ping"}`), Type: "ping"},
			ctx: Context{IP: "203.0.113.9"},
			want: obj{
				"id": fixedID.String(), "received_at": fixedTimeUTC, "type": "ping",
				"context": obj{"ip": "203.0.113.9"},
				"payload": obj{"type": "ping"},
			},
		},
		// Strings that need escaping in every field Sluice writes itself.
		"envelope_escaping": {
			ev: Event{
				Raw:    []byte(`{"type":"a\"b\\c\n\u2028","user_id":"\u0000"}`),
				Type:   "a\"b\\c\n\u2028",
				UserID: "\x00",
				SentAt: "</script>&",
			},
			ctx: Context{IP: "203.0.113.9", UserAgent: "\x01\x7f\xff", Referer: "tab\there"},
			want: obj{
				"id": fixedID.String(), "received_at": fixedTimeUTC, "type": "a\"b\\c\n\u2028",
				"user_id": "\x00", "sent_at": "</script>&",
				"context": obj{"ip": "203.0.113.9", "user_agent": "\x01\x7f\ufffd", "referer": "tab\there"},
				"payload": obj{"type": "a\"b\\c\n\u2028", "user_id": "\x00"},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			prefix := []byte("prefix")
			out := appendEnvelope(bytes.Clone(prefix), fixedID, fixedTime, &tc.ev, &tc.ctx)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("dst was not appended to: %s", out)
			}
			out = out[len(prefix):]
			golden(t, name, out)
			if got := decodeJSON(t, out); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decoded envelope\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestAppendDeadLetter(t *testing.T) {
	type obj = map[string]any
	tests := map[string]struct {
		inv  Invalid
		ctx  Context
		want obj
	}{
		"deadletter_chrome": {
			inv: Invalid{Raw: []byte(`{"type":5,"user_id":"u"}`), Reason: `"type" (or "event") must be a string`},
			ctx: func() Context {
				c := uaContext(chromeUA)
				c.IP = "198.51.100.1"
				c.Origin = "https://shop.example"
				c.Source = "web"
				return c
			}(),
			want: obj{
				"id": fixedID.String(), "received_at": fixedTimeUTC, "reason": `"type" (or "event") must be a string`,
				"context": obj{
					"ip": "198.51.100.1", "user_agent": chromeUA,
					"ua": obj{
						"browser": "Chrome", "browser_version": "124.0.0.0",
						"os": "Windows", "os_version": "10.0", "device": "desktop",
					},
					"origin": "https://shop.example", "source": "web",
				},
				"raw": `{"type":5,"user_id":"u"}`,
			},
		},
		"deadletter_iphone": {
			inv: Invalid{Raw: []byte(`[1,2]`), Reason: "not a JSON object"},
			ctx: func() Context {
				c := uaContext(iPhoneUA)
				c.IP = "2001:db8::7"
				c.Referer = "https://m.example/"
				return c
			}(),
			want: obj{
				"id": fixedID.String(), "received_at": fixedTimeUTC, "reason": "not a JSON object",
				"context": obj{
					"ip": "2001:db8::7", "user_agent": iPhoneUA,
					"ua": obj{
						"browser": "Safari", "browser_version": "17.4",
						"os": "iOS", "os_version": "17.4", "device": "mobile",
					},
					"referer": "https://m.example/",
				},
				"raw": `[1,2]`,
			},
		},
		// Raw bytes that are not UTF-8 still make a valid JSON string.
		"deadletter_minimal": {
			inv: Invalid{Raw: []byte("{\"type\":\"\xff\"}\n"), Reason: "invalid UTF-8"},
			ctx: Context{IP: "203.0.113.9"},
			want: obj{
				"id": fixedID.String(), "received_at": fixedTimeUTC, "reason": "invalid UTF-8",
				"context": obj{"ip": "203.0.113.9"},
				"raw":     "{\"type\":\"\ufffd\"}\n",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out := appendDeadLetter(nil, fixedID, fixedTime, &tc.inv, &tc.ctx)
			golden(t, name, out)
			if got := decodeJSON(t, out); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decoded dead letter\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestDeviceClass(t *testing.T) {
	f := func(ua, want string) {
		t.Helper()
		u := useragent.Parse(ua)
		if got := deviceClass(&u); got != want {
			t.Fatalf("deviceClass(%q) = %q, want %q", ua, got, want)
		}
	}
	f(chromeUA, "desktop")
	f(iPhoneUA, "mobile")
	f("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "tablet")
	f("Googlebot/2.1 (+http://www.google.com/bot.html)", "bot")
	f("curl/8.5.0", "")
}

func TestAppendString(t *testing.T) {
	f := func(s, want string) {
		t.Helper()
		got := appendString([]byte("x"), s)
		if string(got) != "x"+want {
			t.Fatalf("appendString(%q) = %s, want %s", s, got[1:], want)
		}
		if !json.Valid(got[1:]) {
			t.Fatalf("appendString(%q) = %s: invalid JSON", s, got[1:])
		}
	}
	f("", `""`)
	f("plain ascii", `"plain ascii"`)
	f(`say "hi"`, `"say \"hi\""`)
	f(`C:\dir\`, `"C:\\dir\\"`)
	f("a\nb\rc\td", `"a\nb\rc\td"`)
	f("\x00\x01\x08\x0c\x0b\x1f", `"\u0000\u0001\u0008\u000c\u000b\u001f"`)
	f("\x20\x7f", "\"\x20\x7f\"")
	// <, >, & stay as they are: the output is never embedded in HTML.
	f("<a href='x'>&amp;</a>", `"<a href='x'>&amp;</a>"`)
	// Valid multi-byte UTF-8 is copied through, U+FFFD included.
	f("héllo ☃ 𝄞 \ufffd", "\"héllo ☃ 𝄞 \ufffd\"")
	// Invalid UTF-8: each bad byte becomes \ufffd.
	f("\xff", `"\ufffd"`)
	f("a\xffb", `"a\ufffdb"`)
	f("\xc3", `"\ufffd"`)
	f("\xc3(", `"\ufffd("`)
	f("\xe2\x82", `"\ufffd\ufffd"`)
	f("\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`) // a UTF-8-encoded surrogate half
	f("\xf4\x90\x80\x80", `"\ufffd\ufffd\ufffd\ufffd"`)
	f("ok\x80\"", `"ok\ufffd\""`)
	// U+2028 and U+2029 are escaped for JavaScript consumers.
	f("a\u2028b\u2029c", `"a\u2028b\u2029c"`)
	f("\u2027\u202a", "\"\u2027\u202a\"")
}

// appendString must decode to exactly its input for every valid UTF-8 string.
func TestAppendStringRoundTrip(t *testing.T) {
	roundTrip := func(s string) bool {
		if !utf8.ValidString(s) {
			return true
		}
		out := appendString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Logf("appendString(%q) = %s: %v", s, out, err)
			return false
		}
		if got != s {
			t.Logf("appendString(%q) decodes to %q", s, got)
			return false
		}
		return true
	}
	if err := quick.Check(roundTrip, &quick.Config{MaxCount: 2000}); err != nil {
		t.Fatal(err)
	}
	// testing/quick rarely hits the characters that need escaping: build
	// strings from an alphabet dense in them.
	alphabet := []string{"a", "Z", " ", `"`, `\`, "/", "\n", "\r", "\t", "\x00", "\x1f", "\x7f",
		"é", "☃", "𝄞", "\u2028", "\u2029", "\ufffd", "<", "&", "\u0080", "\U0010ffff"}
	rng := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	for range 5000 {
		sb.Reset()
		for range rng.IntN(24) {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		if !roundTrip(sb.String()) {
			t.FailNow()
		}
	}
}

// For any bytes at all, appendString agrees with encoding/json, which also
// turns every invalid byte into U+FFFD.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 0, 32)
	for range 5000 {
		buf = buf[:0]
		for range rng.IntN(32) {
			switch rng.IntN(4) {
			case 0:
				buf = append(buf, byte(rng.IntN(256)))
			case 1:
				buf = append(buf, byte(0x80+rng.IntN(0x80))) // continuation and lead bytes
			default:
				buf = utf8.AppendRune(buf, rune(rng.IntN(0x3000)))
			}
		}
		s := string(buf)
		out := appendString(nil, s)
		if !json.Valid(out) {
			t.Fatalf("appendString(%q) = %s: invalid JSON", s, out)
		}
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", s, out, err)
		}
		std, _ := json.Marshal(s)
		var want string
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("appendString(%q) decodes to %q, encoding/json to %q", s, got, want)
		}
	}
}

func TestAppendUUID(t *testing.T) {
	f := func(id uuid.UUID) {
		t.Helper()
		got := appendUUID([]byte("id="), id)
		if want := "id=" + id.String(); string(got) != want {
			t.Fatalf("appendUUID = %s, want %s", got, want)
		}
	}
	f(uuid.Nil)
	f(uuid.Max)
	f(fixedID)
	f(uuid.MustParse("00112233-4455-6677-8899-aabbccddeeff"))
	for range 100 {
		f(uuid.Must(uuid.NewV7()))
		f(uuid.New())
	}
}

func TestAppendUUIDAllocs(t *testing.T) {
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = appendUUID(buf[:0], fixedID) }); n != 0 {
		t.Fatalf("appendUUID allocates %v times, want 0", n)
	}
}

func TestRecordKey(t *testing.T) {
	f := func(ev Event, want string) {
		t.Helper()
		if got := recordKey(&ev, fixedID); string(got) != want {
			t.Fatalf("recordKey(%+v) = %q, want %q", ev, got, want)
		}
	}
	f(Event{UserID: "u", AnonymousID: "a"}, "u")
	f(Event{UserID: "u"}, "u")
	f(Event{AnonymousID: "a"}, "a")
	f(Event{UserID: "42"}, "42")
	f(Event{}, fixedID.String())
	f(Event{Type: "t", SentAt: "2024-06-01T12:30:14Z"}, fixedID.String())
}

// A record Kafka refused becomes a dead letter carrying its envelope and the
// broker's reason, under the same id and time.
func TestDeadLetterRecord(t *testing.T) {
	rec := &buffer.Record{TimeMs: 1_700_000_000_123, Key: []byte("user-1"), Value: []byte(`{"id":"x","payload":{"type":"big"}}`)}
	rec.ID[15] = 7
	dl := DeadLetterRecord(rec, "MESSAGE_TOO_LARGE: the record is too large")
	if !dl.DeadLetter || dl.ID != rec.ID || dl.TimeMs != rec.TimeMs || string(dl.Key) != "user-1" {
		t.Fatalf("dead letter %+v does not keep the record's id, time and key", dl)
	}
	var v map[string]any
	if err := json.Unmarshal(dl.Value, &v); err != nil {
		t.Fatalf("dead letter value is not JSON: %v: %s", err, dl.Value)
	}
	if v["reason"] != "MESSAGE_TOO_LARGE: the record is too large" || v["raw"] != string(rec.Value) {
		t.Errorf("dead letter %v: want the reason and the refused envelope as raw", v)
	}
	if v["received_at"] != "2023-11-14T22:13:20.123Z" {
		t.Errorf("received_at %v, want the record's time", v["received_at"])
	}
}
