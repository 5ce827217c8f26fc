package maildir

import (
	"context"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

func TestParseFlushMode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want FlushMode
		err  bool
	}{
		{"", FlushAuto, false},
		{"auto", FlushAuto, false},
		{"syncfs", FlushSyncfs, false},
		{"ordered", FlushOrdered, false},
		{"fsync", FlushFsync, false},
		{"fdatasync", 0, true},
		{"SYNCFS", 0, true},
	} {
		got, err := ParseFlushMode(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseFlushMode(%q) = %v, %v", tt.in, got, err)
		}
		if err == nil && tt.in != "" && got.String() != tt.in {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if _, err := New(Options{Root: t.TempDir(), Flush: FlushMode(7)}); err == nil {
		t.Error("New accepted an unknown flush mode")
	}
}

// TestLinkSharesBarrier: with FlushFsync, a file and its hard links are
// one fsync, before any rename; the renames are followed by one fsync of
// each new/.
func TestLinkSharesBarrier(t *testing.T) {
	root := t.TempDir()
	f := newFaultFS(t, root)
	s := newStore(t, Options{FS: f, Flush: FlushFsync})
	ctx := context.Background()
	a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Link(ctx, Mailbox{Path: "d/b"}, a, testContent)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.calls = nil
	f.mu.Unlock()
	for i, err := range s.Commit(ctx, a, b) {
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
	}
	var seq []string
	for _, c := range f.calls {
		op, name, _ := strings.Cut(c, " ")
		if op == "close" {
			continue
		}
		seq = append(seq, op+" "+regexp.MustCompile(`/(tmp|new)/.*`).ReplaceAllString(name, "/$1/F"))
	}
	// The two directory fsyncs run in parallel: either order.
	got := strings.Join(seq, "\n")
	want1 := "sync d/a/tmp/F\nrename d/a/new/F\nrename d/b/new/F\n"
	if !strings.HasPrefix(got, want1) || strings.Count(got, "sync ") != 3 || !strings.Contains(got, "dirsync d/a/new") || !strings.Contains(got, "dirsync d/b/new") {
		t.Errorf("operations:\n%s\nwant one fsync of the file, the renames, then one fsync of each new/", got)
	}
	for _, mb := range []string{"d/a/new", "d/b/new"} {
		if l := listDir(t, root, mb); len(l) != 1 {
			t.Errorf("%s: %v", mb, l)
		}
	}
}

// TestLinkDataBarrierFails: when the data barrier fails for a file, its
// hard links fail with it and nothing is left in new/ or tmp/.
func TestLinkDataBarrierFails(t *testing.T) {
	root := t.TempDir()
	f := newFaultFS(t, root)
	s := newStore(t, Options{FS: f})
	ctx := context.Background()
	a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Link(ctx, Mailbox{Path: "d/b"}, a, testContent)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.fail["sync"] = syscall.EIO
	f.mu.Unlock()
	for i, err := range s.Commit(ctx, a, b) {
		checkReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, syscall.EIO)
		if err == nil {
			t.Errorf("file %d committed after a failed barrier", i)
		}
	}
	for _, d := range []string{"d/a/new", "d/b/new", "d/a/tmp", "d/b/tmp"} {
		if l := listDir(t, root, d); len(l) != 0 {
			t.Errorf("%s: %v", d, l)
		}
	}
}

// TestLinkCommittedLater: a link committed by a later Commit than its
// file's is not flushed again (the first Commit's barrier covered the
// inode) and lands in new/. (FlushSyncfs: TestSyncfsLinkCommittedLater.)
func TestLinkCommittedLater(t *testing.T) {
	root := t.TempDir()
	f := newFaultFS(t, root)
	s := newStore(t, Options{FS: f})
	ctx := context.Background()
	a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Link(ctx, Mailbox{Path: "d/b"}, a, testContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, a)[0]; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.calls = nil
	f.mu.Unlock()
	if err := s.Commit(ctx, b)[0]; err != nil {
		t.Fatal(err)
	}
	for _, c := range f.calls {
		if strings.HasPrefix(c, "sync ") {
			t.Errorf("the link's Commit flushed the file again: %s", c)
		}
	}
	for _, d := range []string{"d/a/new", "d/b/new"} {
		if l := listDir(t, root, d); len(l) != 1 {
			t.Errorf("%s: %v", d, l)
		}
	}
}

