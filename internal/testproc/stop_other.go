//go:build !linux

package testproc

import (
	"fmt"
	"syscall"
	"time"
)

// Stop sends SIGSTOP to each process in pids. Without /proc to watch the
// stop happen, it waits a moment for it.
func Stop(pids ...int) error {
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("SIGSTOP to %d: %w", pid, err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	return nil
}
