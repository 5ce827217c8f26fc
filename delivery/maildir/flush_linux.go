package maildir

import (
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// syncfsCall is syncfs(2); tests replace it to watch or fail the barrier.
var syncfsCall = unix.Syncfs

// fder is the part of *os.File that gives the descriptor.
type fder interface{ Fd() uintptr }

// syncfsMagics are the file systems whose syncfs(2) writes back every
// dirty file and commits the metadata (journal or log included), so that
// one call is a barrier for all the files and renames made before it.
// Others (network file systems above all, whose syncfs need not reach the
// server) get FlushFsync.
var syncfsMagics = map[int64]bool{
	unix.EXT4_SUPER_MAGIC:  true, // ext2, ext3 and ext4 share it
	unix.XFS_SUPER_MAGIC:   true,
	unix.BTRFS_SUPER_MAGIC: true,
	unix.TMPFS_MAGIC:       true,
}

// syncfsReportsErrors: syncfs(2) returns write-back errors only since
// Linux 5.8; before, it returned 0 whatever happened.
var syncfsReportsErrors = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 8)
})

// kernelAtLeast reports whether the release string ("6.1.0-18-amd64")
// is major.minor or later.
func kernelAtLeast(release string, major, minor int) bool {
	f := strings.FieldsFunc(release, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(f[0])
	mi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// flushKey returns the barrier group of f, just created: with FlushSyncfs
// on a file system that allows it, the device (files on one file system
// share a syncfs); otherwise the one group of parallel fsyncs. kinds
// caches, per device, whether its file system allows syncfs.
func flushKey(mode FlushMode, kinds *sync.Map, f File) (key string, syncfs bool) {
	fd, ok := f.(fder)
	if mode != FlushSyncfs || !ok || !syncfsReportsErrors() {
		return "f", false
	}
	var st unix.Stat_t
	if unix.Fstat(int(fd.Fd()), &st) != nil {
		return "f", false
	}
	v, known := kinds.Load(st.Dev)
	if !known {
		var sf unix.Statfs_t
		v = unix.Fstatfs(int(fd.Fd()), &sf) == nil && syncfsMagics[int64(sf.Type)]
		kinds.Store(st.Dev, v)
	}
	if !v.(bool) {
		return "f", false
	}
	return "syncfs\x00" + strconv.FormatUint(st.Dev, 16), true
}

// syncfsFile runs syncfs(2) on the file system holding f.
func syncfsFile(f File) error {
	fd, ok := f.(fder)
	if !ok {
		return f.Sync()
	}
	if err := syncfsCall(int(fd.Fd())); err != nil {
		return &os.PathError{Op: "syncfs", Path: nameOf(f), Err: err}
	}
	return nil
}

// checkFile reports a write-back error of f since it was opened:
// syncfs(2) reports errors of the whole file system only since the
// descriptor it was given was opened, which may be later than f's. With
// nothing left to write (after the barrier) sync_file_range(2) does no
// I/O and no journal commit; it only checks the file's error state.
func checkFile(f File) error {
	fd, ok := f.(fder)
	if !ok {
		return nil
	}
	const wait = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	if err := unix.SyncFileRange(int(fd.Fd()), 0, 0, wait); err != nil {
		return &os.PathError{Op: "sync_file_range", Path: nameOf(f), Err: err}
	}
	return nil
}

func nameOf(f File) string {
	if n, ok := f.(interface{ Name() string }); ok {
		return n.Name()
	}
	return ""
}
