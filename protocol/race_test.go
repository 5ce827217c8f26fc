//go:build race

package protocol

// raceEnabled reports whether the tests run under the race detector, whose
// shadow memory makes resident-memory figures larger.
const raceEnabled = true
