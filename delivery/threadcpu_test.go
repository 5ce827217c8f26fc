//go:build !netbsd

package delivery

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time of the calling thread so far, from
// CLOCK_THREAD_CPUTIME_ID. (getrusage's RUSAGE_THREAD is no substitute:
// for the running thread it lags by up to a scheduler tick, and the step
// takes tens of microseconds.)
func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}
