package maildir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

var testContent = Content{
	Header: []byte("Return-Path: <a@example.org>\nSubject: hi\n\n"),
	Body:   bytesBody("hello\nworld\n"),
}

// listDir returns the names in root/rel, or nil if it does not exist.
func listDir(t testing.TB, root, rel string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, rel))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func newStore(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestDeliver(t *testing.T) {
	root := t.TempDir()
	now := time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)
	s := newStore(t, Options{Root: root, Hostname: "mx:1/a", Now: func() time.Time { return now }})
	st, err := s.Deliver(context.Background(), Mailbox{Path: "example.org/bob"}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	want := string(testContent.Header) + "hello\nworld\n"
	names := listDir(t, root, "example.org/bob/new")
	if len(names) != 1 {
		t.Fatalf("new/ has %v", names)
	}
	re := regexp.MustCompile(fmt.Sprintf(`^%d\.M123456P%dQ\d+\.mx\\072 1\\057a,S=%d$`, now.Unix(), os.Getpid(), len(want)))
	re = regexp.MustCompile(strings.Replace(re.String(), " ", "", 1))
	if !re.MatchString(names[0]) {
		t.Errorf("file name %q does not match %s", names[0], re)
	}
	if st.Path() != "example.org/bob/new/"+names[0] || st.Size() != int64(len(want)) || st.Dir() != "example.org/bob" {
		t.Errorf("Staged Path %q Size %d Dir %q", st.Path(), st.Size(), st.Dir())
	}
	got, _ := os.ReadFile(filepath.Join(root, "example.org/bob/new", names[0]))
	if string(got) != want {
		t.Errorf("content %q, want %q", got, want)
	}
	if l := listDir(t, root, "example.org/bob/tmp"); len(l) != 0 {
		t.Errorf("tmp/ has %v", l)
	}
	for _, d := range []string{"example.org", "example.org/bob", "example.org/bob/tmp", "example.org/bob/new", "example.org/bob/cur"} {
		fi, err := os.Stat(filepath.Join(root, d))
		if err != nil || fi.Mode().Perm() != DirMode {
			t.Errorf("%s: %v mode %v, want %v", d, err, fi.Mode().Perm(), DirMode)
		}
	}
	fi, _ := os.Stat(filepath.Join(root, "example.org/bob/new", names[0]))
	if fi.Mode().Perm() != FileMode {
		t.Errorf("file mode %v, want %v", fi.Mode().Perm(), FileMode)
	}
}

func TestDeliverFsyncs(t *testing.T) {
	// The write path: create with O_EXCL in tmp, write, fsync, rename into
	// new, fsync new, and new opened again for the file system check
	// (fshealth_linux.go); creating a maildir fsyncs each changed parent.
	root := t.TempDir()
	f := newFaultFS(t, root)
	s := newStore(t, Options{FS: f})
	if _, err := s.Deliver(context.Background(), Mailbox{Path: "d/u"}, testContent); err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, c := range f.calls {
		op, name, _ := strings.Cut(c, " ")
		if op == "stat" || op == "readdir" || op == "close" {
			continue
		}
		name = regexp.MustCompile(`/(tmp|new)/.*`).ReplaceAllString(name, "/$1/F")
		if c := op + " " + name; len(seq) == 0 || seq[len(seq)-1] != c {
			seq = append(seq, c) // the header and the body may be two writes
		}
	}
	want := []string{
		"mkdir d", "opendir .", "dirsync .",
		"mkdir d/u", "opendir d", "dirsync d",
		"mkdir d/u/tmp", "mkdir d/u/new", "mkdir d/u/cur", "opendir d/u", "dirsync d/u",
		"open d/u/tmp/F", "write d/u/tmp/F", "sync d/u/tmp/F",
		"rename d/u/new/F", "opendir d/u/new", "dirsync d/u/new",
	}
	if runtime.GOOS == "linux" {
		want = append(want, "opendir d/u/new")
	}
	if strings.Join(seq, "\n") != strings.Join(want, "\n") {
		t.Errorf("operations:\n%s\nwant:\n%s", strings.Join(seq, "\n"), strings.Join(want, "\n"))
	}
}

func TestDeliverFailures(t *testing.T) {
	eio := syscall.EIO
	tests := []struct {
		name   string
		setup  func(f *faultFS)
		opts   Options
		code   int
		ec     protocol.EnhancedCode
		cause  error
		nodirs bool // the maildir is not even created
	}{
		{name: "ENOSPC after 10 bytes", setup: func(f *faultFS) { f.writeBudget = 10 }, code: 452, ec: protocol.EnhancedCode{4, 3, 1}, cause: syscall.ENOSPC},
		{name: "ENOSPC at once", setup: func(f *faultFS) { f.writeBudget = 0 }, code: 452, ec: protocol.EnhancedCode{4, 3, 1}, cause: syscall.ENOSPC},
		{name: "EDQUOT on write", setup: func(f *faultFS) { f.fail["write"] = syscall.EDQUOT }, code: 552, ec: protocol.EnhancedCode{5, 2, 2}, cause: syscall.EDQUOT},
		{name: "EDQUOT on close", setup: func(f *faultFS) { f.fail["close"] = syscall.EDQUOT }, code: 552, ec: protocol.EnhancedCode{5, 2, 2}, cause: syscall.EDQUOT},
		{name: "fsync fails", setup: func(f *faultFS) { f.fail["sync"] = eio }, code: 451, ec: protocol.EnhancedCode{4, 3, 0}, cause: eio},
		{name: "rename fails", setup: func(f *faultFS) { f.fail["rename"] = eio }, code: 451, ec: protocol.EnhancedCode{4, 3, 0}, cause: eio},
		{name: "fsync of new fails", setup: func(f *faultFS) { f.fail["dirsync"] = eio; f.only = "/new" }, code: 451, ec: protocol.EnhancedCode{4, 3, 0}, cause: eio},
		{name: "tmp not writable", setup: func(f *faultFS) { f.fail["open"] = syscall.EACCES }, code: 451, ec: protocol.EnhancedCode{4, 3, 5}, cause: syscall.EACCES},
		{name: "rename not permitted", setup: func(f *faultFS) { f.fail["rename"] = syscall.EPERM }, code: 451, ec: protocol.EnhancedCode{4, 3, 5}, cause: syscall.EPERM},
		{name: "mkdir not permitted", setup: func(f *faultFS) { f.fail["mkdir"] = syscall.EACCES }, code: 451, ec: protocol.EnhancedCode{4, 3, 5}, cause: syscall.EACCES, nodirs: true},
		{name: "read-only file system", setup: func(f *faultFS) { f.fail["mkdir"] = syscall.EROFS }, code: 451, ec: protocol.EnhancedCode{4, 3, 5}, cause: syscall.EROFS, nodirs: true},
		{name: "parent fsync fails", setup: func(f *faultFS) { f.fail["dirsync"] = eio }, code: 451, ec: protocol.EnhancedCode{4, 3, 0}, cause: eio},
		{name: "stat fails", setup: func(f *faultFS) { f.fail["stat"] = eio; f.fail["mkdir"] = eio }, code: 451, ec: protocol.EnhancedCode{4, 3, 0}, cause: eio, nodirs: true},
		{name: "too big", opts: Options{MaxMessageBytes: 10}, code: 552, ec: protocol.EnhancedCode{5, 3, 4}, cause: ErrTooBig, nodirs: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			f := newFaultFS(t, root)
			if tt.setup != nil {
				tt.setup(f)
			}
			opts := tt.opts
			opts.FS = f
			s := newStore(t, opts)
			_, err := s.Deliver(context.Background(), Mailbox{Path: "example.org/bob"}, testContent)
			checkReply(t, err, tt.code, tt.ec, tt.cause)
			if l := listDir(t, root, "example.org/bob/new"); len(l) != 0 {
				t.Errorf("new/ has %v", l)
			}
			if l := listDir(t, root, "example.org/bob/tmp"); len(l) != 0 {
				t.Errorf("tmp/ has litter %v", l)
			}
			if tt.nodirs && listDir(t, root, "example.org") != nil {
				t.Errorf("maildir created: %v", listDir(t, root, "example.org"))
			}
			// After the fault goes away the same Store delivers.
			f.mu.Lock()
			f.fail, f.writeBudget = map[string]error{}, -1
			f.mu.Unlock()
			if tt.opts.MaxMessageBytes == 0 {
				if _, err := s.Deliver(context.Background(), Mailbox{Path: "example.org/bob"}, testContent); err != nil {
					t.Fatalf("delivery after the fault: %v", err)
				}
				if l := listDir(t, root, "example.org/bob/new"); len(l) != 1 {
					t.Errorf("after recovery new/ has %v", l)
				}
			}
		})
	}
}

