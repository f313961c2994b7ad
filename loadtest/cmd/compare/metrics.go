package main

import (
	"context"
	"math"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice/loadtest/internal/promtext"
)

var scrapeClient = &http.Client{Timeout: 5 * time.Second}

func scrape(ctx context.Context, admin string) (promtext.Metrics, error) {
	return promtext.Scrape(ctx, scrapeClient, admin)
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
