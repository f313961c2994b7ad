// Package stats holds the small summaries the load-test tools share.
package stats

import (
	"math"
	"slices"
)

// Median is the middle of xs (the mean of the two middle values for an even
// count), NaN for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
