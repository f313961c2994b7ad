package enrich

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// A huge invalid event keeps only a prefix in its dead-letter record, so the
// record stays far below Kafka's message size limit.
func TestDeadLetterTruncatesRaw(t *testing.T) {
	raw := []byte(strings.Repeat("y", 3*MaxDeadLetterRawBytes))
	out := appendDeadLetter(nil, uuid.Must(uuid.NewV7()), time.Now(), &Invalid{Raw: raw, Reason: "too big"}, &Context{})
	if len(out) > MaxDeadLetterRawBytes+1024 {
		t.Fatalf("dead letter is %d bytes", len(out))
	}
	var dl struct {
		Raw          string `json:"raw"`
		RawBytes     int    `json:"raw_bytes"`
		RawTruncated bool   `json:"raw_truncated"`
	}
	if err := json.Unmarshal(out, &dl); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if len(dl.Raw) != MaxDeadLetterRawBytes || dl.RawBytes != len(raw) || !dl.RawTruncated {
		t.Errorf("raw %d bytes, raw_bytes %d, truncated %v", len(dl.Raw), dl.RawBytes, dl.RawTruncated)
	}
}
