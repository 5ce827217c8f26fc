package maildir

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lmtpd/lmtpd/protocol"
)

// ErrTooBig is the cause of the reply for a message larger than
// Options.MaxMessageBytes.
var ErrTooBig = errors.New("maildir: message exceeds the mailbox size limit")

// Replies of Classify. Their Err is nil; Classify returns copies that carry
// the cause.
var (
	// ReplyNoSpace: the file system is full (RFC 3463 X.3.1, mail system
	// full); temporary.
	ReplyNoSpace = protocol.NewError(protocol.CodeInsufficientSpace, protocol.ECTempSystemFull, "Insufficient system storage")
	// ReplyQuota: the user's disk quota is exhausted (X.2.2, mailbox
	// full); permanent, as Dovecot and Postfix answer.
	ReplyQuota = protocol.NewError(protocol.CodeExceededStorage, protocol.ECPermMailboxFull, "Mailbox full: quota exceeded")
	// ReplyTooBig: the message exceeds the configured maildir limit (X.3.4).
	ReplyTooBig = protocol.NewError(protocol.CodeExceededStorage, protocol.ECPermMessageTooBig, "Message too big for mailbox")
	// ReplyMisconfigured: permissions, a read-only file system, a missing
	// root or a symbolic link leading out of it (X.3.5, system incorrectly
	// configured); temporary, because an administrator can fix it.
	ReplyMisconfigured = protocol.ErrMisconfigured
	// ReplyIOError: any other failure (X.3.0); temporary.
	ReplyIOError = protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, "Local error in processing, try again later")
)

// Classify maps an error from delivery to its reply: an *protocol.Error in
// the chain is returned as it is; otherwise the result is a copy of one of
// the Reply values above with err as its cause. Classify(nil) is nil.
func Classify(err error) *protocol.Error {
	if err == nil {
		return nil
	}
	if pe := protocol.AsError(err); pe != nil {
		return pe
	}
	var r *protocol.Error
	switch {
	case errors.Is(err, ErrTooBig):
		r = ReplyTooBig
	case errors.Is(err, syscall.ENOSPC):
		r = ReplyNoSpace
	case errors.Is(err, syscall.EDQUOT):
		r = ReplyQuota
	case Hint(err) != "":
		r = ReplyMisconfigured
	default:
		r = ReplyIOError
	}
	return r.Wrap(err)
}

// OwnerError reports that a file or directory just created could not be
// given its owner (fchown(2) on its descriptor).
type OwnerError struct {
	Path  string
	Owner *Owner
	Err   error
}

func (e *OwnerError) Error() string {
	return fmt.Sprintf("maildir: giving %s to uid %d gid %d: %v", e.Path, e.Owner.UID, e.Owner.GID, e.Err)
}

// Unwrap returns the cause.
func (e *OwnerError) Unwrap() error { return e.Err }

// LinkError reports a symbolic link found under a home (Mailbox.Home):
// lmtpd never follows one there, wherever it points, since the home's
// user may have planted it to make lmtpd write elsewhere.
type LinkError struct {
	// Home is the home directory, Path the name under it that is or
	// passes through the link.
	Home, Path string
	Err        error
}

func (e *LinkError) Error() string {
	return "maildir: " + filepath.Join(e.Home, e.Path) + ": a symbolic link in the home is not followed: " + e.Err.Error()
}

// Unwrap returns the cause (ELOOP).
func (e *LinkError) Unwrap() error { return e.Err }

// HomeError reports that a home (Mailbox.Home) cannot be opened: it is
// missing, or lmtpd may not enter it.
type HomeError struct {
	Dir string
	Err error
}

func (e *HomeError) Error() string { return "maildir: home " + e.Dir + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *HomeError) Unwrap() error { return e.Err }

// Hint returns what an administrator should fix for an error that is a
// configuration problem rather than a passing failure, or "" if err is not
// one.
func Hint(err error) string {
	var re *RootError
	var oe *OwnerError
	var le *LinkError
	var he *HomeError
	switch {
	case errors.As(err, &he):
		return "the home directory " + he.Dir + " cannot be opened: create it or fix the account's home; lmtpd must run as root to deliver into homes"
	case errors.As(err, &le):
		return "the maildir path under the home " + le.Home + " (" + le.Path + ") is or passes through a symbolic link, which lmtpd never follows in a user's home: the user must make it a real directory"
	case errors.As(err, &oe) && errors.Is(err, errors.ErrUnsupported):
		return "the maildir file system cannot set owners; remove owner and group from [delivery.maildir]"
	case errors.As(err, &oe):
		return fmt.Sprintf("lmtpd cannot give new mail files to uid %d gid %d: it must run as root (or with CAP_CHOWN), or, for a group alone, be a member of that group", oe.Owner.UID, oe.Owner.GID)
	case errors.As(err, &re):
		return "create the maildir root directory " + re.Dir + " (or fix the configured root) and make it writable for lmtpd"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "permission denied: give the lmtpd user write access to the maildir tree (owner and mode of the directories named in the error)"
	case errors.Is(err, syscall.EROFS):
		return "the maildir file system is mounted read-only"
	case errors.Is(err, syscall.ELOOP), strings.Contains(err.Error(), "path escapes from parent"):
		return "a symbolic link in the maildir tree loops or points outside the maildir root; replace it with a directory"
	case errors.Is(err, syscall.ENOTDIR):
		return "a file stands where the maildir tree needs a directory; remove or rename it"
	}
	return ""
}
