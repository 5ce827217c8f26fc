package maildir

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"sync"

	"golang.org/x/sys/unix"
)

// errPathEscapes is the error of a path that resolves outside the root
// (openat2(2) with RESOLVE_BENEATH answers EXDEV): the same text as
// os.Root's, which Hint recognises.
var errPathEscapes = errors.New("path escapes from parent")

// rootResolve are the openat2(2) resolve flags under the maildir root:
// the semantics of os.Root (a symbolic link is followed if it stays below
// the root; an absolute one, or one that climbs out with "..", is
// refused), and no /proc magic links.
const rootResolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// openat2Works reports whether this kernel (and any seccomp filter around
// the process) lets openat2(2) through: Linux 5.6 or later.
var openat2Works = sync.OnceValue(func() bool {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: rootResolve}
	fd, err := unix.Openat2(unix.AT_FDCWD, ".", &how)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
})

// useOpenat2 reports whether RootFS resolves its paths with openat2(2)
// (one system call per path) rather than through an os.Root (one openat(2)
// per path element). Tests set noOpenat2 to take the os.Root way.
func useOpenat2() bool { return !noOpenat2.Load() && openat2Works() }

// openBeneath opens name below the directory dirfd with one openat2(2)
// call. A rename anywhere on the system while the path is resolved can
// make the kernel answer EAGAIN (with RESOLVE_BENEATH it cannot tell that
// ".." stayed inside): tried three times.
func openBeneath(dirfd int, name string, flag int, perm uint32, resolve uint64) (int, error) {
	// O_LARGEFILE, which os.OpenFile adds itself, is 0 on 64-bit
	// systems; a 32-bit one needs it for files over 2 GiB.
	how := unix.OpenHow{Flags: uint64(flag | unix.O_CLOEXEC | unix.O_LARGEFILE), Resolve: resolve}
	if flag&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(perm)
	}
	var fd int
	var err error
	for range 3 {
		fd, err = retryEINTR(func() (int, error) { return unix.Openat2(dirfd, name, &how) })
		if err != unix.EAGAIN {
			break
		}
	}
	return fd, err
}

// rootAt is the root's directory descriptor, for openat2(2). Callers hold
// r.use for reading while they use it; Close takes it for writing.
func (r *RootFS) rootAt() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.atOpen {
		return r.at, nil
	}
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(r.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, &RootError{Dir: r.dir, Err: &fs.PathError{Op: "open", Path: r.dir, Err: err}}
	}
	r.at, r.atOpen = fd, true
	return fd, nil
}

// closeAt closes the root's descriptor; the caller holds r.use and r.mu.
func (r *RootFS) closeAt() error {
	if !r.atOpen {
		return nil
	}
	r.atOpen = false
	return unix.Close(r.at)
}

