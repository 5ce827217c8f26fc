package maildir

import (
	"io"
	"io/fs"
	"os"
	"sync"
)

// FS is the file system a Store works on. Names are slash-separated paths
// relative to the maildir root, as accepted by os.Root. Implementations
// must be safe for concurrent use. The default, NewRootFS, confines every
// operation to the root; tests wrap it to inject failures.
type FS interface {
	// OpenFile opens a file as os.OpenFile does. Directories are opened
	// with os.O_RDONLY to fsync them.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Mkdir creates one directory.
	Mkdir(name string, perm fs.FileMode) error
	// Rename renames a file, replacing newname atomically.
	Rename(oldname, newname string) error
	// Link creates newname as a hard link to oldname.
	Link(oldname, newname string) error
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// Stat returns information about a file, following symbolic links
	// within the root.
	Stat(name string) (fs.FileInfo, error)
	// ReadDir lists a directory.
	ReadDir(name string) ([]fs.DirEntry, error)
}

// File is an open file of an FS. A File returned by the default FS (and
// by HomeFS) on Linux is a thin descriptor type that calls the system
// directly, writes a header and an in-memory body in one writev(2), and
// hands copies from a spool file to an *os.File, so that they use
// copy_file_range(2); elsewhere it is an *os.File.
type File interface {
	io.Writer
	// Sync commits the file's content (or a directory's entries) to
	// stable storage, as fsync(2).
	Sync() error
	Close() error
}

// RootFS is the default FS: the root directory opened on first use, so
// that a root directory that does not exist yet (an unmounted volume, a
// missing directory) makes deliveries fail temporarily instead of the
// process failing to start, and starts working once it appears.
//
// On Linux 5.6 and later every path is resolved below the root's
// descriptor by one openat2(2) with RESOLVE_BENEATH (a symbolic link is
// followed only while it stays below the root, an absolute one is
// refused), so that creating a file in a maildir's tmp/ is one system
// call and a rename two (its parents) plus the renameat(2). Elsewhere, and
// where openat2 is filtered out, it uses an os.Root, whose rules are the
// same but which opens one directory per path element. Close must not
// run concurrently with other operations' use of the root; it waits for
// those in progress.
type RootFS struct {
	dir  string
	mu   sync.Mutex
	root *os.Root

	use    sync.RWMutex // held for reading while at is in use; Close takes it
	at     int          // the root's descriptor for openat2 (Linux), if atOpen
	atOpen bool
}

// NewRootFS returns an FS confined to dir. Nothing is opened until the
// first operation.
func NewRootFS(dir string) *RootFS { return &RootFS{dir: dir} }

// Dir returns the root directory's path.
func (r *RootFS) Dir() string { return r.dir }

func (r *RootFS) get() (*os.Root, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.root != nil {
		return r.root, nil
	}
	root, err := os.OpenRoot(r.dir)
	if err != nil {
		return nil, &RootError{Dir: r.dir, Err: err}
	}
	r.root = root
	return root, nil
}

// Close closes the root directory; a later operation opens it again.
func (r *RootFS) Close() error {
	r.use.Lock()
	defer r.use.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.closeAt()
	if r.root != nil {
		if cerr := r.root.Close(); err == nil {
			err = cerr
		}
		r.root = nil
	}
	return err
}

// RootError reports that the maildir root cannot be opened.
type RootError struct {
	Dir string
	Err error
}

func (e *RootError) Error() string { return "maildir root " + e.Dir + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *RootError) Unwrap() error { return e.Err }

// OpenFile implements FS.
func (r *RootFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if f, ok, err := r.openFileFast(name, flag, perm); ok {
		return f, err
	}
	root, err := r.get()
	if err != nil {
		return nil, err
	}
	f, err := root.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // a nil *os.File must not become a non-nil File
	}
	return f, nil
}

// Mkdir implements FS.
func (r *RootFS) Mkdir(name string, perm fs.FileMode) error {
	if ok, err := r.mkdirFast(name, perm); ok {
		return err
	}
	root, err := r.get()
	if err != nil {
		return err
	}
	return root.Mkdir(name, perm)
}

// Rename implements FS.
func (r *RootFS) Rename(oldname, newname string) error {
	if ok, err := r.renameFast(oldname, newname); ok {
		return err
	}
	root, err := r.get()
	if err != nil {
		return err
	}
	return root.Rename(oldname, newname)
}

// Link implements FS.
func (r *RootFS) Link(oldname, newname string) error {
	if ok, err := r.linkFast(oldname, newname); ok {
		return err
	}
	root, err := r.get()
	if err != nil {
		return err
	}
	return root.Link(oldname, newname)
}

// Remove implements FS.
func (r *RootFS) Remove(name string) error {
	if ok, err := r.removeFast(name); ok {
		return err
	}
	root, err := r.get()
	if err != nil {
		return err
	}
	return root.Remove(name)
}

// Stat implements FS.
func (r *RootFS) Stat(name string) (fs.FileInfo, error) {
	if fi, ok, err := r.statFast(name); ok {
		return fi, err
	}
	root, err := r.get()
	if err != nil {
		return nil, err
	}
	return root.Stat(name)
}

// ReadDir implements FS.
func (r *RootFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if ents, ok, err := r.readDirFast(name); ok {
		return ents, err
	}
	root, err := r.get()
	if err != nil {
		return nil, err
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}
