package maildir

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// anonFlags open an unnamed file: O_TMPFILE (which includes O_DIRECTORY:
// the path names the directory it is created in), never with O_EXCL,
// which would forbid the link that publishes it.
const anonFlags = unix.O_TMPFILE | unix.O_RDWR

// procFd reports whether /proc/self/fd is there, through which an
// unnamed file is linked when linkat(2) with AT_EMPTY_PATH is refused
// (it needs CAP_DAC_READ_SEARCH). Without it, and until AT_EMPTY_PATH
// has worked once, nothing is staged unnamed: it could not be published.
var procFd = sync.OnceValue(func() bool {
	var st unix.Stat_t
	return unix.Stat("/proc/self/fd", &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
})

// flinkState is how unnamed files are linked: flinkUnknown until the
// first link, then whichever way worked.
var flinkState atomic.Int32

const (
	flinkUnknown = iota
	flinkEmptyPath
	flinkProc
)

// canPublish reports whether an unnamed file could be linked once
// written.
func canPublish() bool { return flinkState.Load() == flinkEmptyPath || procFd() }

// flink links the unnamed (or once linked) file open as fd to name in the
// directory dirfd: linkat(2) of the descriptor itself with AT_EMPTY_PATH,
// or, where that is refused (ENOENT without CAP_DAC_READ_SEARCH), of
// /proc/self/fd/<fd> with AT_SYMLINK_FOLLOW, as open(2) describes for
// O_TMPFILE. The way that worked is kept for the process.
func flink(fd, dirfd int, name string) error {
	link := func(old string, flags int) error {
		_, err := retryEINTR(func() (int, error) {
			if flags == unix.AT_EMPTY_PATH {
				return 0, unix.Linkat(fd, old, dirfd, name, flags)
			}
			return 0, unix.Linkat(unix.AT_FDCWD, old, dirfd, name, flags)
		})
		return err
	}
	state := flinkState.Load()
	if state != flinkProc {
		err := link("", unix.AT_EMPTY_PATH)
		if err != unix.ENOENT || state == flinkEmptyPath {
			if err == nil && state == flinkUnknown {
				flinkState.Store(flinkEmptyPath)
			}
			return err
		}
		// ENOENT: refused for want of the capability, or dirfd's
		// directory was removed meanwhile; the /proc way tells.
	}
	err := link("/proc/self/fd/"+strconv.Itoa(fd), unix.AT_SYMLINK_FOLLOW)
	if err == nil && state == flinkUnknown {
		flinkState.Store(flinkProc)
	}
	return err
}

// anonFd returns the descriptor of a file from OpenAnon.
func anonFd(f File) (int, error) {
	if fd, ok := f.(interface{ Fd() uintptr }); ok {
		return int(fd.Fd()), nil
	}
	return -1, errors.ErrUnsupported
}

// OpenAnon implements anonFS with one openat2(2) of dir below the root,
// O_TMPFILE; without openat2 (os.Root) it answers errors.ErrUnsupported.
func (r *RootFS) OpenAnon(dir string, perm fs.FileMode) (File, error) {
	if !canPublish() {
		return nil, errors.ErrUnsupported
	}
	root, ok, err := r.enter()
	if !ok {
		return nil, errors.ErrUnsupported
	}
	if err != nil {
		return nil, err
	}
	defer r.use.RUnlock()
	if !fs.ValidPath(dir) {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: fs.ErrInvalid}
	}
	fd, err := openBeneath(root, dir, anonFlags, uint32(perm.Perm()), rootResolve)
	if err != nil {
		return nil, atError("openat2", anonPath(dir), err)
	}
	return newFdFile(fd, anonPath(dir)), nil
}

// anonPath is how errors name the unnamed file being created in dir:
// dir/., so that, as for a named file, the directory it was to go into
// is the path's parent ("cannot store into ~/Maildir/tmp").
func anonPath(dir string) string { return dir + "/." }

// LinkAnon implements anonFS: newname's parent opened below the root,
// then flink.
func (r *RootFS) LinkAnon(f File, newname string) error {
	fd, err := anonFd(f)
	if err != nil {
		return err
	}
	root, ok, err := r.enter()
	if !ok {
		return errors.ErrUnsupported
	}
	if err != nil {
		return err
	}
	defer r.use.RUnlock()
	pfd, elem, err := r.atParent(root, newname)
	if err != nil {
		return err
	}
	defer closeParent(root, pfd)
	if err := flink(fd, pfd, elem); err != nil {
		return &os.LinkError{Op: "linkat", Old: "(unnamed)", New: newname, Err: err}
	}
	return nil
}

// OpenAnon implements anonFS: O_TMPFILE in dir, reached as every
// directory below the home is, without following any link (one
// openat2(2); without it, the walk, then openat(2) of ".").
func (h *HomeFS) OpenAnon(dir string, perm fs.FileMode) (File, error) {
	if !canPublish() {
		return nil, errors.ErrUnsupported
	}
	if !fs.ValidPath(dir) || dir == "." {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: fs.ErrInvalid}
	}
	base, err := h.openHome()
	if err != nil {
		return nil, err
	}
	defer unix.Close(base)
	if !noOpenat2.Load() {
		fd, err := openBeneath(base, dir, anonFlags, uint32(perm.Perm()), resolveFlags)
		switch err {
		case nil:
			return newFdFile(fd, h.dir+"/"+anonPath(dir)), nil
		case unix.ENOSYS:
			noOpenat2.Store(true)
		default:
			return nil, h.pathError("openat2", anonPath(dir), err)
		}
	}
	dfd, err := h.walk(base, dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(dfd, ".", anonFlags|unix.O_CLOEXEC, uint32(perm.Perm()))
	})
	if err != nil {
		return nil, h.pathError("openat", anonPath(dir), err)
	}
	return newFdFile(fd, h.dir+"/"+anonPath(dir)), nil
}

// LinkAnon implements anonFS: newname's parent reached without following
// links, then flink.
func (h *HomeFS) LinkAnon(f File, newname string) error {
	fd, err := anonFd(f)
	if err != nil {
		return err
	}
	pfd, elem, err := h.parent(newname)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := flink(fd, pfd, elem); err != nil {
		return &os.LinkError{Op: "linkat", Old: "(unnamed)", New: h.dir + "/" + newname, Err: err}
	}
	return nil
}
