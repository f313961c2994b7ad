package gateway

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
)

// corsPolicy says which origins get CORS headers. Browsers' beacons are
// credentialed (cookies), so an allowed origin is echoed with
// Access-Control-Allow-Credentials: a bare "*" would break them.
type corsPolicy struct {
	anyOrigin bool
	exact     map[string]bool // "scheme://host[:port]", lower case
	wildcards []originPattern // from "scheme://*.domain[:port]"
}

// originPattern matches every subdomain of suffix (".example.com"), not the
// domain itself, with the same scheme and port.
type originPattern struct {
	scheme, suffix, port string
}

// parseCORSOrigins reads --cors-origins: empty or "*" allows every origin;
// otherwise exact origins ("https://shop.example.com") and subdomain patterns
// ("https://*.example.com"), with an optional port.
func parseCORSOrigins(list []string) (*corsPolicy, error) {
	p := &corsPolicy{exact: map[string]bool{}}
	if len(list) == 0 {
		p.anyOrigin = true
		return p, nil
	}
	for _, raw := range list {
		o := strings.ToLower(strings.TrimSpace(raw))
		if o == "*" {
			p.anyOrigin = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("CORS origin %q: want scheme://host[:port], e.g. https://shop.example.com or https://*.example.com", raw)
		}
		host, port := u.Hostname(), u.Port()
		if rest, ok := strings.CutPrefix(host, "*."); ok {
			if rest == "" || strings.Contains(rest, "*") {
				return nil, fmt.Errorf("CORS origin %q: a pattern is *.domain", raw)
			}
			p.wildcards = append(p.wildcards, originPattern{scheme: u.Scheme, suffix: "." + rest, port: port})
			continue
		}
		if strings.Contains(host, "*") {
			return nil, fmt.Errorf("CORS origin %q: * may only open the host name (https://*.example.com)", raw)
		}
		p.exact[u.Scheme+"://"+u.Host] = true
	}
	return p, nil
}

// allows reports whether origin may read the answers.
func (p *corsPolicy) allows(origin []byte) bool {
	if p.anyOrigin {
		return true
	}
	o := strings.ToLower(string(origin))
	if p.exact[o] {
		return true
	}
	scheme, hostport, ok := strings.Cut(o, "://")
	if !ok {
		return false
	}
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	for _, w := range p.wildcards {
		if w.scheme == scheme && w.port == port && len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			return true
		}
	}
	return false
}

// cors adds the CORS headers for an allowed Origin, on every answer
// (errors included: an SDK that cannot read an error retries what it
// should drop). A disallowed origin gets none, so its page cannot read.
func (s *Server) cors(ctx *fasthttp.RequestCtx) {
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return
	}
	h := &ctx.Response.Header
	h.Add("Vary", "Origin")
	if !s.corsPolicy.allows(origin) {
		return
	}
	h.SetBytesV("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
}

// preflight answers OPTIONS on any path: the methods, the requested headers
// (Authorization among them: "Access-Control-Allow-Headers: *" does not
// cover it), and a max age so the browser caches the answer.
func (s *Server) preflight(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	if origin := ctx.Request.Header.Peek("Origin"); len(origin) > 0 && s.corsPolicy.allows(origin) {
		h.Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
		if req := bytes.TrimSpace(ctx.Request.Header.Peek("Access-Control-Request-Headers")); len(req) > 0 {
			h.SetBytesV("Access-Control-Allow-Headers", req)
		}
		h.Set("Access-Control-Max-Age", "86400")
		h.Add("Vary", "Access-Control-Request-Headers")
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// ValidateCORSOrigins checks a --cors-origins list before anything starts.
func ValidateCORSOrigins(list []string) error {
	_, err := parseCORSOrigins(list)
	return err
}
