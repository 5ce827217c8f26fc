package maildir

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/lmtpd/lmtpd/protocol"
)

// fakeFS is what TestFSHealthProbe's seams report: the statfs type and
// flags, whether futimens fails (and after how many calls), and the ext4
// error count, which a futimens may raise (as ext4 does when the handle
// finds the journal aborted).
type fakeFS struct {
	typ, flags  int64
	touchErr    error
	touchFailAt int // fail the touches from this one on (1-based); 0: with touchErr, always
	count       int64
	countOK     bool
	bumpOnTouch bool // the first touch makes ext4 record an error

	touches int
}

func (f *fakeFS) install(h *fsHealth) {
	h.statfs = func(fd int, st *unix.Statfs_t) error {
		*st = unix.Statfs_t{Type: f.typ, Flags: f.flags}
		return nil
	}
	h.touch = func(fd int) error {
		f.touches++
		if f.bumpOnTouch && f.touches == 1 {
			f.count++
		}
		if f.touchErr != nil && f.touches >= f.touchFailAt {
			return f.touchErr
		}
		return nil
	}
	h.errorsCount = func(uint64) (int64, bool) { return f.count, f.countOK }
}

// TestFSHealthProbe: the check's verdict for each state of the file
// system, with statfs, futimens and the error count injected; the
// directory is a real one (fstat needs a descriptor).
func TestFSHealthProbe(t *testing.T) {
	const ext4, xfs = unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC
	for _, tt := range []struct {
		name string
		fs   fakeFS
		// before runs a first check on the file system, healthy, so that
		// the Store has seen it; then grow adds to the count.
		before  bool
		grow    int64
		wantErr error // nil: healthy
		touches int   // futimens calls expected (in the last check)
	}{
		{name: "ext4 writable", fs: fakeFS{typ: ext4, count: 3, countOK: true}, before: true, touches: 2},
		{name: "ext4 remounted read-only", fs: fakeFS{typ: ext4, flags: unix.ST_RDONLY, countOK: true}, wantErr: syscall.EROFS},
		{name: "xfs remounted read-only", fs: fakeFS{typ: xfs, flags: unix.ST_RDONLY}, wantErr: syscall.EROFS},
		{name: "ext4 error count grew", fs: fakeFS{typ: ext4, count: 3, countOK: true}, before: true, grow: 1, wantErr: syscall.EIO, touches: 2},
		{name: "ext4 old errors only", fs: fakeFS{typ: ext4, count: 7, countOK: true}, touches: 2},
		// The journal aborted unnoticed: the first futimens makes ext4
		// notice (and count it); seen on the Store's first check too.
		{name: "ext4 journal aborted, first check", fs: fakeFS{typ: ext4, count: 0, countOK: true, bumpOnTouch: true}, wantErr: syscall.EIO, touches: 2},
		{name: "ext4 journal aborted, no sysfs", fs: fakeFS{typ: ext4, touchErr: syscall.EROFS, touchFailAt: 2}, wantErr: syscall.EROFS, touches: 2},
		{name: "ext4 emergency read-only", fs: fakeFS{typ: ext4, touchErr: syscall.EROFS, touchFailAt: 1, countOK: true}, wantErr: syscall.EROFS, touches: 1},
		{name: "ext4 no sysfs, healthy", fs: fakeFS{typ: ext4}, touches: 2},
		{name: "unknown file system", fs: fakeFS{typ: 0x12345678}, touches: 0},
		{name: "xfs writable", fs: fakeFS{typ: xfs}, touches: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := os.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var logs bytes.Buffer
			ctx := zerolog.New(&logs).WithContext(context.Background())
			var h fsHealth
			f := tt.fs
			f.install(&h)
			if tt.before {
				if err := h.probe(ctx, int(d.Fd()), "box"); err != nil {
					t.Fatalf("first check: %v", err)
				}
				f.count += tt.grow
				f.touches = 0
			}
			err = h.probe(ctx, int(d.Fd()), "box")
			if f.touches != tt.touches {
				t.Errorf("futimens called %d times, want %d", f.touches, tt.touches)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("probe: %v, want nil", err)
				}
				return
			}
			var fe *FSError
			if !errors.As(err, &fe) || !errors.Is(err, tt.wantErr) || fe.Dir != "box" {
				t.Fatalf("probe: %v, want an *FSError for box with %v", err, tt.wantErr)
			}
			// The verdict stays until the file system is healthy again,
			// and is logged once.
			if err2 := h.probe(ctx, int(d.Fd()), "box"); !errors.Is(err2, tt.wantErr) {
				t.Errorf("second probe: %v, want %v again", err2, tt.wantErr)
			}
			if n := strings.Count(logs.String(), "maildir file system failed after a flush"); n != 1 {
				t.Errorf("logged %d times, want once:\n%s", n, logs.String())
			}
		})
	}
}

