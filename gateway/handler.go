package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gateway/sluice/enrich"
)

const routeBeacon = "/v1/beacon"

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	route := "other"
	s.cors(ctx)
	switch string(ctx.Path()) {
	case routeBeacon:
		route = routeBeacon
		switch {
		case ctx.IsPost():
			s.handleBeacon(ctx)
		case ctx.IsOptions():
			s.preflight(ctx)
		default:
			ctx.Response.Header.Set("Allow", "POST, OPTIONS")
			s.writeError(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed", "use POST")
		}
	case routePixel:
		route = routePixel
		switch {
		case ctx.IsGet() || ctx.IsHead():
			s.handlePixel(ctx)
			answerWithGIF(ctx)
		case ctx.IsOptions():
			s.preflight(ctx)
		default:
			ctx.Response.Header.Set("Allow", "GET, HEAD, OPTIONS")
			ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
			answerWithGIF(ctx)
		}
	default:
		if ctx.IsOptions() {
			// Preflights are answered on every path, so an SDK probing a
			// route that does not exist gets a readable 404 afterwards.
			s.preflight(ctx)
			break
		}
		s.writeError(ctx, fasthttp.StatusNotFound, "not found", "no route "+string(ctx.Path()))
	}
	s.metrics.observe(route, ctx.Response.StatusCode(), time.Since(start))
}

// beaconTypes are the media types a beacon body may have.
var beaconTypes = []string{"application/json", "text/plain", "application/x-ndjson",
	"application/x-www-form-urlencoded", "multipart/form-data"}

// mediaType is the Content-Type without parameters, lower-cased. The known
// types come back as constants: no allocation on the hot path.
func mediaType(ct []byte) string {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	for _, t := range beaconTypes {
		if len(ct) == len(t) && bytes.EqualFold(ct, []byte(t)) {
			return t
		}
	}
	return string(bytes.ToLower(ct))
}

func (s *Server) handleBeacon(ctx *fasthttp.RequestCtx) {
	if s.rateLimited(ctx) {
		return
	}
	source, ok := s.authenticate(ctx)
	if !ok {
		return
	}
	ct := ctx.Request.Header.ContentType()
	var split func([]byte) ([][]byte, error)
	switch mt := mediaType(ct); mt {
	case "application/json", "text/plain", "application/x-ndjson", "":
		split = splitBody
	case "application/x-www-form-urlencoded":
		split = urlencodedEvents
	case "multipart/form-data":
		split = func(b []byte) ([][]byte, error) { return multipartEvents(string(ct), b) }
	default:
		s.writeError(ctx, fasthttp.StatusUnsupportedMediaType, "unsupported content type",
			"got "+strconv.Quote(mt)+"; send application/json, text/plain, application/x-ndjson, "+
				"application/x-www-form-urlencoded or multipart/form-data")
		return
	}
	body, ok := s.readBody(ctx)
	if !ok {
		return
	}
	elems, err := split(body)
	if err != nil {
		s.writeError(ctx, fasthttp.StatusBadRequest, "unparseable body", err.Error())
		return
	}
	if len(elems) > s.cfg.MaxBatchEvents {
		s.writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "too many events",
			strconv.Itoa(len(elems))+" events in one request; the limit is "+strconv.Itoa(s.cfg.MaxBatchEvents))
		return
	}
	s.accept(ctx, elems, fireAndForget(ctx), source, s.respondJSON)
}

// readBody returns the request body, decompressed if it is gzip, as a copy:
// the batch outlives this handler when the ack does not wait for the disk (or
// times out), and fasthttp reuses its body buffer.
func (s *Server) readBody(ctx *fasthttp.RequestCtx) ([]byte, bool) {
	ce := ctx.Request.Header.ContentEncoding()
	switch {
	case len(ce) == 0 || bytes.EqualFold(ce, []byte("identity")):
		return append([]byte(nil), ctx.PostBody()...), true
	case bytes.EqualFold(ce, []byte("gzip")), bytes.EqualFold(ce, []byte("x-gzip")):
		return s.decompressed(ctx, "gzip", gunzipCapped)
	case bytes.EqualFold(ce, []byte("zstd")):
		return s.decompressed(ctx, "zstd", unzstdCapped)
	}
	s.writeError(ctx, fasthttp.StatusUnsupportedMediaType, "unsupported content encoding",
		"got "+strconv.Quote(string(ce))+"; send gzip, zstd or an uncompressed body")
	return nil, false
}

