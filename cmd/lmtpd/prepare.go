package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/lmtpd/lmtpd/delivery"
)

// prepareDelivery makes the file system ready for a delivery
// configuration before it is used: the maildir root is created (mode 0750,
// with its parents) if it does not exist. Start-up, SIGHUP and deliver all
// call it, so a root that only a reload names is created exactly as one
// named at start-up; a reload whose root cannot be created is refused.
func prepareDelivery(dc *delivery.Config) error {
	if root := dc.Maildir.Root; root != "" {
		if err := os.MkdirAll(root, 0o750); err != nil {
			return &systemError{fmt.Errorf("cannot create the maildir root: %w", err)}
		}
	}
	return nil
}

// systemCondition reports whether err, from loadConfig or from preparing
// the configuration, comes only from the state of the system (a file or
// directory missing, unreadable, read-only or in the way) and not from the
// configuration's text. Such a condition is temporary: the daemon answers
// deliveries with 451 4.3.5 while it lasts, and deliver must exit 75
// (EX_TEMPFAIL) so that the MTA defers instead of bouncing, as it would on
// 78 (EX_CONFIG, 5.3.5).
func systemCondition(err error) bool {
	if err == nil {
		return false
	}
	var ce configErrors
	if !errors.As(err, &ce) {
		return isSystemError(err)
	}
	for _, e := range ce {
		if !isSystemError(e.Err) {
			return false
		}
	}
	return len(ce) > 0
}

func isSystemError(err error) bool {
	var se *systemError
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &se) || errors.As(err, &pe) || errors.As(err, &errno)
}
