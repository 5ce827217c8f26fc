package delivery

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/protocol"
)

// deferralLevel chooses the level of the outcome line of a deferred
// recipient (err is a temporary failure) and the fix hint it carries. A
// deferral an administrator must act on — the configuration or the file
// system: a permission, a read-only or full file system, a file where a
// directory belongs, a missing maildir root, a delivery command that
// cannot start — is an error, so that alerting on level error catches it
// (the MTA retries, but every retry fails the same way until it is
// fixed). A file system failure of another kind (EIO) is a warning with
// a hint. Other deferrals (another recipient failed in an all-or-nothing
// transaction, a timeout, a command's own temporary exit status) pass by
// themselves and stay at info, with no hint.
func deferralLevel(err error) (zerolog.Level, string) {
	var pathErr *fs.PathError
	isStart := errors.As(err, &pathErr) && pathErr.Op == "fork/exec"
	switch {
	case isStart:
		return zerolog.ErrorLevel, "the delivery command " + pathErr.Path + " cannot be started: check that argv[0] exists and is executable, and the pipe's user, group and dir"
	case errors.Is(err, syscall.ENOSPC):
		return zerolog.ErrorLevel, "the file system is full: free space (or inodes, df -i) where the maildir root or the spool directory lives"
	}
	if h := maildir.Hint(err); h != "" {
		return zerolog.ErrorLevel, h
	}
	pe := protocol.AsError(err)
	if pe != nil && pe.EnhancedCode == (protocol.EnhancedCode{4, 3, 5}) {
		// RFC 3463 X.3.5: system incorrectly configured.
		return zerolog.ErrorLevel, "the mail system is misconfigured: fix what the error names, then the MTA's next retry delivers"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) || errors.As(err, &pathErr) {
		return zerolog.WarnLevel, "the file system refused an operation: see the error (an I/O error may need fsck or dmesg)"
	}
	return zerolog.InfoLevel, ""
}

// replyCause returns the cause the reply in err's chain wraps (what went
// wrong, without the reply text), or err itself.
func replyCause(err error) error {
	if pe := protocol.AsError(err); pe != nil && pe.Err != nil {
		return pe.Err
	}
	return err
}
