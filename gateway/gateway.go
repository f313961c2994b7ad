// Package gateway is Sluice's HTTP front: the public fasthttp server and its
// routes, body decoding, CORS, the admin server (metrics, health, readiness)
// and the listener's part of a graceful shutdown.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"

	"github.com/sluice-gateway/sluice/enrich"
)

// AckMode says when a client gets its 2xx.
type AckMode string

const (
	// AckDisk answers once the events are fsynced in the WAL.
	AckDisk AckMode = "disk"
	// AckEnqueue answers once the events are validated and queued; a crash
	// can lose the last few milliseconds of events.
	AckEnqueue AckMode = "enqueue"
)

// ParseAckMode validates a --ack value.
func ParseAckMode(s string) (AckMode, error) {
	switch AckMode(s) {
	case AckDisk, AckEnqueue:
		return AckMode(s), nil
	}
	return "", fmt.Errorf("unknown ack mode %q (want disk or enqueue)", s)
}

// WhenFull is what happens to events at the buffer's hard limit.
type WhenFull string

const (
	// WhenFullReject answers 503 + Retry-After: the client keeps the event.
	WhenFullReject WhenFull = "reject"
	// WhenFullDropNewest answers 202 and drops the new events (counted in
	// sluice_events_dropped_total{reason="buffer_full"}): for deployments
	// where pushing back on clients is worse than losing the newest data.
	WhenFullDropNewest WhenFull = "drop-newest"
)

// ParseWhenFull validates a --buffer-when-full value.
func ParseWhenFull(s string) (WhenFull, error) {
	switch WhenFull(s) {
	case WhenFullReject, WhenFullDropNewest:
		return WhenFull(s), nil
	}
	return "", fmt.Errorf("unknown policy %q (want reject or drop-newest)", s)
}

// BufferLimits are the watermarks of the write-ahead buffer. Between Soft and
// Hard, clients that can retry (SDK batches, fetch) get 503 + Retry-After,
// while fire-and-forget ones, which cannot see an answer (pixels, sendBeacon
// and other no-cors requests), are still accepted: a 503 would only lose
// their event. At Hard the WhenFull policy applies to everyone.
type BufferLimits struct {
	Used       func() int64 // the buffer's size on disk
	Soft, Hard int64
	WhenFull   WhenFull // default reject
}

