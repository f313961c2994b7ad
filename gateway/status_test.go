package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluice-gateway/sluice/enrich"
)

func getAdmin(t *testing.T, srv *httptest.Server, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// GET /status shows every configured section, readiness and the buffer's
// limits; a sink that is down changes neither /readyz nor the status code.
func TestStatusEndpoint(t *testing.T) {
	var sinkState atomic.Value // read by the admin server's goroutines
	sinkState.Store("up")
	cfg := Config{
		Buffer: BufferLimits{Used: func() int64 { return 1234 }, Soft: 800, Hard: 1000},
		Status: map[string]StatusSource{
			"sink":   StatusFunc(func() any { return map[string]any{"state": sinkState.Load(), "backlog_records": 7} }),
			"buffer": StatusFunc(func() any { return struct{ DiskBytes int64 }{1234} }),
		},
	}
	g := newTestGateway(t, cfg, enrich.Config{}, newFakeWAL())
	admin := httptest.NewServer(g.srv.adminMux())
	defer admin.Close()
	g.srv.SetReady(true)

	for _, state := range []string{"up", "degraded", "down"} {
		sinkState.Store(state)
		code, hdr, body := getAdmin(t, admin, "/status")
		if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" || hdr.Get("Cache-Control") != "no-store" {
			t.Fatalf("sink %s: /status %d %v", state, code, hdr)
		}
		var got struct {
			Ready     bool
			Sink      map[string]any
			Buffer    map[string]any
			Admission map[string]any
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("sink %s: /status body is not JSON: %v\n%s", state, err, body)
		}
		if !got.Ready || got.Sink["state"] != state || got.Sink["backlog_records"] != 7.0 || got.Buffer["DiskBytes"] != 1234.0 {
			t.Errorf("sink %s: /status = %s", state, body)
		}
		if a := got.Admission; a["used_bytes"] != 1234.0 || a["soft_limit_bytes"] != 800.0 || a["hard_limit_bytes"] != 1000.0 || a["when_full"] != "reject" {
			t.Errorf("sink %s: admission = %v", state, a)
		}
		if code, _, _ := getAdmin(t, admin, "/readyz"); code != http.StatusOK {
			t.Errorf("sink %s: /readyz %d, want 200: readiness never depends on Kafka", state, code)
		}
	}

	g.srv.SetReady(false)
	if _, _, body := getAdmin(t, admin, "/status"); !strings.Contains(body, `"ready": false`) {
		t.Errorf("/status while shutting down: %s", body)
	}
}

// Without sections or limits /status still answers: readiness alone.
func TestStatusEndpointMinimal(t *testing.T) {
	g := newTestGateway(t, Config{}, enrich.Config{}, newFakeWAL())
	admin := httptest.NewServer(g.srv.adminMux())
	defer admin.Close()
	g.srv.SetReady(true)
	code, _, body := getAdmin(t, admin, "/status")
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != http.StatusOK {
		t.Fatalf("/status %d %q: %v", code, body, err)
	}
	if len(got) != 1 || got["ready"] != true {
		t.Errorf("/status = %v, want only ready=true", got)
	}
}

// A section that cannot be encoded is a 500 naming the problem, not a
// truncated body.
func TestStatusEndpointEncodeError(t *testing.T) {
	cfg := Config{Status: map[string]StatusSource{"bad": StatusFunc(func() any { return make(chan int) })}}
	g := newTestGateway(t, cfg, enrich.Config{}, newFakeWAL())
	admin := httptest.NewServer(g.srv.adminMux())
	defer admin.Close()
	code, _, body := getAdmin(t, admin, "/status")
	if code != http.StatusInternalServerError || !strings.Contains(body, "status:") || !strings.Contains(body, "chan") {
		t.Errorf("/status with an unencodable section: %d %q, want 500 naming the error", code, body)
	}
}
