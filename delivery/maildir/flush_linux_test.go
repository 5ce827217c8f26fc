package maildir

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
	"golang.org/x/sys/unix"
)

// eventFS is a real FS whose files keep their descriptors (so the Store
// uses syncfs barriers on them) and which logs, in one order, the end of
// each file's writes and each rename; the test's syncfs logs its start and
// end in the same log.
type eventFS struct {
	FS
	mu  sync.Mutex
	log []string
}

func (e *eventFS) add(ev string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, ev)
	return len(e.log) - 1
}

type eventFile struct {
	realFile
	e    *eventFS
	name string
}

func (f *eventFile) Write(p []byte) (int, error) {
	n, err := f.realFile.Write(p)
	f.e.add("write " + path.Base(f.name))
	return n, err
}

func (e *eventFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := e.FS.OpenFile(name, flag, perm)
	if err != nil || flag == os.O_RDONLY {
		return f, err
	}
	return &eventFile{realFile: f.(realFile), e: e, name: name}, nil
}

func (e *eventFS) Rename(o, n string) error {
	err := e.FS.Rename(o, n)
	e.add("rename " + path.Base(o))
	return err
}

// watchSyncfs replaces syncfs(2) for the test: it logs each call's start
// and end in e (if not nil) and returns fail() when fail is set.
func watchSyncfs(t *testing.T, e *eventFS, fail func() error) *int {
	t.Helper()
	old := syncfsCall
	var mu sync.Mutex
	calls := new(int)
	syncfsCall = func(fd int) error {
		mu.Lock()
		*calls++
		n := *calls
		mu.Unlock()
		if e != nil {
			e.add(fmt.Sprintf("syncfs-start %d", n))
		}
		err := old(fd)
		if fail != nil {
			err = fail()
		}
		if e != nil {
			e.add(fmt.Sprintf("syncfs-end %d", n))
		}
		return err
	}
	t.Cleanup(func() { syncfsCall = old })
	return calls
}

func needSyncfs(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(dir + "/probe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := flushKey(FlushSyncfs, f); !ok {
		t.Skipf("SKIPPED: %s is not on a file system with syncfs barriers (ext4, XFS, Btrfs, tmpfs) or the kernel is older than 5.17", dir)
	}
	os.Remove(dir + "/probe")
}

// TestSyncfsBarrierOrder delivers from many goroutines at once with the
// FlushSyncfs and checks the rules of the write path for every
// message: a syncfs that started after the file's last write ended before
// its rename (nothing incomplete in new/), and a syncfs that started after
// the rename ended before Deliver returned (the 250). It also checks that
// concurrent deliveries share barriers.
func TestSyncfsBarrierOrder(t *testing.T) {
	root := t.TempDir()
	needSyncfs(t, root)
	r := NewRootFS(root)
	t.Cleanup(func() { r.Close() })
	e := &eventFS{FS: r}
	calls := watchSyncfs(t, e, nil)
	s := newStore(t, Options{FS: e, Flush: FlushSyncfs})
	ctx := context.Background()
	// Create the maildirs first: their creation fsyncs are not the point.
	const boxes, senders, each = 4, 16, 8
	for b := range boxes {
		if _, err := s.Deliver(ctx, Mailbox{Path: fmt.Sprintf("d/u%d", b)}, testContent); err != nil {
			t.Fatal(err)
		}
	}
	e.mu.Lock()
	e.log = nil
	e.mu.Unlock()
	*calls = 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	returned := map[string]int{} // file -> log index of Deliver's return
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				st, err := s.Deliver(ctx, Mailbox{Path: fmt.Sprintf("d/u%d", (g+i)%boxes)}, testContent)
				if err != nil {
					t.Error(err)
					return
				}
				name, _, _ := strings.Cut(path.Base(st.Path()), ",")
				idx := e.add("return " + name)
				mu.Lock()
				returned[name] = idx
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	log := e.log
	start, end := map[string]int{}, map[string]int{}
	for i, ev := range log {
		if n, ok := strings.CutPrefix(ev, "syncfs-start "); ok {
			start[n] = i
		}
		if n, ok := strings.CutPrefix(ev, "syncfs-end "); ok {
			end[n] = i
		}
	}
	// covered reports whether a syncfs started after a and ended before b.
	covered := func(a, b int) bool {
		for n, s := range start {
			if s > a && end[n] < b {
				return true
			}
		}
		return false
	}
	lastWrite, renamed := map[string]int{}, map[string]int{}
	for i, ev := range log {
		if n, ok := strings.CutPrefix(ev, "write "); ok {
			lastWrite[n] = i
		}
		if n, ok := strings.CutPrefix(ev, "rename "); ok {
			renamed[n] = i
		}
	}
	if len(returned) != senders*each {
		t.Fatalf("%d deliveries returned, want %d", len(returned), senders*each)
	}
	for name, ret := range returned {
		w, okw := lastWrite[name]
		rn, okr := renamed[name]
		if !okw || !okr {
			t.Errorf("%s: write logged %v, rename logged %v", name, okw, okr)
			continue
		}
		if !covered(w, rn) {
			t.Errorf("%s: renamed into new/ (event %d) without a syncfs between its last write (event %d) and the rename", name, rn, w)
		}
		if !covered(rn, ret) {
			t.Errorf("%s: delivery returned (event %d) without a syncfs between its rename (event %d) and the return", name, ret, rn)
		}
	}
	n := len(start)
	if n >= 2*senders*each {
		t.Errorf("%d syncfs calls for %d deliveries: no sharing", n, senders*each)
	}
	t.Logf("%d syncfs calls for %d deliveries", n, senders*each)
	for b := range boxes {
		if l := listDir(t, root, fmt.Sprintf("d/u%d/tmp", b)); len(l) != 0 {
			t.Errorf("tmp/ has %v", l)
		}
	}
}