// Config configures the gateway. The zero value of every field means its default.
type Config struct {
	// Listen is the public address. Default ":8080".
	Listen string
	// AdminListen is the admin address (metrics, health). Default ":9090".
	AdminListen string
	// MaxBodyBytes caps a request body; larger ones get 413. Default 1 MiB.
	MaxBodyBytes int
	// MaxBatchEvents caps the events of one request; more get 413. Without
	// it a 1 KiB gzip body of "1\n1\n…" would become half a million
	// dead-letter records. Default 1000.
	MaxBatchEvents int
	// MaxHeaderBytes is the read buffer for a request's line and headers
	// (first-party cookies make beacons' headers large); more get 431.
	// Default 16 KiB.
	MaxHeaderBytes int
	// MaxEventBytes caps one event; larger ones go to the dead-letter topic
	// (truncated), so no record can exceed Kafka's message size limit.
	// Default 64 KiB.
	MaxEventBytes int
	// Ack is when a client gets its 2xx. Default AckDisk.
	Ack AckMode
	// AckTimeout bounds how long a request waits for its WAL write before it
	// gets 503. Default 10s.
	AckTimeout time.Duration
	// RetryAfter is sent with 503 answers. Default 1s.
	RetryAfter time.Duration
	// ReadTimeout, WriteTimeout and IdleTimeout guard the public connections.
	// Defaults 10s, 10s and 60s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxConns caps open public connections; past it new ones are refused.
	// Default 262144 (fasthttp's).
	MaxConns int
	// MaxConnsPerIP caps a peer address's connections (the peer: behind a
	// load balancer that is the balancer). Zero means no cap.
	MaxConnsPerIP int
	// RateLimit limits requests per client IP (429 + Retry-After).
	RateLimit RateLimit
	// WriteKeys, when set, must hold the key of every beacon and pixel; the
	// key's source name goes into the envelope. Nil checks nothing.
	WriteKeys WriteKeys
	// CORSOrigins are the origins whose pages may read answers: exact
	// ("https://shop.example.com") or subdomain patterns
	// ("https://*.example.com"). Empty or "*" allows any origin.
	CORSOrigins []string
	// Buffer is the write-ahead buffer's size limits; without Buffer.Used
	// there are none (the buffer still refuses writes past its own limit).
	Buffer BufferLimits
	// Pprof serves /debug/pprof on the admin port. Default off.
	Pprof bool
	// Status names the sections of GET /status on the admin port, such as
	// "sink" and "buffer"; "ready" and "admission" are the gateway's own.
	Status map[string]StatusSource
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the gateway's metrics and is served on /metrics. Required.
	Registry *prometheus.Registry
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.AdminListen == "" {
		c.AdminListen = ":9090"
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxBatchEvents <= 0 {
		c.MaxBatchEvents = 1000
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	if c.MaxEventBytes <= 0 {
		c.MaxEventBytes = 64 << 10
	}
	if c.Ack == "" {
		c.Ack = AckDisk
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Buffer.WhenFull == "" {
		c.Buffer.WhenFull = WhenFullReject
	}
}

// Server is the public and the admin listener.
type Server struct {
	cfg        Config
	log        *slog.Logger
	pipeline   *enrich.Pipeline
	retryAfter string
	corsPolicy *corsPolicy
	limiter    *rateLimiter // nil without a rate limit

	public  *fasthttp.Server
	admin   *http.Server
	ln      net.Listener
	adminLn net.Listener
	serving sync.WaitGroup

	ready    atomic.Bool
	shutOnce sync.Once
	shutErr  error

	metrics *httpMetrics
}

// New builds the servers; Start opens the listeners.
func New(cfg Config, p *enrich.Pipeline) (*Server, error) {
	cfg.setDefaults()
	if cfg.Registry == nil {
		return nil, errors.New("gateway: no metrics registry")
	}
	corsPolicy, err := parseCORSOrigins(cfg.CORSOrigins)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "gateway"),
		pipeline:   p,
		retryAfter: strconv.Itoa(max(1, int(cfg.RetryAfter.Round(time.Second)/time.Second))),
		metrics:    newHTTPMetrics(cfg.Registry),
		corsPolicy: corsPolicy,
		limiter:    newRateLimiter(cfg.RateLimit),
	}
	if cfg.Buffer.Used != nil {
		// The limits next to sluice_buffer_disk_bytes, for dashboards and
		// alerts that should not repeat the flags.
		limits := prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_buffer_limit_bytes",
			Help: "The write-ahead buffer's size limits: soft (retrying clients get 503) and hard (--buffer-when-full applies).",
		}, []string{"limit"})
		limits.WithLabelValues("soft").Set(float64(cfg.Buffer.Soft))
		limits.WithLabelValues("hard").Set(float64(cfg.Buffer.Hard))
		if err := cfg.Registry.Register(limits); err != nil {
			return nil, fmt.Errorf("gateway: register buffer limits: %w", err)
		}
	}
	s.public = &fasthttp.Server{
		Handler:            s.handle,
		ErrorHandler:       s.handleServerError,
		Name:               "sluice",
		MaxRequestBodySize: cfg.MaxBodyBytes,
		ReadBufferSize:     cfg.MaxHeaderBytes,
		// Never echo request bytes (cookies, keys) in error details or logs.
		SecureErrorLogMessage: true,
		// A slowloris client must finish its request line, headers and
		// body within ReadTimeout, or its connection is closed.
		ReadTimeout:     cfg.ReadTimeout,
		Concurrency:     cfg.MaxConns,
		MaxConnsPerIP:   cfg.MaxConnsPerIP,
		WriteTimeout:    cfg.WriteTimeout,
		IdleTimeout:     cfg.IdleTimeout,
		CloseOnShutdown: true,
		Logger:          fasthttpLogger{s.log},
	}
	s.admin = &http.Server{Handler: s.adminMux(), ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Start opens both listeners and serves them in the background.
func (s *Server) Start() error {
	var err error
	if s.adminLn, err = net.Listen("tcp", s.cfg.AdminListen); err != nil {
		return fmt.Errorf("admin listen %s: %w", s.cfg.AdminListen, err)
	}
	if s.ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		s.adminLn.Close()
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	s.serving.Add(2)
	go func() {
		defer s.serving.Done()
		if err := s.admin.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server", "err", err)
		}
	}()
	go func() {
		defer s.serving.Done()
		if err := s.public.Serve(s.ln); err != nil {
			s.log.Error("public server", "err", err)
		}
	}()
	s.ready.Store(true)
	s.log.Info("listening", "public", s.ln.Addr().String(), "admin", s.adminLn.Addr().String(), "ack", s.cfg.Ack)
	return nil
}

// Addr and AdminAddr are the bound addresses (useful with port 0).
func (s *Server) Addr() string      { return s.ln.Addr().String() }
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// SetReady sets what /readyz answers.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Shutdown marks the gateway not ready, stops accepting connections and waits
// for in-flight requests to finish (each one's WAL write included) until ctx
// ends. The admin server keeps running until Close. Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.ready.Store(false)
		if err := s.public.ShutdownWithContext(ctx); err != nil {
			s.shutErr = fmt.Errorf("shut down public listener: %w", err)
		}
	})
	return s.shutErr
}

// Close stops the admin server and waits for both servers' goroutines.
// Call it after Shutdown.
func (s *Server) Close(ctx context.Context) error {
	shutErr := s.Shutdown(ctx)
	err := s.admin.Shutdown(ctx)
	s.serving.Wait()
	if err != nil {
		return errors.Join(shutErr, fmt.Errorf("shut down admin listener: %w", err))
	}
	return shutErr
}

func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{Registry: s.cfg.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /status", s.handleStatus)
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// fasthttpLogger logs fasthttp's per-connection errors (timeouts, oversized
// bodies, malformed requests) at debug: they are the clients' faults, are
// answered and counted, and at warn a hostile client could flood the log.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug(fmt.Sprintf(format, args...))
	}
}
