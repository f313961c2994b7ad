package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var errDecompressedTooLarge = errors.New("decompressed body too large")

// maxDeflateRatio bounds how much deflate can expand: a 258-byte match in
// as little as 2 bits is 1032:1. A valid gzip member never inflates to more
// than this times its compressed size.
const maxDeflateRatio = 1032

// gzipReaders are reused: a gzip reader's inflate state and window are a few
// tens of KiB, allocated anew by every gzip.NewReader.
var gzipReaders sync.Pool

// gunzipCapped decompresses body, reading at most limit+1 bytes of output, so
// a decompression bomb costs at most limit bytes of memory, never its size.
// A body whose gzip trailer already says it inflates past limit is refused
// without inflating anything.
func gunzipCapped(body []byte, limit int) ([]byte, error) {
	if n, ok := gzipSize(body); ok && n > uint64(limit) {
		return nil, fmt.Errorf("%w: the gzip trailer says %d bytes, over %d", errDecompressedTooLarge, n, limit)
	}
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	defer gzipReaders.Put(zr)
	if err := zr.Reset(bytes.NewReader(body)); err != nil {
		return nil, err
	}
	return readCapped(zr, limit)
}

// gzipSize is what a gzip body's trailer says its last member inflates to
// (ISIZE: the size modulo 2^32, so never more than the truth), when that is
// plausible: no larger than deflate can expand the whole body. The decoder
// accepts nothing after the last member's trailer, so for any body it would
// accept, a size over the limit means the body is over the limit. A truncated
// or forged trailer gains nothing: the body is still inflated under the cap.
func gzipSize(body []byte) (uint64, bool) {
	const minGzip = 10 + 2 + 8 // header, an empty deflate block, trailer
	if len(body) < minGzip || body[0] != 0x1f || body[1] != 0x8b {
		return 0, false
	}
	n := uint64(binary.LittleEndian.Uint32(body[len(body)-4:]))
	if n > uint64(len(body))*maxDeflateRatio {
		return 0, false
	}
	return n, true
}

// scratchBufs hold the output of a decompression while it runs: a bomb
// inflates up to the cap into a reused buffer and allocates nothing, and an
// accepted body is copied out at its exact size.
var scratchBufs = sync.Pool{New: func() any { return new([]byte) }}

// readCapped reads r to its end, or fails once it yields more than limit
// bytes. The result is the caller's (it outlives the request).
func readCapped(r io.Reader, limit int) ([]byte, error) {
	bp := scratchBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() { *bp = buf[:0]; scratchBufs.Put(bp) }()
	for len(buf) <= limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(max(cap(buf), 4<<10), limit+1-len(buf)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit+1)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return append(make([]byte, 0, len(buf)), buf...), nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: over %d bytes", errDecompressedTooLarge, limit)
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

// unzstdCapped is gunzipCapped for Content-Encoding: zstd (mobile SDKs). A
// frame whose header declares a content size over limit is refused without
// decoding (the decoder checks a declared size, so a body that would decode
// is really that large).
func unzstdCapped(body []byte, limit int) ([]byte, error) {
	var h zstd.Header
	if h.Decode(body) == nil && h.HasFCS && h.FrameContentSize > uint64(limit) {
		return nil, fmt.Errorf("%w: the zstd frame says %d bytes, over %d", errDecompressedTooLarge, h.FrameContentSize, limit)
	}
	d := zstdDecoders.Get().(*zstd.Decoder)
	defer zstdDecoders.Put(d)
	if err := d.Reset(bytes.NewReader(body)); err != nil {
		return nil, err
	}
	return readCapped(d, limit)
}
