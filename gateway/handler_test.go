package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/sluice-gateway/sluice/buffer"
	"github.com/sluice-gateway/sluice/enrich"
)

// fakeWAL is an enrich.Appender that keeps what it is given. With hold set,
// each Append announces itself on entered and waits for release.
type fakeWAL struct {
	mu      sync.Mutex
	recs    []buffer.Record
	err     error
	hold    bool
	entered chan struct{}
	release chan struct{}
}

func newFakeWAL() *fakeWAL {
	return &fakeWAL{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (f *fakeWAL) Append(frames [][]byte, done func(first, last uint64, err error)) {
	if f.hold {
		f.entered <- struct{}{}
		<-f.release
	}
	f.mu.Lock()
	for _, fr := range frames {
		var r buffer.Record
		if err := buffer.DecodeRecord(fr, &r); err != nil {
			panic(err)
		}
		f.recs = append(f.recs, r)
	}
	err := f.err
	f.mu.Unlock()
	done(1, uint64(len(frames)), err)
}

func (f *fakeWAL) records() []buffer.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]buffer.Record(nil), f.recs...)
}

type testGateway struct {
	srv    *Server
	wal    *fakeWAL
	pipe   *enrich.Pipeline
	client *fasthttp.HostClient
	reg    *prometheus.Registry
}

// newTestGateway serves the public handler over an in-memory listener.
func newTestGateway(t *testing.T, cfg Config, pcfg enrich.Config, wal *fakeWAL) *testGateway {
	t.Helper()
	cfg.Registry = prometheus.NewRegistry()
	pcfg.Registerer = cfg.Registry
	pipe := enrich.New(wal, pcfg)
	srv, err := New(cfg, pipe)
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.public.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.public.Shutdown()
		ln.Close()
		<-served
		pipe.Close()
	})
	client := &fasthttp.HostClient{Addr: "sluice", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	return &testGateway{srv: srv, wal: wal, pipe: pipe, client: client, reg: cfg.Registry}
}

type response struct {
	code    int
	body    string
	headers map[string]string
}

