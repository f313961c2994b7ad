package gateway

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/sluice-gateway/sluice/enrich"
)

func gzipped(t *testing.T, b []byte) string {
	t.Helper()
	return gzippedF(string(b))
}

// gzippedF compresses s (for tests and fuzz seeds).
func gzippedF(s string) string {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write([]byte(s))
	zw.Close()
	return buf.String()
}

func TestGzipBodies(t *testing.T) {
	tests := map[string]struct {
		encoding, body string
		wantCode       int
		wantBody       string
		wantRecords    int
	}{
		"gzip NDJSON": {
			encoding: "gzip", body: gzipped(t, []byte("{\"type\":\"a\"}\n{\"type\":\"b\"}\n")), wantCode: 204, wantRecords: 2,
		},
		"GZIP in upper case": {
			encoding: "GZIP", body: gzipped(t, []byte(`{"type":"a"}`)), wantCode: 204, wantRecords: 1,
		},
		"a decompression bomb gets 413": {
			// 8 MiB of zeros is a few KiB compressed; the cap is 64 KiB.
			encoding: "gzip", body: gzipped(t, make([]byte, 8<<20)), wantCode: 413, wantBody: "decompressed body exceeds",
		},
		"not gzip at all": {
			encoding: "gzip", body: `{"type":"a"}`, wantCode: 400, wantBody: "gzip:",
		},
		"truncated gzip": {
			encoding: "gzip", body: gzipped(t, []byte(`{"type":"a"}`))[:15], wantCode: 400, wantBody: "gzip:",
		},
		"identity": {encoding: "identity", body: `{"type":"a"}`, wantCode: 204, wantRecords: 1},
		"brotli":   {encoding: "br", body: `{"type":"a"}`, wantCode: 415, wantBody: "send gzip, zstd"},
		"zstd NDJSON": {
			encoding: "zstd", body: zstded([]byte("{\"type\":\"a\"}\n{\"type\":\"b\"}\n")), wantCode: 204, wantRecords: 2,
		},
		"a zstd bomb gets 413": {
			encoding: "zstd", body: zstded(make([]byte, 8<<20)), wantCode: 413, wantBody: "decompressed body exceeds",
		},
		"not zstd at all": {encoding: "zstd", body: `{"type":"a"}`, wantCode: 400, wantBody: "zstd:"},
		"truncated zstd": {
			encoding: "zstd", body: zstded([]byte(strings.Repeat(`{"type":"a"}`, 100)))[:20], wantCode: 400, wantBody: "zstd:",
		},
		"x-gzip": {encoding: "x-gzip", body: gzipped(t, []byte(`{"type":"a"}`)), wantCode: 204, wantRecords: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := newTestGateway(t, Config{MaxBodyBytes: 64 << 10}, enrich.Config{}, newFakeWAL())
			r := g.do(t, "POST", "/v1/beacon", "application/json", tc.body, map[string]string{"Content-Encoding": tc.encoding})
			if r.code != tc.wantCode || !strings.Contains(r.body, tc.wantBody) {
				t.Fatalf("got %d %q, want %d containing %q", r.code, r.body, tc.wantCode, tc.wantBody)
			}
			if n := len(g.wal.records()); n != tc.wantRecords {
				t.Errorf("%d records, want %d", n, tc.wantRecords)
			}
		})
	}
}

// zstded compresses b (for tests and fuzz seeds).
func zstded(b []byte) string {
	zw, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	defer zw.Close()
	return string(zw.EncodeAll(b, nil))
}

// A bomb of 64 MiB costs about the 1 MiB cap per request, never its size.
func TestDecompressionAllocatesAtMostTheCap(t *testing.T) {
	for name, tc := range map[string]struct {
		bomb   []byte
		decode func([]byte, int) ([]byte, error)
	}{
		"gzip": {[]byte(gzipped(t, make([]byte, 64<<20))), gunzipCapped},
		"zstd": {[]byte(zstded(make([]byte, 64<<20))), unzstdCapped},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tc.decode(tc.bomb, 1<<20); !errors.Is(err, errDecompressedTooLarge) {
				t.Fatal(err)
			}
			var before, after runtimeMem
			before.read()
			for range 3 {
				tc.decode(tc.bomb, 1<<20)
			}
			after.read()
			if grown := after.totalAlloc - before.totalAlloc; grown > 3*16<<20 {
				t.Errorf("three 64 MiB bombs allocated %d MiB, want a few MiB each at most", grown>>20)
			}
		})
	}
}
