package spool

import (
	"errors"
	"os"
	"syscall"
)

// oTmpfile is O_TMPFILE: __O_TMPFILE (020000000 on every Linux port Go
// supports) combined with O_DIRECTORY, which differs between ports. The
// syscall package does not define it.
const oTmpfile = 0o20000000 | syscall.O_DIRECTORY

// openTemp opens an unnamed file in dir with O_TMPFILE (Linux 3.11+), and
// falls back to create-and-unlink where the file system does not support
// it.
func openTemp(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDWR|oTmpfile, 0o600)
	if err == nil {
		return f, nil
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && (errno == syscall.EOPNOTSUPP || errno == syscall.EISDIR || errno == syscall.EINVAL) {
		return createUnlinked(dir)
	}
	return nil, err
}