func (g *testGateway) do(t *testing.T, method, path, contentType, body string, headers map[string]string) response {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://sluice" + path)
	req.Header.SetMethod(method)
	if contentType != "" {
		req.Header.SetContentType(contentType)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.SetBodyString(body)
	if err := g.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	out := response{code: resp.StatusCode(), body: string(resp.Body()), headers: map[string]string{}}
	for _, k := range resp.Header.PeekKeys() {
		out.headers[string(k)] = string(resp.Header.PeekBytes(k))
	}
	return out
}

func TestBeaconRequests(t *testing.T) {
	tests := map[string]struct {
		method, path, contentType, body string
		headers                         map[string]string
		wantCode                        int
		wantBody                        string // substring
		wantRecords, wantDeadLetters    int
		wantHeaders                     map[string]string
	}{
		"single object as text/plain (sendBeacon)": {
			method: "POST", path: "/v1/beacon", contentType: "text/plain;charset=UTF-8",
			body: `{"type":"page_view"}`, wantCode: 204, wantRecords: 1,
		},
		"array as application/json": {
			method: "POST", path: "/v1/beacon", contentType: "application/json",
			body: `[{"type":"a"},{"type":"b"},{"event":"c"}]`, wantCode: 204, wantRecords: 3,
		},
		"ndjson": {
			method: "POST", path: "/v1/beacon", contentType: "application/x-ndjson",
			body: "{\"type\":\"a\"}\n{\"type\":\"b\"}\n", wantCode: 204, wantRecords: 2,
		},
		"content type in upper case": {
			method: "POST", path: "/v1/beacon", contentType: "Application/JSON; charset=utf-8",
			body: `{"type":"a"}`, wantCode: 204, wantRecords: 1,
		},
		"some invalid events go to the dead-letter topic": {
			method: "POST", path: "/v1/beacon", contentType: "application/json",
			body: `[{"type":"a"},{"no_type":1},42]`, wantCode: 200, wantBody: `{"accepted":1,"invalid":2}`,
			wantRecords: 1, wantDeadLetters: 2,
		},
		"unparseable body": {
			method: "POST", path: "/v1/beacon", contentType: "application/json",
			body: `{"type":`, wantCode: 400, wantBody: `"error":"unparseable body"`,
		},
		"empty body": {
			method: "POST", path: "/v1/beacon", contentType: "text/plain",
			body: ``, wantCode: 400, wantBody: `empty body`,
		},
		"body over the limit": {
			method: "POST", path: "/v1/beacon", contentType: "application/json",
			body: `{"type":"a","pad":"` + strings.Repeat("x", 300) + `"}`, wantCode: 413, wantBody: `"error":"body too large"`,
		},
		"unsupported content type": {
			method: "POST", path: "/v1/beacon", contentType: "application/xml",
			body: `<a/>`, wantCode: 415, wantBody: `unsupported content type`,
		},
		"unsupported content encoding": {
			method: "POST", path: "/v1/beacon", contentType: "application/json",
			headers: map[string]string{"Content-Encoding": "br"},
			body:    `{"type":"a"}`, wantCode: 415, wantBody: `unsupported content encoding`,
		},
		"GET on the beacon route": {
			method: "GET", path: "/v1/beacon", wantCode: 405, wantBody: `method not allowed`,
			wantHeaders: map[string]string{"Allow": "POST, OPTIONS"},
		},
		"unknown route": {
			method: "POST", path: "/v2/nope", contentType: "application/json", body: `{}`,
			wantCode: 404, wantBody: `"error":"not found"`,
		},
		"CORS preflight": {
			method: "OPTIONS", path: "/v1/beacon",
			headers: map[string]string{
				"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST",
				"Access-Control-Request-Headers": "content-type,authorization",
			},
			wantCode: 204,
			wantHeaders: map[string]string{
				"Access-Control-Allow-Origin":      "https://shop.example.com",
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Headers":     "content-type,authorization",
				"Access-Control-Max-Age":           "86400",
				"Vary":                             "Origin",
			},
		},
		"CORS headers on a beacon and on its error": {
			method: "POST", path: "/v1/beacon", contentType: "application/json", body: `nope`,
			headers:     map[string]string{"Origin": "https://shop.example.com"},
			wantCode:    400,
			wantHeaders: map[string]string{"Access-Control-Allow-Origin": "https://shop.example.com"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := newTestGateway(t, Config{MaxBodyBytes: 256}, enrich.Config{}, newFakeWAL())
			r := g.do(t, tc.method, tc.path, tc.contentType, tc.body, tc.headers)
			if r.code != tc.wantCode {
				t.Fatalf("code %d, want %d; body %s", r.code, tc.wantCode, r.body)
			}
			if !strings.Contains(r.body, tc.wantBody) {
				t.Errorf("body %q, want it to contain %q", r.body, tc.wantBody)
			}
			if r.code >= 400 {
				var e struct{ Error, Detail string }
				if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" || e.Detail == "" {
					t.Errorf("error body %q is not {\"error\",\"detail\"}: %v", r.body, err)
				}
			}
			for k, v := range tc.wantHeaders {
				if r.headers[k] != v {
					t.Errorf("header %s = %q, want %q", k, r.headers[k], v)
				}
			}
			var ok, dead int
			for _, rec := range g.wal.records() {
				if rec.DeadLetter {
					dead++
				} else {
					ok++
				}
			}
			if ok != tc.wantRecords || dead != tc.wantDeadLetters {
				t.Errorf("wal got %d records and %d dead letters, want %d and %d", ok, dead, tc.wantRecords, tc.wantDeadLetters)
			}
		})
	}
}

func TestWALErrorIs503(t *testing.T) {
	wal := newFakeWAL()
	wal.err = errors.New("disk on fire")
	g := newTestGateway(t, Config{}, enrich.Config{}, wal)
	r := g.do(t, "POST", "/v1/beacon", "application/json", `{"type":"a"}`, nil)
	if r.code != 503 || r.headers["Retry-After"] == "" || !strings.Contains(r.body, "disk on fire") {
		t.Fatalf("got %d %v %s, want 503 with Retry-After naming the error", r.code, r.headers, r.body)
	}
}

func TestAckTimeoutIs503(t *testing.T) {
	wal := newFakeWAL()
	wal.hold = true
	g := newTestGateway(t, Config{AckTimeout: 20 * time.Millisecond}, enrich.Config{Workers: 1}, wal)
	r := g.do(t, "POST", "/v1/beacon", "application/json", `{"type":"a"}`, nil)
	close(wal.release)
	if r.code != 503 || r.headers["Retry-After"] == "" || !strings.Contains(r.body, "timed out") {
		t.Fatalf("got %d %v %s, want 503 timed out", r.code, r.headers, r.body)
	}
}

