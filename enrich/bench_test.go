package enrich

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

type nopAppender struct{}

func (nopAppender) Append(frames [][]byte, done func(first, last uint64, err error)) {
	done(1, uint64(len(frames)), nil)
}

// BenchmarkProcess measures one worker's enrichment of a batch: ids, envelope,
// user-agent parsing, client IP and record framing.
func BenchmarkProcess(b *testing.B) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 20} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			p := New(nopAppender{}, Config{Workers: 1, TrustedProxies: proxies, Logger: discardLogger()})
			defer p.Close()
			batch := &Batch{
				Meta: Meta{
					ReceivedAt:    time.Date(2024, 6, 1, 12, 30, 15, 123456789, time.UTC),
					RemoteAddr:    netip.MustParseAddr("10.0.0.1"),
					XForwardedFor: "203.0.113.9, 10.0.0.2",
					UserAgent:     chromeUA,
					Origin:        "https://shop.example",
					Referer:       "https://shop.example/cart",
				},
				Done: func(error) {},
			}
			for i := range n {
				raw := fmt.Sprintf(`{"type":"track","event":"Product Viewed","anonymousId":"a-%d","userId":"user-42","sentAt":"2024-06-01T12:30:14.5Z","properties":{"sku":"SKU-%d","price":19.99,"currency":"EUR"}}`, i, i)
				ev, reason := Validate([]byte(raw))
				if reason != "" {
					b.Fatal(reason)
				}
				batch.Events = append(batch.Events, ev)
			}
			b.ReportAllocs()
			var sc encodeScratch
			for b.Loop() {
				p.process(batch, &sc)
			}
		})
	}
}
