//go:build race

package gateway

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// tests of buffer reuse skip their allocation checks.
const raceEnabled = true
