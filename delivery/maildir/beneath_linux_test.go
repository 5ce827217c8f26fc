package maildir

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRootFSBothWays runs the Store's tests of the maildir root with
// openat2(2) and with the os.Root that replaces it on kernels without
// openat2: links inside and outside the root, a file in place of a
// maildir, links between maildirs, folders, keywords, the tmp/ cleanup,
// owners and modes, a maildir that vanishes.
func TestRootFSBothWays(t *testing.T) {
	if !openat2Works() {
		t.Log("this kernel has no openat2(2): both ways are the os.Root one")
	}
	for name, f := range map[string]func(*testing.T){
		"Deliver":         TestDeliver,
		"SymlinkOutside":  TestSymlinkOutsideRoot,
		"FileInPlace":     TestFileInPlaceOfMaildir,
		"StageAbort":      TestStageAbort,
		"Link":            TestLink,
		"Folders":         TestFolders,
		"CleanTmp":        TestCleanTmp,
		"MaildirVanishes": TestMaildirVanishes,
		"NameClash":       TestNameClash,
		"Keywords":        TestFlagsAndKeywords,
		"OwnerAndModes":   TestOwnerAndModes,
		"OwnerFailure":    TestOwnerFailure,
	} {
		t.Run(name, func(t *testing.T) { bothWays(t, f) })
	}
}

// TestRootFSNames: RootFS itself refuses names that are not clean
// relative paths and paths that leave the root through a link, whatever
// the Store checked, for every operation.
func TestRootFSNames(t *testing.T) {
	bothWays(t, func(t *testing.T) {
		root, outside := t.TempDir(), t.TempDir()
		os.Mkdir(filepath.Join(outside, "d"), 0o700)
		os.Symlink(outside, filepath.Join(root, "out"))
		os.Symlink("../"+filepath.Base(outside), filepath.Join(root, "up"))
		r := NewRootFS(root)
		defer r.Close()
		for _, name := range []string{"../x", "/etc/x", "out/d/x", "up/d/x", "out/x"} {
			if f, err := r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
				f.Close()
				t.Errorf("OpenFile(%q) created a file", name)
			}
			if err := r.Mkdir(name, 0o700); err == nil {
				t.Errorf("Mkdir(%q) worked", name)
			}
			if err := r.Link("x", name); err == nil {
				t.Errorf("Link(x, %q) worked", name)
			}
			if err := r.Rename("x", name); err == nil {
				t.Errorf("Rename(x, %q) worked", name)
			}
			if _, err := r.Stat(name); err == nil {
				t.Errorf("Stat(%q) worked", name)
			}
		}
		if _, err := r.ReadDir("out"); err == nil {
			t.Error("ReadDir through a link out of the root worked")
		}
		if names := listDir(t, outside, "d"); len(names) != 0 {
			t.Errorf("written outside the root: %v", names)
		}
		// A link out of the root is the escape error os.Root gives, which
		// Hint explains.
		_, err := r.OpenFile("out/d/x", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if Hint(err) == "" {
			t.Errorf("escape %v has no hint", err)
		}
	})
}

// TestRootFSClose: Close releases the root's descriptor and the next
// operation opens it again (a remounted volume is found).
func TestRootFSClose(t *testing.T) {
	bothWays(t, func(t *testing.T) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		os.Mkdir(root, 0o700)
		r := NewRootFS(root)
		if err := r.Mkdir("a", 0o700); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		os.Rename(root, filepath.Join(base, "old"))
		os.Mkdir(root, 0o700)
		if err := r.Mkdir("b", 0o700); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if _, err := os.Stat(filepath.Join(root, "b")); err != nil {
			t.Errorf("after Close the old root is still used: %v", err)
		}
	})
}

// TestWritev: header and body go out in order, empty buffers included,
// and the Store uses one writev for an in-memory body.
func TestWritev(t *testing.T) {
	for _, bufs := range [][][]byte{
		{[]byte("head\n"), []byte("body")},
		{nil, []byte("body")},
		{[]byte("head\n"), nil},
		{nil, nil},
		{[]byte("a"), nil, []byte("b"), []byte(""), []byte("cd")},
	} {
		name := filepath.Join(t.TempDir(), "f")
		fd, err := unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f := newFdFile(fd, name)
		var want []byte
		for _, b := range bufs {
			want = append(want, b...)
		}
		n, err := f.writev(append([][]byte(nil), bufs...))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		got, _ := os.ReadFile(name)
		if err != nil || n != int64(len(want)) || string(got) != string(want) {
			t.Errorf("writev %q: %d, %v; file %q", bufs, n, err, got)
		}
	}
	// A closed descriptor: the error names the file.
	f := newFdFile(-1, "closed")
	if _, err := f.Write([]byte("x")); !errors.Is(err, unix.EBADF) {
		t.Errorf("write to a bad descriptor: %v", err)
	}
	var pe *fs.PathError
	if err := f.Sync(); !errors.As(err, &pe) || pe.Path != "closed" {
		t.Errorf("sync of a bad descriptor: %v", err)
	}
}

// TestDeliverOneWrite: a Store writes header and in-memory body with one
// system call; a body that is not in memory is copied after the header.
func TestDeliverOneWrite(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, Options{Root: root})
	body := memBodyFunc("body\n")
	st, err := s.Deliver(context.Background(), Mailbox{Path: "u"}, Content{Header: []byte("H: v\n\n"), Body: body})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(root, st.Path()))
	if string(got) != "H: v\n\nbody\n" || body.writeTos != 0 {
		t.Errorf("file %q, WriteTo called %d times", got, body.writeTos)
	}
}

// memBody1 is a Body in memory that counts the copies made of it with
// WriteTo (none, when it is written with writev).
type memBody1 struct {
	b        []byte
	writeTos int
}

func memBodyFunc(s string) *memBody1 { return &memBody1{b: []byte(s)} }

func (m *memBody1) Size() int64           { return int64(len(m.b)) }
func (m *memBody1) Bytes() ([]byte, bool) { return m.b, true }
func (m *memBody1) WriteTo(w io.Writer) (int64, error) {
	m.writeTos++
	n, err := w.Write(m.b)
	return int64(n), err
}
