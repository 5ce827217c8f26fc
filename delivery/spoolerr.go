package delivery

import (
	"context"
	"errors"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// Replies for a message that cannot be spooled (RFC 3463 codes). They are
// the spool's own: a target classifies its own failures.
var (
	// errSpoolNoSpace: the spool's file system is full (X.3.1).
	errSpoolNoSpace = protocol.NewError(protocol.CodeInsufficientSpace, protocol.ECTempSystemFull, "Insufficient system storage")
	// errSpoolMisconfigured: the spool directory is missing, not a
	// directory, not writable or read-only (X.3.5); an administrator can
	// fix it, so it is temporary.
	errSpoolMisconfigured = protocol.ErrMisconfigured
	// errSpoolIO: any other failure (X.3.0).
	errSpoolIO = protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, "Local error in processing, try again later")
)

// spoolFailure returns the reply for a message that could not be read or
// spooled into dir: a *protocol.Error in err's chain (the client's data,
// its size) as it is, else a temporary failure by the errno; one an
// administrator must fix is logged with what to fix.
func spoolFailure(ctx context.Context, err error, dir string) error {
	if pe := protocol.AsError(err); pe != nil {
		return pe
	}
	r, fix := errSpoolIO, ""
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		r = errSpoolNoSpace
	case isNotExist(err) && dir != "":
		r, fix = errSpoolMisconfigured, "create the spool directory "+dir+" (by default the maildir root; or fix the configured one) and make it writable for lmtpd"
	case errors.Is(err, syscall.ENOTDIR):
		r, fix = errSpoolMisconfigured, "the spool directory "+dir+" is not a directory"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		r, fix = errSpoolMisconfigured, "permission denied: give the lmtpd user write access to the spool directory "+dir
	case errors.Is(err, syscall.EROFS):
		r, fix = errSpoolMisconfigured, "the spool directory "+dir+" is on a read-only file system"
	}
	if fix != "" {
		zerolog.Ctx(ctx).Error().Err(err).Str("fix", fix).Msg("cannot spool message")
	}
	return r.Wrap(err)
}
