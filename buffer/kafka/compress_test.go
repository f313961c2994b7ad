package kafka

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLz4CompressorFrames checks the frame our compressor writes: lz4's
// reader restores the input, and the frame descriptor names 64 KiB blocks.
func TestLz4CompressorFrames(t *testing.T) {
	c, err := newLz4Compressor()
	if err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte(`{"type":"page","anonymous_id":"a-1","properties":{"path":"/x"}}`), 20000) // ~1.2 MB: many blocks
	for range 3 {                                                                                         // pooled writers must be reusable
		var dst bytes.Buffer
		out, codec := c.Compress(&dst, src)
		if codec != kgo.CodecLz4 || out == nil {
			t.Fatalf("Compress: codec %v, %d bytes", codec, len(out))
		}
		if len(out) >= len(src)/10 {
			t.Errorf("compressed %d bytes to %d: expected far smaller", len(src), len(out))
		}
		// Frame descriptor: magic (4 bytes), FLG, BD. BD's bits 4-6 are
		// the block maximum size: 4 means 64 KiB.
		if len(out) < 6 || out[0] != 0x04 || out[1] != 0x22 || out[2] != 0x4d || out[3] != 0x18 {
			t.Fatalf("not an lz4 frame: % x", out[:min(6, len(out))])
		}
		if bs := (out[5] >> 4) & 7; bs != 4 {
			t.Errorf("block size code %d, want 4 (64 KiB)", bs)
		}
		back, err := io.ReadAll(lz4.NewReader(bytes.NewReader(out)))
		if err != nil {
			t.Fatalf("decompress: %v", err)
		}
		if !bytes.Equal(back, src) {
			t.Fatalf("round trip changed the data (%d bytes back, %d sent)", len(back), len(src))
		}
	}
}

// TestLz4CompressorColdAllocation is why the compressor exists: after a GC
// emptied the pools (a slow broker's batches are seconds apart), one batch
// must not allocate megabytes of lz4 blocks. franz-go's default lz4 writer
// allocates over 8 MB here.
func TestLz4CompressorColdAllocation(t *testing.T) {
	c, err := newLz4Compressor()
	if err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte(`{"type":"track","event":"click"}`), 30000) // ~1 MB, a full batch
	dst := bytes.NewBuffer(make([]byte, 0, len(src)))
	// Two GCs: sync.Pool keeps a victim cache through one.
	runtime.GC()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if out, codec := c.Compress(dst, src); out == nil || codec != kgo.CodecLz4 {
		t.Fatalf("Compress failed: codec %v", codec)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("one cold compression allocated %d bytes, want under 1 MiB", got)
	}
}
