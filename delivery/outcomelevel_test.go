package delivery

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/protocol"
)

// TestDeferralLevel: deferrals from the configuration or the file system
// are errors (EIO a warning) with a fix naming what to change; the others
// stay at info without one.
func TestDeferralLevel(t *testing.T) {
	pathErr := func(op string, errno syscall.Errno) error {
		return &fs.PathError{Op: op, Path: "/var/mail/vhosts/example.test", Err: errno}
	}
	tests := []struct {
		name string
		err  error
		want zerolog.Level
		fix  string // a part of the hint; "" for none
	}{
		{"not a directory", maildir.Classify(pathErr("mkdir", syscall.ENOTDIR)), zerolog.ErrorLevel, "a file stands where the maildir tree needs a directory"},
		{"permission denied", maildir.Classify(pathErr("open", syscall.EACCES)), zerolog.ErrorLevel, "write access"},
		{"read-only", maildir.Classify(pathErr("open", syscall.EROFS)), zerolog.ErrorLevel, "read-only"},
		{"root missing", maildir.Classify(&maildir.RootError{Dir: "/var/mail/vhosts", Err: fs.ErrNotExist}), zerolog.ErrorLevel, "create the maildir root directory /var/mail/vhosts"},
		{"full", maildir.Classify(pathErr("write", syscall.ENOSPC)), zerolog.ErrorLevel, "free space"},
		{"command cannot start", protocol.WrapError(451, protocol.EnhancedCode{4, 3, 5}, "Delivery command misconfigured",
			fmt.Errorf("pipe: starting /usr/bin/procmail: %w", &fs.PathError{Op: "fork/exec", Path: "/usr/bin/procmail", Err: syscall.ENOENT})), zerolog.ErrorLevel, "/usr/bin/procmail cannot be started"},
		{"misconfigured", protocol.WrapError(451, protocol.EnhancedCode{4, 3, 5}, "Delivery command misconfigured", errors.New(`pipe: no such user "mailer"`)), zerolog.ErrorLevel, "misconfigured"},
		{"I/O error", maildir.Classify(pathErr("fsync", syscall.EIO)), zerolog.WarnLevel, "file system"},
		{"another recipient failed", errNotDelivered, zerolog.InfoLevel, ""},
		{"command's own temporary status", protocol.NewError(451, protocol.EnhancedCode{4, 3, 0}, "Temporary failure (EX_TEMPFAIL)"), zerolog.InfoLevel, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lvl, fix := deferralLevel(tc.err)
			if lvl != tc.want || (tc.fix == "") != (fix == "") || !strings.Contains(fix, tc.fix) {
				t.Errorf("deferralLevel(%v) = %v, %q; want %v and a fix containing %q", tc.err, lvl, fix, tc.want, tc.fix)
			}
		})
	}
	if got := replyCause(maildir.Classify(pathErr("mkdir", syscall.ENOTDIR))); got.Error() != "mkdir /var/mail/vhosts/example.test: not a directory" {
		t.Errorf("replyCause = %q", got)
	}
}
