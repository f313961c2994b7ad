package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"

	"github.com/valyala/fasthttp"
)

const routePixel = "/v1/pixel.gif"

// transparentGIF is a 1x1 transparent GIF89a, the answer to every pixel
// request: a browser blocks a JSON body on an image request, so even errors
// are images (the status code still tells).
var transparentGIF = []byte{
	'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
	0x21, 0xf9, 4, 1, 0, 0, 0, 0, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b,
}

// pixelEventParams carry a whole event as JSON, URL-encoded or base64url.
var pixelEventParams = []string{"e", "data"}

func (s *Server) handlePixel(ctx *fasthttp.RequestCtx) {
	if ctx.IsHead() {
		// Link checkers and prefetchers, not page views: answer, record nothing.
		ctx.SetStatusCode(fasthttp.StatusOK)
		return
	}
	if s.rateLimited(ctx) {
		return // answerWithGIF still makes the 429 an image
	}
	source, ok := s.authenticate(ctx)
	if !ok {
		return // answerWithGIF still makes the 401 an image
	}
	if s.cfg.WriteKeys != nil {
		ctx.QueryArgs().Del("key") // a credential, not a field of the event
	}
	event, err := pixelEvent(ctx.QueryArgs())
	if err != nil {
		s.writeError(ctx, fasthttp.StatusBadRequest, "unparseable pixel", err.Error())
		return
	}
	// An image request cannot read its answer: it is always fire-and-forget.
	s.accept(ctx, [][]byte{event}, true, source, func(ctx *fasthttp.RequestCtx, _ outcome) {
		ctx.SetStatusCode(fasthttp.StatusOK)
	})
}

// answerWithGIF replaces whatever body a pixel answer has with the GIF,
// keeping the status, and forbids caching so every view is a request.
func answerWithGIF(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "0")
	h.SetContentType("image/gif")
	ctx.Response.SetBodyRaw(transparentGIF)
}

// pixelEvent turns a pixel's query into one event. A parameter e (or data)
// holding a JSON object, URL-encoded or base64url-encoded, is the event;
// otherwise every parameter becomes a string field (the last of repeated
// keys wins).
func pixelEvent(args *fasthttp.Args) ([]byte, error) {
	for _, name := range pixelEventParams {
		v := args.Peek(name)
		if len(v) == 0 {
			continue
		}
		raw := bytes.TrimSpace(v)
		if len(raw) > 0 && raw[0] != '{' {
			dec, err := decodeBase64URL(raw)
			if err != nil {
				return nil, errors.New("parameter " + name + " is neither a JSON object nor base64url JSON")
			}
			raw = dec
		}
		if !json.Valid(raw) {
			return nil, errors.New("parameter " + name + " is not valid JSON")
		}
		return append([]byte(nil), raw...), nil
	}
	if args.Len() == 0 {
		return nil, errors.New("no query parameters: nothing to record")
	}
	fields := make(map[string]string, args.Len())
	args.VisitAll(func(k, v []byte) { fields[string(k)] = string(v) })
	return json.Marshal(fields)
}

func decodeBase64URL(b []byte) ([]byte, error) {
	b = bytes.TrimRight(b, "=")
	out := make([]byte, base64.RawURLEncoding.DecodedLen(len(b)))
	n, err := base64.RawURLEncoding.Decode(out, b)
	return out[:n], err
}
