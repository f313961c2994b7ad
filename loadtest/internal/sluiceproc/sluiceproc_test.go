package sluiceproc

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLog(t *testing.T) {
	l := Log{IgnoreWarning: func(msg string) bool { return strings.Contains(msg, "DEVELOPMENT") }}
	lines := []string{
		`{"level":"INFO","msg":"listening","public":"127.0.0.1:1","admin":"127.0.0.1:2"}`,
		`{"level":"WARN","msg":"slow"}`,
		`{"level":"WARN","msg":"DEVELOPMENT Kafka broker"}`,
		`{"level":"INFO","msg":"shutdown: drained","took":1500000}`,
		`not json`,
	}
	var recs []map[string]any
	for _, line := range lines {
		recs = append(recs, l.Add([]byte(line)))
	}
	if recs[0]["public"] != "127.0.0.1:1" || recs[4] != nil {
		t.Errorf("records %v", recs)
	}
	w, s := l.Notes()
	if want := []string{lines[1], "non-JSON output: not json"}; !slices.Equal(w, want) {
		t.Errorf("warnings %q, want %q", w, want)
	}
	if want := []string{"shutdown: drained (took 1.5ms)"}; !slices.Equal(s, want) {
		t.Errorf("shutdown %q, want %q", s, want)
	}
}

func TestChildren(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	var kids Children
	cmd := exec.Command(sleep, "30")
	done, err := kids.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(done) }()
	start := time.Now()
	if !StopGracefully(cmd, done, 5*time.Second) {
		t.Error("sleep ignored SIGTERM")
	}
	kids.StopAll() // already stopped: returns at once
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopping took %v", d)
	}
}

func TestReadLines(t *testing.T) {
	var got []string
	ReadLines(strings.NewReader("a\nb c\n\nd"), func(line []byte) { got = append(got, string(line)) })
	if want := []string{"a", "b c", "", "d"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCommandDropsSluiceEnv(t *testing.T) {
	t.Setenv("SLUICE_LISTEN", "x")
	t.Setenv("OTHER_VAR", "y")
	cmd := Command("true")
	if slices.Contains(cmd.Env, "SLUICE_LISTEN=x") || !slices.Contains(cmd.Env, "OTHER_VAR=y") {
		t.Errorf("env %q", cmd.Env)
	}
}

func TestFetchPprof(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/pprof/heap" {
			http.Error(w, "404 page not found", http.StatusNotFound)
			return
		}
		w.Write([]byte("profile bytes"))
	}))
	defer srv.Close()
	admin := strings.TrimPrefix(srv.URL, "http://")
	path := filepath.Join(t.TempDir(), "heap.pprof")
	if err := FetchPprof(context.Background(), admin, "heap?gc=1", path); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "profile bytes" {
		t.Errorf("saved %q, %v", b, err)
	}
	err := FetchPprof(context.Background(), admin, "profile?seconds=1", filepath.Join(t.TempDir(), "cpu.pprof"))
	if err == nil || !strings.Contains(err.Error(), "404 Not Found 404 page not found (is sluice serve running with --pprof?)") {
		t.Errorf("a gateway without --pprof: %v", err)
	}
}
