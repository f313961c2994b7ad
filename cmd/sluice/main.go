// Command sluice is the beacon ingestion gateway. Subcommands: serve (the
// default), tail, version.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
)

const usage = `sluice: HTTP beacon ingestion gateway

Usage:
  sluice [serve] [flags]     run the gateway (the default)
  sluice tail [flags]        print the envelopes arriving in Kafka, one per line
  sluice buffer inspect DIR  show a WAL directory's first, last and acked index,
                             backlog and quarantine (--json for machines)
  sluice buffer verify DIR   check every WAL segment and record CRC; exit 1 on damage
  sluice version             print the version

Run "sluice serve -h" or "sluice tail -h" for flags. Every flag has an
environment equivalent: --data-dir is SLUICE_DATA_DIR.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "tail":
		err = tail(args)
	case "buffer":
		err = bufferCmd(args, os.Stdout)
	case "version":
		fmt.Println(version())
		return 0
	case "help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sluice %s: %v\n", cmd, err)
		var ce configError
		if errors.As(err, &ce) {
			return 2
		}
		return 1
	}
	return 0
}

// configError marks invalid configuration: exit status 2.
type configError struct{ err error }

func (c configError) Error() string { return "invalid configuration: " + c.err.Error() }
func (c configError) Unwrap() error { return c.err }

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return "sluice " + bi.Main.Version
	}
	return "sluice (devel)"
}
