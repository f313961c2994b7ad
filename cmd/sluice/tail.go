package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-gateway/sluice/buffer/kafka"
)

func tail(args []string) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	brokers := fs.String("kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka brokers (default: the embedded broker)")
	topic := fs.String("topic", "beacons", "topic to print")
	fromBeginning := fs.Bool("from-beginning", false, "start at the oldest record instead of the newest")
	maxRecords := fs.Int("max-records", 0, "exit after this many records (0: run until interrupted)")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return configError{err}
	}
	if len(splitList(*brokers)) == 0 {
		return configError{errors.New("--kafka-brokers is empty")}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return kafka.Tail(ctx, kafka.TailConfig{
		Brokers: splitList(*brokers), Topic: *topic, FromBeginning: *fromBeginning, MaxRecords: *maxRecords,
	}, os.Stdout)
}
