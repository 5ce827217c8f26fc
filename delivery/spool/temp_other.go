//go:build !linux

package spool

import "os"

// openTemp creates a temporary file in dir and unlinks it at once.
func openTemp(dir string) (*os.File, error) { return createUnlinked(dir) }
