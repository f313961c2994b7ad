package gateway

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/valyala/fasthttp"
)

func FuzzPixelEvent(f *testing.F) {
	for _, q := range []string{
		"type=page_view&path=%2F", "e=%7B%22type%22%3A%22x%22%7D", "data=eyJ0eXBlIjoieCJ9", "e=***", "",
		"a=1&a=2&b", "e=%7B", "e=eyJ0eXBlIjoieCJ9==", "%ff=%fe",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		var args fasthttp.Args
		args.Parse(query)
		ev, err := pixelEvent(&args)
		if err != nil {
			return
		}
		if !json.Valid(ev) {
			t.Fatalf("pixelEvent(%q) = %q, not valid JSON", query, ev)
		}
	})
}

func FuzzGunzipCapped(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(`{"type":"a"}`))
	var buf bytes.Buffer
	for _, s := range []string{`{"type":"a"}`, "", string(make([]byte, 5000))} {
		buf.Reset()
		buf.WriteString(gzippedF(s))
		f.Add(append([]byte(nil), buf.Bytes()...))
	}
	const limit = 4096
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := gunzipCapped(body, limit)
		if err != nil {
			if out != nil {
				t.Fatalf("error %v with output", err)
			}
			return
		}
		if len(out) > limit {
			t.Fatalf("%d bytes out, over the %d cap", len(out), limit)
		}
	})
}
