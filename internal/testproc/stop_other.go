//go:build !linux

package testproc

import "time"

// waitStopped cannot watch the stop happen without /proc: it waits a
// moment for it.
func waitStopped(int) error {
	time.Sleep(50 * time.Millisecond)
	return nil
}
