package testproc

import "syscall"

// DieWithParent makes a child started with a (nil: a new one) be killed
// when the test process dies (procctl PROC_PDEATHSIG_CTL, as Go sets
// Pdeathsig), so that a killed test leaves no server running. It
// returns the attributes to set.
func DieWithParent(a *syscall.SysProcAttr) *syscall.SysProcAttr {
	if a == nil {
		a = &syscall.SysProcAttr{}
	}
	a.Pdeathsig = syscall.SIGKILL
	return a
}
