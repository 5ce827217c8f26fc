package maildir

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// fsHealth checks, after a rename barrier reported success, that the file
// system under it has not failed meanwhile (see the package
// documentation, "File system failures"): a barrier's success alone does
// not prove it on ext4. There, once a journal commit has failed and jbd2
// has aborted the journal, an fsync(2) of a directory, or a syncfs(2),
// that starts after that commit finds no transaction to commit and
// returns 0 (jbd2's force commit: "Nothing to commit"; a file's fsync
// finds its transaction finished), although the renames that commit held
// are lost. ext4 itself notices the abort only when something next starts
// a journal handle: then it records the error (errors_count in
// /sys/fs/ext4/<dev>/) and makes itself read-only, and since Linux 6.15
// it does so with an internal flag (EXT4_FLAGS_EMERGENCY_RO) that
// statfs(2) does not show as ST_RDONLY. Measured on Linux 6.18 with a
// loop device whose writes were cut: the fsync of new/ after the failed
// one returned 0, statfs showed the file system writable, errors_count
// stayed 0, until a futimens(2) of new/ started a handle.
//
// So the check starts one itself, cheaply: it touches the times of the
// directory just synced (futimens(dir, NULL): the renames into it have
// just changed its mtime anyway), which makes ext4 notice an aborted
// journal, then reads errors_count. The check is shared, like the
// barriers, by the commits that ask for it while one runs (a GroupSync:
// a commit is covered by a check that started after its barrier
// returned), so it costs a few system calls per barrier group, not per
// message; FlushOrdered's barrier runs it itself, after its fsyncs, on
// the directory it synced (checkOpen). The zero value is ready to use;
// safe for concurrent use.
type fsHealth struct {
	runs GroupSync

	mu  sync.Mutex
	fss map[fsID]*fsState // file systems seen, with their error count then

	// Test seams; nil means the system's.
	statfs      func(fd int, st *unix.Statfs_t) error
	touch       func(fd int) error
	errorsCount func(dev uint64) (n int64, ok bool) // ok false: not known (no sysfs, not ext4)
}

// fsState is what the Store knows of one file system.
type fsState struct {
	// baseline is errors_count when the Store first saw the file system
	// (ext4 keeps the count in the superblock, across mounts, until
	// e2fsck clears it: only growth means a new error). -1: unknown.
	baseline int64
	logged   bool // the failure has been logged (once until it clears)
}

// FSError reports that the file system under a maildir failed after a
// flush barrier reported success: it went read-only, or it recorded a new
// error (ext4's errors_count). The delivery is not acknowledged: it fails
// with 451 4.3.0 (ReplyIOError), since nothing proves the message is on
// the disk.
type FSError struct {
	Dir    string // the directory checked
	Reason string // what was seen
	Err    error  // syscall.EROFS, syscall.EIO, or a system call's error
}

func (e *FSError) Error() string {
	return "maildir: " + e.Dir + ": the file system failed after the flush: " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *FSError) Unwrap() error { return e.Err }

// check runs the check for the barrier keyed key on dir (opened through
// l's FS), shared with concurrent commits on the same key. It returns nil
// when the file system is healthy or the FS gives no descriptor (a test
// FS), else ReplyIOError wrapping an *FSError, logged once per file system
// until it clears.
func (h *fsHealth) check(ctx context.Context, key string, l loc, dir string) error {
	err := h.runs.Sync(key, func() error {
		f, err := l.fs.OpenFile(dir, os.O_RDONLY, 0)
		if err != nil {
			return &FSError{Dir: l.show(dir), Reason: "cannot open the directory to check it", Err: err}
		}
		defer f.Close()
		return h.probeFile(ctx, f, l.show(dir))
	})
	if err != nil {
		return ReplyIOError.Wrap(err)
	}
	return nil
}

// checkOpen is check for a directory the caller holds open and has just
// synced, with nothing to share: FlushOrdered's barrier, whose run checks
// after its own fsyncs, for every Commit it covers, on the descriptor it
// synced (see orderedBarrier). dir names it in errors.
func (h *fsHealth) checkOpen(ctx context.Context, d File, dir string) error {
	if err := h.probeFile(ctx, d, dir); err != nil {
		return ReplyIOError.Wrap(err)
	}
	return nil
}

// probeFile is probe on an open directory, nil when the FS gives no
// descriptor (a test FS).
func (h *fsHealth) probeFile(ctx context.Context, d File, dir string) error {
	fd, ok := d.(fder)
	if !ok {
		return nil
	}
	return h.probe(ctx, int(fd.Fd()), dir)
}

