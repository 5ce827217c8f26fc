package delivery

import (
	"errors"
	"time"
)

// threadCPU: NetBSD has no CLOCK_THREAD_CPUTIME_ID, so the benchmarks
// that need it say so.
func threadCPU() (time.Duration, error) {
	return 0, errors.New("no per-thread CPU clock on netbsd")
}
