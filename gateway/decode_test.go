package gateway

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestSplitBody(t *testing.T) {
	f := func(body string, want []string) {
		t.Helper()
		got, err := splitBody([]byte(body))
		if err != nil {
			t.Fatalf("splitBody(%q): %v", body, err)
		}
		if len(got) != len(want) {
			t.Fatalf("splitBody(%q) = %d elements, want %d", body, len(got), len(want))
		}
		for i := range want {
			if string(got[i]) != want[i] {
				t.Errorf("splitBody(%q)[%d] = %s, want %s", body, i, got[i], want[i])
			}
		}
	}
	f(`{"type":"a"}`, []string{`{"type":"a"}`})
	f("  \n{\"type\":\"a\"}\n", []string{`{"type":"a"}`})
	f("\xef\xbb\xbf{\"type\":\"a\"}", []string{`{"type":"a"}`})
	f(`[{"type":"a"},{"type":"b"}]`, []string{`{"type":"a"}`, `{"type":"b"}`})
	f(`[{"type":"a"}, 3, "x", null]`, []string{`{"type":"a"}`, `3`, `"x"`, `null`})
	f("{\"type\":\"a\"}\n{\"type\":\"b\"}\n", []string{`{"type":"a"}`, `{"type":"b"}`})
	f("{\"type\":\"a\"}\r\n{\"type\":\"b\"}", []string{`{"type":"a"}`, `{"type":"b"}`})
	f(`{"type":"a"}{"type":"b"}`, []string{`{"type":"a"}`, `{"type":"b"}`})
	f(`"just a string"`, []string{`"just a string"`})
}

func TestSplitBodyErrors(t *testing.T) {
	f := func(body string, wantSubstr string, wantErr error) {
		t.Helper()
		_, err := splitBody([]byte(body))
		if err == nil {
			t.Fatalf("splitBody(%q): no error", body)
		}
		if wantErr != nil && !errors.Is(err, wantErr) {
			t.Errorf("splitBody(%q) = %v, want %v", body, err, wantErr)
		}
		if !strings.Contains(err.Error(), wantSubstr) {
			t.Errorf("splitBody(%q) = %q, want it to mention %q", body, err, wantSubstr)
		}
	}
	f(``, "empty body", errEmptyBody)
	f(" \n\t", "empty body", errEmptyBody)
	f(`[]`, "no events", errEmptyBatch)
	f(`{"type":`, "unexpected end", nil)
	f(`[{"type":"a"}`, "unexpected end", nil)
	f(`{"type":"a"} garbage`, "invalid JSON", nil)
	f("{\"type\":\"a\"}\n{oops}", "invalid JSON", nil)
	f(`[{"type":"a"}] [1]`, "invalid JSON", nil)
	f(`{"a":1,}`, "invalid JSON", nil)
}

func FuzzSplitBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"a"}`, `[{"type":"a"},{"type":"b"}]`, "{\"type\":\"a\"}\n{\"type\":\"b\"}\n",
		`[]`, ``, `{"type":`, `[1,"x",null,{}]`, "\xef\xbb\xbf{}", `{"a":{"b":[1,2,{"c":"\u00e9"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		elems, err := splitBody(body)
		if err != nil {
			if len(elems) != 0 {
				t.Fatalf("error %v with %d elements", err, len(elems))
			}
			return
		}
		if len(elems) == 0 {
			t.Fatal("no error and no elements")
		}
		for _, e := range elems {
			if !json.Valid(e) {
				t.Fatalf("element %q is not valid JSON", e)
			}
		}
	})
}
