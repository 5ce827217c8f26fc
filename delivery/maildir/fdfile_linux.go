package maildir

import (
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// fdFile is a File on a descriptor that RootFS and HomeFS opened
// themselves. It calls the system directly: an *os.File costs an
// fcntl(2) to find out whether the descriptor blocks (and, opened by
// os.OpenFile or os.Root, two more and an epoll_ctl(2) for the poller,
// which refuses regular files and directories anyway), and an allocation
// or two; a delivery opens a file and a directory or more. Not safe for
// concurrent use, except Sync, Fd and Name, which may be called while
// another goroutine holds the file (the flush barriers do).
type fdFile struct {
	fd   int
	name string
	of   *os.File // once ReadFrom needed one; then it owns fd
}

func newFdFile(fd int, name string) *fdFile { return &fdFile{fd: fd, name: name} }

// Write implements io.Writer: write(2) until p is written.
func (f *fdFile) Write(p []byte) (int, error) {
	var bufs [1][]byte
	bufs[0] = p
	n, err := f.writev(bufs[:])
	return int(n), err
}

// writev writes every buffer in order with as few writev(2) calls as the
// kernel allows (one, for a regular file with room): a maildir file's
// header and body in one call.
func (f *fdFile) writev(bufs [][]byte) (int64, error) {
	var total int64
	for len(bufs) > 0 && len(bufs[0]) == 0 {
		bufs = bufs[1:]
	}
	for len(bufs) > 0 {
		var n int
		var err error
		if len(bufs) == 1 {
			n, err = unix.Write(f.fd, bufs[0])
		} else {
			n, err = unix.Writev(f.fd, bufs)
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, &fs.PathError{Op: "write", Path: f.name, Err: err}
		}
		if n == 0 {
			return total, &fs.PathError{Op: "write", Path: f.name, Err: io.ErrShortWrite}
		}
		total += int64(n)
		for n > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return total, nil
}

// Read implements io.Reader (the Store reads its dovecot-keywords files).
func (f *fdFile) Read(p []byte) (int, error) {
	if f.of != nil {
		return f.of.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := retryEINTR(func() (int, error) { return unix.Read(f.fd, p) })
	switch {
	case err != nil:
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: err}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// ReadFrom hands r to an *os.File on the descriptor, so that a copy from
// a spool file is done by copy_file_range(2) as before. The *os.File then
// owns the descriptor.
func (f *fdFile) ReadFrom(r io.Reader) (int64, error) {
	if f.of == nil {
		f.of = os.NewFile(uintptr(f.fd), f.name)
	}
	return f.of.ReadFrom(r)
}

// Sync implements File: fsync(2).
func (f *fdFile) Sync() error {
	_, err := retryEINTR(func() (int, error) { return 0, unix.Fsync(f.fd) })
	if err != nil {
		return &fs.PathError{Op: "sync", Path: f.name, Err: err}
	}
	return nil
}

// Close implements File. close(2) is not retried on EINTR: on Linux the
// descriptor is gone whatever it returns.
func (f *fdFile) Close() error {
	if f.of != nil {
		return f.of.Close()
	}
	if f.fd < 0 {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	err := unix.Close(f.fd)
	f.fd = -1
	if err != nil {
		return &fs.PathError{Op: "close", Path: f.name, Err: err}
	}
	return nil
}

// Fd returns the descriptor (the flush barriers' syncfs(2) and checks).
func (f *fdFile) Fd() uintptr { return uintptr(f.fd) }

// Name returns the name the file was opened with, for errors.
func (f *fdFile) Name() string { return f.name }

// Chown is fchown(2) on the descriptor.
func (f *fdFile) Chown(uid, gid int) error {
	if _, err := retryEINTR(func() (int, error) { return 0, unix.Fchown(f.fd, uid, gid) }); err != nil {
		return &fs.PathError{Op: "chown", Path: f.name, Err: err}
	}
	return nil
}

// Chmod is fchmod(2) on the descriptor.
func (f *fdFile) Chmod(mode fs.FileMode) error {
	if _, err := retryEINTR(func() (int, error) { return 0, unix.Fchmod(f.fd, uint32(mode.Perm())) }); err != nil {
		return &fs.PathError{Op: "chmod", Path: f.name, Err: err}
	}
	return nil
}