// slowSyncFS wraps a real FS: each file's Sync (not a directory's) takes a
// while and is counted, with the most that ran at once.
type slowSyncFS struct {
	FS
	mu            sync.Mutex
	now, max, all int
}

type slowSyncFile struct {
	File
	fs *slowSyncFS
}

func (s *slowSyncFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := s.FS.OpenFile(name, flag, perm)
	if err != nil || flag == os.O_RDONLY {
		return f, err
	}
	return &slowSyncFile{File: f, fs: s}, nil
}

func (f *slowSyncFile) Sync() error {
	s := f.fs
	s.mu.Lock()
	s.now++
	s.all++
	s.max = max(s.max, s.now)
	s.mu.Unlock()
	time.Sleep(2 * time.Millisecond) // a blocked fsync: the others pile up meanwhile
	s.mu.Lock()
	s.now--
	s.mu.Unlock()
	return f.File.Sync()
}

// TestFsyncBatchBounded: one Commit of 300 staged files (one transaction
// with many recipients) fsyncs them in parallel, but never more than
// maxParallelFsyncs at once: each blocked fsync holds an OS thread, and
// a batch of thousands would run into Go's thread limit and crash.
func TestFsyncBatchBounded(t *testing.T) {
	root := t.TempDir()
	r := NewRootFS(root)
	t.Cleanup(func() { r.Close() })
	sfs := &slowSyncFS{FS: r}
	s := newStore(t, Options{FS: sfs})
	ctx := context.Background()
	const n = 300
	files := make([]*Staged, n)
	for i := range files {
		st, err := s.Stage(ctx, Mailbox{Path: "d/u"}, testContent)
		if err != nil {
			t.Fatal(err)
		}
		files[i] = st
	}
	for i, err := range s.Commit(ctx, files...) {
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
	}
	if sfs.all != n {
		t.Errorf("%d file fsyncs, want %d", sfs.all, n)
	}
	if sfs.max > maxParallelFsyncs || sfs.max < 2 {
		t.Errorf("at most %d fsyncs at once, want 2 to %d", sfs.max, maxParallelFsyncs)
	}
	t.Logf("at most %d of %d fsyncs at once", sfs.max, n)
	if l := listDir(t, root, "d/u/new"); len(l) != n {
		t.Errorf("new/ has %d files, want %d", len(l), n)
	}
}

// TestOpenStagedBounded: a Store holds at most maxOpenStaged staged files
// open for their barrier; past it a file is fsynced and closed when
// staged, and Commit still delivers every file, closing the rest.
func TestOpenStagedBounded(t *testing.T) {
	old := maxOpenStaged
	maxOpenStaged = 4
	t.Cleanup(func() { maxOpenStaged = old })
	root := t.TempDir()
	r := NewRootFS(root)
	t.Cleanup(func() { r.Close() })
	sfs := &slowSyncFS{FS: r}
	s := newStore(t, Options{FS: sfs})
	ctx := context.Background()
	const n = 10
	files := make([]*Staged, n)
	for i := range files {
		st, err := s.Stage(ctx, Mailbox{Path: "d/u"}, testContent)
		if err != nil {
			t.Fatal(err)
		}
		files[i] = st
	}
	if got := s.openStaged.Load(); got != 4 {
		t.Errorf("%d staged files open, want 4", got)
	}
	if sfs.all != n-4 {
		t.Errorf("%d files fsynced when staged, want %d", sfs.all, n-4)
	}
	for i, err := range s.Commit(ctx, files...) {
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
	}
	if sfs.all != n {
		t.Errorf("%d file fsyncs in all, want %d (each once)", sfs.all, n)
	}
	if got := s.openStaged.Load(); got != 0 {
		t.Errorf("%d staged files open after Commit", got)
	}
	if l := listDir(t, root, "d/u/new"); len(l) != n {
		t.Errorf("new/ has %d files, want %d", len(l), n)
	}
}