// atError returns the error of op on name: escapes as os.Root reports
// them, the rest as *fs.PathError with the errno.
func atError(op, name string, err error) error {
	if err == unix.EXDEV {
		err = errPathEscapes
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// atParent opens the directory holding name's last element (O_PATH: only
// to name things relative to it) and returns it with that element. A name
// without a directory is in the root, whose descriptor is returned as it
// is: close it with closeParent.
func (r *RootFS) atParent(root int, name string) (int, string, error) {
	if !fs.ValidPath(name) || name == "." {
		return -1, "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	dir, elem := path.Split(name)
	if dir == "" {
		return root, elem, nil
	}
	fd, err := openBeneath(root, dir[:len(dir)-1], unix.O_PATH|unix.O_DIRECTORY, 0, rootResolve)
	if err != nil {
		return -1, "", atError("openat2", name, err)
	}
	return fd, elem, nil
}

func closeParent(root, fd int) {
	if fd != root {
		unix.Close(fd)
	}
}

// openFileAt is OpenFile in one openat2(2).
func (r *RootFS) openFileAt(root int, name string, flag int, perm fs.FileMode) (File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	fd, err := openBeneath(root, name, flag, uint32(perm.Perm()), rootResolve)
	if err != nil {
		return nil, atError("openat2", name, err)
	}
	return newFdFile(fd, name), nil
}

func (r *RootFS) mkdirAt(root int, name string, perm fs.FileMode) error {
	pfd, elem, err := r.atParent(root, name)
	if err != nil {
		return err
	}
	defer closeParent(root, pfd)
	if _, err := retryEINTR(func() (int, error) { return 0, unix.Mkdirat(pfd, elem, uint32(perm.Perm())) }); err != nil {
		return atError("mkdirat", name, err)
	}
	return nil
}

// twoAt opens the parents of two names, once if they share it.
func (r *RootFS) twoAt(root int, oldname, newname string, do func(ofd int, oelem string, nfd int, nelem string) error) error {
	return parentsAt(root, oldname, newname, r.atParent, do)
}

// parentsAt opens the parents of two names below base with at (once if
// they share it), calls do with them and closes them: for the renames
// and links of RootFS and HomeFS.
func parentsAt(base int, oldname, newname string, at func(base int, name string) (int, string, error), do func(ofd int, oelem string, nfd int, nelem string) error) error {
	ofd, oelem, err := at(base, oldname)
	if err != nil {
		return err
	}
	defer closeParent(base, ofd)
	nfd, nelem := ofd, path.Base(newname)
	if path.Dir(oldname) != path.Dir(newname) {
		if nfd, nelem, err = at(base, newname); err != nil {
			return err
		}
		defer closeParent(base, nfd)
	}
	return do(ofd, oelem, nfd, nelem)
}

func (r *RootFS) renameAt(root int, oldname, newname string) error {
	return r.twoAt(root, oldname, newname, func(ofd int, oelem string, nfd int, nelem string) error {
		if _, err := retryEINTR(func() (int, error) { return 0, unix.Renameat(ofd, oelem, nfd, nelem) }); err != nil {
			return &os.LinkError{Op: "renameat", Old: oldname, New: newname, Err: err}
		}
		return nil
	})
}

func (r *RootFS) linkAt(root int, oldname, newname string) error {
	return r.twoAt(root, oldname, newname, func(ofd int, oelem string, nfd int, nelem string) error {
		if _, err := retryEINTR(func() (int, error) { return 0, unix.Linkat(ofd, oelem, nfd, nelem, 0) }); err != nil {
			return &os.LinkError{Op: "linkat", Old: oldname, New: newname, Err: err}
		}
		return nil
	})
}

// removeAt removes a file or an empty directory, as os.Root.Remove.
func (r *RootFS) removeAt(root int, name string) error {
	pfd, elem, err := r.atParent(root, name)
	if err != nil {
		return err
	}
	defer closeParent(root, pfd)
	err = unix.Unlinkat(pfd, elem, 0)
	if err == unix.EISDIR || err == unix.EPERM {
		if err2 := unix.Unlinkat(pfd, elem, unix.AT_REMOVEDIR); err2 != unix.ENOTDIR {
			err = err2
		}
	}
	if err != nil {
		return atError("unlinkat", name, err)
	}
	return nil
}

// statAt follows a link at name that stays in the root, as os.Root.Stat.
func (r *RootFS) statAt(root int, name string) (fs.FileInfo, error) {
	fd, err := openBeneath(root, name, unix.O_PATH, 0, rootResolve)
	if err != nil {
		return nil, atError("statat", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return f.Stat()
}

func (r *RootFS) readDirAt(root int, name string) ([]fs.DirEntry, error) {
	fd, err := openBeneath(root, name, unix.O_RDONLY|unix.O_DIRECTORY, 0, rootResolve)
	if err != nil {
		return nil, atError("openat2", name, err)
	}
	// The entries' Info is an lstat(2) of the name joined to this one,
	// as with os.Root's files.
	f := os.NewFile(uintptr(fd), r.dir+"/"+name)
	defer f.Close()
	return f.ReadDir(-1)
}

// The operations of RootFS by openat2(2): ok is false when the kernel
// has no openat2, and the os.Root way is to be taken.

func (r *RootFS) enter() (int, bool, error) {
	if !useOpenat2() {
		return -1, false, nil
	}
	r.use.RLock()
	root, err := r.rootAt()
	if err != nil {
		r.use.RUnlock()
	}
	return root, true, err
}

func (r *RootFS) openFileFast(name string, flag int, perm fs.FileMode) (File, bool, error) {
	root, ok, err := r.enter()
	if !ok || err != nil {
		return nil, ok, err
	}
	defer r.use.RUnlock()
	f, err := r.openFileAt(root, name, flag, perm)
	return f, true, err
}

func (r *RootFS) mkdirFast(name string, perm fs.FileMode) (bool, error) {
	root, ok, err := r.enter()
	if !ok || err != nil {
		return ok, err
	}
	defer r.use.RUnlock()
	return true, r.mkdirAt(root, name, perm)
}

func (r *RootFS) renameFast(oldname, newname string) (bool, error) {
	root, ok, err := r.enter()
	if !ok || err != nil {
		return ok, err
	}
	defer r.use.RUnlock()
	return true, r.renameAt(root, oldname, newname)
}

func (r *RootFS) linkFast(oldname, newname string) (bool, error) {
	root, ok, err := r.enter()
	if !ok || err != nil {
		return ok, err
	}
	defer r.use.RUnlock()
	return true, r.linkAt(root, oldname, newname)
}

func (r *RootFS) removeFast(name string) (bool, error) {
	root, ok, err := r.enter()
	if !ok || err != nil {
		return ok, err
	}
	defer r.use.RUnlock()
	return true, r.removeAt(root, name)
}

func (r *RootFS) statFast(name string) (fs.FileInfo, bool, error) {
	root, ok, err := r.enter()
	if !ok || err != nil {
		return nil, ok, err
	}
	defer r.use.RUnlock()
	fi, err := r.statAt(root, name)
	return fi, true, err
}

func (r *RootFS) readDirFast(name string) ([]fs.DirEntry, bool, error) {
	root, ok, err := r.enter()
	if !ok || err != nil {
		return nil, ok, err
	}
	defer r.use.RUnlock()
	ents, err := r.readDirAt(root, name)
	return ents, true, err
}