// TestFSHealthCountCleared: a file system whose error count grew fails
// every check until the count drops (e2fsck cleared it, the file system
// was mounted again); from then on the new count is the baseline.
func TestFSHealthCountCleared(t *testing.T) {
	d, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	var h fsHealth
	f := fakeFS{typ: unix.EXT4_SUPER_MAGIC, count: 2, countOK: true}
	f.install(&h)
	for i, step := range []struct {
		count int64
		ok    bool
	}{{2, true}, {3, false}, {3, false}, {0, true}, {0, true}, {1, false}} {
		f.count = step.count
		if err := h.probe(ctx, int(d.Fd()), "box"); (err == nil) != step.ok {
			t.Errorf("step %d (count %d): %v, want healthy %v", i, step.count, err, step.ok)
		}
	}
}

// TestCommitFSFailed: a delivery whose rename barrier succeeded on a
// file system found failed afterwards gets 451 4.3.0, not a success, and
// leaves nothing in new/. With FlushOrdered (whatever the temporary
// directory's file system) the check is the barrier run's own.
func TestCommitFSFailed(t *testing.T) {
	for _, flush := range []FlushMode{FlushFsync, FlushSyncfs, FlushOrdered} {
		t.Run(flush.String(), func(t *testing.T) {
			if flush == FlushOrdered {
				old := orderedCheck
				orderedCheck = func(fsID) (bool, string) { return true, "" }
				t.Cleanup(func() { orderedCheck = old })
			}
			root := t.TempDir()
			s := newStore(t, Options{Root: root, Flush: flush})
			f := fakeFS{typ: unix.EXT4_SUPER_MAGIC, count: 0, countOK: true}
			f.install(&s.health)
			ctx := context.Background()
			if _, err := s.Deliver(ctx, Mailbox{Path: "a/b"}, testContent); err != nil {
				t.Fatalf("healthy: %v", err)
			}
			f.count++ // ext4 recorded an error
			_, err := s.Deliver(ctx, Mailbox{Path: "a/b"}, testContent)
			pe := protocol.AsError(err)
			var fe *FSError
			if pe == nil || pe.Code != 451 || pe.EnhancedCode != (protocol.EnhancedCode{4, 3, 0}) || !errors.As(err, &fe) {
				t.Fatalf("after the failure: %v, want 451 4.3.0 with an *FSError", err)
			}
			if n := len(listDir(t, root, "a/b/new")); n != 1 {
				t.Errorf("%d files in new/, want the first delivery's alone", n)
			}
			if n := len(listDir(t, root, "a/b/tmp")); n != 0 {
				t.Errorf("%d files left in tmp/", n)
			}
		})
	}
}

// needLoopExt4 skips (fails under CI=true) unless ext4 file systems can
// be made on loop devices here.
func needLoopExt4(t *testing.T, tools ...string) {
	t.Helper()
	needLoopFS(t, "mkfs.ext4", tools...)
}

