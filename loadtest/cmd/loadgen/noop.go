package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// noopCmd serves 204 to every request after reading its body, until SIGINT,
// SIGTERM, -max-lifetime, or (with -exit-on-stdin-eof) its parent going away.
func noopCmd(args []string) error {
	fs := flag.NewFlagSet("noop", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free one)")
	maxBody := fs.Int("max-body-bytes", 1<<20, "largest request body accepted (Sluice's default)")
	lifetime := fs.Duration("max-lifetime", time.Hour, "exit after this long even if nobody says so")
	stdinEOF := fs.Bool("exit-on-stdin-eof", false, "exit when stdin reaches end of file (the parent closed it or died)")
	allowRemote := fs.Bool("allow-remote", false, "allow listening on a non-loopback address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", *listen, err)
	}
	if err := checkLoopback(host, *allowRemote); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &fasthttp.Server{
		Name:               "noop",
		MaxRequestBodySize: *maxBody,
		Handler: func(ctx *fasthttp.RequestCtx) {
			_ = len(ctx.PostBody()) // fasthttp has read the whole body by now
			ctx.SetStatusCode(fasthttp.StatusNoContent)
		},
	}
	fmt.Println(ln.Addr().String())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *lifetime)
	defer cancel()
	if *stdinEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancelShut := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShut()
	return srv.ShutdownWithContext(shutCtx)
}