// probe checks the file system of the directory fd, named dir in errors:
// statfs(2) for ST_RDONLY (a remount, and before Linux 6.15 ext4's own
// errors=remount-ro); on ext4 then two futimens(2) of the directory: the
// first one's journal handle makes ext4 notice an aborted journal (and
// make itself read-only, which the futimens itself does not report), the
// second is refused (EROFS) if it did; last the error count, which must
// not have grown since the Store first saw the file system (an error
// ext4 records without going read-only, with errors=continue).
func (h *fsHealth) probe(ctx context.Context, fd int, dir string) error {
	statfs, touch, count := h.statfs, h.touch, h.errorsCount
	if statfs == nil {
		statfs = unix.Fstatfs
	}
	if touch == nil {
		touch = touchFd
	}
	if count == nil {
		count = ext4ErrorsCount
	}
	var sf unix.Statfs_t
	if err := statfs(fd, &sf); err != nil {
		return &FSError{Dir: dir, Reason: "fstatfs", Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &FSError{Dir: dir, Reason: "fstat", Err: err}
	}
	id := fsID{dev: st.Dev, typ: int64(sf.Type), fsid: sf.Fsid}
	isExt4 := sf.Type == unix.EXT4_SUPER_MAGIC
	if !isExt4 {
		count = nil
	}
	s := h.state(id, count)
	if sf.Flags&unix.ST_RDONLY != 0 {
		return h.failed(ctx, s, &FSError{Dir: dir, Reason: "the file system is mounted read-only", Err: syscall.EROFS})
	}
	if !isExt4 {
		h.healthy(s)
		return nil
	}
	for range 2 {
		if err := touch(fd); err != nil {
			return h.failed(ctx, s, &FSError{Dir: dir, Reason: "ext4 refuses to update the directory's times (it went read-only)", Err: err})
		}
	}
	n, ok := count(id.dev)
	if !ok {
		h.healthy(s)
		return nil
	}
	h.mu.Lock()
	var fail *FSError
	switch {
	case s.baseline >= 0 && n > s.baseline:
		fail = &FSError{Dir: dir, Reason: fmt.Sprintf("ext4 recorded %d new error(s) since lmtpd first used it (errors_count %d, was %d; see dmesg)", n-s.baseline, n, s.baseline), Err: syscall.EIO}
	case s.baseline < 0 || n < s.baseline:
		// Unknown until now, or e2fsck cleared the count (the file
		// system was repaired and mounted again): count from here.
		s.baseline = n
	}
	h.mu.Unlock()
	if fail != nil {
		return h.failed(ctx, s, fail)
	}
	h.healthy(s)
	return nil
}

// healthy records that the file system passed a check: its next failure
// is logged again.
func (h *fsHealth) healthy(s *fsState) {
	h.mu.Lock()
	s.logged = false
	h.mu.Unlock()
}

// state returns the Store's record of the file system id, made on first
// sight with its error count then (count nil: none), read before this
// check's futimens, so that an error that futimens makes ext4 record
// counts as new.
func (h *fsHealth) state(id fsID, count func(uint64) (int64, bool)) *fsState {
	h.mu.Lock()
	s := h.fss[id]
	h.mu.Unlock()
	if s != nil {
		return s
	}
	s = &fsState{baseline: -1}
	if count != nil {
		if n, ok := count(id.dev); ok {
			s.baseline = n
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fss == nil {
		h.fss = map[fsID]*fsState{}
	}
	if old := h.fss[id]; old != nil {
		return old
	}
	h.fss[id] = s
	return s
}

// failed logs e once per file system until the file system is found
// healthy again, and returns it.
func (h *fsHealth) failed(ctx context.Context, s *fsState, e *FSError) error {
	h.mu.Lock()
	first := !s.logged
	s.logged = true
	h.mu.Unlock()
	if first {
		zerolog.Ctx(ctx).Error().Err(e).Str("maildir", e.Dir).
			Str("fix", "the maildir file system failed (see dmesg): its deliveries are deferred (451 4.3.0) until it is repaired (e2fsck) and mounted again").
			Msg("maildir file system failed after a flush reported success")
	}
	return e
}

// touchFd sets the times of fd to now: futimens(fd, NULL), which is
// utimensat(2) with a NULL path. Write permission suffices, which a
// delivery that just renamed into the directory has.
func touchFd(fd int) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// ext4Errors holds the open errors_count file of each ext4 device, read
// again with pread(2) for each check: one system call instead of three.
var ext4Errors = struct {
	sync.Mutex
	files map[uint64]*os.File
}{files: map[uint64]*os.File{}}

// ext4ErrorsCount returns /sys/fs/ext4/<dev>/errors_count of the device
// dev, the number of errors ext4 has recorded in the superblock (ok false
// if it cannot be read). A file left open from an earlier mount (its
// sysfs directory gone) is reopened once.
func ext4ErrorsCount(dev uint64) (int64, bool) {
	ext4Errors.Lock()
	defer ext4Errors.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		f := ext4Errors.files[dev]
		if f == nil {
			ue, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", unix.Major(dev), unix.Minor(dev)))
			if err != nil {
				return 0, false
			}
			name := ueventDevName(string(ue))
			if name == "" || strings.Contains(name, "/") || strings.Contains(name, "..") {
				return 0, false
			}
			if f, err = os.Open("/sys/fs/ext4/" + name + "/errors_count"); err != nil {
				return 0, false
			}
			ext4Errors.files[dev] = f
		}
		var b [32]byte
		k, _ := f.ReadAt(b[:], 0) // io.EOF with the whole text
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b[:k])), 10, 64); err == nil {
			return n, true
		}
		// Unreadable, or stale (the file system was unmounted since):
		// open it anew.
		f.Close()
		delete(ext4Errors.files, dev)
	}
	return 0, false
}
