package gateway

import (
	"encoding/json"
	"strings"
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

func FuzzGunzipCapped(f *testing.F) { fuzzDecompressor(f, gzippedF, gunzipCapped) }

func FuzzUnzstdCapped(f *testing.F) {
	fuzzDecompressor(f, func(s string) string { return zstded([]byte(s)) }, unzstdCapped)
}

// fuzzDecompressor checks that decode never returns more than its cap, nor
// output with an error, whatever the body.
func fuzzDecompressor(f *testing.F, compress func(string) string, decode func([]byte, int) ([]byte, error)) {
	f.Add([]byte{})
	f.Add([]byte(`{"type":"a"}`))
	for _, s := range []string{`{"type":"a"}`, "", string(make([]byte, 5000))} {
		f.Add([]byte(compress(s)))
	}
	const limit = 4096
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := decode(body, limit)
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

func FuzzUrlencodedEvents(f *testing.F) {
	for _, s := range []string{"type=a&path=%2F", "e=%7B%22type%22%3A%22x%22%7D", "data=W3sidHlwZSI6ImEifV0", "e=***", "", "a=1&a=2&b", "%ff=%fe", "e=%5B%5D"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		elems, err := urlencodedEvents(body)
		if err != nil {
			return
		}
		if len(elems) == 0 {
			t.Fatal("no error and no events")
		}
		for _, e := range elems {
			if !json.Valid(e) {
				t.Fatalf("urlencodedEvents(%q) gave %q, not valid JSON", body, e)
			}
		}
	})
}

func FuzzMultipartEvents(f *testing.F) {
	ct, body := multipartBody(f, [][2]string{{"type", "a"}, {"path", "/"}}, false)
	boundary := strings.TrimPrefix(ct, "multipart/form-data; boundary=")
	f.Add(boundary, []byte(body))
	_, withE := multipartBody(f, [][2]string{{"e", `[{"type":"a"}]`}}, false)
	f.Add(boundary, []byte(withE))
	f.Add("x", []byte("--x\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\na\r\n--x--\r\n"))
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, boundary string, body []byte) {
		elems, err := multipartEvents("multipart/form-data; boundary="+boundary, body)
		if err != nil {
			return
		}
		for _, e := range elems {
			if !json.Valid(e) {
				t.Fatalf("multipartEvents gave %q, not valid JSON", e)
			}
		}
	})
}
