package maildir

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
	"golang.org/x/sys/unix"
)

// anonFake is the root's FS with OpenAnon answering openErr instead of
// opening (when set), counting the calls.
type anonFake struct {
	*RootFS
	openErr error
	mu      sync.Mutex
	opens   int
}

func (f *anonFake) OpenAnon(dir string, perm fs.FileMode) (File, error) {
	f.mu.Lock()
	f.opens++
	f.mu.Unlock()
	if f.openErr != nil {
		return nil, &fs.PathError{Op: "openat2", Path: dir, Err: f.openErr}
	}
	return f.RootFS.OpenAnon(dir, perm)
}

// hiddenAnon is an FS that wraps another without passing on anonFS, as
// the tests' wrappers do.
type hiddenAnon struct{ FS }

// TestAnonSelection: a Store stages an unnamed file where the FS can
// (O_TMPFILE); a file system that answers that it cannot (EOPNOTSUPP,
// EISDIR, EINVAL, ErrUnsupported) gets named files in tmp/, and is not
// asked again; any other error fails the delivery with its reply; an FS
// without OpenAnon, the test switch, and a Store at its limit of open
// staged files stage by name.
func TestAnonSelection(t *testing.T) {
	if !openat2Works() {
		t.Skip("SKIPPED: no openat2(2): RootFS never stages unnamed files")
	}
	for _, tc := range []struct {
		name    string
		openErr error
		hide    bool  // wrap the FS so that it has no OpenAnon
		named   bool  // force stageNamed
		maxOpen int64 // lower maxOpenStaged (0: leave it)
		// what follows
		unnamed bool // the files are staged unnamed
		opens   int  // OpenAnon calls for three deliveries into two maildirs
		code    int  // the delivery fails with this reply
		ec      protocol.EnhancedCode
	}{
		{name: "supported", unnamed: true, opens: 3},
		{name: "EOPNOTSUPP", openErr: syscall.EOPNOTSUPP, opens: 1},
		{name: "EISDIR (kernel before 3.11)", openErr: syscall.EISDIR, opens: 1},
		{name: "EINVAL", openErr: syscall.EINVAL, opens: 1},
		{name: "unsupported by the FS", openErr: errors.ErrUnsupported, opens: 1},
		{name: "EIO fails", openErr: syscall.EIO, opens: 1, code: 451, ec: protocol.EnhancedCode{4, 3, 0}},
		{name: "ENOSPC fails", openErr: syscall.ENOSPC, opens: 1, code: 452, ec: protocol.EnhancedCode{4, 3, 1}},
		{name: "FS without OpenAnon", hide: true},
		{name: "staging by name forced", named: true},
		{name: "open staged files at the limit", maxOpen: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			f := &anonFake{RootFS: NewRootFS(root), openErr: tc.openErr}
			t.Cleanup(func() { f.Close() })
			var fsys FS = f
			if tc.hide {
				fsys = hiddenAnon{f}
			}
			if tc.named {
				stageNamed.Store(true)
				t.Cleanup(func() { stageNamed.Store(false) })
			}
			if tc.maxOpen != 0 {
				old := maxOpenStaged
				maxOpenStaged = tc.maxOpen
				t.Cleanup(func() { maxOpenStaged = old })
			}
			s := newStore(t, Options{FS: fsys})
			ctx := context.Background()
			for i, dir := range []string{"d/a", "d/b", "d/a"} {
				st, err := s.Stage(ctx, Mailbox{Path: dir}, testContent)
				if tc.code != 0 {
					checkReply(t, err, tc.code, tc.ec, tc.openErr)
					if l := append(listDir(t, root, dir+"/tmp"), listDir(t, root, dir+"/new")...); len(l) != 0 {
						t.Errorf("failed delivery left %v", l)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				tmp := listDir(t, root, dir+"/tmp")
				if got := st.anon != nil; got != tc.unnamed {
					t.Fatalf("delivery %d staged unnamed: %v, want %v", i, got, tc.unnamed)
				}
				if tc.unnamed && len(tmp) != 0 || !tc.unnamed && len(tmp) != 1 {
					t.Errorf("delivery %d: tmp/ holds %v while staged", i, tmp)
				}
				if errs := s.Commit(ctx, st); errs[0] != nil {
					t.Fatal(errs[0])
				}
				got, err := os.ReadFile(filepath.Join(root, st.Path()))
				if err != nil || string(got) != string(testContent.Header)+"hello\nworld\n" {
					t.Errorf("delivered %q, %v", got, err)
				}
				if l := listDir(t, root, dir+"/tmp"); len(l) != 0 {
					t.Errorf("tmp/ holds %v after Commit", l)
				}
			}
			if f.opens != tc.opens {
				t.Errorf("%d OpenAnon calls, want %d", f.opens, tc.opens)
			}
			if n := s.openStaged.Load(); n != 0 {
				t.Errorf("%d staged files still counted open", n)
			}
		})
	}
}

// mountTmpfs mounts a tmpfs on a new directory for the test (root only).
func mountTmpfs(t *testing.T) string {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("lmtpd-test", dir, "tmpfs", 0, "size=16m,mode=0755"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Skipf("SKIPPED: mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fileSystems are the roots the real-delivery tests run on: the test's
// temporary directory (ext4 here) and, as root, a tmpfs.
func fileSystems(t *testing.T) map[string]func(*testing.T) string {
	return map[string]func(*testing.T) string{
		"tempdir": func(t *testing.T) string { return t.TempDir() },
		"tmpfs":   mountTmpfs,
	}
}

// watch reports every entry created, moved or removed in dirs (inotify),
// as "dir: name".
type watch struct {
	fd   int
	dirs map[int]string
}

func newWatch(t *testing.T, dirs ...string) *watch {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	w := &watch{fd: fd, dirs: map[int]string{}}
	for _, d := range dirs {
		wd, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_MOVED_FROM|unix.IN_MOVED_TO|unix.IN_DELETE)
		if err != nil {
			t.Fatal(err)
		}
		w.dirs[wd] = d
	}
	return w
}

// events returns the events so far, by directory.
func (w *watch) events(t *testing.T) map[string][]string {
	t.Helper()
	evs := map[string][]string{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(w.fd, buf)
		if err == unix.EAGAIN {
			return evs
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int(int32(uint32(buf[off]) | uint32(buf[off+1])<<8 | uint32(buf[off+2])<<16 | uint32(buf[off+3])<<24))
			nlen := int(uint32(buf[off+12]) | uint32(buf[off+13])<<8 | uint32(buf[off+14])<<16 | uint32(buf[off+15])<<24)
			name := string(buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+nlen])
			for len(name) > 0 && name[len(name)-1] == 0 {
				name = name[:len(name)-1]
			}
			evs[w.dirs[wd]] = append(evs[w.dirs[wd]], name)
			off += unix.SizeofInotifyEvent + nlen
		}
	}
}

// TestAnonNoTmpEntry: real deliveries, to one recipient and to three
// sharing one file, with each flush mode, on ext4 (the temporary
// directory) and tmpfs: no entry ever appears in (or leaves) any tmp/,
// as inotify sees it across the whole delivery, barrier included; the
// files appear in new/ once each, complete; the further recipients' files
// are the first one's inode (link count 3); no descriptor stays open.
func TestAnonNoTmpEntry(t *testing.T) {
	if !openat2Works() {
		t.Skip("SKIPPED: no openat2(2): RootFS never stages unnamed files")
	}
	for fsName, mk := range fileSystems(t) {
		for _, mode := range []FlushMode{FlushFsync, FlushSyncfs, FlushOrdered} {
			t.Run(fsName+"/"+mode.String(), func(t *testing.T) {
				root := mk(t)
				s := newStore(t, Options{Root: root, Flush: mode})
				ctx := context.Background()
				boxes := []string{"d/a", "d/b", "d/c"}
				// Create the maildirs, then watch them.
				for _, b := range boxes {
					if _, err := s.Deliver(ctx, Mailbox{Path: b}, testContent); err != nil {
						t.Fatal(err)
					}
				}
				var dirs []string
				for _, b := range boxes {
					dirs = append(dirs, filepath.Join(root, b, "tmp"), filepath.Join(root, b, "new"))
				}
				w := newWatch(t, dirs...)
				fds := openFds(t)

				st, err := s.Deliver(ctx, Mailbox{Path: "d/a"}, testContent)
				if err != nil {
					t.Fatal(err)
				}
				one := st.Path()
				a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
				if err != nil {
					t.Fatal(err)
				}
				if a.anon == nil {
					t.Fatalf("not staged unnamed on %s", fsName)
				}
				sts := []*Staged{a}
				for _, b := range boxes[1:] {
					l, err := s.Link(ctx, Mailbox{Path: b}, a, testContent)
					if err != nil {
						t.Fatal(err)
					}
					if l.anon != a.anon {
						t.Fatalf("%s: not a link of the unnamed file", b)
					}
					sts = append(sts, l)
				}
				for _, err := range s.Commit(ctx, sts...) {
					if err != nil {
						t.Fatal(err)
					}
				}
				evs := w.events(t)
				for _, b := range boxes {
					if e := evs[filepath.Join(root, b, "tmp")]; len(e) != 0 {
						t.Errorf("%s/tmp saw %v", b, e)
					}
				}
				wantNew := map[string]int{"d/a": 2, "d/b": 1, "d/c": 1}
				for b, n := range wantNew {
					if e := evs[filepath.Join(root, b, "new")]; len(e) != n {
						t.Errorf("%s/new saw %v, want %d entries", b, e, n)
					}
				}
				paths := []string{one}
				for _, st := range sts {
					paths = append(paths, st.Path())
				}
				var ino uint64
				for i, p := range paths {
					p = filepath.Join(root, p)
					got, err := os.ReadFile(p)
					if err != nil || string(got) != string(testContent.Header)+"hello\nworld\n" {
						t.Errorf("%s holds %q, %v", p, got, err)
					}
					var sb unix.Stat_t
					if err := unix.Stat(p, &sb); err != nil {
						t.Fatal(err)
					}
					if i == 1 {
						ino = sb.Ino
					}
					switch {
					case i == 0 && sb.Nlink != 1:
						t.Errorf("single copy %s has %d links", p, sb.Nlink)
					case i > 0 && (sb.Ino != ino || sb.Nlink != 3):
						t.Errorf("%s: inode %d with %d links, want inode %d with 3", p, sb.Ino, sb.Nlink, ino)
					}
				}
				if n := openFds(t); n != fds {
					t.Errorf("%d descriptors open after the deliveries, %d before", n, fds)
				}
			})
		}
	}
}

// openFds counts the process's open descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestAnonAbortAndLater: an unnamed file and its links leave nothing
// anywhere when aborted (and their descriptor is closed); a link
// committed while the first file is aborted is delivered alone; a link
// into a maildir on another file system is a copy (written anew, since
// no link crosses file systems).
func TestAnonAbortAndLater(t *testing.T) {
	if !openat2Works() {
		t.Skip("SKIPPED: no openat2(2): RootFS never stages unnamed files")
	}
	root := t.TempDir()
	s := newStore(t, Options{Root: root})
	ctx := context.Background()
	// The root's descriptor, which the Store keeps, opened first.
	if _, err := s.Deliver(ctx, Mailbox{Path: "d/z"}, testContent); err != nil {
		t.Fatal(err)
	}
	fds := openFds(t)
	stageThree := func() []*Staged {
		t.Helper()
		a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
		if err != nil {
			t.Fatal(err)
		}
		if a.anon == nil {
			t.Fatal("not staged unnamed")
		}
		sts := []*Staged{a}
		for _, b := range []string{"d/b", "d/c"} {
			l, err := s.Link(ctx, Mailbox{Path: b}, a, testContent)
			if err != nil {
				t.Fatal(err)
			}
			sts = append(sts, l)
		}
		return sts
	}
	all := func() []string {
		var l []string
		for _, b := range []string{"d/a", "d/b", "d/c"} {
			for _, sub := range []string{"tmp", "new", "cur"} {
				for _, n := range listDir(t, root, b+"/"+sub) {
					l = append(l, b+"/"+sub+"/"+n)
				}
			}
		}
		return l
	}

	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}} {
		sts := stageThree()
		for _, i := range order {
			if err := sts[i].Abort(); err != nil {
				t.Errorf("Abort: %v", err)
			}
		}
		if l := all(); len(l) != 0 {
			t.Errorf("aborted in order %v, left %v", order, l)
		}
		if n := openFds(t); n != fds {
			t.Errorf("aborted in order %v: %d descriptors open, %d before", order, n, fds)
		}
	}

	// The first file aborted, its link committed afterwards.
	sts := stageThree()
	sts[0].Abort()
	sts[2].Abort()
	if errs := s.Commit(ctx, sts[1]); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if l := all(); len(l) != 1 || l[0] != sts[1].Path() {
		t.Errorf("left %v, want only %s", l, sts[1].Path())
	}
	var sb unix.Stat_t
	if err := unix.Stat(filepath.Join(root, sts[1].Path()), &sb); err != nil || sb.Nlink != 1 {
		t.Errorf("link: %d links, %v", sb.Nlink, err)
	}
	if n := openFds(t); n != fds {
		t.Errorf("%d descriptors open, %d before", n, fds)
	}

	// Another file system below the root: a copy.
	if os.Geteuid() != 0 {
		return
	}
	if err := os.MkdirAll(filepath.Join(root, "e"), 0o700); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(root, "e")
	if err := unix.Mount("lmtpd-test", other, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("SKIPPED: mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(other, unix.MNT_DETACH) })
	a := stageThree()[0]
	c, err := s.Link(ctx, Mailbox{Path: "e/x"}, a, testContent)
	if err != nil {
		t.Fatal(err)
	}
	if c.anon == nil || c.anon == a.anon {
		t.Errorf("link across file systems: unnamed %v, same file %v; want a copy of its own", c.anon != nil, c.anon == a.anon)
	}
	for _, err := range s.Commit(ctx, a, c) {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(filepath.Join(root, c.Path()))
	if err != nil || string(got) != string(testContent.Header)+"hello\nworld\n" {
		t.Errorf("copy holds %q, %v", got, err)
	}
}

// anonSwapHome is a HomeFS whose unnamed-file operations let the user act
// first: swap a directory for a link.
type anonSwapHome struct {
	*HomeFS
	op    string // "open" or "link"
	armed atomic.Bool
	once  sync.Once
	act   func()
}

func (h *anonSwapHome) OpenAnon(dir string, perm fs.FileMode) (File, error) {
	if h.op == "open" && h.armed.Load() {
		h.once.Do(h.act)
	}
	return h.HomeFS.OpenAnon(dir, perm)
}

func (h *anonSwapHome) LinkAnon(f File, newname string) error {
	if h.op == "link" && h.armed.Load() {
		h.once.Do(h.act)
	}
	return h.HomeFS.LinkAnon(f, newname)
}

// TestAnonHomeSwap: in a home, the unnamed file is created and linked
// without following a link the user put in place of tmp/ or new/ after
// lmtpd checked the maildir: the delivery fails temporarily (a
// *LinkError) and nothing is written through the link.
func TestAnonHomeSwap(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name, op, swap string
		inside         bool
	}{
		{name: "tmp before the unnamed file is created", op: "open", swap: "Maildir/tmp"},
		{name: "tmp before it, to ssh", op: "open", swap: "Maildir/tmp", inside: true},
		{name: "new before the link", op: "link", swap: "Maildir/new"},
		{name: "new before the link, to ssh", op: "link", swap: "Maildir/new", inside: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothWays(t, func(t *testing.T) {
				home, outside := homeSetup(t)
				ssh := filepath.Join(home, ".ssh")
				target := outside
				if tc.inside {
					target = ssh
				}
				sw := &anonSwapHome{HomeFS: NewHomeFS(home), op: tc.op, act: swapToLink(t, filepath.Join(home, tc.swap), target)}
				s := newStore(t, Options{Root: t.TempDir(), HomeFS: func(string) FS { return sw }})
				mb := aliceBox()
				mb.Home = home
				// A first delivery creates the maildir; then the user
				// acts during the second.
				if _, err := s.Deliver(context.Background(), mb, testContent); err != nil {
					t.Fatal(err)
				}
				sw.armed.Store(true)
				_, err := s.Deliver(context.Background(), mb, testContent)
				checkReply(t, err, protocol.CodeLocalError, protocol.EnhancedCode{4, 3, 5}, syscall.ELOOP)
				untouched(t, outside, ssh)
				// The moved directory holds what it held: nothing in
				// tmp/, the first delivery in new/.
				want := 0
				if tc.swap == "Maildir/new" {
					want = 1
				}
				if l := listDir(t, home, tc.swap+".old"); len(l) != want {
					t.Errorf("%s.old holds %v, want %d file(s)", tc.swap, l, want)
				}
			})
		})
	}
}

// TestAnonMaildirVanishes: a further recipient's maildir (or folder)
// removed between the Link, which touched nothing on disk, and the
// Commit is made again, and the message linked into it.
func TestAnonMaildirVanishes(t *testing.T) {
	if !openat2Works() {
		t.Skip("SKIPPED: no openat2(2): RootFS never stages unnamed files")
	}
	for _, tc := range []struct {
		name   string
		mb     Mailbox
		remove string
	}{
		{name: "maildir", mb: Mailbox{Path: "d/b"}, remove: "d/b"},
		{name: "folder", mb: Mailbox{Path: "d/b", Folder: ".lists", CreateFolder: true}, remove: "d/b/.lists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := newStore(t, Options{Root: root})
			ctx := context.Background()
			if _, err := s.Deliver(ctx, tc.mb, testContent); err != nil {
				t.Fatal(err)
			}
			a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Link(ctx, tc.mb, a, testContent)
			if err != nil {
				t.Fatal(err)
			}
			if b.anon == nil || b.anon != a.anon {
				t.Fatal("not a link of the unnamed file")
			}
			if err := os.RemoveAll(filepath.Join(root, tc.remove)); err != nil {
				t.Fatal(err)
			}
			for _, err := range s.Commit(ctx, a, b) {
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, st := range []*Staged{a, b} {
				if _, err := os.Stat(filepath.Join(root, st.Path())); err != nil {
					t.Error(err)
				}
			}
			if tc.mb.Folder != "" {
				if _, err := os.Stat(filepath.Join(root, tc.remove, "maildirfolder")); err != nil {
					t.Errorf("folder made again without its marker: %v", err)
				}
			}
		})
	}
}

// TestAnonErrorNamesTmp: a failure to create the unnamed file names a
// path whose parent is tmp/, as a named file's does, so that messages
// built from it ("cannot store into ~/Maildir/tmp") stay right.
func TestAnonErrorNamesTmp(t *testing.T) {
	if !openat2Works() {
		t.Skip("SKIPPED: no openat2(2): RootFS never stages unnamed files")
	}
	root := mountTmpfs(t)
	s := newStore(t, Options{Root: root})
	ctx := context.Background()
	if _, err := s.Deliver(ctx, Mailbox{Path: "d/a"}, testContent); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	_, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
	pe := &fs.PathError{}
	if !errors.As(err, &pe) || !errors.Is(err, syscall.EROFS) || filepath.Base(filepath.Dir(pe.Path)) != "tmp" {
		t.Errorf("error %v (path %q), want EROFS on a path in tmp/", err, pe.Path)
	}
}

// TestAnonWithoutCapability: a process without CAP_DAC_READ_SEARCH (any
// non-root lmtpd), to which linkat(2) refuses AT_EMPTY_PATH before Linux
// 6.10, still publishes unnamed files, through /proc/self/fd. The test
// binary runs itself as nobody (uid 65534) for TestAnonChild.
func TestAnonWithoutCapability(t *testing.T) {
	needRoot(t)
	if !openat2Works() {
		t.Skip("SKIPPED: no openat2(2): RootFS never stages unnamed files")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "lmtpd-anon-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "maildir.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "mail")
	for _, p := range []string{dir, root} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run", "^TestAnonChild$", "-test.v")
	cmd.Env = append(os.Environ(), "LMTPD_ANON_CHILD="+root)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestAnonChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// TestAnonChild is TestAnonWithoutCapability's child: deliveries to
// three maildirs sharing one unnamed file, and the way they were linked.
func TestAnonChild(t *testing.T) {
	root := os.Getenv("LMTPD_ANON_CHILD")
	if root == "" {
		t.Skip("run by TestAnonWithoutCapability")
	}
	s := newStore(t, Options{Root: root})
	ctx := context.Background()
	a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	if a.anon == nil {
		t.Fatal("not staged unnamed")
	}
	b, err := s.Link(ctx, Mailbox{Path: "d/b"}, a, testContent)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range s.Commit(ctx, a, b) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []*Staged{a, b} {
		got, err := os.ReadFile(filepath.Join(root, st.Path()))
		if err != nil || string(got) != string(testContent.Header)+"hello\nworld\n" {
			t.Errorf("%s holds %q, %v", st.Path(), got, err)
		}
	}
	way := map[int32]string{flinkEmptyPath: "AT_EMPTY_PATH", flinkProc: "/proc/self/fd"}[flinkState.Load()]
	t.Logf("linked through %s (kernel %s)", way, kernelRelease())
	if way == "" {
		t.Error("no way of linking recorded")
	}
}

// TestAnonLinkWays: each way of linking an unnamed file publishes it and
// its further recipients' links: the descriptor itself (AT_EMPTY_PATH)
// and /proc/self/fd/N (what a process without CAP_DAC_READ_SEARCH uses
// before Linux 6.10), and the first link of a process, which finds out.
func TestAnonLinkWays(t *testing.T) {
	if !openat2Works() {
		t.Skip("SKIPPED: no openat2(2): RootFS never stages unnamed files")
	}
	old := flinkState.Load()
	t.Cleanup(func() { flinkState.Store(old) })
	for _, tc := range []struct {
		name  string
		state int32
	}{
		{"first link", flinkUnknown},
		{"AT_EMPTY_PATH", flinkEmptyPath},
		{"/proc/self/fd", flinkProc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flinkState.Store(tc.state)
			root := t.TempDir()
			s := newStore(t, Options{Root: root})
			ctx := context.Background()
			a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Link(ctx, Mailbox{Path: "d/b"}, a, testContent)
			if err != nil {
				t.Fatal(err)
			}
			if a.anon == nil || b.anon != a.anon {
				t.Fatal("not staged unnamed")
			}
			for _, err := range s.Commit(ctx, a, b) {
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, st := range []*Staged{a, b} {
				var sb unix.Stat_t
				if err := unix.Stat(filepath.Join(root, st.Path()), &sb); err != nil || sb.Nlink != 2 || sb.Size != a.Size() {
					t.Errorf("%s: %d links, %d bytes, %v", st.Path(), sb.Nlink, sb.Size, err)
				}
			}
			if tc.state != flinkUnknown && flinkState.Load() != tc.state {
				t.Errorf("way changed from %d to %d", tc.state, flinkState.Load())
			}
			if flinkState.Load() == flinkUnknown {
				t.Error("the first link did not record its way")
			}
		})
	}
}
