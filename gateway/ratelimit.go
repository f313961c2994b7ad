package gateway

import (
	"math"
	"net/netip"
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"

	"github.com/sluice-gateway/sluice/enrich"
)

// RateLimit is a token bucket per client IP over requests (beacons and
// pixels; preflights are free). Zero PerSecond disables it.
type RateLimit struct {
	PerSecond float64
	Burst     int // default: twice PerSecond, at least 10
	// Proxies are believed for X-Forwarded-For, as the pipeline believes them.
	Proxies enrich.TrustedProxies
}

// maxRateLimitedClients bounds the buckets kept: the least recently seen
// client's bucket goes first, so a spray of spoofed-looking sources costs
// memory only up to here (about 10 MB).
const maxRateLimitedClients = 100_000

type rateLimiter struct {
	cfg     RateLimit
	buckets *lru.Cache[netip.Addr, *rate.Limiter]
}

func newRateLimiter(cfg RateLimit) *rateLimiter {
	if cfg.PerSecond <= 0 {
		return nil
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(10, int(math.Ceil(2*cfg.PerSecond)))
	}
	c, _ := lru.New[netip.Addr, *rate.Limiter](maxRateLimitedClients)
	return &rateLimiter{cfg: cfg, buckets: c}
}

// wait returns how long the client must wait, 0 if the request may go on.
func (l *rateLimiter) wait(ctx *fasthttp.RequestCtx) time.Duration {
	remote, _ := netip.AddrFromSlice(ctx.RemoteIP())
	client := l.cfg.Proxies.ClientIP(remote, joinHeader(ctx.Request.Header.PeekAll("X-Forwarded-For")))
	b, ok := l.buckets.Get(client)
	if !ok {
		b = rate.NewLimiter(rate.Limit(l.cfg.PerSecond), l.cfg.Burst)
		l.buckets.Add(client, b)
	}
	r := b.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel() // a refused request takes no token
		return d
	}
	return 0
}

// rateLimited answers 429 with Retry-After when the client is over its
// rate, and reports whether it did.
func (s *Server) rateLimited(ctx *fasthttp.RequestCtx) bool {
	if s.limiter == nil {
		return false
	}
	d := s.limiter.wait(ctx)
	if d == 0 {
		return false
	}
	ctx.Response.Header.Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
	s.writeError(ctx, fasthttp.StatusTooManyRequests, "rate limited",
		"this client sends more than "+strconv.FormatFloat(s.limiter.cfg.PerSecond, 'g', -1, 64)+" requests per second")
	return true
}
