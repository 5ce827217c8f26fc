package testproc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// waitStopped waits, up to 10 s, until every thread of pid shows state T
// (stopped) in /proc. A process that has exited counts as stopped.
func waitStopped(pid int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			return nil // gone
		}
		running := ""
		for _, stat := range tasks {
			if s := state(stat); s != 'T' && s != 't' && s != 0 && s != 'Z' && s != 'X' {
				running = stat
				break
			}
		}
		if running == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop (%s)", pid, running)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// state is the state field of a /proc/.../stat file, 0 if it cannot be
// read ("pid (comm) state ...": comm may hold spaces and parentheses, so
// the state follows the last ')').
func state(stat string) byte {
	b, err := os.ReadFile(stat)
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}
