package sluiceproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
)

// FetchPprof saves /debug/pprof/<what> from a Sluice admin address (the
// gateway needs --pprof) to path; a CPU profile ("profile?seconds=N") or a
// trace takes N seconds, so bound it with ctx.
func FetchPprof(ctx context.Context, admin, what, path string) error {
	url := "http://" + admin + "/debug/pprof/" + what
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s %s (is sluice serve running with --pprof?)", url, resp.Status, bytes.TrimSpace(b))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	return f.Close()
}
