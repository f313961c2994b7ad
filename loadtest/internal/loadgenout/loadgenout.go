// Package loadgenout is the contract of what "loadgen" prints: one JSON
// object per line. loadgen writes these types; compare and bench read them.
package loadgenout

// Closed is the one JSON line run prints. Latencies are of every answered
// request in the window, whatever its status; events counts only the events
// of 2xx answers.
type Closed struct {
	Target        string            `json:"target"`
	Kind          string            `json:"kind"`
	EventsPerReq  int               `json:"events_per_request"`
	BodyBytes     int               `json:"body_bytes_mean"`
	Conns         int               `json:"conns"`
	WarmupS       float64           `json:"warmup_s"`
	WindowS       float64           `json:"window_s"`
	Requests      uint64            `json:"requests"`
	OKRequests    uint64            `json:"ok_requests"`
	Events        uint64            `json:"events"`
	RPS           float64           `json:"rps"`
	EPS           float64           `json:"eps"`
	P50ms         float64           `json:"p50_ms"`
	P90ms         float64           `json:"p90_ms"`
	P99ms         float64           `json:"p99_ms"`
	P999ms        float64           `json:"p999_ms"`
	MaxMs         float64           `json:"max_ms"`
	MeanMs        float64           `json:"mean_ms"`
	Status        map[string]uint64 `json:"status"`
	Errors        map[string]uint64 `json:"errors"`
	Reconnects    uint64            `json:"reconnects"`
	ServerPID     int               `json:"server_pid,omitempty"`
	ServerCPUs    float64           `json:"server_cpu_s,omitempty"`
	ServerCores   float64           `json:"server_cores,omitempty"`
	ServerUsPerEv float64           `json:"server_cpu_us_per_event,omitempty"`
	LoadgenCPUs   float64           `json:"loadgen_cpu_s"`
	LoadgenUsReq  float64           `json:"loadgen_cpu_us_per_request"`
	HostBusyCores float64           `json:"host_busy_cores"`
	HostCores     int               `json:"host_cores"`
	Interrupted   bool              `json:"interrupted,omitempty"`
}

// Second is one line of "loadgen open" output per second of intended
// send time (t is seconds since the schedule's start). Latencies are of the
// answered requests and the timed-out ones (at the time they gave up), from
// their intended send time. Hist holds the latency histogram's non-empty
// buckets as [bucket index, count] pairs (the bucketing of loadtest/internal/hist), so a
// driver can merge seconds into phases.
type Second struct {
	Type     string      `json:"type"` // "second"
	T        int         `json:"t"`
	Warmup   bool        `json:"warmup,omitempty"`
	Offered  uint64      `json:"offered"`    // requests due in this second
	Sent     uint64      `json:"sent"`       // written to a connection (dial failures are not sent)
	OK       uint64      `json:"ok"`         // 2xx answers
	Non2xx   uint64      `json:"non2xx"`     // other answers
	Errors   uint64      `json:"errors"`     // dial, connection and timeout errors
	Late     uint64      `json:"late"`       // waited more than -late-after for a free connection
	Unsent   uint64      `json:"unsent"`     // still waiting for a connection when the schedule ended
	P50ms    float64     `json:"p50_ms"`     //
	P90ms    float64     `json:"p90_ms"`     //
	P99ms    float64     `json:"p99_ms"`     //
	P999ms   float64     `json:"p999_ms"`    //
	MaxMs    float64     `json:"max_ms"`     //
	Hist     [][2]uint64 `json:"hist"`       // sparse latency histogram
	LagP99ms float64     `json:"lag_p99_ms"` // send time minus intended time, of the requests that were not late
}

// OpenSummary is the last line of "loadgen open": the measured window (after
// -warmup). Events count the events of 2xx answers.
type OpenSummary struct {
	Type          string            `json:"type"` // "summary"
	Target        string            `json:"target"`
	Kind          string            `json:"kind"`
	ContentType   string            `json:"content_type"`
	EventsPerReq  int               `json:"events_per_request"`
	BodyBytes     int               `json:"body_bytes_mean"`
	RunID         string            `json:"run_id"`
	FirstRequest  uint64            `json:"first_request,omitempty"` // request i's events carry sequences from (first_request+i)*events_per_request
	Pacer         string            `json:"pacer"`
	Rate          float64           `json:"rate"` // offered requests per second
	Conns         int               `json:"conns"`
	StartUnixNs   int64             `json:"start_unix_ns"` // the schedule's time 0
	WarmupS       float64           `json:"warmup_s"`
	WindowS       float64           `json:"window_s"`
	Slots         uint64            `json:"slots"`       // requests due over the whole schedule, warm-up included
	Offered       uint64            `json:"offered"`     // requests due in the window
	Sent          uint64            `json:"sent"`        // in the window
	OKRequests    uint64            `json:"ok_requests"` //
	Events        uint64            `json:"events"`      //
	Non2xx        uint64            `json:"non2xx"`      //
	ErrorsN       uint64            `json:"errors_n"`    //
	Late          uint64            `json:"late"`        //
	Unsent        uint64            `json:"unsent"`      //
	OfferedRPS    float64           `json:"offered_rps"` //
	OfferedEPS    float64           `json:"offered_eps"` //
	RPS           float64           `json:"rps"`         // 2xx answers per second
	EPS           float64           `json:"eps"`         // events in 2xx answers per second
	P50ms         float64           `json:"p50_ms"`
	P90ms         float64           `json:"p90_ms"`
	P99ms         float64           `json:"p99_ms"`
	P999ms        float64           `json:"p999_ms"`
	MaxMs         float64           `json:"max_ms"`
	MeanMs        float64           `json:"mean_ms"`
	LagP50ms      float64           `json:"send_lag_p50_ms"` // the generator's own lag: send time - intended
	LagP99ms      float64           `json:"send_lag_p99_ms"` // time, of the requests that were not late
	LagMaxMs      float64           `json:"send_lag_max_ms"`
	Status        map[string]uint64 `json:"status"`
	Errors        map[string]uint64 `json:"errors"`
	Reconnects    uint64            `json:"reconnects"`
	LoadgenCPUs   float64           `json:"loadgen_cpu_s"`
	HostBusyCores float64           `json:"host_busy_cores"`
	HostCores     int               `json:"host_cores"`
	Interrupted   bool              `json:"interrupted,omitempty"`
}

// Failed is every request of the window that did not get a 2xx.
func (s *OpenSummary) Failed() uint64 { return s.Non2xx + s.ErrorsN + s.Unsent }

// OtherCores is the CPU the host spent on neither the server nor the
// generator during the window: other processes on a machine that should be
// quiet.
func (l *Closed) OtherCores() float64 {
	if l.WindowS <= 0 {
		return 0
	}
	return max(0, l.HostBusyCores-l.ServerCores-l.LoadgenCPUs/l.WindowS)
}
