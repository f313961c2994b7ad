package gateway

import (
	"encoding/json"
	"net/http"
)

// StatusSource supplies one section of GET /status on the admin port (the
// Kafka sink's state, the write-ahead buffer). Status is called on every
// request, from the admin server's goroutines: it must be cheap, safe for
// concurrent use, and return a value encoding/json can encode.
type StatusSource interface {
	Status() any
}

// StatusFunc adapts a function to a StatusSource.
type StatusFunc func() any

// Status implements StatusSource.
func (f StatusFunc) Status() any { return f() }

// statusReport is the body of GET /status: readiness, the buffer's admission
// limits when known, and every configured section by name.
func (s *Server) statusReport() map[string]any {
	report := make(map[string]any, len(s.cfg.Status)+2)
	for name, src := range s.cfg.Status {
		report[name] = src.Status()
	}
	// Readiness says whether this gateway takes traffic; it never depends on
	// the sink: with Kafka down the WAL still accepts safely.
	report["ready"] = s.ready.Load()
	if b := s.cfg.Buffer; b.Used != nil {
		report["admission"] = map[string]any{
			"used_bytes":       b.Used(),
			"soft_limit_bytes": b.Soft,
			"hard_limit_bytes": b.Hard,
			"when_full":        b.WhenFull,
		}
	}
	return report
}

// handleStatus answers 200 whatever the report says: it is for people and
// dashboards; /readyz is what load balancers act on.
func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	body, err := json.MarshalIndent(s.statusReport(), "", "  ")
	if err != nil {
		s.log.Error("encode /status", "err", err)
		http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
}