// decompressed inflates the body with decode, capped at --max-body-bytes: a
// decompression bomb gets 413 after allocating at most the cap.
func (s *Server) decompressed(ctx *fasthttp.RequestCtx, name string, decode func([]byte, int) ([]byte, error)) ([]byte, bool) {
	body, err := decode(ctx.PostBody(), s.cfg.MaxBodyBytes)
	switch {
	case errors.Is(err, errDecompressedTooLarge):
		s.writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "body too large",
			"the decompressed body exceeds "+strconv.Itoa(s.cfg.MaxBodyBytes)+" bytes")
		return nil, false
	case err != nil:
		s.writeError(ctx, fasthttp.StatusBadRequest, "unparseable body", name+": "+err.Error())
		return nil, false
	}
	return body, true
}

// outcome is what a request's events became.
type outcome struct {
	accepted, invalid, dropped int
}

// accept validates the elements of a request, submits them as one batch,
// waits for the WAL when the ack mode says so, and answers with respond (or
// an error through writeError).
func (s *Server) accept(ctx *fasthttp.RequestCtx, elems [][]byte, fireAndForget bool, source string,
	respond func(*fasthttp.RequestCtx, outcome)) {
	b := &enrich.Batch{Meta: s.meta(ctx)}
	b.Meta.Source = source
	for _, raw := range elems {
		if len(raw) > s.cfg.MaxEventBytes {
			b.Invalid = append(b.Invalid, enrich.Invalid{Raw: raw, Reason: "event is " + strconv.Itoa(len(raw)) +
				" bytes, over the " + strconv.Itoa(s.cfg.MaxEventBytes) + "-byte limit"})
			continue
		}
		ev, reason := enrich.Validate(raw)
		if reason != "" {
			b.Invalid = append(b.Invalid, enrich.Invalid{Raw: raw, Reason: reason})
			continue
		}
		b.Events = append(b.Events, ev)
	}
	n := len(b.Events) + len(b.Invalid)
	dropWhenFull := s.cfg.Buffer.WhenFull == WhenFullDropNewest
	switch s.bufferLevel() {
	case levelSoft:
		if !fireAndForget {
			s.pipeline.CountRejected(n)
			ctx.Response.Header.Set("Retry-After", s.retryAfter)
			s.writeError(ctx, fasthttp.StatusServiceUnavailable, "buffer above its soft limit",
				"Kafka is behind and the gateway is saving its disk for clients that cannot retry; retry later")
			return
		}
	case levelFull:
		if dropWhenFull {
			s.pipeline.DropNewest(n)
			respond(ctx, outcome{dropped: n})
			return
		}
		s.pipeline.CountRejected(n)
		s.bufferFull(ctx)
		return
	}
	b.DropWhenFull = dropWhenFull
	var (
		w   *waiter
		err error
	)
	if s.cfg.Ack == AckDisk {
		w = getWaiter()
		b.Done = w.done
	}
	if err := s.pipeline.Submit(b); err != nil {
		if w != nil {
			putWaiter(w)
		}
		s.unavailable(ctx, err)
		return
	}
	if w != nil {
		w.timer.Reset(s.cfg.AckTimeout)
		select {
		case err = <-w.ch:
			w.timer.Stop()
			putWaiter(w)
		case <-w.timer.C:
			// The waiter is abandoned, not pooled: the writer may still
			// send on it.
			err = errAckTimeout
		}
		switch {
		case err == nil:
		case dropWhenFull && errors.Is(err, enrich.ErrBufferFull):
			respond(ctx, outcome{dropped: n}) // the pipeline counted them as dropped
			return
		default:
			s.pipeline.CountRejected(n)
			s.log.Warn("request not acknowledged", "events", n, "err", err)
			s.unavailable(ctx, err)
			return
		}
	}
	respond(ctx, outcome{accepted: len(b.Events), invalid: len(b.Invalid)})
}

type bufferLevel int

const (
	levelOK bufferLevel = iota
	levelSoft
	levelFull
)

func (s *Server) bufferLevel() bufferLevel {
	lim := &s.cfg.Buffer
	if lim.Used == nil {
		return levelOK
	}
	switch used := lim.Used(); {
	case lim.Hard > 0 && used >= lim.Hard:
		return levelFull
	case lim.Soft > 0 && used >= lim.Soft:
		return levelSoft
	}
	return levelOK
}

func (s *Server) bufferFull(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Retry-After", s.retryAfter)
	s.writeError(ctx, fasthttp.StatusServiceUnavailable, "buffer full",
		"the write-ahead buffer is at its size limit (or the disk is full) while Kafka is behind; retry later")
}

// fireAndForget says whether the client cannot read the answer and so cannot
// retry: a no-cors request (navigator.sendBeacon with a string, FormData or
// URLSearchParams; fetch with mode no-cors) is opaque to the page's script.
func fireAndForget(ctx *fasthttp.RequestCtx) bool {
	return bytes.EqualFold(ctx.Request.Header.Peek("Sec-Fetch-Mode"), []byte("no-cors"))
}

