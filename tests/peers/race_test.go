//go:build linux && race

package peers

// raceEnabled reports whether the tests (and so the lmtpd they build) run
// under the race detector.
const raceEnabled = true
