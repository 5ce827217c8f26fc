//go:build linux || freebsd

package testproc

import "syscall"

// DieWithParent makes a child started with a (nil: a new one) be killed
// when the test process dies, so that a crashed or killed test leaves no
// server running: Pdeathsig, SIGKILL (prctl on Linux, procctl on
// FreeBSD). It returns the attributes to set.
func DieWithParent(a *syscall.SysProcAttr) *syscall.SysProcAttr {
	if a == nil {
		a = &syscall.SysProcAttr{}
	}
	a.Pdeathsig = syscall.SIGKILL
	return a
}
