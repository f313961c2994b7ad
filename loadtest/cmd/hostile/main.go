// Command hostile measures what hostile clients cost the others: it runs
// `loadgen open` against a Sluice twice — calm, then while hostile clients
// send 50 MB gzip bombs, JSON nested 100 000 deep, 1 MB headers and hold 500
// slowloris connections — and reports the normal clients' latency in both
// windows and their ratio. Loopback only.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/loadgenout"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "Sluice's public address (loopback only)")
	loadgen := flag.String("loadgen", "", "loadgen binary (default: go run ./loadtest/cmd/loadgen)")
	rate := flag.Float64("rate", 2000, "normal clients' requests per second (single events)")
	window := flag.Duration("duration", 10*time.Second, "each measured window")
	slowloris := flag.Int("slowloris", 500, "slowloris connections held during the hostile window")
	attackRate := flag.Float64("attack-rate", 10, "requests per second of each attack (bomb, deep JSON, huge header); 0: as fast as they are answered")
	flag.Parse()
	if host, _, err := net.SplitHostPort(*addr); err != nil || (host != "127.0.0.1" && host != "localhost") {
		fmt.Fprintln(os.Stderr, "hostile: -addr must be a 127.0.0.1 address")
		os.Exit(2)
	}
	if err := run(*addr, *loadgen, *rate, *window, *slowloris, *attackRate); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

func run(addr, loadgen string, rate float64, window time.Duration, slowloris int, attackRate float64) error {
	bomb, err := gzipBomb(50 << 20)
	if err != nil {
		return err
	}
	deep := []byte(strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000))
	calm, err := measure(addr, loadgen, rate, window)
	if err != nil {
		return fmt.Errorf("calm window: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	h := &hostiles{rate: attackRate}
	var wg sync.WaitGroup
	for range slowloris {
		wg.Add(1)
		go func() { defer wg.Done(); h.slowloris(ctx, addr) }()
	}
	for _, attack := range []func(context.Context, string){
		func(ctx context.Context, a string) { h.repeat(ctx, a, "bomb", bombRequest(bomb)) },
		func(ctx context.Context, a string) { h.repeat(ctx, a, "deep", jsonRequest(deep)) },
		func(ctx context.Context, a string) { h.repeat(ctx, a, "header", hugeHeaderRequest(1<<20)) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); attack(ctx, addr) }()
	}
	hostile, err := measure(addr, loadgen, rate, window)
	stop()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("hostile window: %w", err)
	}
	fmt.Printf("| window | normal requests | failed | p50 ms | p99 ms | p99.9 ms |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range []struct {
		name string
		s    *loadgenout.OpenSummary
	}{{"calm", calm}, {"hostile", hostile}} {
		fmt.Printf("| %s | %d | %d | %.2f | %.2f | %.2f |\n", r.name, r.s.Sent, r.s.Failed(), r.s.P50ms, r.s.P99ms, r.s.P999ms)
	}
	fmt.Printf("\np99 hostile / calm = **%.2f**\n\nhostile clients: %s\n", hostile.P99ms/calm.P99ms, h.summary())
	return nil
}

// measure runs loadgen open for one window and returns its summary line.
func measure(addr, loadgen string, rate float64, window time.Duration) (*loadgenout.OpenSummary, error) {
	args := []string{"open", "-url", "http://" + addr + "/v1/beacon", "-rate", fmt.Sprint(rate),
		"-duration", window.String(), "-conns", "64"}
	var cmd *exec.Cmd
	if loadgen == "" {
		cmd = exec.Command("go", append([]string{"run", "./loadtest/cmd/loadgen"}, args...)...)
	} else {
		cmd = exec.Command(loadgen, args...)
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s loadgenout.OpenSummary
		if json.Unmarshal(sc.Bytes(), &s) == nil && s.Type == "summary" {
			return &s, nil
		}
	}
	return nil, errors.New("loadgen printed no summary")
}

type hostiles struct {
	rate     float64 // requests per second of each attack; 0: back to back
	mu       sync.Mutex
	statuses map[string]int // "bomb 413" → count
	held     atomic.Int64   // slowloris connections the server closed
}

func (h *hostiles) count(kind, outcome string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.statuses == nil {
		h.statuses = map[string]int{}
	}
	h.statuses[kind+" "+outcome]++
}

func (h *hostiles) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var parts []string
	for k, v := range h.statuses {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, v))
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; slowloris connections closed by the server: %d", h.held.Load())
}

// repeat sends req on fresh connections until ctx ends, counting answers.
func (h *hostiles) repeat(ctx context.Context, addr, kind string, req []byte) {
	var tick <-chan time.Time
	if h.rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / h.rate))
		defer t.Stop()
		tick = t.C
	}
	for ctx.Err() == nil {
		if tick != nil {
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			h.count(kind, "dial error")
			continue
		}
		c.SetDeadline(time.Now().Add(15 * time.Second))
		go c.Write(req) // the server may answer before it has read everything
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			h.count(kind, "closed")
		} else {
			h.count(kind, strings.Fields(line + " ?")[1])
		}
		c.Close()
	}
}

// slowloris opens a connection and trickles a header byte every second.
func (h *hostiles) slowloris(ctx context.Context, addr string) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("POST /v1/beacon HTTP/1.1\r\nHost: x\r\n")); err != nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := c.Write([]byte("X")); err != nil {
				h.held.Add(1)
				return
			}
		}
	}
}

func gzipBomb(size int) ([]byte, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := io.CopyN(zw, zeros{}, int64(size)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func bombRequest(body []byte) []byte {
	return append([]byte(fmt.Sprintf("POST /v1/beacon HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Encoding: gzip\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))), body...)
}

func jsonRequest(body []byte) []byte {
	return append([]byte(fmt.Sprintf("POST /v1/beacon HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))), body...)
}

func hugeHeaderRequest(n int) []byte {
	return []byte("POST /v1/beacon HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("c", n) +
		"\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"type\":\"a\"}")
}
