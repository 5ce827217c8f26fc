//go:build !linux

package maildir

import "context"

// fsHealth is the check after a rename barrier (fshealth_linux.go). It is
// Linux only: the failure it catches (an fsync that returns 0 after ext4
// aborted its journal) is ext4's, and elsewhere a failed barrier reports
// its error.
type fsHealth struct{}

// check does nothing here.
func (*fsHealth) check(context.Context, string, loc, string) error { return nil }

// checkOpen does nothing here.
func (*fsHealth) checkOpen(context.Context, File, string) error { return nil }