// respondJSON is the beacon route's success answer: 204, 200 with the
// counts when some events went to the dead-letter topic, or 202 with the
// counts when the buffer was full and the drop-newest policy dropped them.
func (s *Server) respondJSON(ctx *fasthttp.RequestCtx, o outcome) {
	if o.invalid == 0 && o.dropped == 0 {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	if o.dropped > 0 {
		ctx.SetStatusCode(fasthttp.StatusAccepted)
	}
	ctx.SetContentType("application/json")
	var out [96]byte
	b := append(out[:0], `{"accepted":`...)
	b = strconv.AppendInt(b, int64(o.accepted), 10)
	b = append(b, `,"invalid":`...)
	b = strconv.AppendInt(b, int64(o.invalid), 10)
	if o.dropped > 0 {
		b = append(b, `,"dropped":`...)
		b = strconv.AppendInt(b, int64(o.dropped), 10)
	}
	ctx.SetBody(append(b, '}'))
}

var errAckTimeout = errors.New("timed out waiting for the write-ahead log")

func (s *Server) meta(ctx *fasthttp.RequestCtx) enrich.Meta {
	remote, _ := netip.AddrFromSlice(ctx.RemoteIP())
	h := &ctx.Request.Header
	return enrich.Meta{
		ReceivedAt:    ctx.Time(),
		RemoteAddr:    remote,
		XForwardedFor: joinHeader(h.PeekAll("X-Forwarded-For")),
		UserAgent:     string(h.UserAgent()),
		Origin:        string(h.Peek("Origin")),
		Referer:       string(h.Referer()),
	}
}

// joinHeader joins a header's lines with commas, as RFC 9110 allows for
// list headers: a proxy may add its own X-Forwarded-For line after the one a
// client forged, and the rightmost hops are the ones to believe.
func joinHeader(lines [][]byte) string {
	switch len(lines) {
	case 0:
		return ""
	case 1:
		return string(lines[0])
	}
	return string(bytes.Join(lines, []byte(",")))
}

func (s *Server) unavailable(ctx *fasthttp.RequestCtx, err error) {
	ctx.Response.Header.Set("Retry-After", s.retryAfter)
	switch {
	case errors.Is(err, enrich.ErrQueueFull):
		s.writeError(ctx, fasthttp.StatusServiceUnavailable, "overloaded", "the intake queue is full; retry later")
	case errors.Is(err, enrich.ErrClosed):
		ctx.SetConnectionClose()
		s.writeError(ctx, fasthttp.StatusServiceUnavailable, "shutting down", "retry against another instance")
	case errors.Is(err, enrich.ErrBufferFull):
		s.bufferFull(ctx)
	default:
		s.writeError(ctx, fasthttp.StatusServiceUnavailable, "buffer unavailable", err.Error())
	}
}

// errorBody is every 4xx/5xx answer's JSON body.
type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

// writeError answers {"error": ..., "detail": ...}. encoding/json escapes
// whatever the detail holds (a path with a NUL byte, invalid UTF-8) into
// valid JSON; error answers are not the hot path.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, code int, msg, detail string) {
	body, err := json.Marshal(errorBody{Error: msg, Detail: detail})
	if err != nil {
		body = []byte(`{"error":"internal error","detail":"cannot encode the error"}`)
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}

// handleServerError answers errors fasthttp meets before the handler runs.
func (s *Server) handleServerError(ctx *fasthttp.RequestCtx, err error) {
	var code int
	var msg string
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, msg = fasthttp.StatusRequestEntityTooLarge, "body too large"
		err = errors.New("the body exceeds " + strconv.Itoa(s.cfg.MaxBodyBytes) + " bytes")
	case errors.As(err, new(*fasthttp.ErrSmallBuffer)): // embeds the error without Unwrap
		code, msg = fasthttp.StatusRequestHeaderFieldsTooLarge, "headers too large"
		err = errors.New("the request line and headers exceed " + strconv.Itoa(s.cfg.MaxHeaderBytes) + " bytes")
	default:
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			code, msg = fasthttp.StatusRequestTimeout, "request timeout"
		} else {
			code, msg = fasthttp.StatusBadRequest, "malformed request"
		}
	}
	s.writeError(ctx, code, msg, err.Error())
	s.metrics.observe("other", code, 0)
}

// waiter carries one request's WAL acknowledgement back to its handler. It
// is pooled with its timer: a new timer per request was a visible cost.
type waiter struct {
	ch    chan error
	done  func(error)
	timer *time.Timer // stopped while pooled
}

var waiters = sync.Pool{New: func() any {
	w := &waiter{ch: make(chan error, 1), timer: time.NewTimer(time.Hour)}
	w.timer.Stop()
	w.done = func(err error) { w.ch <- err }
	return w
}}

func getWaiter() *waiter  { return waiters.Get().(*waiter) }
func putWaiter(w *waiter) { waiters.Put(w) }
