package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// errEmptyBody and errEmptyBatch are answered 400.
var (
	errEmptyBody  = errors.New("empty body")
	errEmptyBatch = errors.New("empty JSON array: no events")
)

// splitBody splits a request body into its events. A body is one JSON value,
// a JSON array of values, or newline-delimited JSON (any whitespace between
// values is accepted). Any syntax error rejects the whole body, so a request
// is never half accepted; elements that are valid JSON but not events are
// left for validation (and the dead-letter topic).
func splitBody(body []byte) ([][]byte, error) {
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")) // a UTF-8 BOM
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errEmptyBody
	}
	if trimmed[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(trimmed, &elems); err != nil {
			return nil, syntaxError(err)
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
			return nil, syntaxError(err)
		}
		out = append(out, raw)
	}
}

func syntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %w", se.Offset, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	return fmt.Errorf("invalid JSON: %w", err)
}
