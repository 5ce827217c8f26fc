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

// File is an open file of an FS. A File returned by the default FS is an
// *os.File, which lets copies from a spool file use copy_file_range(2).
type File interface {
	io.Writer
	// Sync commits the file's content (or a directory's entries) to
	// stable storage, as fsync(2).
	Sync() error
	Close() error
}

// RootFS is the default FS: an os.Root opened on first use, so that a root
// directory that does not exist yet (an unmounted volume, a missing
// directory) makes deliveries fail temporarily instead of the process
// failing to start, and starts working once it appears.
type RootFS struct {
	dir  string
	mu   sync.Mutex
	root *os.Root
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
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.root == nil {
		return nil
	}
	err := r.root.Close()
	r.root = nil
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
	root, err := r.get()
	if err != nil {
		return err
	}
	return root.Mkdir(name, perm)
}

// Rename implements FS.
func (r *RootFS) Rename(oldname, newname string) error {
	root, err := r.get()
	if err != nil {
		return err
	}
	return root.Rename(oldname, newname)
}

// Link implements FS.
func (r *RootFS) Link(oldname, newname string) error {
	root, err := r.get()
	if err != nil {
		return err
	}
	return root.Link(oldname, newname)
}

// Remove implements FS.
func (r *RootFS) Remove(name string) error {
	root, err := r.get()
	if err != nil {
		return err
	}
	return root.Remove(name)
}

// Stat implements FS.
func (r *RootFS) Stat(name string) (fs.FileInfo, error) {
	root, err := r.get()
	if err != nil {
		return nil, err
	}
	return root.Stat(name)
}

// ReadDir implements FS.
func (r *RootFS) ReadDir(name string) ([]fs.DirEntry, error) {
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
