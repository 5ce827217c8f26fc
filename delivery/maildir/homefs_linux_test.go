package maildir

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

// The hostile user of these tests: uid 4242, who owns and controls the
// home and everything in it.
const hostileUID = 4242

// homeSetup makes a home for the hostile user with a secret directory
// inside it (~/.ssh) and returns the home and a directory outside it.
func homeSetup(t *testing.T) (home, outside string) {
	t.Helper()
	base := t.TempDir()
	home = filepath.Join(base, "home", "alice")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{home, filepath.Join(home, ".ssh"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(home, hostileUID, hostileUID); err != nil {
			t.Fatal(err)
		}
	}
	return home, outside
}

// bothWays runs f with openat2 and with the O_NOFOLLOW walk that replaces
// it on kernels without openat2.
func bothWays(t *testing.T, f func(t *testing.T)) {
	for _, walk := range []bool{false, true} {
		name := "openat2"
		if walk {
			name = "walk"
		}
		t.Run(name, func(t *testing.T) {
			old := noOpenat2.Load()
			noOpenat2.Store(walk)
			t.Cleanup(func() { noOpenat2.Store(old) })
			f(t)
		})
	}
}

// untouched fails if anything was created in any of dirs.
func untouched(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if names := listDir(t, d, "."); len(names) != 0 {
			t.Errorf("written through the link: %s holds %v", d, names)
		}
	}
}

func aliceBox() Mailbox {
	return Mailbox{Path: "Maildir", Owner: &Owner{UID: hostileUID, GID: hostileUID}}
}

// TestHomeDeliver: a delivery into ~/Maildir creates it and everything
// in it owned by the user, private (0600 and 0700, whatever the modes
// for the maildir root).
func TestHomeDeliver(t *testing.T) {
	needRoot(t)
	bothWays(t, func(t *testing.T) {
		home, _ := homeSetup(t)
		s := newStore(t, Options{Root: t.TempDir(), FileMode: 0o644, DirMode: 0o755})
		mb := aliceBox()
		mb.Home, mb.Folder, mb.CreateFolder = home, ".lists", true
		st, err := s.Deliver(context.Background(), mb, testContent)
		if err != nil {
			t.Fatal(err)
		}
		if st.Home() != home || !strings.HasPrefix(st.Path(), "Maildir/.lists/new/") {
			t.Errorf("delivered to %s %s", st.Home(), st.Path())
		}
		b, err := os.ReadFile(filepath.Join(home, st.Path()))
		if err != nil || !strings.HasSuffix(string(b), "hello\nworld\n") {
			t.Fatalf("read back %q, %v", b, err)
		}
		checkOwner(t, home, []string{"Maildir", "Maildir/tmp", "Maildir/new", "Maildir/cur", "Maildir/.lists",
			"Maildir/.lists/new", "Maildir/.lists/maildirfolder", st.Path()}, hostileUID, hostileUID, DirMode, FileMode)
		// A second delivery (the maildir now known to the Store) goes
		// the same way.
		if _, err := s.Deliver(context.Background(), mb, testContent); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHomeLinks: whatever element of the maildir path the user replaced
// with a symbolic link, to a directory outside the home or to one inside
// it, the delivery fails temporarily (451 4.3.5) and nothing is written
// through the link; the error says which link.
func TestHomeLinks(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name   string
		link   string // made a link
		inside bool   // to ~/.ssh rather than outside the home
		folder string
	}{
		{name: "tmp to outside", link: "Maildir/tmp"},
		{name: "tmp to ssh", link: "Maildir/tmp", inside: true},
		{name: "new to outside", link: "Maildir/new"},
		{name: "new to ssh", link: "Maildir/new", inside: true},
		{name: "Maildir to outside", link: "Maildir"},
		{name: "Maildir to ssh", link: "Maildir", inside: true},
		{name: "folder to ssh", link: "Maildir/.lists", inside: true, folder: ".lists"},
		{name: "folder tmp to outside", link: "Maildir/.lists/tmp", folder: ".lists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothWays(t, func(t *testing.T) {
				home, outside := homeSetup(t)
				ssh := filepath.Join(home, ".ssh")
				for _, d := range []string{"Maildir/tmp", "Maildir/new", "Maildir/cur", "Maildir/.lists/tmp", "Maildir/.lists/new", "Maildir/.lists/cur"} {
					if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
						t.Fatal(err)
					}
				}
				target := outside
				if tc.inside {
					target = ssh
				}
				link := filepath.Join(home, tc.link)
				if err := os.RemoveAll(link); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, link); err != nil {
					t.Fatal(err)
				}
				s := newStore(t, Options{Root: t.TempDir()})
				mb := aliceBox()
				mb.Home, mb.Folder, mb.CreateFolder = home, tc.folder, true
				_, err := s.Deliver(context.Background(), mb, testContent)
				checkReply(t, err, protocol.CodeLocalError, protocol.EnhancedCode{4, 3, 5}, syscall.ELOOP)
				var le *LinkError
				if !errors.As(err, &le) || le.Home != home || !strings.Contains(Hint(err), "symbolic link") {
					t.Errorf("error %v (hint %q), want a *LinkError under %s", err, Hint(err), home)
				}
				untouched(t, outside, ssh)
			})
		})
	}
}

