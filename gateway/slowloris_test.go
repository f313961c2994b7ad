package gateway

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/enrich"
)

// Slowloris: connections that start a request and never finish it are cut
// off after ReadTimeout, and while they hang other clients are served.
func TestSlowClientsAreCutOff(t *testing.T) {
	g := newTestGateway(t, Config{ReadTimeout: 300 * time.Millisecond}, enrich.Config{}, newFakeWAL())
	var slow []net.Conn
	for range 50 {
		c, err := g.client.Dial("sluice")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("POST /v1/beacon HTTP/1.1\r\nHost: sluice\r\nContent-Type: text/plain\r\n")); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
	}
	if r := g.do(t, "POST", "/v1/beacon", "text/plain", `{"type":"a"}`, nil); r.code != 204 {
		t.Fatalf("a normal client while 50 hang: %d %s", r.code, r.body)
	}
	for i, c := range slow {
		// The deadline only guards against a hang; the server closes first.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("slow connection %d was not closed by the server: %v", i, err)
		}
	}
}
