package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"

	"github.com/valyala/fasthttp"
)

// Form and multipart bodies are what navigator.sendBeacon sends for
// URLSearchParams and FormData. They map to events like the pixel's query:
// a field e (or data) holding JSON — an object, an array of objects or
// NDJSON, URL-encoded or base64url — is the events; otherwise every field
// becomes a string field of one event (the last of repeated names wins).

var errFileInForm = errors.New("a multipart part is a file; send events as fields")

// formEvents turns form fields into event elements.
func formEvents(args *fasthttp.Args) ([][]byte, error) {
	for _, name := range pixelEventParams {
		v := args.Peek(name)
		if len(v) == 0 {
			continue
		}
		raw := bytes.TrimSpace(v)
		if len(raw) > 0 && raw[0] != '{' && raw[0] != '[' {
			dec, err := decodeBase64URL(raw)
			if err != nil {
				return nil, fmt.Errorf("field %s is neither JSON nor base64url JSON", name)
			}
			raw = dec
		}
		elems, err := splitBody(append([]byte(nil), raw...))
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", name, err)
		}
		return elems, nil
	}
	if args.Len() == 0 {
		return nil, errors.New("no fields: nothing to record")
	}
	fields := make(map[string]string, args.Len())
	args.VisitAll(func(k, v []byte) { fields[string(k)] = string(v) })
	ev, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	return [][]byte{ev}, nil
}

// urlencodedEvents parses an application/x-www-form-urlencoded body.
func urlencodedEvents(body []byte) ([][]byte, error) {
	var args fasthttp.Args
	args.ParseBytes(body)
	return formEvents(&args)
}

// multipartEvents parses a multipart/form-data body: every part must be a
// field (no file), read whole (the body is already capped).
func multipartEvents(contentType string, body []byte) ([][]byte, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return nil, errors.New("multipart body without a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var args fasthttp.Args
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("multipart: %w", err)
		}
		if part.FileName() != "" {
			return nil, errFileInForm
		}
		v, err := io.ReadAll(part)
		if err != nil {
			return nil, fmt.Errorf("multipart part %q: %w", part.FormName(), err)
		}
		args.AddBytesKV([]byte(part.FormName()), v)
	}
	return formEvents(&args)
}
