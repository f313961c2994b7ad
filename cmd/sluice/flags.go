package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// envName is the SLUICE_* environment variable for a flag: --drain-timeout
// is SLUICE_DRAIN_TIMEOUT.
func envName(flagName string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags applies SLUICE_* environment variables, then the command line,
// which wins. Every flag's usage line names its variable.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += " (env " + envName(f.Name) + ")"
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok || envErr != nil {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = fmt.Errorf("invalid %s=%q: %w", envName(f.Name), v, err)
		}
	})
	if envErr != nil {
		return envErr
	}
	return fs.Parse(args)
}

// splitList splits a comma-separated flag value, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
