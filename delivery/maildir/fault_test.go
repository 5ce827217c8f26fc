package maildir

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// faultFS wraps a real FS and fails chosen operations, so every error path
// of the write sequence can be hit halfway.
type faultFS struct {
	FS
	mu sync.Mutex
	// fail maps an operation to the error it returns: "open" (a file for
	// writing), "opendir", "write", "sync" (a file), "dirsync", "close",
	// "rename", "link", "mkdir", "stat", "readdir".
	fail map[string]error
	// only restricts failures to paths containing it.
	only string
	// writeBudget, when >= 0, is how many more bytes writes accept before
	// failing with ENOSPC.
	writeBudget int64
	calls       []string
}

func newFaultFS(t testing.TB, dir string) *faultFS {
	t.Helper()
	r := NewRootFS(dir)
	t.Cleanup(func() { r.Close() })
	return &faultFS{FS: r, fail: map[string]error{}, writeBudget: -1}
}

func (f *faultFS) check(op, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op+" "+name)
	if err, ok := f.fail[op]; ok && strings.Contains(name, f.only) {
		return err
	}
	return nil
}

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	op := "open"
	if flag == os.O_RDONLY {
		op = "opendir"
	}
	if err := f.check(op, name); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, name: name, dir: op == "opendir"}, nil
}

func (f *faultFS) Mkdir(name string, perm fs.FileMode) error {
	if err := f.check("mkdir", name); err != nil {
		return &fs.PathError{Op: "mkdir", Path: name, Err: err}
	}
	return f.FS.Mkdir(name, perm)
}

func (f *faultFS) Rename(o, n string) error {
	if err := f.check("rename", n); err != nil {
		return &os.LinkError{Op: "rename", Old: o, New: n, Err: err}
	}
	return f.FS.Rename(o, n)
}

func (f *faultFS) Link(o, n string) error {
	if err := f.check("link", n); err != nil {
		return &os.LinkError{Op: "link", Old: o, New: n, Err: err}
	}
	return f.FS.Link(o, n)
}

func (f *faultFS) Stat(name string) (fs.FileInfo, error) {
	if err := f.check("stat", name); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return f.FS.Stat(name)
}

func (f *faultFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := f.check("readdir", name); err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return f.FS.ReadDir(name)
}

type faultFile struct {
	File
	fs   *faultFS
	name string
	dir  bool
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.fs.check("write", f.name); err != nil {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: err}
	}
	f.fs.mu.Lock()
	budget := f.fs.writeBudget
	if budget >= 0 && int64(len(p)) > budget {
		f.fs.writeBudget = 0
		f.fs.mu.Unlock()
		n, _ := f.File.Write(p[:budget])
		return n, &fs.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	if budget >= 0 {
		f.fs.writeBudget -= int64(len(p))
	}
	f.fs.mu.Unlock()
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	op := "sync"
	if f.dir {
		op = "dirsync"
	}
	if err := f.fs.check(op, f.name); err != nil {
		return &fs.PathError{Op: "sync", Path: f.name, Err: err}
	}
	return f.File.Sync()
}

func (f *faultFile) Close() error {
	err := f.File.Close()
	if cerr := f.fs.check("close", f.name); cerr != nil && !f.dir {
		return &fs.PathError{Op: "close", Path: f.name, Err: cerr}
	}
	return err
}

// bytesBody is a Body over a byte slice.
type bytesBody []byte

func (b bytesBody) Size() int64 { return int64(len(b)) }
func (b bytesBody) WriteTo(w io.Writer) (int64, error) {
	n, err := io.Copy(w, bytes.NewReader(b))
	return n, err
}