// With ack=enqueue the answer does not wait for the WAL, which lets the test
// fill the intake queue deterministically: the one worker holds request 1,
// request 2 fills the queue of one, request 3 finds it full.
func TestQueueFullIs503(t *testing.T) {
	wal := newFakeWAL()
	wal.hold = true
	g := newTestGateway(t, Config{Ack: AckEnqueue}, enrich.Config{Workers: 1, QueueSize: 1}, wal)
	defer close(wal.release)
	if r := g.do(t, "POST", "/v1/beacon", "application/json", `{"type":"1"}`, nil); r.code != 204 {
		t.Fatalf("request 1: %d %s", r.code, r.body)
	}
	<-wal.entered
	if r := g.do(t, "POST", "/v1/beacon", "application/json", `{"type":"2"}`, nil); r.code != 204 {
		t.Fatalf("request 2: %d %s", r.code, r.body)
	}
	r := g.do(t, "POST", "/v1/beacon", "application/json", `{"type":"3"}`, nil)
	if r.code != 503 || r.headers["Retry-After"] != "1" || !strings.Contains(r.body, "overloaded") {
		t.Fatalf("request 3: got %d %v %s, want 503 overloaded with Retry-After", r.code, r.headers, r.body)
	}
}

func TestClosedPipelineIs503(t *testing.T) {
	g := newTestGateway(t, Config{}, enrich.Config{}, newFakeWAL())
	g.pipe.Close()
	r := g.do(t, "POST", "/v1/beacon", "application/json", `{"type":"a"}`, nil)
	if r.code != 503 || !strings.Contains(r.body, "shutting down") || r.headers["Connection"] != "close" {
		t.Fatalf("got %d %v %s, want 503 shutting down with Connection: close", r.code, r.headers, r.body)
	}
}

func TestEnvelopeCarriesRequestContext(t *testing.T) {
	g := newTestGateway(t, Config{}, enrich.Config{}, newFakeWAL())
	r := g.do(t, "POST", "/v1/beacon", "text/plain", `{"type":"page_view","anonymous_id":"anon-1"}`, map[string]string{
		"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
		"Origin":     "https://shop.example.com",
		"Referer":    "https://shop.example.com/cart",
	})
	if r.code != 204 {
		t.Fatalf("code %d: %s", r.code, r.body)
	}
	recs := g.wal.records()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	var env struct {
		ID          string `json:"id"`
		ReceivedAt  string `json:"received_at"`
		Type        string `json:"type"`
		AnonymousID string `json:"anonymous_id"`
		Context     struct {
			UserAgent string `json:"user_agent"`
			Origin    string `json:"origin"`
			Referer   string `json:"referer"`
			UA        struct{ Browser, OS, Device string }
		}
		Payload map[string]any
	}
	if err := json.Unmarshal(recs[0].Value, &env); err != nil {
		t.Fatalf("envelope %s: %v", recs[0].Value, err)
	}
	if string(recs[0].Key) != "anon-1" || env.Type != "page_view" || env.ID == "" || env.ReceivedAt == "" ||
		env.AnonymousID != "anon-1" || !strings.HasPrefix(env.Context.UserAgent, "Mozilla/5.0 (iPhone") ||
		env.Context.Origin != "https://shop.example.com" || env.Context.Referer != "https://shop.example.com/cart" ||
		env.Context.UA.Device != "mobile" || env.Payload["type"] != "page_view" {
		t.Errorf("envelope %s, key %q", recs[0].Value, recs[0].Key)
	}
}

