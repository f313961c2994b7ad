package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/promtext"
	"github.com/sluice-gateway/sluice/loadtest/internal/sluiceproc"
)

// sluiceWindow is what Sluice's /metrics said about one measured window.
type sluiceWindow struct {
	AcceptedPerS    float64 `json:"accepted_per_s"`
	ShippedPerS     float64 `json:"shipped_per_s"`
	RecordsPerFsync float64 `json:"records_per_fsync"`
	FsyncMeanMs     float64 `json:"fsync_mean_ms"`
	BacklogMax      float64 `json:"backlog_max"`
	BacklogEnd      float64 `json:"backlog_end"`
	Rejected        float64 `json:"rejected"`
	Invalid         float64 `json:"invalid"`
	ShipErrors      float64 `json:"ship_errors"`
	DrainS          float64 `json:"drain_s"` // from the window's end until the backlog was 0
	Drained         bool    `json:"drained"`
	ScrapeErr       string  `json:"scrape_error,omitempty"`
}

// waitDrained polls until the shipping backlog is 0 or limit passes.
func waitDrained(ctx context.Context, admin string, limit time.Duration) error {
	start := time.Now()
	for {
		m, err := scrape(ctx, admin)
		if err == nil && m.Sum("sluice_buffer_backlog_records") == 0 && m.Sum("sluice_intake_queue_length") == 0 {
			return nil
		}
		if time.Since(start) > limit {
			if err != nil {
				return err
			}
			return fmt.Errorf("backlog still %.0f records after %v", m.Sum("sluice_buffer_backlog_records"), limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type noopTarget struct{ p *sluiceproc.Noop }

func (t noopTarget) name() string                     { return "noop" }
func (t noopTarget) url() string                      { return "http://" + t.p.Addr + "/v1/beacon" }
func (t noopTarget) pid() int                         { return t.p.PID }
func (t noopTarget) before(ctx context.Context) error { return nil }
func (t noopTarget) hooks() (windowHooks, func(context.Context) *sluiceWindow) {
	return windowHooks{}, nil
}

type sluiceTarget struct {
	p         *sluiceProc
	drainWait time.Duration
}

func (t *sluiceTarget) name() string { return "sluice" }
func (t *sluiceTarget) url() string  { return "http://" + t.p.public + "/v1/beacon" }
func (t *sluiceTarget) pid() int     { return t.p.pid }

func (t *sluiceTarget) before(ctx context.Context) error {
	if err := waitDrained(ctx, t.p.admin, t.drainWait); err != nil {
		logf("sluice before the step: %v (going on)", err)
	}
	return ctx.Err()
}

// hooks scrape /metrics at the window's edges and once a second between
// (the backlog's peak); finish waits for the backlog to drain.
func (t *sluiceTarget) hooks() (windowHooks, func(context.Context) *sluiceWindow) {
	var (
		mu         sync.Mutex
		m0, m1     promtext.Metrics
		t0, t1     time.Time
		err0, err1 error
		backlogMax float64
		ended      = make(chan struct{})
		once       sync.Once
	)
	ctx := context.Background()
	h := windowHooks{
		onStart: func() {
			m, err := scrape(ctx, t.p.admin)
			mu.Lock()
			m0, err0, t0 = m, err, time.Now()
			mu.Unlock()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ended:
					return
				case <-tick.C:
					if m, err := scrape(ctx, t.p.admin); err == nil {
						mu.Lock()
						backlogMax = max(backlogMax, m.Sum("sluice_buffer_backlog_records"))
						mu.Unlock()
					}
				}
			}
		},
		onEnd: func() {
			m, err := scrape(ctx, t.p.admin)
			mu.Lock()
			m1, err1, t1 = m, err, time.Now()
			mu.Unlock()
			once.Do(func() { close(ended) })
		},
	}
	finish := func(ctx context.Context) *sluiceWindow {
		once.Do(func() { close(ended) })
		mu.Lock()
		defer mu.Unlock()
		w := &sluiceWindow{}
		if err0 != nil || err1 != nil || t0.IsZero() || t1.IsZero() {
			w.ScrapeErr = fmt.Sprintf("%v %v", err0, err1)
			return w
		}
		win := t1.Sub(t0).Seconds()
		d := func(name string) float64 { return m1.Sum(name) - m0.Sum(name) }
		dl := func(name, labels string) float64 { return m1.Get(name, labels) - m0.Get(name, labels) }
		w.AcceptedPerS = round3(dl("sluice_events_total", `outcome="accepted"`) / win)
		w.Invalid = dl("sluice_events_total", `outcome="invalid"`)
		w.Rejected = dl("sluice_events_total", `outcome="rejected"`)
		w.ShippedPerS = round3(d("sluice_shipped_records_total") / win)
		if n := d("sluice_wal_group_commit_records_count"); n > 0 {
			w.RecordsPerFsync = round3(d("sluice_wal_group_commit_records_sum") / n)
		}
		if n := d("sluice_wal_fsync_duration_seconds_count"); n > 0 {
			w.FsyncMeanMs = round3(d("sluice_wal_fsync_duration_seconds_sum") / n * 1000)
		}
		w.ShipErrors = d("sluice_ship_errors_total")
		w.BacklogEnd = m1.Sum("sluice_buffer_backlog_records")
		w.BacklogMax = max(backlogMax, w.BacklogEnd)
		mu.Unlock()
		err := waitDrained(ctx, t.p.admin, t.drainWait)
		mu.Lock()
		w.DrainS, w.Drained = round3(time.Since(t1).Seconds()), err == nil
		return w
	}
	return h, finish
}
