//go:build !linux

package maildir

import (
	"errors"
	"io/fs"
)

// HomeFS is an FS on a directory that someone else controls, such as a
// system user's home. It needs openat(2) with O_NOFOLLOW and O_PATH as
// Linux has them; elsewhere every operation fails with
// errors.ErrUnsupported.
type HomeFS struct {
	dir string
}

// NewHomeFS returns an FS on dir.
func NewHomeFS(dir string) *HomeFS { return &HomeFS{dir: dir} }

// Dir returns the directory's path.
func (h *HomeFS) Dir() string { return h.dir }

func (h *HomeFS) err(op, name string) error {
	return &fs.PathError{Op: op, Path: h.dir + "/" + name, Err: errors.ErrUnsupported}
}

// OpenFile implements FS.
func (h *HomeFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	return nil, h.err("open", name)
}

// Mkdir implements FS.
func (h *HomeFS) Mkdir(name string, perm fs.FileMode) error { return h.err("mkdir", name) }

// Rename implements FS.
func (h *HomeFS) Rename(oldname, newname string) error { return h.err("rename", newname) }

// Link implements FS.
func (h *HomeFS) Link(oldname, newname string) error { return h.err("link", newname) }

// Remove implements FS.
func (h *HomeFS) Remove(name string) error { return h.err("remove", name) }

// Stat implements FS.
func (h *HomeFS) Stat(name string) (fs.FileInfo, error) { return nil, h.err("stat", name) }

// ReadDir implements FS.
func (h *HomeFS) ReadDir(name string) ([]fs.DirEntry, error) { return nil, h.err("readdir", name) }