func checkReply(t *testing.T, err error, code int, ec protocol.EnhancedCode, cause error) {
	t.Helper()
	pe := protocol.AsError(err)
	if pe == nil {
		t.Fatalf("error %v is not a *protocol.Error", err)
	}
	if pe.Code != code || pe.EnhancedCode != ec {
		t.Errorf("reply %d %v, want %d %v (%v)", pe.Code, pe.EnhancedCode, code, ec, err)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Errorf("error %v does not wrap %v", err, cause)
	}
}

func TestMissingRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	s := newStore(t, Options{Root: root})
	_, err := s.Deliver(context.Background(), Mailbox{Path: "d/u"}, testContent)
	checkReply(t, err, 451, protocol.EnhancedCode{4, 3, 5}, os.ErrNotExist)
	var re *RootError
	if !errors.As(err, &re) || re.Dir != root {
		t.Errorf("error %v does not carry the RootError", err)
	}
	// The root appears (a volume gets mounted): deliveries work.
	os.Mkdir(root, 0o700)
	if _, err := s.Deliver(context.Background(), Mailbox{Path: "d/u"}, testContent); err != nil {
		t.Fatal(err)
	}
}

func TestSymlinkOutsideRoot(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "d")); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Options{Root: root})
	_, err := s.Deliver(context.Background(), Mailbox{Path: "d/u"}, testContent)
	checkReply(t, err, 451, protocol.EnhancedCode{4, 3, 5}, nil)
	if l := listDir(t, outside, "."); len(l) != 0 {
		t.Errorf("delivery reached outside the root: %v", l)
	}
	// An absolute symlink is refused too, even when it points inside.
	os.Mkdir(filepath.Join(root, "real"), 0o700)
	os.Symlink(filepath.Join(root, "real"), filepath.Join(root, "abs"))
	_, err = s.Deliver(context.Background(), Mailbox{Path: "abs/u"}, testContent)
	checkReply(t, err, 451, protocol.EnhancedCode{4, 3, 5}, nil)
	// A relative symlink within the root is followed.
	os.Symlink("real", filepath.Join(root, "rel"))
	if _, err := s.Deliver(context.Background(), Mailbox{Path: "rel/u"}, testContent); err != nil {
		t.Fatalf("relative symlink inside the root: %v", err)
	}
	if l := listDir(t, root, "real/u/new"); len(l) != 1 {
		t.Errorf("real/u/new has %v", l)
	}
}

