package maildir

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
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

// Kernel versions the flush modes need.
const (
	// syncfs(2) reports the errors a barrier must see only since Linux
	// 5.17: 5.8 added the file system's write-back errors (errseq), but
	// until 5.17 __sync_filesystem ignored the return value of the file
	// system's ->sync_fs, which is where a failed journal commit (ext4,
	// XFS) comes from; a syncfs could then return 0 with nothing
	// committed.
	syncfsMajor, syncfsMinor = 5, 17
	// FlushOrdered does not use syncfs: its commit is the fsync of new/,
	// whose journal commit errors fsync has always returned; 5.8 is for
	// its data step, sync_file_range(2) and the file's write-back errors.
	orderedMajor, orderedMinor = 5, 8
)

// kernelRelease is the running kernel's release string, "" if unknown.
var kernelRelease = sync.OnceValue(func() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
})

// syncfsReportsErrors: the kernel's syncfs(2) reports write-back and
// journal commit errors (see syncfsMajor).
func syncfsReportsErrors() bool {
	return kernelAtLeast(kernelRelease(), syncfsMajor, syncfsMinor)
}

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

// fsID names a mounted file system. The device number alone does not:
// anonymous ones (tmpfs, Btrfs subvolumes, NFS, FUSE, overlayfs) are
// reused after an unmount, so a file system mounted later in the place of
// another (a home remounted, of another type) may have its number. The
// type and f_fsid (which some file systems derive from their UUID) tell
// them apart; the check costs one fstatfs(2) per file.
type fsID struct {
	dev  uint64
	typ  int64
	fsid unix.Fsid
}

// fileFS returns the file system of the open file fd and its type.
func fileFS(fd int) (fsID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fsID{}, err
	}
	var sf unix.Statfs_t
	if err := unix.Fstatfs(fd, &sf); err != nil {
		return fsID{}, err
	}
	return fsID{dev: st.Dev, typ: int64(sf.Type), fsid: sf.Fsid}, nil
}

// key is the barrier group of the file system's syncfs.
func (id fsID) key() string { return "syncfs\x00" + id.String() }

// String names the file system in barrier keys.
func (id fsID) String() string {
	return fmt.Sprintf("%x:%x:%x:%x", id.dev, uint64(id.typ), uint32(id.fsid.Val[0]), uint32(id.fsid.Val[1]))
}

// flushKey returns the barrier group of f, just created: with FlushSyncfs
// on a file system that allows it (by its type, asked of each file, see
// fsID), the file system (files on one share a syncfs); otherwise the one
// group of parallel fsyncs.
func flushKey(mode FlushMode, f File) (key string, syncfs bool) {
	fd, ok := f.(fder)
	if mode != FlushSyncfs || !ok || !syncfsReportsErrors() {
		return "f", false
	}
	id, err := fileFS(int(fd.Fd()))
	if err != nil || !syncfsMagics[id.typ] {
		return "f", false
	}
	return id.key(), true
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

// sfrCall is sync_file_range(2); tests replace it to watch the ordered
// data step.
var sfrCall = unix.SyncFileRange

// orderedFile runs the data step of FlushOrdered on f: its dirty pages
// written and waited for (SYNC_FILE_RANGE_WAIT_BEFORE|WRITE|WAIT_AFTER),
// which on ext4 also completes the block allocation (and the conversion
// of unwritten extents) into the running journal transaction, and reports
// the file's write-back errors. It commits nothing.
func orderedFile(f File) error {
	fd, ok := f.(fder)
	if !ok {
		return f.Sync()
	}
	const wait = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	if _, err := retryEINTR(func() (int, error) { return 0, sfrCall(int(fd.Fd()), 0, 0, wait) }); err != nil {
		return &os.PathError{Op: "sync_file_range", Path: nameOf(f), Err: err}
	}
	return nil
}

// orderedCheck reports whether FlushOrdered is safe on the file system
// id, and if not, why. Tests replace it.
var orderedCheck = checkOrdered

// checkOrdered: ext4 (from /proc/self/mountinfo), mounted with
// data=ordered and barriers and without journal_async_commit (from
// /proc/fs/ext4/<dev>/options, which lists every option in force, the
// defaults included), with an internal journal (from the superblock, or
// from /proc where the device is unreadable: ext4ProcProblem), on Linux
// 5.8 or later (see orderedMajor), and, where the superblock shows it,
// without fast_commit.
func checkOrdered(id fsID) (bool, string) {
	if !kernelAtLeast(kernelRelease(), orderedMajor, orderedMinor) {
		return false, "the kernel is older than 5.8"
	}
	maj, mnr := unix.Major(id.dev), unix.Minor(id.dev)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err.Error()
	}
	if t := mountFSType(string(mi), maj, mnr); t != "ext4" || id.typ != unix.EXT4_SUPER_MAGIC {
		if t == "" || t == "ext4" {
			// Not found by device (Btrfs, for one, gives its files a
			// device number of each subvolume's own): by its type.
			t = fsMagicName(id.typ)
		}
		return false, fmt.Sprintf("the file system is %q, not ext4", t)
	}
	ue, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", maj, mnr))
	if err != nil {
		return false, err.Error()
	}
	name := ueventDevName(string(ue))
	if name == "" || strings.Contains(name, "..") {
		return false, fmt.Sprintf("no device name for %d:%d", maj, mnr)
	}
	opts, err := os.ReadFile("/proc/fs/ext4/" + name + "/options")
	if err != nil {
		return false, err.Error()
	}
	if why := ext4OptionsProblem(string(opts)); why != "" {
		return false, why
	}
	sb, err := readSuperblock("/dev/" + name)
	if err != nil {
		// An unprivileged lmtpd (the packaged unit's User=lmtpd, with
		// PrivateDevices) cannot read the device: decide from /proc.
		why := ext4ProcProblem(name)
		if why != "" {
			why += " (the superblock is unreadable: " + err.Error() + ")"
		}
		return why == "", why
	}
	return ext4SuperProblem(sb) == "", ext4SuperProblem(sb)
}