// swapFS is a HomeFS that lets the user act at one moment of a delivery:
// before the operation op on a name containing match.
type swapFS struct {
	FS
	op, match string
	once      sync.Once
	act       func()
}

func (f *swapFS) at(op, name string) {
	if op == f.op && strings.Contains(name, f.match) {
		f.once.Do(f.act)
	}
}

func (f *swapFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	op := "open"
	if flag&os.O_CREATE != 0 {
		op = "create"
	}
	f.at(op, name)
	return f.FS.OpenFile(name, flag, perm)
}

func (f *swapFS) Rename(o, n string) error {
	f.at("rename", n)
	return f.FS.Rename(o, n)
}

func (f *swapFS) Mkdir(name string, perm fs.FileMode) error {
	f.at("mkdir", name)
	return f.FS.Mkdir(name, perm)
}

// swapToLink does what the user does: moves dir away (to dir.old) and
// puts a link to target in its place.
func swapToLink(t *testing.T, dir, target string) func() {
	return func() {
		if err := os.Rename(dir, dir+".old"); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(target, dir); err != nil {
			t.Error(err)
		}
	}
}

// TestHomeSwapDuringDelivery: the user swaps ~/Maildir/tmp or new for a
// link between two steps of a delivery (after lmtpd checked or created
// the maildir). Nothing goes through the link; the delivery fails
// temporarily; a file already written stays where it was written, owned
// by the user.
func TestHomeSwapDuringDelivery(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name, op, match, swap string
		inside                bool
	}{
		{name: "tmp before the file is created", op: "create", match: "/tmp/", swap: "Maildir/tmp"},
		{name: "tmp before the rename, to ssh", op: "rename", match: "/new/", swap: "Maildir/tmp", inside: true},
		{name: "new before the rename", op: "rename", match: "/new/", swap: "Maildir/new"},
		{name: "new before its fsync, to ssh", op: "open", match: "Maildir/new", swap: "Maildir/new", inside: true},
		{name: "cur while the maildir is created", op: "mkdir", match: "Maildir/cur", swap: "Maildir/new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothWays(t, func(t *testing.T) {
				home, outside := homeSetup(t)
				ssh := filepath.Join(home, ".ssh")
				target := outside
				if tc.inside {
					target = ssh
				}
				var sw *swapFS
				s := newStore(t, Options{Root: t.TempDir(), HomeFS: func(h string) FS {
					sw = &swapFS{FS: NewHomeFS(h), op: tc.op, match: tc.match, act: swapToLink(t, filepath.Join(home, tc.swap), target)}
					return sw
				}})
				mb := aliceBox()
				mb.Home = home
				_, err := s.Deliver(context.Background(), mb, testContent)
				checkReply(t, err, protocol.CodeLocalError, protocol.EnhancedCode{4, 3, 5}, syscall.ELOOP)
				untouched(t, outside, ssh)
				// Whatever lmtpd left in the moved directory is the user's.
				old := filepath.Join(home, tc.swap+".old")
				for _, n := range listDir(t, old, ".") {
					if u, _, _ := ownerOf(t, filepath.Join(old, n)); u != hostileUID {
						t.Errorf("%s/%s left owned by uid %d", old, n, u)
					}
				}
			})
		})
	}
}