func TestFileInPlaceOfMaildir(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "d"), nil, 0o600)
	s := newStore(t, Options{Root: root})
	_, err := s.Deliver(context.Background(), Mailbox{Path: "d/u"}, testContent)
	checkReply(t, err, 451, protocol.EnhancedCode{4, 3, 5}, nil)
	_, err = s.Deliver(context.Background(), Mailbox{Path: "d"}, testContent)
	checkReply(t, err, 451, protocol.EnhancedCode{4, 3, 5}, nil)
}

// namedWays runs f as a Store stages by default (unnamed files where the
// file system has them: Linux) and with every file staged by name in
// tmp/ (the classic way, which other systems and file systems take).
func namedWays(t *testing.T, f func(t *testing.T)) {
	for _, named := range []bool{false, true} {
		name := "default"
		if named {
			name = "named"
		}
		t.Run(name, func(t *testing.T) {
			old := stageNamed.Load()
			stageNamed.Store(named)
			t.Cleanup(func() { stageNamed.Store(old) })
			f(t)
		})
	}
}

// TestStageAbort: a staged file is in tmp/ under its Path (or, unnamed,
// nowhere), and Abort leaves nothing in tmp/ or new/, however often
// called, with a Commit after it doing nothing.
func TestStageAbort(t *testing.T) {
	namedWays(t, func(t *testing.T) {
		root := t.TempDir()
		s := newStore(t, Options{Root: root})
		st, err := s.Stage(context.Background(), Mailbox{Path: "u"}, testContent)
		if err != nil {
			t.Fatal(err)
		}
		l := listDir(t, root, "u/tmp")
		switch {
		case st.anon != nil && stageNamed.Load():
			t.Fatal("staged unnamed although told to stage by name")
		case st.anon != nil && (len(l) != 0 || st.Path() != ""):
			t.Fatalf("unnamed file: tmp/ has %v, staged %q", l, st.Path())
		case st.anon == nil && (len(l) != 1 || "u/tmp/"+l[0] != st.Path()):
			t.Fatalf("tmp/ has %v, staged %q", l, st.Path())
		}
		if err := st.Abort(); err != nil {
			t.Fatal(err)
		}
		if err := st.Abort(); err != nil {
			t.Errorf("second Abort: %v", err)
		}
		if errs := s.Commit(context.Background(), st); errs[0] != nil {
			t.Errorf("Commit after Abort: %v", errs[0])
		}
		if l := append(listDir(t, root, "u/tmp"), listDir(t, root, "u/new")...); len(l) != 0 {
			t.Errorf("left %v", l)
		}
	})
}

