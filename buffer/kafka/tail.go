package kafka

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TailConfig configures Tail.
type TailConfig struct {
	Brokers       []string
	Topic         string
	FromBeginning bool
	// MaxRecords stops after this many records; 0 means until ctx ends.
	MaxRecords int
}

// Tail consumes cfg.Topic and writes each record value on its own line to w,
// until ctx ends or MaxRecords are written.
func Tail(ctx context.Context, cfg TailConfig, w io.Writer) error {
	offset := kgo.NewOffset().AtEnd()
	if cfg.FromBeginning {
		offset = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(offset),
	)
	if err != nil {
		return fmt.Errorf("tail %s: %w", cfg.Topic, err)
	}
	defer cl.Close()
	out := bufio.NewWriter(w)
	defer out.Flush()
	n := 0
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("tail %s[%d]: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			out.Write(r.Value)
			out.WriteByte('\n')
			n++
			if cfg.MaxRecords > 0 && n >= cfg.MaxRecords {
				if err := out.Flush(); err != nil {
					return fmt.Errorf("tail: %w", err)
				}
				return nil
			}
		}
		if err := out.Flush(); err != nil {
			return fmt.Errorf("tail: %w", err)
		}
	}
}
