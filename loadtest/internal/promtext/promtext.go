// Package promtext parses the Prometheus text exposition format that
// Sluice's /metrics serves, just enough for the load-test tools.
package promtext

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Metrics is one scrape of the Prometheus text format: value by full series
// ("name{labels}" as printed) and by name summed over its series. It is a
// few lines rather than prometheus/common/expfmt so the root go.mod keeps
// its requirements as they are.
type Metrics struct {
	series map[string]float64
	byName map[string]float64
}

// Sum returns the value of name summed over all its series.
func (m Metrics) Sum(name string) float64 { return m.byName[name] }

// Has reports whether the scrape had any series of name.
func (m Metrics) Has(name string) bool {
	_, ok := m.byName[name]
	return ok
}

// Get returns the series of name whose label set contains labels (e.g.
// `outcome="accepted"`), summed.
func (m Metrics) Get(name, labels string) float64 {
	var v float64
	for k, x := range m.series {
		if strings.HasPrefix(k, name+"{") && strings.Contains(k, labels) {
			v += x
		}
	}
	return v
}

// Scrape fetches and parses http://admin/metrics with client.
func Scrape(ctx context.Context, client *http.Client, admin string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return Metrics{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return Metrics{}, fmt.Errorf("scrape %s: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Metrics{}, fmt.Errorf("scrape %s: %s", admin, resp.Status)
	}
	return Parse(resp.Body)
}

// Parse reads the text format from r. Comments and lines whose value does
// not parse are skipped.
func Parse(r io.Reader) (Metrics, error) {
	m := Metrics{series: map[string]float64{}, byName: map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// name{labels} value [timestamp]; label values may hold spaces.
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

// BucketQuantile estimates quantile q of histogram name over the interval
// between two scrapes, as the upper bound of the bucket holding it (what a
// dashboard's histogram_quantile would show, without interpolation).
func BucketQuantile(m0, m1 Metrics, name string, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	prefix := name + "_bucket{"
	for k, v := range m1.series {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		i := strings.Index(k, `le="`)
		if i < 0 {
			continue
		}
		leStr, _, _ := strings.Cut(k[i+4:], `"`)
		le, err := strconv.ParseFloat(leStr, 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v - m0.series[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0
	}
	rank := q * bs[len(bs)-1].n
	last := 0.0 // beyond the last finite bucket, report that bucket's bound
	for _, b := range bs {
		if math.IsInf(b.le, 1) {
			break
		}
		last = b.le
		if b.n >= rank {
			return b.le
		}
	}
	return last
}
