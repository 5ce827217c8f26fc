//go:build !linux && !freebsd

package testproc

import "syscall"

// DieWithParent returns a (nil: a new one) as it is: this system has no
// signal on the parent's death, so a child outlives a killed test and
// the test's own cleanup must stop it.
func DieWithParent(a *syscall.SysProcAttr) *syscall.SysProcAttr {
	if a == nil {
		a = &syscall.SysProcAttr{}
	}
	return a
}
