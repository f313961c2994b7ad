//go:build race

package main

// raceEnabled makes the process-level tests build the binary with -race too.
const raceEnabled = true
