package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/enrich"
)

func TestPixel(t *testing.T) {
	event := `{"type":"page_view","url":"https://shop.example.com/?q=1"}`
	tests := map[string]struct {
		method, query string
		wantCode      int
		wantPayload   map[string]any // nil: no record
		wantDead      bool
	}{
		"query parameters": {
			method: "GET", query: "?type=page_view&path=%2Fcart&path=%2Fcheckout",
			wantCode: 200, wantPayload: map[string]any{"type": "page_view", "path": "/checkout"},
		},
		"URL-encoded JSON in e": {
			method: "GET", query: "?e=" + url.QueryEscape(event),
			wantCode: 200, wantPayload: map[string]any{"type": "page_view", "url": "https://shop.example.com/?q=1"},
		},
		"base64url JSON in data": {
			method: "GET", query: "?data=" + base64.RawURLEncoding.EncodeToString([]byte(event)),
			wantCode: 200, wantPayload: map[string]any{"type": "page_view", "url": "https://shop.example.com/?q=1"},
		},
		"padded base64url": {
			method: "GET", query: "?e=" + base64.URLEncoding.EncodeToString([]byte(`{"type":"x"}`)),
			wantCode: 200, wantPayload: map[string]any{"type": "x"},
		},
		"HEAD is answered but not recorded": {
			method: "HEAD", query: "?type=ping", wantCode: 200,
		},
		"no type goes to the dead-letter topic": {
			method: "GET", query: "?path=%2F", wantCode: 200, wantDead: true,
		},
		"no parameters":     {method: "GET", query: "", wantCode: 400},
		"e is not JSON":     {method: "GET", query: "?e=%7Bnope", wantCode: 400},
		"e is not base64":   {method: "GET", query: "?e=***", wantCode: 400},
		"POST is not a GET": {method: "POST", query: "?type=x", wantCode: 405},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := newTestGateway(t, Config{}, enrich.Config{}, newFakeWAL())
			r := g.do(t, tc.method, "/v1/pixel.gif"+tc.query, "", "", nil)
			if r.code != tc.wantCode {
				t.Fatalf("code %d, want %d (body %q)", r.code, tc.wantCode, r.body)
			}
			if r.headers["Content-Type"] != "image/gif" || !strings.Contains(r.headers["Cache-Control"], "no-store") {
				t.Errorf("headers %v, want an uncacheable image/gif", r.headers)
			}
			if tc.method != "HEAD" && !bytes.Equal([]byte(r.body), transparentGIF) {
				t.Errorf("body %q is not the GIF", r.body)
			}
			recs := g.wal.records()
			switch {
			case tc.wantDead:
				if len(recs) != 1 || !recs[0].DeadLetter {
					t.Fatalf("records %+v, want one dead letter", recs)
				}
			case tc.wantPayload == nil:
				if len(recs) != 0 {
					t.Fatalf("records %+v, want none", recs)
				}
			default:
				if len(recs) != 1 || recs[0].DeadLetter {
					t.Fatalf("records %+v, want one event", recs)
				}
				var env struct{ Payload map[string]any }
				if err := json.Unmarshal(recs[0].Value, &env); err != nil {
					t.Fatal(err)
				}
				if len(env.Payload) != len(tc.wantPayload) {
					t.Fatalf("payload %v, want %v", env.Payload, tc.wantPayload)
				}
				for k, v := range tc.wantPayload {
					if env.Payload[k] != v {
						t.Errorf("payload %v, want %v", env.Payload, tc.wantPayload)
					}
				}
			}
		})
	}
}
