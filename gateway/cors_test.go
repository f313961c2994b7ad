package gateway

import (
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/enrich"
)

func TestParseCORSOrigins(t *testing.T) {
	bad := []string{"example.com", "ftp://example.com", "https://", "https://example.com/path", "https://a.*.example.com",
		"https://*.", "https://user@example.com", "https://example.com?x=1"}
	for _, o := range bad {
		if _, err := parseCORSOrigins([]string{o}); err == nil || !strings.Contains(err.Error(), o) {
			t.Errorf("parseCORSOrigins(%q) = %v, want an error naming it", o, err)
		}
	}
	p, err := parseCORSOrigins([]string{"https://shop.example.com", "https://*.example.org", "http://localhost:3000", " HTTPS://Caps.Example.NET "})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"https://shop.example.com":      true,
		"https://SHOP.example.com":      true,
		"http://shop.example.com":       false, // other scheme
		"https://evil.example.com":      false,
		"https://shop.example.com.evil": false,
		"https://a.example.org":         true,
		"https://a.b.example.org":       true,
		"https://example.org":           false, // the pattern opens subdomains only
		"https://a.example.org:8443":    false, // other port
		"https://evilexample.org":       false,
		"http://localhost:3000":         true,
		"http://localhost:3001":         false,
		"https://caps.example.net":      true,
		"null":                          false,
		"":                              false,
	} {
		if got := p.allows([]byte(origin)); got != want {
			t.Errorf("allows(%q) = %v, want %v", origin, got, want)
		}
	}
	for _, list := range [][]string{nil, {"*"}, {"https://a.example.com", "*"}} {
		p, err := parseCORSOrigins(list)
		if err != nil || !p.allows([]byte("https://anything.test")) {
			t.Errorf("%q: any origin should be allowed (%v)", list, err)
		}
	}
}

// An allowed origin is echoed with credentials on every answer, errors and
// preflights on any path included; a disallowed one gets no CORS headers.
func TestCORSHeaders(t *testing.T) {
	g := newTestGateway(t, Config{CORSOrigins: []string{"https://*.example.com"}}, enrich.Config{}, newFakeWAL())
	allowed := map[string]string{"Origin": "https://shop.example.com"}
	denied := map[string]string{"Origin": "https://evil.test"}
	preflight := func(h map[string]string) map[string]string {
		out := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, authorization, x-retry-count"}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name, method, path, ct, body string
		headers                      map[string]string
		code                         int
		cors                         bool
	}{
		{"beacon", "POST", "/v1/beacon", "text/plain", `{"type":"a"}`, allowed, 204, true},
		{"beacon error", "POST", "/v1/beacon", "text/plain", `{`, allowed, 400, true},
		{"unknown path", "GET", "/nope", "", "", allowed, 404, true},
		{"pixel", "GET", "/v1/pixel.gif?type=pv", "", "", allowed, 200, true},
		{"preflight beacon", "OPTIONS", "/v1/beacon", "", "", preflight(allowed), 204, true},
		{"preflight Segment path", "OPTIONS", "/v1/t", "", "", preflight(allowed), 204, true},
		{"preflight pixel", "OPTIONS", "/v1/pixel.gif", "", "", preflight(allowed), 204, true},
		{"denied beacon", "POST", "/v1/beacon", "text/plain", `{"type":"a"}`, denied, 204, false},
		{"denied preflight", "OPTIONS", "/v1/beacon", "", "", preflight(denied), 204, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := g.do(t, tc.method, tc.path, tc.ct, tc.body, tc.headers)
			if r.code != tc.code {
				t.Fatalf("status %d %q, want %d", r.code, r.body, tc.code)
			}
			acao, acac := r.headers["Access-Control-Allow-Origin"], r.headers["Access-Control-Allow-Credentials"]
			if !strings.Contains(r.headers["Vary"], "Origin") {
				t.Errorf("Vary %q lacks Origin", r.headers["Vary"])
			}
			if !tc.cors {
				if acao != "" || acac != "" || r.headers["Access-Control-Allow-Headers"] != "" {
					t.Fatalf("a disallowed origin got CORS headers: %v", r.headers)
				}
				return
			}
			if acao != tc.headers["Origin"] || acac != "true" {
				t.Fatalf("Allow-Origin %q, Allow-Credentials %q; want the origin echoed with credentials", acao, acac)
			}
			if tc.method == "OPTIONS" {
				if got := r.headers["Access-Control-Allow-Headers"]; !strings.Contains(got, "authorization") {
					t.Errorf("Allow-Headers %q does not allow the requested Authorization", got)
				}
				if r.headers["Access-Control-Max-Age"] == "" || !strings.Contains(r.headers["Access-Control-Allow-Methods"], "POST") {
					t.Errorf("preflight headers %v: want Max-Age and POST among the methods", r.headers)
				}
			}
		})
	}
}