// TestHomeSwapRace: while deliveries run, the user keeps swapping
// ~/Maildir/tmp between the real directory and links to a directory
// outside the home and to ~/.ssh. Every delivery either succeeds, with
// its file in the real new/, or fails temporarily; nothing is ever
// written through a link.
func TestHomeSwapRace(t *testing.T) {
	needRoot(t)
	bothWays(t, func(t *testing.T) {
		home, outside := homeSetup(t)
		ssh := filepath.Join(home, ".ssh")
		s := newStore(t, Options{Root: t.TempDir()})
		mb := aliceBox()
		mb.Home = home
		if _, err := s.Deliver(context.Background(), mb, testContent); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(home, "Maildir", "tmp")
		for i, target := range []string{outside, ssh} {
			if err := os.Symlink(target, filepath.Join(home, "link"+string(rune('0'+i)))); err != nil {
				t.Fatal(err)
			}
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			// The real directory and a link take turns at tmp, each
			// for a moment; rename(2) puts the link in place at once.
			swap := filepath.Join(home, "swap")
			for i := 0; !stop.Load(); i++ {
				os.Remove(swap)
				if err := os.Symlink(mustReadlink(t, filepath.Join(home, "link"+string(rune('0'+i%2)))), swap); err != nil {
					t.Error(err)
					return
				}
				if os.Rename(tmp, tmp+".real") == nil {
					os.Rename(swap, tmp)
				}
				time.Sleep(100 * time.Microsecond)
				if fi, err := os.Lstat(tmp); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
					os.Remove(tmp)
				}
				os.Rename(tmp+".real", tmp)
				time.Sleep(100 * time.Microsecond)
			}
		})
		ok, failed := 0, 0
		for range 200 {
			_, err := s.Deliver(context.Background(), mb, testContent)
			if err == nil {
				ok++
				continue
			}
			failed++
			if pe := protocol.AsError(err); pe == nil || pe.Code/100 != 4 {
				t.Fatalf("delivery failed with %v, want a temporary failure", err)
			}
		}
		stop.Store(true)
		wg.Wait()
		t.Logf("%d delivered, %d deferred", ok, failed)
		untouched(t, outside, ssh)
		// Delivered files are in the real new/ (1 from the start).
		if n := len(listDir(t, home, "Maildir/new")); n != ok+1 {
			t.Errorf("new/ holds %d files, want %d", n, ok+1)
		}
	})
}