// TestSyncfsFails: a failed barrier, before or after the rename, is a
// temporary failure that leaves nothing in new/ or tmp/, and the next
// delivery works.
func TestSyncfsFails(t *testing.T) {
	for _, tt := range []struct {
		name string
		nth  int // the syncfs call that fails: 1 the data barrier, 2 the rename's
	}{
		{"data barrier", 1},
		{"rename barrier", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			needSyncfs(t, root)
			s := newStore(t, Options{Root: root, Flush: FlushSyncfs})
			ctx := context.Background()
			if _, err := s.Deliver(ctx, Mailbox{Path: "d/u"}, testContent); err != nil {
				t.Fatal(err)
			}
			n := 0
			calls := watchSyncfs(t, nil, func() error {
				n++
				if n == tt.nth {
					return syscall.EIO
				}
				return nil
			})
			_, err := s.Deliver(ctx, Mailbox{Path: "d/u"}, testContent)
			checkReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, syscall.EIO)
			if *calls != tt.nth {
				t.Errorf("%d syncfs calls, want %d", *calls, tt.nth)
			}
			if l := listDir(t, root, "d/u/new"); len(l) != 1 {
				t.Errorf("new/ has %v, want the first message only", l)
			}
			if l := listDir(t, root, "d/u/tmp"); len(l) != 0 {
				t.Errorf("tmp/ has %v", l)
			}
			if _, err := s.Deliver(ctx, Mailbox{Path: "d/u"}, testContent); err != nil {
				t.Fatalf("after the failure: %v", err)
			}
		})
	}
}