func TestAdminEndpoints(t *testing.T) {
	g := newTestGateway(t, Config{}, enrich.Config{}, newFakeWAL())
	g.do(t, "POST", "/v1/beacon", "application/json", `{"type":"a"}`, nil)
	admin := httptest.NewServer(g.srv.adminMux())
	defer admin.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	g.srv.SetReady(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz while ready: %d", code)
	}
	g.srv.SetReady(false)
	if code, _ := get("/readyz"); code != 503 {
		t.Errorf("/readyz while not ready: %d", code)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, `sluice_http_requests_total{code="204",route="/v1/beacon"} 1`) ||
		!strings.Contains(body, `sluice_events_total{outcome="accepted"} 1`) {
		t.Errorf("/metrics %d:\n%s", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ without --pprof: %d", code)
	}
}

// Shutdown lets a request that is waiting for its WAL write finish with its
// 2xx, and turns readiness off first.
func TestShutdownFinishesInFlightRequests(t *testing.T) {
	wal := newFakeWAL()
	wal.hold = true
	pipe := enrich.New(wal, enrich.Config{})
	defer pipe.Close()
	srv, err := New(Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Registry: prometheus.NewRegistry()}, pipe)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Post("http://"+srv.Addr()+"/v1/beacon", "application/json", strings.NewReader(`{"type":"a"}`))
		if err != nil {
			res <- result{err: err}
			return
		}
		resp.Body.Close()
		res <- result{code: resp.StatusCode}
	}()
	<-wal.entered // the request is in flight, waiting for the WAL
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	for srv.ready.Load() {
		runtime.Gosched()
	}
	close(wal.release)
	if r := <-res; r.err != nil || r.code != 204 {
		t.Fatalf("in-flight request: %d %v, want 204", r.code, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", srv.Addr(), time.Second); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// An event over --max-event-bytes goes to the dead-letter topic with its
// reason instead of becoming a record Kafka would refuse.
func TestOversizedEventIsDeadLettered(t *testing.T) {
	g := newTestGateway(t, Config{MaxEventBytes: 100}, enrich.Config{}, newFakeWAL())
	big := `{"type":"big","pad":"` + strings.Repeat("x", 200) + `"}`
	r := g.do(t, "POST", "/v1/beacon", "application/json", `[{"type":"small"},`+big+`]`, nil)
	if r.code != 200 || r.body != `{"accepted":1,"invalid":1}` {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	recs := g.wal.records()
	if len(recs) != 2 || !recs[1].DeadLetter {
		t.Fatalf("records %+v", recs)
	}
	var dl struct{ Reason, Raw string }
	if err := json.Unmarshal(recs[1].Value, &dl); err != nil {
		t.Fatal(err)
	}
	if dl.Reason != "event is "+strconv.Itoa(len(big))+" bytes, over the 100-byte limit" || dl.Raw != big {
		t.Errorf("dead letter %s", recs[1].Value)
	}
}

func TestTooManyEventsIs413(t *testing.T) {
	g := newTestGateway(t, Config{MaxBatchEvents: 3}, enrich.Config{}, newFakeWAL())
	if r := g.do(t, "POST", "/v1/beacon", "application/x-ndjson", "1\n1\n1\n", nil); r.code != 200 {
		t.Fatalf("3 events: %d %s", r.code, r.body)
	}
	r := g.do(t, "POST", "/v1/beacon", "application/x-ndjson", "1\n1\n1\n1\n", nil)
	if r.code != 413 || !strings.Contains(r.body, "4 events in one request; the limit is 3") {
		t.Fatalf("4 events: %d %s, want 413 naming the limit", r.code, r.body)
	}
	if n := len(g.wal.records()); n != 3 {
		t.Errorf("%d records, want only the first request's 3", n)
	}
}

// A trusted proxy may append its own X-Forwarded-For line after one the
// client forged; the hops are read across every line, rightmost first.
func TestForwardedForAcrossHeaderLines(t *testing.T) {
	proxies, err := enrich.ParseTrustedProxies("0.0.0.0/32,10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, Config{}, enrich.Config{TrustedProxies: proxies}, newFakeWAL())
	req := "POST /v1/beacon HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.7, 10.1.2.3\r\nContent-Length: 12\r\n\r\n{\"type\":\"a\"}"
	if code := rawRequest(t, g, req); code != 204 {
		t.Fatalf("status %d", code)
	}
	var env struct {
		Context struct{ IP string } `json:"context"`
	}
	if err := json.Unmarshal(g.wal.records()[0].Value, &env); err != nil {
		t.Fatal(err)
	}
	if env.Context.IP != "203.0.113.7" {
		t.Errorf("client ip %q, want 203.0.113.7 (the rightmost untrusted hop)", env.Context.IP)
	}
}

func TestHugeHeadersAre431WithoutEcho(t *testing.T) {
	g := newTestGateway(t, Config{MaxHeaderBytes: 4096}, enrich.Config{}, newFakeWAL())
	secret := "session=" + strings.Repeat("s3cr3t", 2000)
	// The server answers and closes as soon as its header buffer overflows,
	// possibly while the client is still writing: write in the background
	// and read the answer, as a browser would.
	conn, err := g.client.Dial("sluice")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go conn.Write([]byte("POST /v1/beacon HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nCookie: " +
		secret + "\r\nContent-Length: 12\r\n\r\n{\"type\":\"a\"}"))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	body := string(resp.Body())
	if resp.StatusCode() != 431 || strings.Contains(body, "s3cr3t") {
		t.Fatalf("got %d %q, want 431 without the cookie", resp.StatusCode(), body)
	}
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != "headers too large" {
		t.Errorf("body %q: %v", body, err)
	}
}

func TestErrorBodiesAreValidJSON(t *testing.T) {
	g := newTestGateway(t, Config{}, enrich.Config{}, newFakeWAL())
	for _, path := range []string{"/%00", "/%ff%fe", "/\"quoted\"", "/%5Cbackslash"} {
		r := g.do(t, "GET", path, "", "", nil)
		if r.code != 404 || !json.Valid([]byte(r.body)) {
			t.Errorf("GET %s: %d %q, want 404 with a valid JSON body", path, r.code, r.body)
		}
	}
}

// rawRequest writes req on a new connection and returns the status code.
func rawRequest(t *testing.T, g *testGateway, req string) int {
	t.Helper()
	conn, err := g.client.Dial("sluice")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode()
}
