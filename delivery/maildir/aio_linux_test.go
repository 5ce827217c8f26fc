package maildir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// TestAIOLayout: the structures handed to the kernel have the sizes of
// linux/aio_abi.h's.
func TestAIOLayout(t *testing.T) {
	if n := unsafe.Sizeof(iocb{}); n != 64 {
		t.Errorf("iocb is %d bytes, want 64", n)
	}
	if n := unsafe.Sizeof(ioEvent{}); n != 32 {
		t.Errorf("ioEvent is %d bytes, want 32", n)
	}
}

// TestAIOFsync: aioFsync fsyncs a directory and files, fewer and more
// than a context holds at once, with each one's result in its place: a
// closed descriptor gets EBADF wherever it is, and the others are still
// fsynced; and where AIO is refused it says so without doing anything.
func TestAIOFsync(t *testing.T) {
	dir := t.TempDir()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	open := func(n int) []int {
		fds := []int{int(d.Fd())}
		for i := range n {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			f.WriteString("x")
			fds = append(fds, int(f.Fd()))
		}
		return fds
	}
	// A descriptor number no process has open (RLIMIT_NOFILE is far
	// lower), so that no other test's file can take it.
	const bad = 1 << 30
	for _, tt := range []struct {
		name  string
		files int
		bad   []int // positions of closed descriptors
	}{
		{"one file", 1, nil},
		{"several", 7, nil},
		{"more than a context holds", 2*aioSlots + 3, nil},
		{"a bad descriptor first", 3, []int{0}},
		{"a bad descriptor among them", 5, []int{3}},
		{"bad descriptors past a context", aioSlots + 10, []int{2, aioSlots + 4}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fds := open(tt.files)
			for _, i := range tt.bad {
				fds[i] = bad
			}
			errs := make([]error, len(fds))
			for i := range errs {
				errs[i] = errors.New("not set")
			}
			if err := aioFsync(fds, errs); err != nil {
				t.Fatalf("aioFsync: %v", err)
			}
			for i, err := range errs {
				want := error(nil)
				for _, b := range tt.bad {
					if i == b {
						want = unix.EBADF
					}
				}
				if !errors.Is(err, want) && err != want {
					t.Errorf("fd %d (#%d): %v, want %v", fds[i], i, err, want)
				}
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		aioBroken.Store(true)
		defer aioBroken.Store(false)
		fds := open(2)
		errs := make([]error, len(fds))
		if err := aioFsync(fds, errs); err != errAIORefused {
			t.Errorf("aioFsync with AIO refused: %v, want errAIORefused", err)
		}
	})
}

// TestAIORefusedLogged: where AIO is refused for good (here by force, as
// a seccomp filter's EPERM would), FlushOrdered still delivers, fsyncing
// the files after the directory, and says so once, with the reason.
func TestAIORefusedLogged(t *testing.T) {
	oldCheck := orderedCheck
	orderedCheck = func(fsID) (bool, string) { return true, "" }
	t.Cleanup(func() {
		orderedCheck = oldCheck
		aioBroken.Store(false)
		aioWhy.Store(nil)
		aioLogged = sync.Once{}
	})
	refuseAIO("io_setup: operation not permitted")
	root := t.TempDir()
	s := newStore(t, Options{Root: root, Flush: FlushOrdered})
	var logs bytes.Buffer
	ctx := zerolog.New(&logs).WithContext(context.Background())
	for range 3 {
		if _, err := s.Deliver(ctx, Mailbox{Path: "a/b"}, testContent); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(listDir(t, root, "a/b/new")); n != 3 {
		t.Errorf("%d messages in new/, want 3", n)
	}
	if n := strings.Count(logs.String(), "asynchronous fsync (Linux AIO) is refused here"); n != 1 || !strings.Contains(logs.String(), "operation not permitted") {
		t.Errorf("want one line saying AIO is refused and why, got:\n%s", logs.String())
	}
}
