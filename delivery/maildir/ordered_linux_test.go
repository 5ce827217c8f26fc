package maildir

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// TestOrderedChecks: the parts of the check that decides where
// FlushOrdered is safe, on the texts the kernel gives.
func TestOrderedChecks(t *testing.T) {
	const mi = `22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
45 27 7:0 / /mnt/a rw,relatime - ext4 /dev/loop0 rw
46 27 7:1 / /mnt/b rw - xfs /dev/loop1 rw,attr2
47 27 0:45 / /tmp rw,nosuid shared:20 - tmpfs tmpfs rw,size=100k
`
	for _, tt := range []struct {
		maj, mnr uint32
		want     string
	}{{253, 1, "ext4"}, {7, 0, "ext4"}, {7, 1, "xfs"}, {0, 45, "tmpfs"}, {7, 2, ""}} {
		if got := mountFSType(mi, tt.maj, tt.mnr); got != tt.want {
			t.Errorf("mountFSType(%d:%d) = %q, want %q", tt.maj, tt.mnr, got, tt.want)
		}
	}
	if got := ueventDevName("MAJOR=7\nMINOR=0\nDEVNAME=loop0\nDEVTYPE=disk\n"); got != "loop0" {
		t.Errorf("ueventDevName = %q", got)
	}
	if got := ueventDevName("MAJOR=7\n"); got != "" {
		t.Errorf("ueventDevName without DEVNAME = %q", got)
	}
	// /proc/fs/ext4/<dev>/options as Linux 6.x writes it for mkfs.ext4's
	// defaults.
	const dflt = "rw\nbsddf\nnogrpid\nblock_validity\ndioread_nolock\nnodiscard\ndelalloc\nnowarn_on_error\njournal_checksum\nbarrier\nauto_da_alloc\nuser_xattr\nacl\nnoquota\nresuid=0\nresgid=0\nerrors=continue\ncommit=5\nmin_batch_time=0\nmax_batch_time=15000\nstripe=0\ndata=ordered\ninode_readahead_blks=32\ninit_itable=10\nmax_dir_size_kb=0\n"
	for _, tt := range []struct {
		name, opts string
		ok         bool
	}{
		{"defaults", dflt, true},
		{"data=journal", strings.Replace(dflt, "data=ordered", "data=journal", 1), false},
		{"data=writeback", strings.Replace(dflt, "data=ordered", "data=writeback", 1), false},
		{"no journal (no data=)", strings.Replace(dflt, "data=ordered\n", "", 1), false},
		{"nobarrier", strings.Replace(dflt, "\nbarrier\n", "\nnobarrier\n", 1), false},
		{"journal_async_commit", dflt + "journal_async_commit\n", false},
	} {
		if why := ext4OptionsProblem(tt.opts); (why == "") != tt.ok {
			t.Errorf("options %s: %q, want ok=%v", tt.name, why, tt.ok)
		}
	}
	sb := func(compat, inum, dev uint32) []byte {
		b := make([]byte, 1024)
		binary.LittleEndian.PutUint16(b[ext4OffMagic:], ext4Magic)
		binary.LittleEndian.PutUint32(b[ext4OffFeatureCompat:], compat)
		binary.LittleEndian.PutUint32(b[ext4OffJournalInum:], inum)
		binary.LittleEndian.PutUint32(b[ext4OffJournalDevNum:], dev)
		return b
	}
	for _, tt := range []struct {
		name string
		sb   []byte
		ok   bool
	}{
		{"internal journal", sb(0x3c, 8, 0), true},
		{"fast_commit", sb(0x3c|ext4CompatFastCommit, 8, 0), false},
		{"no journal", sb(0x38, 0, 0), false},
		{"external journal", sb(0x3c, 0, 0x0801), false},
		{"not ext4", make([]byte, 1024), false},
		{"short", []byte{1, 2}, false},
	} {
		if why := ext4SuperProblem(tt.sb); (why == "") != tt.ok {
			t.Errorf("superblock %s: %q, want ok=%v", tt.name, why, tt.ok)
		}
	}
}