// readSuperblock returns the 1024-byte ext4 superblock of the device at
// path. Tests replace it to play an unprivileged process.
var readSuperblock = func(path string) ([]byte, error) {
	dv, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer dv.Close()
	sb := make([]byte, 1024)
	if _, err := dv.ReadAt(sb, 1024); err != nil {
		return nil, err
	}
	return sb, nil
}

// jbd2Proc is where jbd2 lists its journals; tests replace it.
var jbd2Proc = "/proc/fs/jbd2"

// ext4ProcProblem makes the superblock's check from what /proc shows any
// user, for a process that cannot read the device: an internal journal is
// named after its device and journal inode ("<dev>-<inum>"; an external
// one after the journal's device alone), so a "<dev>-*" entry in
// /proc/fs/jbd2 proves one. Whether the file system has fast_commit,
// which ext4SuperProblem refuses, /proc does not show; it is let through
// here, because the power-cut test lost acknowledged messages on an ext4
// with fast_commit with flush = "fsync" as well as with "ordered" (Linux
// 6.18): refusing it would not make such a file system safe, and an
// administrator who made one for mail should know (see README.md).
func ext4ProcProblem(dev string) string {
	if internal, _ := filepath.Glob(filepath.Join(jbd2Proc, dev+"-*")); len(internal) == 0 {
		return "no internal journal listed in " + jbd2Proc
	}
	return ""
}

// fsMagicName names a file system by its statfs(2) type, for messages:
// the common ones by name, others by number.
func fsMagicName(typ int64) string {
	switch typ {
	case unix.EXT4_SUPER_MAGIC:
		return "ext2/ext3/ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	case unix.F2FS_SUPER_MAGIC:
		return "f2fs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlay"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	case unix.CIFS_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC:
		return "cifs"
	case 0x2fc12fc1:
		return "zfs"
	}
	return fmt.Sprintf("type %#x", typ)
}

// mountFSType returns the file system type of a mount of device maj:mnr
// in mountinfo (proc(5): field 3 is major:minor, the type follows "-").
func mountFSType(mountinfo string, maj, mnr uint32) string {
	want := fmt.Sprintf("%d:%d", maj, mnr)
	for line := range strings.Lines(mountinfo) {
		f := strings.Fields(line)
		if len(f) < 3 || f[2] != want {
			continue
		}
		for i, x := range f {
			if x == "-" && i+1 < len(f) {
				return f[i+1]
			}
		}
	}
	return ""
}

// ueventDevName returns DEVNAME from a block device's uevent file.
func ueventDevName(uevent string) string {
	for line := range strings.Lines(uevent) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "DEVNAME="); ok {
			return v
		}
	}
	return ""
}

