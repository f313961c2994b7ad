package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
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

func TestSplitBodyNesting(t *testing.T) {
	deep := strings.Repeat("[", maxNesting+1) + strings.Repeat("]", maxNesting+1)
	if _, err := splitBody([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("a body nested %d deep: %v, want a nesting error", maxNesting+1, err)
	}
	// 100,000 levels inside a string are just characters.
	ok := `{"type":"a","s":"` + strings.Repeat("[", 100_000) + `"}`
	if elems, err := splitBody([]byte(ok)); err != nil || len(elems) != 1 {
		t.Fatalf("brackets inside a string: %v", err)
	}
	hostile := strings.Repeat(`{"a":`, 100_000)
	if _, err := splitBody([]byte(hostile)); err == nil {
		t.Fatal("100,000 unclosed objects accepted")
	}
	edge := strings.Repeat("[", maxNesting) + strings.Repeat("]", maxNesting)
	if _, err := splitBody([]byte(edge)); err != nil {
		t.Fatalf("a body nested exactly %d deep: %v", maxNesting, err)
	}
}

// splitBodyStdlib is the encoding/json implementation splitBody replaced:
// the oracle of FuzzSplitBody.
func splitBodyStdlib(body []byte) ([][]byte, error) {
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errEmptyBody
	}
	if trimmed[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(trimmed, &elems); err != nil {
			return nil, err
		}
		if len(elems) == 0 {
			return nil, errEmptyBatch
		}
		out := make([][]byte, len(elems))
		for i, e := range elems {
			out[i] = e
		}
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var out [][]byte
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
}

// nesting is the deepest bracket level of b outside strings.
func nesting(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// gluedScalars says whether encoding/json's stream decoder split body into
// values at a scalar with nothing between it and the next value ("01" → 0, 1;
// `1"x"`): splitBody rejects those on purpose.
func gluedScalars(body []byte, elems [][]byte) bool {
	off := 0
	for i, e := range elems {
		j := bytes.Index(body[off:], e)
		if j < 0 {
			return false
		}
		off += j + len(e)
		if i+1 < len(elems) && e[0] != '{' && e[0] != '[' && off < len(body) && bytes.HasPrefix(body[off:], elems[i+1]) {
			return true
		}
	}
	return false
}

// FuzzSplitBody checks splitBody against encoding/json: the same elements,
// byte for byte, or both an error (bodies nested past maxNesting excepted).
func FuzzSplitBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"a"}`, `[{"type":"a"},{"type":"b"}]`, "{\"type\":\"a\"}\n{\"type\":\"b\"}\n",
		`[]`, ``, `{"type":`, `[1,"x",null,{}]`, "\xef\xbb\xbf{}", `{"a":{"b":[1,2,{"c":"\u00e9"}]}}`,
		`01`, `-`, `1e`, `"\ud800"`, `[1,]`, `{"a" 1}`, `tru`, `1 2 "x"[3]{}`, `"a\"b"`, "[\"\x01\"]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		elems, err := splitBody(body)
		want, wantErr := splitBodyStdlib(body)
		if err != nil {
			if len(elems) != 0 {
				t.Fatalf("error %v with %d elements", err, len(elems))
			}
			if wantErr == nil && nesting(body) <= maxNesting && !gluedScalars(body, want) {
				t.Fatalf("splitBody(%q): %v; encoding/json splits it into %q", body, err, want)
			}
			return
		}
		if wantErr != nil {
			t.Fatalf("splitBody(%q) = %q; encoding/json: %v", body, elems, wantErr)
		}
		if len(elems) != len(want) {
			t.Fatalf("splitBody(%q) = %q, encoding/json %q", body, elems, want)
		}
		for i := range elems {
			if !bytes.Equal(elems[i], want[i]) {
				t.Fatalf("splitBody(%q)[%d] = %q, encoding/json %q", body, i, elems[i], want[i])
			}
		}
	})
}