// orderedFS logs what the ordered write path does to files: writes and
// fsyncs of message files, fsyncs of directories, renames.
type orderedFS struct {
	FS
	mu      sync.Mutex
	log     []string
	fds     map[uintptr]string // open message files by descriptor
	syncErr error              // returned by fsyncs of message files (after logging them)
}

func (o *orderedFS) add(ev string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.log = append(o.log, ev)
	return len(o.log) - 1
}

type loggedFile struct {
	realFile
	o    *orderedFS
	name string
	dir  bool
}

func (f *loggedFile) Write(p []byte) (int, error) {
	n, err := f.realFile.Write(p)
	f.o.add("write " + f.name)
	return n, err
}

func (f *loggedFile) Sync() error {
	if f.dir {
		f.o.add("dirsync-start " + f.name)
		err := f.realFile.Sync()
		f.o.add("dirsync-end " + f.name)
		return err
	}
	f.o.add("fsync " + f.name)
	f.o.mu.Lock()
	err := f.o.syncErr
	f.o.mu.Unlock()
	if err != nil {
		return err
	}
	return f.realFile.Sync()
}

func (o *orderedFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := o.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	rf := f.(realFile)
	if flag == os.O_RDONLY {
		o.mu.Lock()
		o.fds[rf.Fd()] = name
		o.mu.Unlock()
		return &loggedFile{realFile: rf, o: o, name: name, dir: true}, nil
	}
	o.mu.Lock()
	o.fds[rf.Fd()] = path.Base(name)
	o.mu.Unlock()
	return &loggedFile{realFile: rf, o: o, name: path.Base(name)}, nil
}

func (o *orderedFS) Rename(old, new string) error {
	err := o.FS.Rename(old, new)
	o.add("rename " + path.Base(old))
	return err
}

// watchOrdered makes every file system pass the check and logs each
// sync_file_range in o, and the fsyncs of FlushOrdered's barrier, made
// through AIO (aioFsync: the directory's fsync and then the files', as
// loggedFile logs them, the files' failing with o.syncErr) or, with
// noAIO, through the Files' Sync (fsyncAfter).
func watchOrdered(t *testing.T, o *orderedFS, noAIO bool) {
	oldCheck, oldSfr, oldAIO := orderedCheck, sfrCall, aioFsyncCall
	orderedCheck = func(fsID) (bool, string) { return true, "" }
	aioFsyncCall = func(fds []int, errs []error) error {
		if noAIO {
			return errAIORefused
		}
		o.mu.Lock()
		names := make([]string, len(fds))
		for i, fd := range fds {
			names[i] = o.fds[uintptr(fd)]
		}
		syncErr := o.syncErr
		o.mu.Unlock()
		o.add("dirsync-start " + names[0])
		for _, name := range names[1:] {
			o.add("fsync " + name)
		}
		if err := oldAIO(fds, errs); err != nil {
			t.Errorf("aioFsync: %v", err)
			return err
		}
		for i := range errs[1:] {
			if syncErr != nil {
				errs[1+i] = syncErr
			}
		}
		o.add("dirsync-end " + names[0])
		return nil
	}
	sfrCall = func(fd int, off, n int64, flags int) error {
		o.mu.Lock()
		name := o.fds[uintptr(fd)]
		o.mu.Unlock()
		if flags != unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER || off != 0 || n != 0 {
			t.Errorf("sync_file_range(%d, %d, %#x): want the whole file, written and waited for", off, n, flags)
		}
		err := oldSfr(fd, off, n, flags)
		o.add("sfr " + name)
		return err
	}
	t.Cleanup(func() { orderedCheck, sfrCall, aioFsyncCall = oldCheck, oldSfr, oldAIO })
}

