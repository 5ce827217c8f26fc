package maildir

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// HomeFS is an FS on a directory that someone else controls, such as a
// system user's home: no operation ever follows a symbolic link below the
// directory, wherever the link points, inside the directory or out of it.
// Every operation opens the directory afresh (its own path is the
// administrator's, from the account database, and resolved as the system
// does), then resolves below it with openat2(2) and
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: a file is opened or created with
// the whole path in one call (O_NOFOLLOW too); for a rename, link, mkdir
// or removal the parent directory (both parents, under one open of the
// home, for a rename) is opened so, and the last element is worked on
// relative to it without following a link either (AT_SYMLINK_NOFOLLOW
// semantics). On kernels without openat2 (before Linux 5.6) each parent
// is reached by one openat(2) with O_NOFOLLOW|O_DIRECTORY per path
// element, and the last element opened relative to it with O_NOFOLLOW. A link met
// anywhere is a *LinkError (ELOOP). Names are slash-separated, relative
// and clean (fs.ValidPath). A HomeFS holds no descriptor between
// operations and is safe for concurrent use.
type HomeFS struct {
	dir string
}

// NewHomeFS returns an FS on dir, which must be an absolute path.
func NewHomeFS(dir string) *HomeFS { return &HomeFS{dir: dir} }

// Dir returns the directory's path.
func (h *HomeFS) Dir() string { return h.dir }

// noOpenat2 is set once openat2(2) answered ENOSYS; tests set it to walk.
var noOpenat2 atomic.Bool

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// pathError wraps errno e for name, a *LinkError for ELOOP.
func (h *HomeFS) pathError(op, name string, e error) error {
	if errors.Is(e, unix.ELOOP) {
		return &LinkError{Home: h.dir, Path: name, Err: &fs.PathError{Op: op, Path: name, Err: e}}
	}
	return &fs.PathError{Op: op, Path: h.dir + "/" + name, Err: e}
}

func retryEINTR[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err != unix.EINTR {
			return v, err
		}
	}
}

