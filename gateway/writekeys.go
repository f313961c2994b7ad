package gateway

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/valyala/fasthttp"
)

// WriteKeys maps a write key to the source name recorded in the envelope's
// context. With keys configured, every beacon and pixel must carry a known
// one; without, nothing is checked.
type WriteKeys map[string]string

// LoadWriteKeys reads --write-keys: one "key source-name" pair a line,
// blank lines and lines starting with # ignored.
func LoadWriteKeys(path string) (WriteKeys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("write keys: %w", err)
	}
	keys := WriteKeys{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("write keys %s line %d: want \"key source-name\"", path, n)
		}
		if _, dup := keys[f[0]]; dup {
			return nil, fmt.Errorf("write keys %s line %d: the key is listed twice", path, n)
		}
		keys[f[0]] = f[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("write keys %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("write keys %s: no keys", path)
	}
	return keys, nil
}

// writeKey finds the request's write key where clients can put it: the user
// of HTTP Basic authorization (Segment's SDKs), an X-Write-Key header, or a
// key query parameter (sendBeacon and pixels cannot set headers).
func writeKey(ctx *fasthttp.RequestCtx) string {
	if auth := ctx.Request.Header.Peek("Authorization"); len(auth) > 6 && bytes.EqualFold(auth[:6], []byte("basic ")) {
		if dec, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(auth[6:]))); err == nil {
			user, _, _ := strings.Cut(string(dec), ":")
			return user
		}
	}
	if k := ctx.Request.Header.Peek("X-Write-Key"); len(k) > 0 {
		return string(k)
	}
	return string(ctx.QueryArgs().Peek("key"))
}

// authenticate returns the source of the request's write key, or answers 401
// and returns false. Without configured keys every request passes.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx) (string, bool) {
	if s.cfg.WriteKeys == nil {
		return "", true
	}
	key := writeKey(ctx)
	source, ok := s.cfg.WriteKeys[key]
	if ok {
		return source, true
	}
	ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="sluice"`)
	if key == "" {
		s.writeError(ctx, fasthttp.StatusUnauthorized, "missing write key",
			"send it as the user of Authorization: Basic, as X-Write-Key, or as ?key=")
	} else {
		s.writeError(ctx, fasthttp.StatusUnauthorized, "unknown write key", "the key is not configured on this gateway")
	}
	return "", false
}
