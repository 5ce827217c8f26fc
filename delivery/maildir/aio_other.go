//go:build !linux

package maildir

import "errors"

// errAIORefused: no asynchronous fsync on this system (FlushOrdered, its
// only user, is Linux's alone).
var errAIORefused = errors.New("maildir: asynchronous fsync refused")

// aioFsync is not available here: the caller fsyncs itself.
func aioFsync(fds []int, errs []error) error { return errAIORefused }

// aioRefused: nothing to say here (FlushOrdered is Linux's alone).
func aioRefused() string { return "" }
