package testproc

import (
	"fmt"
	"syscall"
)

// Stop sends SIGSTOP to each process in pids and waits until each has
// stopped. A signal is asynchronous: a server's thread that is running
// when kill(2) returns can still answer a request, so a test that stops
// a server to see what a hung one does must wait.
func Stop(pids ...int) error {
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("SIGSTOP to %d: %w", pid, err)
		}
	}
	for _, pid := range pids {
		if err := waitStopped(pid); err != nil {
			return err
		}
	}
	return nil
}