// openHome opens the home itself, as the system resolves its path.
func (h *HomeFS) openHome() (int, error) {
	base, err := retryEINTR(func() (int, error) {
		return unix.Open(h.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, &HomeError{Dir: h.dir, Err: &fs.PathError{Op: "open", Path: h.dir, Err: err}}
	}
	return base, nil
}

// openDir opens the directory rel (a clean relative path, "." for the
// home itself) without following any link below the home.
func (h *HomeFS) openDir(rel string) (int, error) {
	if !fs.ValidPath(rel) {
		return -1, &fs.PathError{Op: "open", Path: rel, Err: fs.ErrInvalid}
	}
	base, err := h.openHome()
	if err != nil || rel == "." {
		return base, err
	}
	fd, err := h.openDirAt(base, rel)
	unix.Close(base)
	return fd, err
}

// openDirAt opens the directory rel (not ".") below base, the home's
// descriptor, which stays open.
func (h *HomeFS) openDirAt(base int, rel string) (int, error) {
	if !noOpenat2.Load() {
		fd, err := openBeneath(base, rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0, resolveFlags)
		switch err {
		case nil:
			return fd, nil
		case unix.ENOSYS:
			noOpenat2.Store(true)
		case unix.ENOTDIR:
			// A link as the last element gives ENOTDIR (O_DIRECTORY
			// with O_NOFOLLOW): the walk tells which it was.
		default:
			return -1, h.pathError("openat2", rel, err)
		}
	}
	return h.walk(base, rel)
}

// walk opens rel below the directory base (which stays open) one element
// at a time, each with O_NOFOLLOW|O_DIRECTORY.
func (h *HomeFS) walk(base int, rel string) (int, error) {
	fd := base
	for _, e := range strings.Split(rel, "/") {
		next, err := retryEINTR(func() (int, error) {
			return unix.Openat(fd, e, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		err = linkErrno(fd, e, err)
		if fd != base {
			unix.Close(fd)
		}
		if err != nil {
			return -1, h.pathError("openat", rel, err)
		}
		fd = next
	}
	return fd, nil
}

// linkErrno returns ELOOP for an ENOTDIR that was caused by a symbolic
// link at name in dirfd (O_NOFOLLOW with O_DIRECTORY), err otherwise.
func linkErrno(dirfd int, name string, err error) error {
	if err != unix.ENOTDIR {
		return err
	}
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.ELOOP
	}
	return err
}

// parent opens the directory holding name's last element and returns it
// with that element. name must not be ".".
func (h *HomeFS) parent(name string) (int, string, error) {
	if !fs.ValidPath(name) || name == "." {
		return -1, "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	fd, err := h.openDir(path.Dir(name))
	return fd, path.Base(name), err
}

// parentAt is parent below base, the home's descriptor, which stays open
// and is returned for a name directly in the home (close the result with
// closeParent).
func (h *HomeFS) parentAt(base int, name string) (int, string, error) {
	if !fs.ValidPath(name) || name == "." {
		return -1, "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	dir := path.Dir(name)
	if dir == "." {
		return base, name, nil
	}
	fd, err := h.openDirAt(base, dir)
	return fd, path.Base(name), err
}

// OpenFile implements FS; the last element is opened with O_NOFOLLOW too.
// A read-only open (a directory to fsync, or a maildir's dovecot-keywords)
// gets O_NONBLOCK, so that a FIFO the user put in its place cannot block
// the open (nor a read: it finds no data, or fails). With openat2(2) the
// whole path is one call below the home.
func (h *HomeFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if flag&unix.O_ACCMODE == unix.O_RDONLY {
		flag |= unix.O_NONBLOCK
	}
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	base, err := h.openHome()
	if err != nil {
		return nil, err
	}
	if name == "." {
		return newFdFile(base, h.dir), nil
	}
	defer unix.Close(base)
	if !noOpenat2.Load() {
		fd, err := openBeneath(base, name, flag|unix.O_NOFOLLOW, uint32(perm.Perm()), resolveFlags)
		switch err {
		case nil:
			return newFdFile(fd, h.dir+"/"+name), nil
		case unix.ENOSYS:
			noOpenat2.Store(true)
		case unix.ENOTDIR:
			// A link as the last element of a directory's path gives
			// ENOTDIR (O_DIRECTORY with O_NOFOLLOW): the way below
			// tells which it was.
		default:
			return nil, h.pathError("openat2", name, err)
		}
	}
	pfd, elem, err := h.parentAt(base, name)
	if err != nil {
		return nil, err
	}
	defer closeParent(base, pfd)
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(pfd, elem, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	})
	if err = linkErrno(pfd, elem, err); err != nil {
		return nil, h.pathError("openat", name, err)
	}
	return newFdFile(fd, h.dir+"/"+name), nil
}

// Mkdir implements FS.
func (h *HomeFS) Mkdir(name string, perm fs.FileMode) error {
	pfd, elem, err := h.parent(name)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if _, err := retryEINTR(func() (int, error) { return 0, unix.Mkdirat(pfd, elem, uint32(perm.Perm())) }); err != nil {
		return h.pathError("mkdirat", name, err)
	}
	return nil
}

// twoParents opens the parents of two names below one open of the home
// (once if they share it) and calls do with them.
func (h *HomeFS) twoParents(oldname, newname string, do func(ofd int, oelem string, nfd int, nelem string) error) error {
	base, err := h.openHome()
	if err != nil {
		return err
	}
	defer unix.Close(base)
	return parentsAt(base, oldname, newname, h.parentAt, do)
}

// Rename implements FS with renameat(2) between the two parents.
func (h *HomeFS) Rename(oldname, newname string) error {
	return h.twoParents(oldname, newname, func(ofd int, oelem string, nfd int, nelem string) error {
		if _, err := retryEINTR(func() (int, error) { return 0, unix.Renameat(ofd, oelem, nfd, nelem) }); err != nil {
			return &os.LinkError{Op: "renameat", Old: h.dir + "/" + oldname, New: h.dir + "/" + newname, Err: err}
		}
		return nil
	})
}

// Link implements FS with linkat(2), which does not follow a link at
// oldname.
func (h *HomeFS) Link(oldname, newname string) error {
	return h.twoParents(oldname, newname, func(ofd int, oelem string, nfd int, nelem string) error {
		if _, err := retryEINTR(func() (int, error) { return 0, unix.Linkat(ofd, oelem, nfd, nelem, 0) }); err != nil {
			return &os.LinkError{Op: "linkat", Old: h.dir + "/" + oldname, New: h.dir + "/" + newname, Err: err}
		}
		return nil
	})
}

// Remove implements FS: unlinkat(2), for a directory with AT_REMOVEDIR.
// A link is removed itself, never its target.
func (h *HomeFS) Remove(name string) error {
	pfd, elem, err := h.parent(name)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	err = unix.Unlinkat(pfd, elem, 0)
	if err == unix.EISDIR || err == unix.EPERM {
		if err2 := unix.Unlinkat(pfd, elem, unix.AT_REMOVEDIR); err2 != unix.ENOTDIR {
			err = err2
		}
	}
	if err != nil {
		return &fs.PathError{Op: "unlinkat", Path: h.dir + "/" + name, Err: err}
	}
	return nil
}

// Stat implements FS without following a link: a link is a *LinkError.
func (h *HomeFS) Stat(name string) (fs.FileInfo, error) {
	var fd int
	if name == "." {
		var err error
		if fd, err = h.openDir("."); err != nil {
			return nil, err
		}
	} else {
		pfd, elem, err := h.parent(name)
		if err != nil {
			return nil, err
		}
		fd, err = retryEINTR(func() (int, error) {
			return unix.Openat(pfd, elem, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		unix.Close(pfd)
		if err != nil {
			return nil, h.pathError("openat", name, err)
		}
	}
	f := os.NewFile(uintptr(fd), h.dir+"/"+name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, h.pathError("stat", name, unix.ELOOP)
	}
	return fi, nil
}

// ReadDir implements FS.
func (h *HomeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	fd, err := h.openDir(name)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), h.dir+"/"+name)
	defer f.Close()
	return f.ReadDir(-1)
}
