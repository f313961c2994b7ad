package gateway

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/enrich"
)

func TestLoadWriteKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keys, err := LoadWriteKeys(write("ok", "# key source\nwk_web web-shop\n\n  wk_ios   ios-app  \n"))
	if err != nil || len(keys) != 2 || keys["wk_web"] != "web-shop" || keys["wk_ios"] != "ios-app" {
		t.Fatalf("LoadWriteKeys = %v, %v", keys, err)
	}
	for name, body := range map[string]string{
		"three fields": "k s extra\n", "one field": "k\n", "duplicate": "k a\nk b\n", "empty": "# nothing\n",
	} {
		if _, err := LoadWriteKeys(write(name, body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := LoadWriteKeys(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file: no error")
	}
}

// With write keys, a beacon or pixel needs a known key in one of the three
// places; its source lands in the envelope, and the key never does.
func TestWriteKeys(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("wk_web:"))
	tests := []struct {
		name, method, path, body string
		headers                  map[string]string
		code                     int
		errText                  string
	}{
		{"basic auth", "POST", "/v1/beacon", `{"type":"a"}`, map[string]string{"Authorization": basic}, 204, ""},
		{"header", "POST", "/v1/beacon", `{"type":"a"}`, map[string]string{"X-Write-Key": "wk_web"}, 204, ""},
		{"query (sendBeacon)", "POST", "/v1/beacon?key=wk_web", `{"type":"a"}`, nil, 204, ""},
		{"pixel query", "GET", "/v1/pixel.gif?type=pv&key=wk_web", "", nil, 200, ""},
		{"missing", "POST", "/v1/beacon", `{"type":"a"}`, nil, 401, "missing write key"},
		{"unknown", "POST", "/v1/beacon", `{"type":"a"}`, map[string]string{"X-Write-Key": "nope"}, 401, "unknown write key"},
		{"bad basic", "POST", "/v1/beacon", `{"type":"a"}`, map[string]string{"Authorization": "Basic !!!"}, 401, "missing write key"},
		{"pixel without key", "GET", "/v1/pixel.gif?type=pv", "", nil, 401, "GIF89a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wal := newFakeWAL()
			g := newTestGateway(t, Config{WriteKeys: WriteKeys{"wk_web": "web-shop"}}, enrich.Config{}, wal)
			r := g.do(t, tc.method, tc.path, "text/plain", tc.body, tc.headers)
			if r.code != tc.code || !strings.Contains(r.body, tc.errText) {
				t.Fatalf("got %d %q, want %d with %q", r.code, r.body, tc.code, tc.errText)
			}
			recs := wal.records()
			if tc.code == 401 {
				if len(recs) != 0 || r.headers["Www-Authenticate"] == "" && r.headers["WWW-Authenticate"] == "" {
					t.Fatalf("401 with %d records and headers %v", len(recs), r.headers)
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			if strings.Contains(string(recs[0].Value), "wk_web") {
				t.Fatalf("the write key reached the envelope: %s", recs[0].Value)
			}
			var env struct {
				Context struct{ Source string }
			}
			json.Unmarshal(recs[0].Value, &env)
			if env.Context.Source != "web-shop" {
				t.Errorf("source %q, want web-shop", env.Context.Source)
			}
		})
	}
}
