package enrich

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/mileusna/useragent"

	"github.com/sluice-gateway/sluice/buffer"
)

// Context is the enriched request context written into every envelope.
type Context struct {
	IP        string
	UserAgent string
	UA        useragent.UserAgent
	Origin    string
	Referer   string
	Source    string
}

// appendEnvelope writes the Kafka record value of DESIGN.md for ev.
func appendEnvelope(dst []byte, id uuid.UUID, receivedAt time.Time, ev *Event, c *Context) []byte {
	dst = append(dst, `{"id":"`...)
	dst = appendUUID(dst, id)
	dst = append(dst, `","received_at":"`...)
	dst = receivedAt.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	dst = appendField(dst, "sent_at", ev.SentAt)
	dst = appendField(dst, "type", ev.Type)
	dst = appendField(dst, "anonymous_id", ev.AnonymousID)
	dst = appendField(dst, "user_id", ev.UserID)
	dst = appendContext(dst, c)
	dst = append(dst, `,"payload":`...)
	dst = append(dst, ev.Raw...)
	return append(dst, '}')
}

// MaxDeadLetterRawBytes is how much of an invalid event's raw bytes its
// dead-letter record keeps; longer ones are cut and marked raw_truncated.
const MaxDeadLetterRawBytes = 16 << 10

// appendDeadLetter writes the dead-letter record value: the reason and the
// raw bytes as a JSON string, with the same id, time and context.
func appendDeadLetter(dst []byte, id uuid.UUID, receivedAt time.Time, inv *Invalid, c *Context) []byte {
	dst = append(dst, `{"id":"`...)
	dst = appendUUID(dst, id)
	dst = append(dst, `","received_at":"`...)
	dst = receivedAt.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	dst = appendField(dst, "reason", inv.Reason)
	dst = appendContext(dst, c)
	raw := inv.Raw
	if len(raw) > MaxDeadLetterRawBytes {
		// Keep the record far below Kafka's message size limit: a record the
		// broker refuses would stall the shipper behind it.
		dst = append(dst, `,"raw_bytes":`...)
		dst = strconv.AppendInt(dst, int64(len(raw)), 10)
		dst = append(dst, `,"raw_truncated":true`...)
		raw = raw[:MaxDeadLetterRawBytes]
	}
	dst = append(dst, `,"raw":`...)
	dst = appendString(dst, string(raw))
	return append(dst, '}')
}

func appendContext(dst []byte, c *Context) []byte {
	dst = append(dst, `,"context":{"ip":`...)
	dst = appendString(dst, c.IP)
	dst = appendField(dst, "user_agent", c.UserAgent)
	if c.UA.Name != "" || c.UA.OS != "" {
		dst = append(dst, `,"ua":{"browser":`...)
		dst = appendString(dst, c.UA.Name)
		dst = appendField(dst, "browser_version", c.UA.Version)
		dst = appendField(dst, "os", c.UA.OS)
		dst = appendField(dst, "os_version", c.UA.OSVersion)
		dst = appendField(dst, "device", deviceClass(&c.UA))
		dst = append(dst, '}')
	}
	dst = appendField(dst, "origin", c.Origin)
	dst = appendField(dst, "referer", c.Referer)
	dst = appendField(dst, "source", c.Source)
	return append(dst, '}')
}

func deviceClass(ua *useragent.UserAgent) string {
	switch {
	case ua.Bot:
		return "bot"
	case ua.Tablet:
		return "tablet"
	case ua.Mobile:
		return "mobile"
	case ua.Desktop:
		return "desktop"
	}
	return ""
}

// appendField writes `,"name":"value"`, or nothing when value is empty.
func appendField(dst []byte, name, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendString(dst, value)
}

// appendUUID writes id in its canonical 8-4-4-4-12 form without allocating.
func appendUUID(dst []byte, id uuid.UUID) []byte {
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string; invalid UTF-8 becomes U+FFFD, and
// <, >, & are left alone (the output is never embedded in HTML).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript consumers.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// DeadLetterRecord builds the dead-letter record for a record Kafka refused
// for good (buffer.ShipperConfig.DeadLetter): the refused envelope becomes
// the raw bytes, with the broker's reason, under the same id and time.
func DeadLetterRecord(rec *buffer.Record, reason string) *buffer.Record {
	val := appendDeadLetter(nil, uuid.UUID(rec.ID), time.UnixMilli(rec.TimeMs).UTC(),
		&Invalid{Raw: rec.Value, Reason: reason}, &Context{})
	return &buffer.Record{ID: rec.ID, TimeMs: rec.TimeMs, DeadLetter: true, Key: rec.Key, Value: val}
}
