package testproc

import (
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestStop: Stop returns once each process is stopped, as /proc shows
// it, and a process that has exited counts as stopped.
func TestStop(t *testing.T) {
	var pids []int
	for range 2 {
		// A shell loop: always running, never blocked.
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = DieWithParent(nil)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	if err := Stop(pids...); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		stat := "/proc/" + strconv.Itoa(pid) + "/stat"
		if s := state(stat); s != 'T' {
			t.Errorf("process %d is in state %q after Stop, want T", pid, s)
		}
		// It runs on after SIGCONT.
		syscall.Kill(pid, syscall.SIGCONT)
		deadline := time.Now().Add(5 * time.Second)
		for state(stat) == 'T' && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if s := state(stat); s == 'T' {
			t.Errorf("process %d still stopped after SIGCONT", pid)
		}
	}
	// An exited process: nothing to wait for.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if err := waitStopped(cmd.Process.Pid); err != nil {
		t.Errorf("an exited process: %v", err)
	}
}