// needLoopFS skips (fails under CI=true) unless file systems can be made
// with mkfs on loop devices here, and tools are there too.
func needLoopFS(t *testing.T, mkfs string, tools ...string) {
	t.Helper()
	needRoot(t)
	for _, tool := range append([]string{"losetup", mkfs, "mount", "umount"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing", tool)
			}
			t.Skipf("SKIPPED: %s is missing", tool)
		}
	}
}

// loopExt4 makes an ext4 file system on a loop device over an image in a
// temporary directory, mounts it, and returns the image, the device's
// name and the mount point; cleanup unmounts and detaches it.
func loopExt4(t *testing.T) (img, dev, mnt string) {
	t.Helper()
	return loopFS(t, 32<<20, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0")
}

// loopFS makes a file system with mkfs (and its arguments, the image
// last) on a loop device over a sparse image of size bytes in a
// temporary directory, mounts it, and returns the image, the device's
// name and the mount point; cleanup unmounts and detaches it.
func loopFS(t *testing.T, size int64, mkfs string, args ...string) (img, dev, mnt string) {
	t.Helper()
	sh := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	dir := t.TempDir()
	img, mnt = filepath.Join(dir, "img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, size)
	sh(mkfs, append(args, img)...)
	loop := sh("losetup", "-f", "--show", img)
	t.Cleanup(func() {
		exec.Command("chattr", "-i", img).Run()
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Logf("losetup -d %s: %v %s", loop, err, out)
		}
	})
	sh("mount", loop, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s", mnt, err, out)
		}
	})
	return img, filepath.Base(loop), mnt
}

// TestFSHealthExt4Error: on a real ext4 (loop device), an error ext4
// records while the file system stays writable (errors=continue, the
// mkfs default; trigger_fs_error, Linux 5.18 and later) fails the next
// delivery with 451 4.3.0, although its barriers succeed.
func TestFSHealthExt4Error(t *testing.T) {
	needLoopExt4(t)
	_, dev, mnt := loopExt4(t)
	trigger := "/sys/fs/ext4/" + dev + "/trigger_fs_error"
	if _, err := os.Stat(trigger); err != nil {
		t.Skipf("SKIPPED: the kernel has no %s", trigger)
	}
	root := filepath.Join(mnt, "mail")
	os.Mkdir(root, 0o700)
	s := newStore(t, Options{Root: root})
	ctx := context.Background()
	if _, err := s.Deliver(ctx, Mailbox{Path: "a/b"}, testContent); err != nil {
		t.Fatalf("before the error: %v", err)
	}
	if err := os.WriteFile(trigger, []byte("lmtpd test\n"), 0o200); err != nil {
		t.Fatal(err)
	}
	_, err := s.Deliver(ctx, Mailbox{Path: "a/b"}, testContent)
	pe := protocol.AsError(err)
	if pe == nil || pe.Code != 451 || pe.EnhancedCode != (protocol.EnhancedCode{4, 3, 0}) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("after ext4 recorded an error: %v, want 451 4.3.0 (errors_count grew)", err)
	}
}

// syncWatchFS records the result of every directory fsync and runs
// after() once after the first rename into new/.
type syncWatchFS struct {
	FS
	after func()
	once  sync.Once
	mu    sync.Mutex
	syncs []error
}

func (w *syncWatchFS) Rename(oldname, newname string) error {
	err := w.FS.Rename(oldname, newname)
	if err == nil && strings.Contains(newname, "/new/") {
		w.once.Do(w.after)
	}
	return err
}

func (w *syncWatchFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := w.FS.OpenFile(name, flag, perm)
	if err != nil || flag != os.O_RDONLY {
		return f, err
	}
	return &syncWatchFile{File: f, w: w}, nil
}

type syncWatchFile struct {
	File
	w *syncWatchFS
}

func (f *syncWatchFile) Sync() error {
	err := f.File.Sync()
	f.w.mu.Lock()
	f.w.syncs = append(f.w.syncs, err)
	f.w.mu.Unlock()
	return err
}

// Fd keeps the descriptor visible to the health check.
func (f *syncWatchFile) Fd() uintptr { return f.File.(fder).Fd() }