func TestCanceledContext(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, Options{Root: root})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Stage(ctx, Mailbox{Path: "u"}, testContent)
	checkReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, context.Canceled)
	_, err = s.Link(ctx, Mailbox{Path: "u"}, &Staged{}, testContent)
	checkReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, context.Canceled)
}

func TestLink(t *testing.T) {
	for _, linkErr := range []error{nil, syscall.EXDEV, syscall.EMLINK} {
		t.Run(fmt.Sprint(linkErr), func(t *testing.T) {
			root := t.TempDir()
			f := newFaultFS(t, root)
			if linkErr != nil {
				f.fail["link"] = linkErr
			}
			s := newStore(t, Options{FS: f})
			ctx := context.Background()
			a, err := s.Stage(ctx, Mailbox{Path: "a"}, testContent)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Link(ctx, Mailbox{Path: "b"}, a, testContent)
			if err != nil {
				t.Fatal(err)
			}
			for _, err := range s.Commit(ctx, a, b) {
				if err != nil {
					t.Fatal(err)
				}
			}
			fa, _ := os.Stat(filepath.Join(root, a.Path()))
			fb, _ := os.Stat(filepath.Join(root, b.Path()))
			if fa == nil || fb == nil {
				t.Fatalf("missing files %q %q", a.Path(), b.Path())
			}
			if same := os.SameFile(fa, fb); same != (linkErr == nil) {
				t.Errorf("SameFile = %v with link error %v", same, linkErr)
			}
			got, _ := os.ReadFile(filepath.Join(root, b.Path()))
			if int64(len(got)) != testContent.Size() {
				t.Errorf("linked copy has %d bytes", len(got))
			}
			for _, d := range []string{"a/tmp", "b/tmp"} {
				if l := listDir(t, root, d); len(l) != 0 {
					t.Errorf("%s has %v", d, l)
				}
			}
		})
	}
	t.Run("source not staged", func(t *testing.T) {
		root := t.TempDir()
		s := newStore(t, Options{Root: root})
		ctx := context.Background()
		a, _ := s.Deliver(ctx, Mailbox{Path: "a"}, testContent)
		b, err := s.Link(ctx, Mailbox{Path: "b"}, a, testContent)
		if err != nil {
			t.Fatal(err)
		}
		s.Commit(ctx, b)
		if l := listDir(t, root, "b/new"); len(l) != 1 {
			t.Errorf("b/new has %v", l)
		}
	})
	t.Run("copy after link fails fails too", func(t *testing.T) {
		root := t.TempDir()
		f := newFaultFS(t, root)
		s := newStore(t, Options{FS: f})
		ctx := context.Background()
		a, _ := s.Stage(ctx, Mailbox{Path: "a"}, testContent)
		f.fail["link"] = syscall.EXDEV
		f.writeBudget = 5
		_, err := s.Link(ctx, Mailbox{Path: "b"}, a, testContent)
		checkReply(t, err, 452, protocol.EnhancedCode{4, 3, 1}, syscall.ENOSPC)
		a.Abort()
		if l := append(listDir(t, root, "a/tmp"), listDir(t, root, "b/tmp")...); len(l) != 0 {
			t.Errorf("litter %v", l)
		}
	})
}

func TestFolders(t *testing.T) {
	tests := []struct {
		name     string
		create   bool
		exists   bool
		wantDir  string
		wantMark bool
	}{
		{"existing folder", false, true, "u/.lists", false},
		{"missing folder created", true, false, "u/.lists", true},
		{"missing folder falls back to INBOX", false, false, "u", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.exists {
				for _, d := range []string{"tmp", "new", "cur"} {
					os.MkdirAll(filepath.Join(root, "u/.lists", d), 0o700)
				}
			}
			s := newStore(t, Options{Root: root, CreateFolders: tt.create})
			st, err := s.Deliver(context.Background(), Mailbox{Path: "u", Folder: ".lists"}, testContent)
			if err != nil {
				t.Fatal(err)
			}
			if st.Dir() != tt.wantDir {
				t.Errorf("Dir = %q, want %q", st.Dir(), tt.wantDir)
			}
			if l := listDir(t, root, tt.wantDir+"/new"); len(l) != 1 {
				t.Errorf("%s/new has %v", tt.wantDir, l)
			}
			_, err = os.Stat(filepath.Join(root, "u/.lists/maildirfolder"))
			if (err == nil) != tt.wantMark {
				t.Errorf("maildirfolder marker: %v, want present %v", err, tt.wantMark)
			}
		})
	}
	t.Run("bad folder names", func(t *testing.T) {
		s := newStore(t, Options{Root: t.TempDir(), CreateFolders: true})
		for _, f := range []string{"lists", ".", "..", "./x", ".a/b", `.a\b`} {
			_, err := s.Deliver(context.Background(), Mailbox{Path: "u", Folder: f}, testContent)
			if !errors.Is(err, ErrBadPath) {
				t.Errorf("folder %q: %v, want ErrBadPath", f, err)
			}
		}
	})
}

