package gateway

import (
	"bytes"
	"encoding/binary"
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

// A bomb whose trailer (gzip) or frame header (zstd) declares its size is
// refused before anything is inflated: it costs neither the inflate nor the
// cap's memory.
func TestDeclaredSizeOverTheCapIsRefusedWithoutInflating(t *testing.T) {
	for name, tc := range map[string]struct {
		bomb   []byte
		decode func([]byte, int) ([]byte, error)
		want   string
	}{
		"gzip": {[]byte(gzipped(t, make([]byte, 64<<20))), gunzipCapped, "gzip trailer says 67108864 bytes"},
		"zstd": {[]byte(zstded(make([]byte, 64<<20))), unzstdCapped, "zstd frame says 67108864 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.decode(tc.bomb, 1<<20)
			if !errors.Is(err, errDecompressedTooLarge) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if allocs := testing.AllocsPerRun(20, func() { tc.decode(tc.bomb, 1<<20) }); allocs > 10 {
				t.Errorf("%.0f allocations per refused bomb, want a handful (no decoder, no buffer)", allocs)
			}
		})
	}
}

// A gzip trailer that lies (says a few bytes) gains the bomb nothing: it is
// inflated under the cap and refused there, into a reused buffer.
func TestLyingGzipTrailerStillMeetsTheCap(t *testing.T) {
	bomb := []byte(gzipped(t, make([]byte, 64<<20)))
	binary.LittleEndian.PutUint32(bomb[len(bomb)-4:], 100)
	if n, ok := gzipSize(bomb); !ok || n != 100 {
		t.Fatalf("gzipSize = %d, %v; want 100, true", n, ok)
	}
	if _, err := gunzipCapped(bomb, 1<<20); !errors.Is(err, errDecompressedTooLarge) {
		t.Fatalf("got %v, want errDecompressedTooLarge", err)
	}
	if raceEnabled {
		t.Skip("the race detector drops pooled buffers at random")
	}
	var before, after runtimeMem
	before.read()
	for range 5 {
		gunzipCapped(bomb, 1<<20)
	}
	after.read()
	if grown := after.totalAlloc - before.totalAlloc; grown > 1<<20 {
		t.Errorf("five lying bombs allocated %d KiB, want the cap's buffer reused", grown>>10)
	}
}

func TestGzipSize(t *testing.T) {
	small := []byte(gzipped(t, []byte(`{"type":"a"}`)))
	if n, ok := gzipSize(small); !ok || n != 12 {
		t.Errorf("gzipSize(12-byte body) = %d, %v", n, ok)
	}
	// The trailer of a truncated body is compressed data: a size deflate
	// could not reach from so few bytes is ignored (the body is inflated and
	// gets its syntax error).
	implausible := bytes.Clone(small)
	binary.LittleEndian.PutUint32(implausible[len(implausible)-4:], 1<<31)
	if _, ok := gzipSize(implausible); ok {
		t.Error("a 2 GiB size for a 32-byte body was believed")
	}
	if _, err := gunzipCapped(implausible, 1<<20); err == nil || errors.Is(err, errDecompressedTooLarge) {
		t.Errorf("implausible trailer: got %v, want a gzip error", err)
	}
	for _, b := range [][]byte{nil, []byte("not gzip at all, twenty bytes"), small[:19]} {
		if _, ok := gzipSize(b); ok {
			t.Errorf("gzipSize(%q) believed", b)
		}
	}
}

// readCapped accepts exactly limit bytes, refuses limit+1, and hands out
// copies: its reused buffer never leaks into a result.
func TestReadCappedBoundsAndCopies(t *testing.T) {
	const limit = 10 << 10
	exact := bytes.Repeat([]byte("a"), limit)
	got, err := readCapped(bytes.NewReader(exact), limit)
	if err != nil || !bytes.Equal(got, exact) {
		t.Fatalf("exactly the limit: %d bytes, %v", len(got), err)
	}
	if _, err := readCapped(bytes.NewReader(append(exact, 'b')), limit); !errors.Is(err, errDecompressedTooLarge) {
		t.Fatalf("limit+1: %v", err)
	}
	for range 3 {
		readCapped(bytes.NewReader(bytes.Repeat([]byte("z"), limit)), limit)
	}
	if !bytes.Equal(got, exact) {
		t.Error("a result changed when the buffer was reused")
	}
	if empty, err := readCapped(bytes.NewReader(nil), limit); err != nil || len(empty) != 0 {
		t.Errorf("empty: %q, %v", empty, err)
	}
	if _, err := readCapped(iotestErr{}, limit); err == nil || errors.Is(err, errDecompressedTooLarge) {
		t.Errorf("a read error: %v", err)
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("boom") }
