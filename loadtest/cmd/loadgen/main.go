// Command loadgen is Sluice's load generator and its no-op baseline server.
//
//	loadgen run  -url http://127.0.0.1:8080/v1/beacon -conns 64 -duration 10s -warmup 2s -kind single [-pid N]
//	loadgen open -url http://127.0.0.1:8080/v1/beacon -rate 5000 -duration 5s -warmup 1s -kind single
//	loadgen noop -listen 127.0.0.1:0
//
// run is a closed loop: -conns keep-alive connections, one goroutine each,
// every goroutine sends its next request as soon as the previous answer
// arrives. After -warmup it measures for -duration and prints one JSON line
// (see result). With -pid it also reads that process's CPU time from
// /proc/PID/stat at the edges of the measured window, so the report carries
// the server's CPU cost per event.
//
// open is an open loop: requests are due at evenly spaced intended times
// (-rate per second); a pacer releases each at its time to a pool of -conns
// keep-alive connections, and latency is measured from the intended time, so
// a stalled server cannot hide behind a slowed-down client (coordinated
// omission). Requests that wait for a free connection count as late, those
// still waiting when the schedule ends as unsent. Every event carries a
// unique "mark" (run id and sequence number) so a driver can look for it in
// Kafka; -acked-out writes which requests were answered 2xx. It prints one
// JSON line per second of intended time (with a sparse latency histogram)
// and a summary line (see openResult).
//
// noop is a fasthttp server that reads each request and answers 204: the
// ceiling the same machine, client and HTTP stack reach when the server does
// no work. It prints its bound address as its first line on stdout.
//
// All three refuse non-loopback addresses unless -allow-remote is given.
package main

import (
	"fmt"
	"os"
)

const usage = `loadgen: load generator for Sluice

Usage:
  loadgen run  [flags]   closed-loop POST load; prints one JSON line of results
  loadgen open [flags]   open-loop POST load at a fixed rate, latency from the intended send time;
                         prints one JSON line per second and a summary line
  loadgen noop [flags]   no-op HTTP server (204 to everything); prints its address first

Run "loadgen run -h", "loadgen open -h" or "loadgen noop -h" for flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "open":
		err = openCmd(os.Args[2:])
	case "noop":
		err = noopCmd(os.Args[2:])
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "loadgen: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
