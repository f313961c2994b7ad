package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
)

func TestGzipBomb(t *testing.T) {
	b, err := gzipBomb(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 4<<10 {
		t.Errorf("a 1 MiB bomb compresses to %d bytes, want a few KiB", len(b))
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil || n != 1<<20 {
		t.Fatalf("bomb inflates to %d bytes (%v), want 1 MiB", n, err)
	}
}

func TestRequests(t *testing.T) {
	h := string(hugeHeaderRequest(1 << 20))
	if len(h) < 1<<20 || !strings.HasPrefix(h, "POST /v1/beacon HTTP/1.1\r\n") || !strings.HasSuffix(h, "\r\n\r\n{\"type\":\"a\"}") {
		t.Errorf("huge-header request malformed (%d bytes)", len(h))
	}
	if r := string(bombRequest([]byte("xyz"))); !strings.Contains(r, "Content-Length: 3\r\n") || !strings.HasSuffix(r, "\r\n\r\nxyz") {
		t.Errorf("bomb request %q", r)
	}
}
