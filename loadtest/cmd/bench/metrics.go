package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// metrics is one scrape of the Prometheus text format: value by full series
// ("name{labels}" as printed) and by name summed over its series (as in
// loadtest/cmd/compare, without a dependency on prometheus/common).
type metrics struct {
	series map[string]float64
	byName map[string]float64
}

func (m metrics) sum(name string) float64 { return m.byName[name] }

// get returns the series of name whose label set contains labels, summed.
func (m metrics) get(name, labels string) float64 {
	var v float64
	for k, x := range m.series {
		if strings.HasPrefix(k, name+"{") && strings.Contains(k, labels) {
			v += x
		}
	}
	return v
}

func scrape(ctx context.Context, admin string) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return metrics{}, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return metrics{}, fmt.Errorf("scrape %s: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return metrics{}, fmt.Errorf("scrape %s: %s", admin, resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (metrics, error) {
	m := metrics{series: map[string]float64{}, byName: map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		var series, rest string
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, rest = line[:i+1], line[i+1:]
		} else {
			series, rest, _ = strings.Cut(line, " ")
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m.series[series] = v
		name, _, _ := strings.Cut(series, "{")
		m.byName[name] += v
	}
	return m, sc.Err()
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
