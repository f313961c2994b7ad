package main

import (
	"context"
	"math"

	"github.com/sluice-gateway/sluice/loadtest/internal/promtext"
)

func scrape(ctx context.Context, admin string) (promtext.Metrics, error) {
	return promtext.Scrape(ctx, httpClient, admin)
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