// TestFSHealthJournalAbort reproduces the defect on a real ext4 (loop
// device), with each flush mode: a delivery's rename joins a journal
// transaction; the disk then fails every write (the loop device's image
// made immutable, as the power-cut test does), and another delivery's
// fsync of new/ commits that transaction, fails, and aborts the journal.
// The first delivery's own rename barrier (fsync of new/, or syncfs) then
// finds nothing to commit and returns 0 (watched: on Linux 6.18 it does),
// and only the health check stands between it and a 250: it must fail
// with 451 4.3.0.
func TestFSHealthJournalAbort(t *testing.T) {
	needLoopExt4(t, "chattr")
	for _, flush := range []FlushMode{FlushFsync, FlushSyncfs, FlushOrdered} {
		t.Run(flush.String(), func(t *testing.T) {
			img, _, mnt := loopExt4(t)
			root := filepath.Join(mnt, "mail")
			os.Mkdir(root, 0o700)
			r := NewRootFS(root)
			t.Cleanup(func() { r.Close() })
			w := &syncWatchFS{FS: r}
			w.after = func() {
				if out, err := exec.Command("chattr", "+i", img).CombinedOutput(); err != nil {
					t.Errorf("chattr +i: %v %s", err, out)
					return
				}
				// The other delivery's barrier: the commit fails.
				d, err := os.Open(filepath.Join(root, "a/b/new"))
				if err != nil {
					t.Error(err)
					return
				}
				defer d.Close()
				if err := d.Sync(); err == nil {
					t.Error("fsync of new/ after the cut succeeded: the writes were not cut")
				}
			}
			// With syncfs the barrier is a syncfs(2) of the staged file's
			// descriptor: watched too.
			defer func(old func(int) error) { syncfsCall = old }(syncfsCall)
			syncfsCall = func(fd int) error {
				err := unix.Syncfs(fd)
				w.mu.Lock()
				w.syncs = append(w.syncs, err)
				w.mu.Unlock()
				return err
			}
			s := newStore(t, Options{FS: w, Flush: flush})
			ctx := context.Background()
			_, err := s.Deliver(ctx, Mailbox{Path: "a/b"}, testContent)
			w.mu.Lock()
			syncs := w.syncs
			w.mu.Unlock()
			if len(syncs) == 0 || syncs[len(syncs)-1] != nil {
				t.Logf("the delivery's own rename barrier: %v (the kernel reported the failure itself)", syncs)
			}
			pe := protocol.AsError(err)
			if pe == nil || pe.Code != 451 || pe.EnhancedCode != (protocol.EnhancedCode{4, 3, 0}) {
				t.Fatalf("delivery after the journal aborted: %v, want 451 4.3.0", err)
			}
			var fe *FSError
			if len(syncs) > 0 && syncs[len(syncs)-1] == nil && !errors.As(err, &fe) {
				t.Errorf("the barrier succeeded but the error is not the health check's: %v", err)
			}
			t.Logf("directory fsyncs: %v; delivery: %v", syncs, err)
		})
	}
}

// BenchmarkFSHealthCheck is the cost of one check (what a barrier group
// adds to Commit): open the new/ directory, fstatfs, fstat, and on ext4
// two futimens and a pread of errors_count, close. Run it on ext4
// (TMPDIR) to see the whole of it.
func BenchmarkFSHealthCheck(b *testing.B) {
	root := b.TempDir()
	s := newStore(b, Options{Root: root})
	ctx := context.Background()
	if _, err := s.Deliver(ctx, Mailbox{Path: "a/b"}, testContent); err != nil {
		b.Fatal(err)
	}
	l, err := s.locate(Mailbox{Path: "a/b"})
	if err != nil {
		b.Fatal(err)
	}
	var sf unix.Statfs_t
	unix.Statfs(root, &sf)
	b.ReportMetric(float64(sf.Type), "fstype")
	for b.Loop() {
		if err := s.health.check(ctx, "a/b/new", l, "a/b/new"); err != nil {
			b.Fatal(err)
		}
	}
}
