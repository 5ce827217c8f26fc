package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReadOnlyFS: a tmpfs mounted read-only is reported so, a writable
// directory is not, and a path that does not exist is not (the caller
// reports that itself).
func TestReadOnlyFS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: mounting a read-only tmpfs needs root")
	}
	ro := t.TempDir()
	if err := unix.Mount("tmpfs", ro, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
		t.Skipf("SKIPPING: mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(ro, 0) })
	tests := []struct {
		path string
		want bool
	}{
		{ro, true},
		{t.TempDir(), false},
		{filepath.Join(t.TempDir(), "missing"), false},
	}
	for _, tc := range tests {
		if got := readOnlyFS(tc.path); got != tc.want {
			t.Errorf("readOnlyFS(%s) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

// TestMonotonicMicros: the clock advances across a sleep, as
// CLOCK_MONOTONIC does and a process CPU-time clock (what clock number 1
// is on FreeBSD, which the daemon once asked for) does not.
func TestMonotonicMicros(t *testing.T) {
	a := monotonicMicros()
	time.Sleep(20 * time.Millisecond)
	b := monotonicMicros()
	if a <= 0 || b-a < 20_000 {
		t.Errorf("monotonicMicros %d, then %d 20 ms later: want it to advance by at least 20000", a, b)
	}
}
