//go:build unix

package maildir

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
)

// needRoot skips a test that changes owners unless it runs as root; under
// CI=true it fails instead, since make test runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test changes file owners and must run as root (CI=true)")
	}
	t.Skip("SKIPPED: this test changes file owners and needs root")
}

// ownerOf returns the owner and permissions of p, not following a link.
func ownerOf(t *testing.T, p string) (uid, gid int, perm fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid), fi.Mode().Perm()
}

// checkOwner checks the owner and permissions of every path under base.
func checkOwner(t *testing.T, base string, paths []string, uid, gid int, dirMode, fileMode fs.FileMode) {
	t.Helper()
	for _, p := range paths {
		full := filepath.Join(base, p)
		u, g, perm := ownerOf(t, full)
		want := fileMode
		if fi, _ := os.Lstat(full); fi.IsDir() {
			want = dirMode
		}
		if u != uid || g != gid || perm != want {
			t.Errorf("%s: uid %d gid %d mode %#o, want %d %d %#o", p, u, g, perm, uid, gid, want)
		}
	}
}

// newFile returns the one file in base/dir/new.
func newFile(t *testing.T, base, dir string) string {
	t.Helper()
	names := listDir(t, base, dir+"/new")
	if len(names) != 1 {
		t.Fatalf("%s/new holds %v, want one file", dir, names)
	}
	return dir + "/new/" + names[0]
}

func TestOwnerAndModes(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	// 0660 and 0770 are beyond the usual umask (022): fchmod must set
	// them exactly.
	s := newStore(t, Options{Root: root, Owner: &Owner{UID: 4242, GID: 4343}, FileMode: 0o660, DirMode: 0o770})

	// A directory that exists already is left as it is.
	if err := os.Mkdir(filepath.Join(root, "example.org"), 0o711); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, Mailbox{Path: "example.org/bob/Maildir", Folder: ".lists", CreateFolder: true}, testContent); err != nil {
		t.Fatal(err)
	}
	created := []string{"example.org/bob", "example.org/bob/Maildir",
		"example.org/bob/Maildir/tmp", "example.org/bob/Maildir/new", "example.org/bob/Maildir/cur",
		"example.org/bob/Maildir/.lists", "example.org/bob/Maildir/.lists/tmp", "example.org/bob/Maildir/.lists/new",
		"example.org/bob/Maildir/.lists/cur", "example.org/bob/Maildir/.lists/maildirfolder",
		newFile(t, root, "example.org/bob/Maildir/.lists")}
	checkOwner(t, root, created, 4242, 4343, 0o770, 0o660)
	if u, _, perm := ownerOf(t, filepath.Join(root, "example.org")); u != 0 || perm != 0o711 {
		t.Errorf("existing directory changed: uid %d mode %#o", u, perm)
	}

	// A mailbox's own owner (a directory record's uid and gid) wins.
	if _, err := s.Deliver(ctx, Mailbox{Path: "example.org/carol", Owner: &Owner{UID: 5000, GID: 5001}}, testContent); err != nil {
		t.Fatal(err)
	}
	checkOwner(t, root, []string{"example.org/carol", "example.org/carol/new", newFile(t, root, "example.org/carol")}, 5000, 5001, 0o770, 0o660)
}

func TestOwnerGroupOnly(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	s := newStore(t, Options{Root: root, Owner: &Owner{UID: -1, GID: 4343}})
	if _, err := s.Deliver(context.Background(), Mailbox{Path: "d/u"}, testContent); err != nil {
		t.Fatal(err)
	}
	// Default modes, under the umask, which leaves the owner's bits.
	checkOwner(t, root, []string{"d", "d/u", "d/u/tmp", newFile(t, root, "d/u")}, os.Geteuid(), 4343, DirMode, FileMode)
}

// TestLinkOwners: copies for mailboxes of one owner are hard links of one
// file; a link would share its owner, so another owner gets a copy.
func TestLinkOwners(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	s := newStore(t, Options{Root: root})
	a, err := s.Stage(ctx, Mailbox{Path: "a", Owner: &Owner{UID: 4242, GID: 4242}}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Link(ctx, Mailbox{Path: "b", Owner: &Owner{UID: 4242, GID: 4242}}, a, testContent)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Link(ctx, Mailbox{Path: "c", Owner: &Owner{UID: 5000, GID: 5000}}, a, testContent)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range s.Commit(ctx, a, b, c) {
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	ino := func(p string) uint64 {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	if ino(a.Path()) != ino(b.Path()) {
		t.Error("same owner: not a hard link")
	}
	if ino(a.Path()) == ino(c.Path()) {
		t.Error("another owner got a hard link of the first owner's file")
	}
	checkOwner(t, root, []string{c.Path()}, 5000, 5000, DirMode, FileMode)
	checkOwner(t, root, []string{b.Path()}, 4242, 4242, DirMode, FileMode)
}

// chownFailFS is a real FS whose files refuse every chown, as the kernel
// does for a process without CAP_CHOWN.
type chownFailFS struct{ FS }

// realFile is what RootFS's files offer besides File: a descriptor, a
// name, owner and mode.
type realFile interface {
	File
	Fd() uintptr
	Name() string
	Chown(uid, gid int) error
	Chmod(mode fs.FileMode) error
}

type chownFailFile struct{ realFile }

func (f chownFailFile) Chown(uid, gid int) error {
	return &fs.PathError{Op: "chown", Path: f.Name(), Err: syscall.EPERM}
}

func (f *chownFailFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return chownFailFile{file.(realFile)}, nil
}

// TestOwnerFailure: an owner that cannot be set is a temporary failure
// that names the fix, and leaves nothing behind, not even the
// directories, which the next delivery must create with their owner.
func TestOwnerFailure(t *testing.T) {
	root := t.TempDir()
	r := NewRootFS(root)
	t.Cleanup(func() { r.Close() })
	s := newStore(t, Options{FS: &chownFailFS{r}, Owner: &Owner{UID: 4242, GID: 4242}})
	_, err := s.Deliver(context.Background(), Mailbox{Path: "d/u"}, testContent)
	checkReply(t, err, protocol.CodeLocalError, protocol.EnhancedCode{4, 3, 5}, syscall.EPERM)
	var oe *OwnerError
	if !errors.As(err, &oe) || !strings.Contains(Hint(err), "CAP_CHOWN") {
		t.Errorf("error %v (hint %q), want an *OwnerError whose hint names CAP_CHOWN", err, Hint(err))
	}
	if names := listDir(t, root, "."); len(names) != 0 {
		t.Errorf("left behind: %v", names)
	}
}

func TestBadModes(t *testing.T) {
	if _, err := New(Options{Root: "/x", FileMode: 0o4755}); err == nil {
		t.Error("a setuid file mode was accepted")
	}
}