// ext4OptionsProblem checks the options in force (/proc/fs/ext4/<dev>/options,
// one a line): the journal must order data before metadata commits
// (data=ordered), commit records must follow a cache flush (barrier), and
// the commit record must not be written ahead of the blocks it commits
// (journal_async_commit).
func ext4OptionsProblem(opts string) string {
	has := map[string]bool{}
	for _, o := range strings.Fields(opts) {
		has[o] = true
	}
	switch {
	case !has["data=ordered"]:
		return "not mounted with data=ordered (a journal in ordered mode)"
	case has["nobarrier"] || has["barrier=0"] || !has["barrier"]:
		return "mounted without barriers"
	case has["journal_async_commit"]:
		return "mounted with journal_async_commit"
	}
	return ""
}

// The ext4 superblock fields checkOrdered needs (offsets in the 1024-byte
// superblock; Documentation/filesystems/ext4/super.rst).
const (
	ext4Magic            = 0xEF53
	ext4CompatHasJournal = 0x4
	ext4CompatFastCommit = 0x400
	ext4OffMagic         = 0x38
	ext4OffFeatureCompat = 0x5C
	ext4OffJournalInum   = 0xE0
	ext4OffJournalDevNum = 0xE4
)

// ext4SuperProblem checks a superblock: ext4, with an internal journal
// (an external one is flushed separately from the data device), without
// fast_commit (see ext4ProcProblem).
func ext4SuperProblem(sb []byte) string {
	if len(sb) < 1024 || binary.LittleEndian.Uint16(sb[ext4OffMagic:]) != ext4Magic {
		return "no ext4 superblock on the device"
	}
	compat := binary.LittleEndian.Uint32(sb[ext4OffFeatureCompat:])
	switch {
	case compat&ext4CompatHasJournal == 0:
		return "the file system has no journal"
	case compat&ext4CompatFastCommit != 0:
		return "the file system has fast_commit"
	case binary.LittleEndian.Uint32(sb[ext4OffJournalInum:]) == 0 || binary.LittleEndian.Uint32(sb[ext4OffJournalDevNum:]) != 0:
		return "the journal is on another device"
	}
	return ""
}

// orderedKey returns the barrier group of f, just created, under
// FlushOrdered or FlushAuto: "o" and the file system (each file's own
// sync_file_range; the file system's one directory barrier, see Commit)
// where the file system allows it, else "f" (FlushFsync) and the reason; first
// is true the first time a file system is checked, so that the answer is
// logged once per file system. kinds caches the answer per file system
// (fsID: not the device alone, which a file system mounted later in its
// place may inherit).
func orderedKey(kinds *sync.Map, f File) (key string, ok bool, why string, first bool) {
	fd, isFd := f.(fder)
	if !isFd {
		return "f", false, "the file system gives no descriptors", false
	}
	id, err := fileFS(int(fd.Fd()))
	if err != nil {
		return "f", false, err.Error(), false
	}
	v, known := kinds.Load(id)
	if !known {
		ok, why := orderedCheck(id)
		v, known = kinds.LoadOrStore(id, orderedAnswer{ok: ok, why: why, key: "o\x00" + id.String()})
		first = !known
	}
	a := v.(orderedAnswer)
	if !a.ok {
		return "f", false, a.why, first
	}
	return a.key, true, "", first
}

type orderedAnswer struct {
	ok  bool
	why string
	key string // the barrier group, made once: not a Sprintf per message
}

// aioFsyncCall is aioFsync; tests replace it to watch or fail the fsyncs.
var aioFsyncCall = aioFsync

// fsyncTogether fsyncs dir and then files, with each file's result in
// errs, for FlushOrdered's barrier (see orderedBarrier): all in one
// io_submit(2), the directory first, so that the files' fsyncs wait for
// the journal commit the directory's starts; where AIO is refused (or a
// File has no descriptor), as fsyncAfter.
func fsyncTogether(dir File, files []File, errs []error) error {
	fds, ok := descriptors(dir, files)
	if !ok {
		return fsyncAfter(dir, files, errs)
	}
	all := make([]error, len(fds))
	if aioFsyncCall(fds, all) != nil {
		return fsyncAfter(dir, files, errs)
	}
	for i, f := range files {
		errs[i] = pathError("sync", f, all[1+i])
	}
	return pathError("sync", dir, all[0])
}

// descriptors returns the descriptors of dir and files, in that order,
// if every one has one.
func descriptors(dir File, files []File) ([]int, bool) {
	fds := make([]int, 1+len(files))
	for i := range fds {
		f := dir
		if i > 0 {
			f = files[i-1]
		}
		fd, ok := f.(fder)
		if !ok {
			return nil, false
		}
		fds[i] = int(fd.Fd())
	}
	return fds, true
}

// pathError names f in a failed system call's error, as *os.File's
// methods do; nil stays nil.
func pathError(op string, f File, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op, Path: nameOf(f), Err: err}
}