// TestOrderedBarrierOrder delivers from many goroutines at once with
// FlushOrdered and with FlushAuto where the check passes, and checks, for
// every message: its file was written back (sync_file_range) after its
// last write and before its rename, an fsync of a new/ of its file
// system (one for all the new/ directories a Commit and concurrent ones
// renamed into: on ext4 it commits the journal) started after the rename
// and ended before Commit returned, and the file itself was fsynced after
// that directory fsync started (submitted with it through AIO, or, where
// AIO is refused, after it ended) and before Commit returned, never
// before its rename. Links of a file for further recipients are renamed
// after the file's write-back too, and such a directory fsync follows
// them before the file's fsync.
func TestOrderedBarrierOrder(t *testing.T) {
	for _, mode := range []FlushMode{FlushOrdered, FlushAuto} {
		for _, noAIO := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v noAIO=%v", mode, noAIO), func(t *testing.T) { testOrderedBarrierOrder(t, mode, noAIO) })
		}
	}
}

func testOrderedBarrierOrder(t *testing.T, mode FlushMode, noAIO bool) {
	root := t.TempDir()
	r := NewRootFS(root)
	t.Cleanup(func() { r.Close() })
	o := &orderedFS{FS: r, fds: map[uintptr]string{}}
	watchOrdered(t, o, noAIO)
	s := newStore(t, Options{FS: o, Flush: mode})
	ctx := context.Background()
	const boxes, senders, each = 4, 8, 8
	for b := range boxes {
		if _, err := s.Deliver(ctx, Mailbox{Path: fmt.Sprintf("d/u%d", b)}, testContent); err != nil {
			t.Fatal(err)
		}
	}
	o.mu.Lock()
	o.log = nil
	o.mu.Unlock()
	var wg sync.WaitGroup
	var mu sync.Mutex
	returned := map[string]int{} // tmp name -> log index of the return
	dirOf := map[string]string{}
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				var sts []*Staged
				first, err := s.Stage(ctx, Mailbox{Path: fmt.Sprintf("d/u%d", (g+i)%boxes)}, testContent)
				if err != nil {
					t.Error(err)
					return
				}
				sts = append(sts, first)
				if i%2 == 1 { // a second recipient: a hard link
					st, err := s.Link(ctx, Mailbox{Path: fmt.Sprintf("d/u%d", (g+i+1)%boxes)}, first, testContent)
					if err != nil {
						t.Error(err)
						return
					}
					sts = append(sts, st)
				}
				for _, err := range s.Commit(ctx, sts...) {
					if err != nil {
						t.Error(err)
						return
					}
				}
				for k, st := range sts {
					name, _, _ := strings.Cut(path.Base(st.Path()), ",")
					idx := o.add("return " + name)
					mu.Lock()
					returned[name] = idx
					dirOf[name] = st.Dir() + "/new"
					if k > 0 {
						n0, _, _ := strings.Cut(path.Base(sts[0].Path()), ",")
						dirOf[name+" data"] = n0
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	o.mu.Lock()
	log := o.log
	o.mu.Unlock()
	at := func(ev string) int {
		for i, e := range log {
			if e == ev {
				return i
			}
		}
		return -1
	}
	for name, ret := range returned {
		data := name
		if d, ok := dirOf[name+" data"]; ok {
			data = d // a link: the first file's write-back covers it
		}
		sfr, ren, dataRen := at("sfr "+data), at("rename "+name), at("rename "+data)
		lastWrite := -1
		var fsyncs []int
		for i, e := range log {
			if e == "write "+data {
				lastWrite = i
			}
			if e == "fsync "+data {
				fsyncs = append(fsyncs, i)
			}
		}
		if sfr < 0 || ren < 0 || !(lastWrite < sfr && sfr < ren) {
			t.Errorf("%s: last write at %d, sync_file_range at %d, rename at %d: want them in that order", name, lastWrite, sfr, ren)
		}
		// The first fsync of a new/ that started after the rename, and
		// where it ended: any new/ of the file system (all are on one
		// here), since on ext4 a directory's fsync commits the journal.
		dirStart, dirEnd := -1, -1
		for i := ren + 1; i < ret && dirEnd < 0; i++ {
			if dir, ok := strings.CutPrefix(log[i], "dirsync-start "); ok && strings.HasSuffix(dir, "/new") {
				for j := i + 1; j < ret; j++ {
					if log[j] == "dirsync-end "+dir {
						dirStart, dirEnd = i, j
						break
					}
				}
			}
		}
		if dirEnd < 0 {
			t.Errorf("%s: no fsync of a new/ started after the rename (%d) and ended before the return (%d)", name, ren, ret)
			continue
		}
		if !slices.ContainsFunc(fsyncs, func(i int) bool { return dirStart < i && i < ret }) {
			t.Errorf("%s: no fsync of the file %s between the start of the fsync of a new/ (%d) and the return (%d); fsyncs at %v", name, data, dirStart, ret, fsyncs)
		}
		if slices.ContainsFunc(fsyncs, func(i int) bool { return i < dataRen }) {
			t.Errorf("%s: the file %s was fsynced before its rename (%d): fsyncs at %v", name, data, dataRen, fsyncs)
		}
	}
	if len(returned) != senders*each*3/2 {
		t.Errorf("%d deliveries checked, want %d", len(returned), senders*each*3/2)
	}
}

// TestOrderedFallback: which barrier FlushOrdered and FlushAuto give a
// file system, and what they log about it, once per file system: where
// the check fails, both are FlushFsync (the file fsynced before its
// rename, no sync_file_range), ordered with a warning and auto with an
// info line, each saying why; where it passes, both are FlushOrdered (the
// write-back before the rename, the file's fsync after it), auto saying
// so at info level and ordered saying nothing.
func TestOrderedFallback(t *testing.T) {
	for _, tt := range []struct {
		mode    FlushMode
		ok      bool
		level   string // of the one log line; "" for none
		message string
	}{
		{FlushOrdered, false, "warn", `flush = \"ordered\" is not safe on this file system`},
		{FlushAuto, false, "info", `this file system's deliveries use flush = \"fsync\"`},
		{FlushOrdered, true, "", ""},
		{FlushAuto, true, "info", `this file system's deliveries use flush = \"ordered\"`},
	} {
		t.Run(fmt.Sprintf("%v ok=%v", tt.mode, tt.ok), func(t *testing.T) {
			root := t.TempDir()
			r := NewRootFS(root)
			t.Cleanup(func() { r.Close() })
			o := &orderedFS{FS: r, fds: map[uintptr]string{}}
			watchOrdered(t, o, false)
			if !tt.ok {
				orderedCheck = func(fsID) (bool, string) { return false, "the file system is \"xfs\", not ext4" }
			}
			s := newStore(t, Options{FS: o, Flush: tt.mode})
			var logs bytes.Buffer
			ctx := zerolog.New(&logs).WithContext(context.Background())
			for range 3 {
				st, err := s.Deliver(ctx, Mailbox{Path: "u"}, testContent)
				if err != nil {
					t.Fatal(err)
				}
				name, _, _ := strings.Cut(path.Base(st.Path()), ",")
				fsync, ren, sfr := -1, -1, -1
				for i, e := range o.log {
					switch e {
					case "fsync " + name:
						fsync = i
					case "rename " + name:
						ren = i
					case "sfr " + name:
						sfr = i
					}
				}
				switch {
				case fsync < 0 || ren < 0:
					t.Errorf("%s: fsync at %d, rename at %d: want both", name, fsync, ren)
				case !tt.ok && (sfr >= 0 || fsync > ren):
					t.Errorf("%s: sync_file_range at %d, fsync at %d, rename at %d: want the fsync first and no sync_file_range", name, sfr, fsync, ren)
				case tt.ok && !(sfr >= 0 && sfr < ren && ren < fsync):
					t.Errorf("%s: sync_file_range at %d, rename at %d, fsync at %d: want them in that order", name, sfr, ren, fsync)
				}
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if tt.level == "" {
				if logs.Len() != 0 {
					t.Errorf("want no log, got:\n%s", logs.String())
				}
				return
			}
			if len(lines) != 1 || !strings.Contains(lines[0], `"level":"`+tt.level+`"`) || !strings.Contains(lines[0], tt.message) {
				t.Errorf("want one %s line saying %s, got:\n%s", tt.level, tt.message, logs.String())
			}
			if !tt.ok && !strings.Contains(logs.String(), "xfs") {
				t.Errorf("the log does not say why:\n%s", logs.String())
			}
		})
	}
}

// TestOrderedCheckExt4 runs the real check on ext4 file systems made on
// a loop device: mkfs.ext4's defaults pass; fast_commit, no journal, an
// external journal, data=journal and nobarrier do not; and the same when
// the device cannot be read (an unprivileged lmtpd), from /proc, except
// fast_commit, which /proc does not show. Needs root, losetup, mkfs.ext4 and mount.
func TestOrderedCheckExt4(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing", tool)
			}
			t.Skipf("SKIPPED: %s is missing", tool)
		}
	}
	if !syncfsReportsErrors() {
		t.Skip("SKIPPED: the kernel is older than 5.8: the check refuses every file system")
	}
	sh := func(t *testing.T, name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, tt := range []struct {
		name   string
		mkfs   []string
		mount  []string
		ok     bool
		reason string
		// procReason is the reason when the superblock is unreadable,
		// if not reason; "!": it passes then.
		procReason string
	}{
		{"defaults", nil, nil, true, "", ""},
		// /proc does not show fast_commit: see ext4ProcProblem.
		{"fast_commit", []string{"-O", "fast_commit"}, nil, false, "fast_commit", "!"},
		{"external journal", []string{"-b", "4096", "-J", "device=JOURNAL"}, nil, false, "another device", "no internal journal"},
		{"no journal", []string{"-O", "^has_journal"}, nil, false, "data=ordered", ""},
		{"data=journal", nil, []string{"-o", "data=journal"}, false, "data=ordered", ""},
		{"nobarrier", nil, []string{"-o", "nobarrier"}, false, "barriers", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			img, mnt := filepath.Join(dir, "img"), filepath.Join(dir, "mnt")
			os.Mkdir(mnt, 0o700)
			if err := os.WriteFile(img, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			os.Truncate(img, 32<<20)
			mkfs := slices.Clone(tt.mkfs)
			if i := slices.Index(mkfs, "device=JOURNAL"); i >= 0 {
				// An external journal on a loop device of its own.
				jimg := filepath.Join(dir, "journal")
				if err := os.WriteFile(jimg, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				os.Truncate(jimg, 8<<20)
				sh(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "journal_dev", jimg)
				jloop := sh(t, "losetup", "-f", "--show", jimg)
				t.Cleanup(func() { exec.Command("losetup", "-d", jloop).Run() })
				mkfs[i] = "device=" + jloop
			}
			sh(t, "mkfs.ext4", append(append([]string{"-q", "-F"}, mkfs...), img)...)
			loop := sh(t, "losetup", "-f", "--show", img)
			t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
			sh(t, "mount", append(append([]string{"-t", "ext4"}, tt.mount...), loop, mnt)...)
			t.Cleanup(func() { exec.Command("umount", mnt).Run() })
			id := pathFS(t, mnt)
			ok, why := checkOrdered(id)
			if ok != tt.ok || !strings.Contains(why, tt.reason) {
				t.Errorf("checkOrdered: %v, %q; want %v, %q", ok, why, tt.ok, tt.reason)
			}
			// The same file system for a process that cannot read the
			// device (User=lmtpd): the same answer, from /proc.
			read := readSuperblock
			readSuperblock = func(string) ([]byte, error) { return nil, os.ErrPermission }
			ok, why = checkOrdered(id)
			readSuperblock = read
			want, reason := tt.ok, tt.reason
			switch tt.procReason {
			case "":
			case "!": // passes: /proc cannot tell
				want, reason = true, ""
			default:
				reason = tt.procReason
			}
			if ok != want || !strings.Contains(why, reason) {
				t.Errorf("checkOrdered, superblock unreadable: %v, %q; want %v, %q", ok, why, want, reason)
			}
		})
	}
	// A tmpfs is refused by its type.
	if _, err := os.Stat("/dev/shm"); err == nil {
		if ok, why := checkOrdered(pathFS(t, "/dev/shm")); ok || !strings.Contains(why, "tmpfs") {
			t.Errorf("/dev/shm: %v, %q; want refused as tmpfs", ok, why)
		}
	}
}

// TestOrderedFileSync: with FlushOrdered, a file and its hard link for a
// second recipient are committed together or in two Commits; each Commit
// fsyncs the file once, with or after the fsync of the new/ it renamed
// into (through AIO, or without), and when that fsync fails, the Commit fails (451 4.3.0) and takes the
// message back out of new/ (the rename is done by then), leaving nothing
// in tmp/ either; a link committed later then fails without a second
// fsync, which might not report the error again.
func TestOrderedFileSync(t *testing.T) {
	for _, tt := range []struct {
		name     string
		together bool
		fail     bool
		noAIO    bool
	}{
		{"together", true, false, false},
		{"separately", false, false, false},
		{"together, the fsync fails", true, true, false},
		{"separately, the fsync fails", false, true, false},
		{"together, no AIO", true, false, true},
		{"separately, the fsync fails, no AIO", false, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			r := NewRootFS(root)
			t.Cleanup(func() { r.Close() })
			o := &orderedFS{FS: r, fds: map[uintptr]string{}}
			watchOrdered(t, o, tt.noAIO)
			s := newStore(t, Options{FS: o, Flush: FlushOrdered})
			ctx := context.Background()
			a, err := s.Stage(ctx, Mailbox{Path: "d/a"}, testContent)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Link(ctx, Mailbox{Path: "d/b"}, a, testContent)
			if err != nil {
				t.Fatal(err)
			}
			data, _, _ := strings.Cut(path.Base(a.Path()), ",")
			if tt.fail {
				o.syncErr = syscall.EIO
			}
			var errs []error
			if tt.together {
				errs = s.Commit(ctx, a, b)
			} else {
				errs = append(s.Commit(ctx, a), s.Commit(ctx, b)...)
			}
			for i, err := range errs {
				if tt.fail {
					if pe := protocol.AsError(err); pe == nil || pe.Code != 451 || pe.Enhanced().String() != "4.3.0" {
						t.Errorf("Commit %d: %v, want 451 4.3.0", i, err)
					}
				} else if err != nil {
					t.Errorf("Commit %d: %v", i, err)
				}
			}
			for _, box := range []string{"d/a", "d/b"} {
				want := 1
				if tt.fail {
					want = 0
				}
				if n := len(listDir(t, root, box+"/new")); n != want {
					t.Errorf("%s/new holds %d files, want %d", box, n, want)
				}
				if n := len(listDir(t, root, box+"/tmp")); n != 0 {
					t.Errorf("%s/tmp holds %d files, want none", box, n)
				}
			}
			// Each Commit's fsync of the file follows the start of the
			// fsync of the new/ it renamed into.
			fsyncs, lastDirStart := 0, -1
			for i, e := range o.log {
				switch {
				case strings.HasPrefix(e, "dirsync-start ") && strings.HasSuffix(e, "/new"):
					lastDirStart = i
				case e == "fsync "+data:
					fsyncs++
					if lastDirStart < 0 {
						t.Errorf("the file was fsynced at %d, before any fsync of new/", i)
					}
					lastDirStart = -1
				}
			}
			// A failed fsync is not retried for the link: the error
			// may not be reported twice.
			if want := map[bool]int{true: 2, false: 1}[!tt.together && !tt.fail]; fsyncs != want {
				t.Errorf("%d fsyncs of the file, want %d:\n%s", fsyncs, want, strings.Join(o.log, "\n"))
			}
		})
	}
}

// TestOrderedBarrierRuns: the barrier's group commit under contention.
// Every caller is answered only after a run that started after it asked
// and that fsynced its file, with the directory first; runs are shared;
// each caller gets its own file's result and the run's directory result;
// two file systems (keys) run independently; an idle barrier keeps
// nothing.
func TestOrderedBarrierRuns(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/new", "b/new"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	r := NewRootFS(root)
	t.Cleanup(func() { r.Close() })
	var clock atomic.Int64 // logical time
	type run struct {
		start, end int64
		fds        []int
	}
	var mu sync.Mutex
	var runs []run
	old := aioFsyncCall
	t.Cleanup(func() { aioFsyncCall = old })
	aioFsyncCall = func(fds []int, errs []error) error {
		start := clock.Add(1)
		var st unix.Stat_t
		if err := unix.Fstat(fds[0], &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			t.Errorf("the run's first descriptor is not a directory: %v", err)
		}
		err := old(fds, errs)
		for i, fd := range fds[1:] {
			if fd%2 == 1 {
				errs[1+i] = unix.EIO // odd descriptors fail, to check who gets what
			}
		}
		time.Sleep(200 * time.Microsecond)
		mu.Lock()
		runs = append(runs, run{start, clock.Add(1), slices.Clone(fds)})
		mu.Unlock()
		return err
	}
	var b orderedBarrier
	const callers, each = 32, 20
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			key, dir := "a", "a/new"
			if g%4 == 0 {
				key, dir = "b", "b/new"
			}
			f, err := r.OpenFile(fmt.Sprintf("%s/f%d", dir, g), os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			fd := int(f.(fder).Fd())
			for range each {
				asked := clock.Add(1)
				errs := []error{errors.New("not set")}
				if err := b.sync(context.Background(), key, loc{fs: r}, dir, []File{f}, errs); err != nil {
					t.Errorf("directory: %v", err)
				}
				answered := clock.Add(1)
				if want := fd%2 == 1; (errs[0] != nil) != want || (want && !errors.Is(errs[0], unix.EIO)) {
					t.Errorf("descriptor %d got %v", fd, errs[0])
				}
				mu.Lock()
				ok := slices.ContainsFunc(runs, func(r run) bool {
					return r.start > asked && r.end < answered && slices.Contains(r.fds[1:], fd)
				})
				mu.Unlock()
				if !ok {
					t.Errorf("caller asked at %d, answered at %d, without a run that fsynced its file", asked, answered)
				}
			}
		})
	}
	wg.Wait()
	if len(runs) >= callers*each {
		t.Errorf("%d runs for %d calls: no sharing", len(runs), callers*each)
	}
	t.Logf("%d runs for %d calls", len(runs), callers*each)
	if len(b.groups) != 0 {
		t.Errorf("an idle barrier keeps %d groups", len(b.groups))
	}
	// A directory that cannot be opened fails every caller of the run,
	// and no file is fsynced in vain.
	runs = nil
	f, err := r.OpenFile("a/new/g", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	errs := make([]error, 1)
	if err := b.sync(context.Background(), "a", loc{fs: r}, "gone/new", []File{f}, errs); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing directory: %v, want not-exist", err)
	}
	if len(runs) != 0 {
		t.Errorf("%d fsync runs without a directory", len(runs))
	}
}

// pathFS is the file system of path, as the Store learns it of a file.
func pathFS(t *testing.T, path string) fsID {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, err := fileFS(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return id
}
