package gateway

import (
	"bufio"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gateway/sluice/enrich"
)

// A client over its bucket gets 429 with Retry-After (an image for pixels),
// takes no token by being refused, and other clients are not affected.
func TestRateLimit(t *testing.T) {
	proxies, err := enrich.ParseTrustedProxies("0.0.0.0/32")
	if err != nil {
		t.Fatal(err)
	}
	wal := newFakeWAL()
	// One token per 10 s: nothing refills during the test.
	g := newTestGateway(t, Config{RateLimit: RateLimit{PerSecond: 0.1, Burst: 2, Proxies: proxies}}, enrich.Config{}, wal)
	from := func(ip, path string) (int, string, string) {
		t.Helper()
		conn, err := g.client.Dial("sluice")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := "POST " + path + " HTTP/1.1\r\nHost: sluice\r\nContent-Type: text/plain\r\nX-Forwarded-For: " + ip +
			"\r\nContent-Length: 12\r\n\r\n{\"type\":\"a\"}"
		if strings.Contains(path, "pixel") {
			req = "GET " + path + " HTTP/1.1\r\nHost: sluice\r\nX-Forwarded-For: " + ip + "\r\n\r\n"
		}
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(conn)); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode(), string(resp.Header.Peek("Retry-After")), string(resp.Body())
	}
	for i := range 2 {
		if code, _, body := from("198.51.100.1", "/v1/beacon"); code != 204 {
			t.Fatalf("request %d within the burst: %d %s", i+1, code, body)
		}
	}
	code, retry, body := from("198.51.100.1", "/v1/beacon")
	if code != 429 || !strings.Contains(body, "rate limited") {
		t.Fatalf("over the burst: %d %q, want 429 rate limited", code, body)
	}
	if s, err := strconv.Atoi(retry); err != nil || s < 1 || s > 10 {
		t.Errorf("Retry-After %q, want 1..10 seconds", retry)
	}
	if code, _, body := from("198.51.100.1", "/v1/pixel.gif?type=pv"); code != 429 || !strings.HasPrefix(body, "GIF89a") {
		t.Errorf("pixel over the limit: %d %q, want a 429 GIF", code, body[:min(len(body), 10)])
	}
	if code, _, _ := from("203.0.113.9", "/v1/beacon"); code != 204 {
		t.Errorf("another client: %d, want 204", code)
	}
	if n := len(wal.records()); n != 3 {
		t.Errorf("%d records stored, want 3 (the refused requests stored nothing)", n)
	}
}
