package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var errDecompressedTooLarge = errors.New("decompressed body too large")

// gunzipCapped decompresses body, reading at most limit+1 bytes of output, so
// a decompression bomb costs at most limit bytes of memory, never its size.
func gunzipCapped(body []byte, limit int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return readCapped(zr, limit)
}

// readCapped reads r to its end, or fails once it yields more than limit bytes.
func readCapped(r io.Reader, limit int) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", errDecompressedTooLarge, limit)
	}
	return out, nil
}

// zstdDecoders are shared: a zstd decoder is costly to build and safe for
// concurrent streams only through its pool, so each request takes one. The
// window is capped at 8 MiB (the format's recommended maximum for clients),
// so a frame cannot ask for more memory than that.
var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		panic(err) // only for invalid options
	}
	return d
}}

// unzstdCapped is gunzipCapped for Content-Encoding: zstd (mobile SDKs).
func unzstdCapped(body []byte, limit int) ([]byte, error) {
	d := zstdDecoders.Get().(*zstd.Decoder)
	defer zstdDecoders.Put(d)
	if err := d.Reset(bytes.NewReader(body)); err != nil {
		return nil, err
	}
	return readCapped(d, limit)
}