func mustReadlink(t *testing.T, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHomeFIFO: a FIFO in place of new/ fails the delivery at once
// instead of blocking the open that fsyncs the directory.
func TestHomeFIFO(t *testing.T) {
	needRoot(t)
	home, _ := homeSetup(t)
	for _, d := range []string{"Maildir/tmp", "Maildir/cur"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(home, "Maildir/new"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Options{Root: t.TempDir()})
	mb := aliceBox()
	mb.Home = home
	_, err := s.Deliver(context.Background(), mb, testContent)
	checkReply(t, err, protocol.CodeLocalError, protocol.EnhancedCode{4, 3, 5}, syscall.ENOTDIR)
}

// TestHomeBadNames: names that are not clean relative paths are refused
// by HomeFS itself, whatever the caller checked.
func TestHomeBadNames(t *testing.T) {
	h := NewHomeFS(t.TempDir())
	for _, name := range []string{"", "/etc", "../x", "a/../../x", "a//b", "a/"} {
		if _, err := h.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("OpenFile(%q): %v, want ErrInvalid", name, err)
		}
		if err := h.Mkdir(name, 0o700); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Mkdir(%q): %v, want ErrInvalid", name, err)
		}
	}
	s := newStore(t, Options{Root: t.TempDir()})
	for _, mb := range []Mailbox{{Home: "relative", Path: "Maildir"}, {Home: "/h", Path: "../x"}, {Home: "/h", Path: "."}} {
		_, err := s.Deliver(context.Background(), mb, testContent)
		if !errors.Is(err, ErrBadPath) {
			t.Errorf("%+v: %v, want ErrBadPath", mb, err)
		}
	}
}

// TestHomeMissing: a home that does not exist (or cannot be entered) is a
// temporary failure that names the home; nothing is created in its place.
func TestHomeMissing(t *testing.T) {
	home := filepath.Join(t.TempDir(), "gone")
	s := newStore(t, Options{Root: t.TempDir()})
	_, err := s.Deliver(context.Background(), Mailbox{Home: home, Path: "Maildir"}, testContent)
	checkReply(t, err, protocol.CodeLocalError, protocol.EnhancedCode{4, 3, 5}, syscall.ENOENT)
	var he *HomeError
	if !errors.As(err, &he) || he.Dir != home || !strings.Contains(Hint(err), home) {
		t.Errorf("error %v (hint %q), want a *HomeError for %s", err, Hint(err), home)
	}
	if _, err := os.Lstat(home); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the home was created: %v", err)
	}
}

// TestHomeKeywords: a delivery with keywords into a home reads and
// rewrites the maildir's dovecot-keywords there (a regular file, read
// through HomeFS like everything else).
func TestHomeKeywords(t *testing.T) {
	needRoot(t)
	bothWays(t, func(t *testing.T) {
		home, _ := homeSetup(t)
		md := filepath.Join(home, "Maildir")
		os.MkdirAll(md, 0o700)
		os.WriteFile(filepath.Join(md, KeywordsFile), []byte("0 $Junk\n"), 0o600)
		s := newStore(t, Options{Root: t.TempDir()})
		mb := aliceBox()
		mb.Home = home
		mb.Flags = []string{"$Junk", "Work"}
		st, err := s.Deliver(context.Background(), mb, testContent)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(st.Path(), ":2,ab") {
			t.Errorf("path %s, want the letters a and b", st.Path())
		}
		if kw, _ := os.ReadFile(filepath.Join(md, KeywordsFile)); string(kw) != "0 $Junk\n1 Work\n" {
			t.Errorf("dovecot-keywords %q", kw)
		}
	})
}

// TestHomeKeywordsFIFO: a FIFO in place of dovecot-keywords does not
// block the delivery (the open is non-blocking, a read finds no data).
func TestHomeKeywordsFIFO(t *testing.T) {
	needRoot(t)
	home, _ := homeSetup(t)
	md := filepath.Join(home, "Maildir")
	os.MkdirAll(md, 0o700)
	if err := syscall.Mkfifo(filepath.Join(md, KeywordsFile), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Options{Root: t.TempDir()})
	mb := aliceBox()
	mb.Home = home
	mb.Flags = []string{"Work"}
	done := make(chan error, 1)
	go func() {
		_, err := s.Deliver(context.Background(), mb, testContent)
		done <- err
	}()
	select {
	case err := <-done:
		// Delivered (the FIFO read as empty and replaced) or refused
		// temporarily: either way, not blocked.
		t.Logf("delivery with a FIFO as dovecot-keywords: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery blocked on a FIFO in place of dovecot-keywords")
	}
}
