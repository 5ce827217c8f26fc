//go:build darwin || dragonfly || freebsd || linux || openbsd

package main

import "golang.org/x/sys/unix"

// clockMonotonic is CLOCK_MONOTONIC for clock_gettime(2).
const clockMonotonic = unix.CLOCK_MONOTONIC
