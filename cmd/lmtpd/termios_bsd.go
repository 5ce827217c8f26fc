//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package main

import "syscall"

// The ioctl requests that read and set a terminal's state.
const (
	ioctlGetTermios = syscall.TIOCGETA
	ioctlSetTermios = syscall.TIOCSETA
)
