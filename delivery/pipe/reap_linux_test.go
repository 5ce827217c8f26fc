package pipe

import (
	"os"
	"os/exec"
	"testing"
)

func TestCyclicRange(t *testing.T) {
	tests := []struct {
		name        string
		first, last int
		in, out     []int
	}{
		{"no wrap", 100, 200, []int{100, 150, 200}, []int{99, 201, 1, 32767}},
		{"only the command", 100, 100, []int{100}, []int{99, 101}},
		{"wrapped", 32000, 400, []int{32000, 32767, 300, 400}, []int{31999, 401, 5000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := cyclicRange(tc.first, tc.last)
			for _, p := range tc.in {
				if !f(p) {
					t.Errorf("%d not in the range", p)
				}
			}
			for _, p := range tc.out {
				if f(p) {
					t.Errorf("%d in the range", p)
				}
			}
		})
	}
}

// TestPidWindow: the window taken from the live counters passes a
// process started after the fork count was read and its child, and falls
// back to the full scan when the fork count is unknown.
func TestPidWindow(t *testing.T) {
	forks := forkCount()
	if forks == 0 {
		t.Skip("no /proc/stat processes line")
	}
	cmd := exec.Command("/bin/sh", "-c", "sleep 5 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	tr := tracked{pgid: cmd.Process.Pid, forks: forks}
	var child int
	for i := 0; i < 200 && child == 0; i++ { // the shell forks soon
		for _, p := range scanRun(tracked{pid: cmd.Process.Pid, forks: forks, pgid: cmd.Process.Pid}) {
			if p != cmd.Process.Pid {
				child = p
			}
		}
	}
	in := pidWindow(tr)
	if !in(cmd.Process.Pid) {
		t.Errorf("the command's pid %d is outside the window", cmd.Process.Pid)
	}
	if child == 0 {
		t.Error("the shell's child was not found")
	} else if !in(child) {
		t.Errorf("the child's pid %d is outside the window", child)
	}
	if all := pidWindow(tracked{pgid: cmd.Process.Pid}); !all(os.Getpid()) || !all(1) {
		t.Error("without a fork count the window is not the whole table")
	}
}