func TestCleanTmp(t *testing.T) {
	root := t.TempDir()
	now := time.Now()
	os.MkdirAll(filepath.Join(root, "u/tmp"), 0o700)
	old, fresh := filepath.Join(root, "u/tmp/old"), filepath.Join(root, "u/tmp/fresh")
	os.WriteFile(old, nil, 0o600)
	os.WriteFile(fresh, nil, 0o600)
	os.Chtimes(old, now.Add(-37*time.Hour), now.Add(-37*time.Hour))
	os.Chtimes(fresh, now.Add(-35*time.Hour), now.Add(-35*time.Hour))
	os.Mkdir(filepath.Join(root, "u/tmp/olddir"), 0o700)
	os.Chtimes(filepath.Join(root, "u/tmp/olddir"), now.Add(-99*time.Hour), now.Add(-99*time.Hour))
	s := newStore(t, Options{Root: root, Now: func() time.Time { return now }})
	if _, err := s.Deliver(context.Background(), Mailbox{Path: "u"}, testContent); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(listDir(t, root, "u/tmp"), " ")
	if got != "fresh olddir" {
		t.Errorf("tmp/ after cleanup: %q, want \"fresh olddir\"", got)
	}
	// Only the first use cleans.
	os.Chtimes(fresh, now.Add(-40*time.Hour), now.Add(-40*time.Hour))
	s.Deliver(context.Background(), Mailbox{Path: "u"}, testContent)
	if got := strings.Join(listDir(t, root, "u/tmp"), " "); got != "fresh olddir" {
		t.Errorf("second use cleaned again: %q", got)
	}
	// A listing failure does not fail the delivery.
	f := newFaultFS(t, root)
	f.fail["readdir"] = syscall.EIO
	s2 := newStore(t, Options{FS: f})
	if _, err := s2.Deliver(context.Background(), Mailbox{Path: "u"}, testContent); err != nil {
		t.Errorf("delivery with failing cleanup: %v", err)
	}
}

func TestMaildirVanishes(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, Options{Root: root})
	ctx := context.Background()
	if _, err := s.Deliver(ctx, Mailbox{Path: "d/u"}, testContent); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(root, "d"))
	if _, err := s.Deliver(ctx, Mailbox{Path: "d/u"}, testContent); err != nil {
		t.Fatalf("delivery after the maildir was removed: %v", err)
	}
	if l := listDir(t, root, "d/u/new"); len(l) != 1 {
		t.Errorf("new/ has %v", l)
	}
}

// TestNameClash: a unique name that is taken (another process with our
// pid, a clock set back) is replaced by the next one, both when the file
// is created in tmp/ with O_EXCL and when an unnamed file is linked into
// new/; nothing is overwritten.
func TestNameClash(t *testing.T) {
	namedWays(t, func(t *testing.T) {
		root := t.TempDir()
		names := &fixedNames{names: []string{"same", "same", "other"}}
		s := newStore(t, Options{Root: root, Names: names})
		ctx := context.Background()
		a, err := s.Stage(ctx, Mailbox{Path: "u"}, Content{Header: []byte("A\n\n")})
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Stage(ctx, Mailbox{Path: "u"}, Content{Header: []byte("B\n\n")})
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range s.Commit(ctx, a, b) {
			if err != nil {
				t.Fatal(err)
			}
		}
		if a.Path() != "u/new/same,S=3" || b.Path() != "u/new/other,S=3" {
			t.Errorf("clash not avoided: %q %q", a.Path(), b.Path())
		}
		for _, st := range []*Staged{a, b} {
			got, err := os.ReadFile(filepath.Join(root, st.Path()))
			if err != nil {
				t.Fatal(err)
			}
			if want := map[*Staged]string{a: "A\n\n", b: "B\n\n"}[st]; string(got) != want {
				t.Errorf("%s holds %q, want %q", st.Path(), got, want)
			}
		}
	})
}

type fixedNames struct {
	names []string
	i     int
}

func (f *fixedNames) Next(time.Time) string {
	n := f.names[f.i%len(f.names)]
	f.i++
	return n
}

func TestNewWithoutRoot(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without Root or FS succeeded")
	}
}
