package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/tidwall/gjson"
)

// errEmptyBody and errEmptyBatch are answered 400.
var (
	errEmptyBody  = errors.New("empty body")
	errEmptyBatch = errors.New("empty JSON array: no events")
)

// maxNesting bounds how deep a body's JSON may nest. Analytics events are
// shallow, and the validator recurses: a hostile body must never make it
// follow 100,000 levels down.
const maxNesting = 64

// splitBody splits a request body into its events. A body is one JSON value,
// a JSON array of values, or newline-delimited JSON (any whitespace between
// values is accepted). Any syntax error rejects the whole body, so a request
// is never half accepted; elements that are valid JSON but not events are
// left for validation (and the dead-letter topic).
//
// It was two encoding/json passes, a fifth of the gateway's CPU per event;
// now one bracket scan finds the values and bounds their depth, gjson
// validates them, and the elements are sub-slices of body.
func splitBody(body []byte) ([][]byte, error) {
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")) // a UTF-8 BOM
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errEmptyBody
	}
	if trimmed[0] == '[' {
		return splitArray(trimmed)
	}
	var out [][]byte
	for off := 0; off < len(trimmed); off = skipSpace(trimmed, off) {
		end, err := valueEnd(trimmed, off)
		if err != nil {
			return nil, err
		}
		if !gjson.ValidBytes(trimmed[off:end]) {
			return nil, syntaxErrorAt(trimmed[off:end], off)
		}
		out = append(out, trimmed[off:end:end])
		off = end
	}
	return out, nil
}

func splitArray(arr []byte) ([][]byte, error) {
	end, err := valueEnd(arr, 0)
	if err != nil {
		return nil, err
	}
	if rest := skipSpace(arr, end); rest < len(arr) {
		return nil, fmt.Errorf("invalid JSON at byte %d: data after the array", rest)
	}
	if !gjson.ValidBytes(arr[:end]) {
		return nil, syntaxErrorAt(arr[:end], 0)
	}
	var out [][]byte
	var bad error
	gjson.ParseBytes(arr[:end]).ForEach(func(_, v gjson.Result) bool {
		// Index is the element's offset in arr; it is 0 only when gjson
		// had to copy, which a valid array never makes it do.
		start, stop := v.Index, v.Index+len(v.Raw)
		if start <= 0 || stop > end {
			bad = errors.New("invalid JSON: cannot locate an array element")
			return false
		}
		out = append(out, arr[start:stop:stop])
		return true
	})
	if bad != nil {
		return nil, bad
	}
	if len(out) == 0 {
		return nil, errEmptyBatch
	}
	return out, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// valueEnd returns the end of the JSON value starting at b[i]: the matching
// bracket of an object or array (strings skipped), the closing quote of a
// string, or the end of a literal. It checks nesting, not syntax.
func valueEnd(b []byte, i int) (int, error) {
	depth := 0
	for j := i; j < len(b); j++ {
		switch c := b[j]; c {
		case '"':
			k, err := stringEnd(b, j)
			if err != nil {
				return 0, err
			}
			if depth == 0 {
				return k, nil
			}
			j = k - 1
		case '{', '[':
			if depth++; depth > maxNesting {
				return 0, fmt.Errorf("invalid JSON at byte %d: nested deeper than %d levels", j, maxNesting)
			}
		case '}', ']':
			if depth == 0 {
				return 0, fmt.Errorf("invalid JSON at byte %d: unexpected %q", j, c)
			}
			if depth--; depth == 0 {
				return j + 1, nil
			}
		case ' ', '\t', '\r', '\n', ',', ':':
			if depth == 0 {
				if j == i {
					return 0, fmt.Errorf("invalid JSON at byte %d: unexpected %q", j, c)
				}
				return j, nil
			}
		}
	}
	if depth > 0 {
		return 0, errors.New("invalid JSON: unexpected end of input")
	}
	return len(b), nil
}

// stringEnd returns the offset just past the string whose opening quote is at b[i].
func stringEnd(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errors.New("invalid JSON: unexpected end of input")
}

// syntaxErrorAt describes why v, found at offset off of the body, is not
// valid JSON. encoding/json says it best; this is never the hot path.
func syntaxErrorAt(v []byte, off int) error {
	err := json.Unmarshal(v, new(json.RawMessage))
	if err == nil {
		return fmt.Errorf("invalid JSON at byte %d", off)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %s: %w", strconv.FormatInt(int64(off)+se.Offset, 10), err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	return fmt.Errorf("invalid JSON: %w", err)
}
