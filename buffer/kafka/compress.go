package kafka

import (
	"bytes"
	"fmt"
	"strings"
	"sync"

	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
)

// lz4Compressor compresses produce batches as lz4 frames of 64 KiB blocks,
// the Java producer's block size, instead of franz-go's default writer's
// 4 MiB. The lz4 package takes each block buffer from a sync.Pool at the
// start of a frame; while Kafka answers promptly the pool stays warm, but
// behind a slow broker a batch goes out every second or two, a GC empties
// the pool in between, and every batch allocated a fresh 4 MiB (plus its
// compression blocks): 156 MB in a 30 s slow-broker run, the largest
// allocation the fault added and a visible share of the live p99's rise.
// A produce batch is at most BatchMaxBytes (1 MB) before compression, so
// smaller blocks cost little ratio.
type lz4Compressor struct {
	writers sync.Pool // *lz4.Writer, configured
}

func newLz4Compressor() (*lz4Compressor, error) {
	c := &lz4Compressor{}
	// Check the options once, so that a failure is reported at start and
	// never inside Compress.
	if _, err := newLz4Writer(); err != nil {
		return nil, err
	}
	c.writers.New = func() any {
		w, _ := newLz4Writer()
		return w
	}
	return c, nil
}

func newLz4Writer() (*lz4.Writer, error) {
	w := lz4.NewWriter(nil)
	if err := w.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.CompressionLevelOption(lz4.Fast)); err != nil {
		return nil, fmt.Errorf("lz4 writer options: %w", err)
	}
	return w, nil
}

// Compress implements kgo.Compressor. A nil result tells franz-go that
// compression failed; it then sends the batch uncompressed.
func (c *lz4Compressor) Compress(dst *bytes.Buffer, src []byte, _ ...kgo.CompressFlag) ([]byte, kgo.CompressionCodecType) {
	w := c.writers.Get().(*lz4.Writer)
	defer c.writers.Put(w)
	w.Reset(dst)
	if _, err := w.Write(src); err != nil {
		return nil, kgo.CodecError
	}
	if err := w.Close(); err != nil {
		return nil, kgo.CodecError
	}
	return dst.Bytes(), kgo.CodecLz4
}

// compressionOpt returns the producer option for a --kafka-compression value:
// franz-go's own compressor, except for lz4 (see lz4Compressor).
func compressionOpt(name string) (kgo.ProducerOpt, error) {
	codec, err := CompressionCodec(name)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(name, "lz4") {
		return kgo.ProducerBatchCompression(codec), nil
	}
	c, err := newLz4Compressor()
	if err != nil {
		return nil, err
	}
	return kgo.WithCompressor(c), nil
}