// TestSyncfsLinkCommittedLater: with FlushSyncfs, a link committed after
// its file costs only the rename's barrier (its data is durable already),
// through the file's descriptor, still open for it.
func TestSyncfsLinkCommittedLater(t *testing.T) {
	root := t.TempDir()
	needSyncfs(t, root)
	r := NewRootFS(root)
	t.Cleanup(func() { r.Close() })
	s := newStore(t, Options{FS: &eventFS{FS: r}, Flush: FlushSyncfs})
	ctx := context.Background()
	a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Link(ctx, Mailbox{Path: "d/b"}, a, testContent)
	if err != nil {
		t.Fatal(err)
	}
	calls := watchSyncfs(t, nil, nil)
	if err := s.Commit(ctx, a)[0]; err != nil {
		t.Fatal(err)
	}
	if *calls != 2 {
		t.Errorf("file's Commit: %d syncfs calls, want 2 (data, rename)", *calls)
	}
	if err := s.Commit(ctx, b)[0]; err != nil {
		t.Fatal(err)
	}
	if *calls != 3 {
		t.Errorf("link's Commit: %d syncfs calls in all, want 3 (only its rename's)", *calls)
	}
	for _, d := range []string{"d/a/new", "d/b/new"} {
		if l := listDir(t, root, d); len(l) != 1 {
			t.Errorf("%s: %v", d, l)
		}
	}
	if b.data != nil || a.data != nil {
		t.Error("the file is still held after both Commits")
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tt := range []struct {
		rel             string
		syncfs, ordered bool
	}{
		{"5.17.0", true, true}, {"5.16.20", false, true}, {"5.10.0-28-amd64", false, true},
		{"5.8.0", false, true}, {"5.7.19", false, false}, {"6.1.0-18-amd64", true, true},
		{"4.19.0", false, false}, {"5.10", false, true}, {"6.18.44-fc-v669", true, true},
		{"", false, false}, {"weird", false, false}, {"5", false, false},
	} {
		if got := kernelAtLeast(tt.rel, syncfsMajor, syncfsMinor); got != tt.syncfs {
			t.Errorf("%q: syncfs trusted = %v, want %v", tt.rel, got, tt.syncfs)
		}
		if got := kernelAtLeast(tt.rel, orderedMajor, orderedMinor); got != tt.ordered {
			t.Errorf("%q: ordered allowed = %v, want %v", tt.rel, got, tt.ordered)
		}
	}
}

// TestSyncfsRenameBarrierFailsAcrossHomes: files in the root and in a home
// on one file system share the rename's syncfs barrier; when it fails,
// each is taken back out of its own new/ (not looked up relative to the
// first file's root), and each error names its own maildir.
func TestSyncfsRenameBarrierFailsAcrossHomes(t *testing.T) {
	root := t.TempDir()
	needSyncfs(t, root)
	home := t.TempDir()
	s := newStore(t, Options{Root: root, Flush: FlushSyncfs})
	ctx := context.Background()
	a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Stage(ctx, Mailbox{Home: home, Path: "Maildir"}, testContent)
	if err != nil {
		t.Fatal(err)
	}
	if a.data.key != b.data.key {
		t.Skipf("SKIPPED: %s and %s are not on one file system", root, home)
	}
	n := 0
	watchSyncfs(t, nil, func() error {
		if n++; n == 2 {
			return syscall.EIO
		}
		return nil
	})
	errs := s.Commit(ctx, a, b)
	for i, err := range errs {
		if err == nil {
			t.Errorf("file %d: nil error after a failed rename barrier", i)
		}
	}
	if l := listDir(t, root, "d/a/new"); len(l) != 0 {
		t.Errorf("root's d/a/new has %v", l)
	}
	if l := listDir(t, home, "Maildir/new"); len(l) != 0 {
		t.Errorf("home's Maildir/new has %v", l)
	}
}

// TestFlushAnswerAfterRemount: a file system's answers (syncfs barriers
// allowed, FlushOrdered allowed) are not inherited by another mounted in
// its place: anonymous device numbers (tmpfs, Btrfs subvolumes, NFS,
// FUSE, overlayfs) are reused after an unmount, so the device alone does
// not name a file system. Mounts tmpfs, then ramfs at the same place.
func TestFlushAnswerAfterRemount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: mounting tmpfs and ramfs needs root")
	}
	dir := t.TempDir()
	mount := func(typ string) (*os.File, uint64) {
		t.Helper()
		if err := unix.Mount("none", dir, typ, 0, ""); err != nil {
			t.Fatalf("mount %s: %v", typ, err)
		}
		f, err := os.Create(dir + "/probe")
		if err != nil {
			unix.Unmount(dir, 0)
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return f, st.Dev
	}
	umount := func(f *os.File) {
		f.Close()
		if err := unix.Unmount(dir, 0); err != nil {
			t.Fatalf("umount: %v", err)
		}
	}
	oldCheck := orderedCheck
	checks := 0
	orderedCheck = func(fsID) (bool, string) { checks++; return true, "" }
	t.Cleanup(func() { orderedCheck = oldCheck })
	var ordered sync.Map

	f, dev1 := mount("tmpfs")
	_, syncfs := flushKey(FlushSyncfs, f)
	if _, ok, _, _ := orderedKey(&ordered, f); !ok {
		t.Error("tmpfs: FlushOrdered refused though the check allowed it")
	}
	umount(f)
	if !syncfs {
		t.Skip("SKIPPED: no syncfs barriers on tmpfs (the kernel is older than 5.17)")
	}

	f, dev2 := mount("ramfs")
	defer umount(f)
	if dev1 != dev2 {
		t.Logf("the device number was not reused (%d, then %d): the test shows less", dev1, dev2)
	}
	if _, syncfs := flushKey(FlushSyncfs, f); syncfs {
		t.Error("ramfs: syncfs barriers allowed, the answer of the tmpfs mounted there before")
	}
	orderedKey(&ordered, f)
	if checks != 2 {
		t.Errorf("FlushOrdered checked %d times, want 2 (once per file system)", checks)
	}
}
