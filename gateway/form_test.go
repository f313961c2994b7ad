package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime/multipart"
	"net/url"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/enrich"
)

func multipartBody(t testing.TB, fields [][2]string, file bool) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range fields {
		w.WriteField(f[0], f[1])
	}
	if file {
		fw, _ := w.CreateFormFile("upload", "x.bin")
		fw.Write([]byte("binary"))
	}
	w.Close()
	return w.FormDataContentType(), buf.String()
}

// Forms (sendBeacon with URLSearchParams) and multipart (sendBeacon with
// FormData) map to events as documented in form.go.
func TestFormBodies(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString([]byte(`[{"type":"a"},{"type":"b"}]`))
	mpFields, mpBody := multipartBody(t, [][2]string{{"type", "page_view"}, {"path", "/cart"}}, false)
	mpEventCT, mpEvent := multipartBody(t, [][2]string{{"e", `{"type":"signup","plan":"pro"}`}}, false)
	mpFileCT, mpFile := multipartBody(t, [][2]string{{"type", "x"}}, true)
	tests := []struct {
		name, ct, body string
		code           int
		types          []string // event types that reached the WAL
		bodyHas        string
	}{
		{"fields", "application/x-www-form-urlencoded", "type=page_view&path=%2Fcart&type=click", 204, []string{"click"}, ""},
		{"e holds JSON", "application/x-www-form-urlencoded", "e=" + url.QueryEscape(`{"type":"a","n":1}`), 204, []string{"a"}, ""},
		{"data holds a base64url array", "application/x-www-form-urlencoded;charset=UTF-8", "data=" + b64, 204, []string{"a", "b"}, ""},
		{"e not JSON", "application/x-www-form-urlencoded", "e=***", 400, nil, "neither JSON"},
		{"e broken JSON", "application/x-www-form-urlencoded", "e=" + url.QueryEscape(`{"type":`), 400, nil, "field e"},
		{"empty form", "application/x-www-form-urlencoded", "", 400, nil, "no fields"},
		{"fields without a type go to the dead-letter topic", "application/x-www-form-urlencoded", "path=%2F", 200, nil, `"invalid":1`},
		{"multipart fields", mpFields, mpBody, 204, []string{"page_view"}, ""},
		{"multipart e", mpEventCT, mpEvent, 204, []string{"signup"}, ""},
		{"multipart with a file", mpFileCT, mpFile, 400, nil, "is a file"},
		{"multipart without a boundary", "multipart/form-data", mpBody, 400, nil, "boundary"},
		{"multipart truncated", mpFields, mpBody[:len(mpBody)/2], 400, nil, "multipart"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wal := newFakeWAL()
			g := newTestGateway(t, Config{}, enrich.Config{}, wal)
			r := g.do(t, "POST", "/v1/beacon", tc.ct, tc.body, nil)
			if r.code != tc.code || !strings.Contains(r.body, tc.bodyHas) {
				t.Fatalf("got %d %q, want %d containing %q", r.code, r.body, tc.code, tc.bodyHas)
			}
			var types []string
			for _, rec := range wal.records() {
				if rec.DeadLetter {
					continue
				}
				var env struct{ Type string }
				json.Unmarshal(rec.Value, &env)
				types = append(types, env.Type)
			}
			if strings.Join(types, ",") != strings.Join(tc.types, ",") {
				t.Errorf("event types %v, want %v", types, tc.types)
			}
		})
	}
}
