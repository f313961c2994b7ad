package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
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
	out, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", errDecompressedTooLarge, limit)
	}
	return out, nil
}
