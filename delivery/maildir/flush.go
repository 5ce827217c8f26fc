package maildir

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// FlushMode chooses the barrier that makes the files staged by concurrent
// deliveries durable before they are renamed into new/ (see the package
// documentation, "Write path").
type FlushMode int

const (
	// FlushAuto, the default (the zero value), is FlushOrdered on a file
	// system where its check passes (ext4 with an internal journal in
	// data=ordered mode, barriers, no fast_commit, Linux 5.8 or later)
	// and FlushFsync on any other. Either way the file and its new/ are
	// fsynced, successfully, before Commit reports success; FlushOrdered
	// does it in an order that costs one journal commit per group of
	// concurrent deliveries instead of two. Which one a file system gets,
	// and why, is logged once per file system, at its first delivery.
	FlushAuto FlushMode = iota
	// FlushFsync: each Commit fsyncs its own staged files (in parallel
	// when it has several, at most maxParallelFsyncs at once) without
	// waiting for other deliveries (the kernel folds fsyncs that overlap
	// into one journal commit; a user-space batch across deliveries was
	// measured slower at 8 connections), and fsyncs each new/ after the
	// renames, once for all concurrent commits into it. Two journal
	// commits in sequence per message: the file's, then the directory's.
	FlushFsync
	// FlushSyncfs makes each barrier one syncfs(2) of the file system,
	// shared by every delivery waiting on it, where syncfs reports write
	// errors (Linux 5.17 and later: before, a failed journal commit
	// could go unreported) and the file system is one whose
	// syncfs is known to commit everything (ext4, XFS, Btrfs, tmpfs);
	// elsewhere it falls back to FlushFsync. The same barrier also makes
	// the renames durable, so one syncfs serves the files of the
	// deliveries that arrived while the last one ran and the renames of
	// those it covered, however many new/ directories they went to. It
	// costs fewer journal commits per message when messages have several
	// recipients, but each syncfs takes longer than an fsync (on ext4 it
	// commits twice under load and hands write-back to a kernel thread),
	// so a single-recipient load gets fewer messages through (measured in
	// bench/README.md), and it flushes everything dirty on the file
	// system, other programs' data too.
	FlushSyncfs
	// FlushOrdered fsyncs the file and its new/ as FlushFsync does, but
	// in the order that lets one journal commit carry them both, on ext4
	// with a journal in data=ordered mode, with barriers, without
	// fast_commit and without an external journal, Linux 5.8 or later
	// (checked per file system; FlushFsync elsewhere, with a warning).
	// First sync_file_range(2) with WAIT_BEFORE|WRITE|WAIT_AFTER of the
	// staged file: its data is written and waited for, and its block
	// allocation is in the running journal transaction, but nothing is
	// committed. Then the rename (and links), which also mark the file's
	// inode in the running transaction (its change time). Then the fsync
	// of a new/, which on ext4 commits the running transaction, so every
	// rename and link on the file system before it and every transaction
	// before theirs (the allocation's), with
	// a cache flush before the commit record that covers the data written
	// before. With it, submitted right after it, the fsync of the file,
	// whose last change (the rename) that commit carries: it waits for
	// the same commit and costs no flush of its own (orderedBarrier).
	// Since a directory's fsync commits the whole journal, one
	// fsync of one new/ serves every new/ of the file system that
	// concurrent Commits renamed into (five recipients: one directory
	// fsync, not five, each of which would force a commit of its own).
	// See the package documentation, "Ordered flush", for why this holds
	// on that file system and nowhere else.
	FlushOrdered
)

// String returns the mode's name in the configuration.
func (m FlushMode) String() string {
	switch m {
	case FlushAuto:
		return "auto"
	case FlushOrdered:
		return "ordered"
	case FlushSyncfs:
		return "syncfs"
	case FlushFsync:
		return "fsync"
	}
	return fmt.Sprintf("FlushMode(%d)", int(m))
}

// ParseFlushMode returns the mode named s ("auto", "fsync", "syncfs" or
// "ordered"; "" is the default, auto).
func ParseFlushMode(s string) (FlushMode, error) {
	switch s {
	case "", "auto":
		return FlushAuto, nil
	case "fsync":
		return FlushFsync, nil
	case "syncfs":
		return FlushSyncfs, nil
	case "ordered":
		return FlushOrdered, nil
	}
	return 0, fmt.Errorf("maildir: flush mode %q: want auto, fsync, syncfs or ordered", s)
}

// barrierKind is how a staged file's data barrier is made.
type barrierKind uint8

const (
	barrierFsync   barrierKind = iota // fsync(2) before the rename (FlushFsync)
	barrierSyncfs                     // syncfs(2) of its file system (FlushSyncfs)
	barrierOrdered                    // sync_file_range(2), no commit; fsync(2) with new/'s (FlushOrdered)
)

// stagedFile is the data of a staged message: the file written into tmp/,
// held open until its barrier has made it durable, and shared by the hard
// links made of it (they are the same inode).
type stagedFile struct {
	f      File
	key    string        // the barrier group: the file system; see flushKey
	kind   barrierKind   // how the group's barrier is made
	syncfs bool          // kind == barrierSyncfs
	refs   int           // Staged values using it
	done   bool          // the data is durable
	err    error         // the barrier failed for it (then it is not done)
	open   *atomic.Int64 // the Store's count of open staged files
}

// release drops one reference and closes the file with the last one.
func (d *stagedFile) release() {
	d.refs--
	if d.refs == 0 && d.f != nil {
		d.close()
	}
}

// close closes the file, which is open.
func (d *stagedFile) close() error {
	err := d.f.Close()
	d.f = nil
	d.open.Add(-1)
	return err
}

// maxOpenStaged bounds the staged files a Store holds open for their
// barrier (see Store.write): one transaction holds one per copy (up to
// max_recipients), and many run at once, while the process has a limit
// of descriptors (RLIMIT_NOFILE; EMFILE fails deliveries). Past it a
// file is fsynced and closed when staged, on its own: slower, but
// bounded. 1024 is far above what concurrent deliveries of a few copies
// each hold, and far below the usual limits (Go raises the soft limit to
// the hard one, often 2^19 or more). Tests lower it.
var maxOpenStaged int64 = 1024

// flushReq is one Commit's files of one key, and the error of each once
// flushed.
type flushReq struct {
	files []*stagedFile
	errs  []error
}

// maxParallelFsyncs bounds the fsyncs one fsyncBatch (one Commit's
// files) has in flight at once. Each blocked fsync holds an OS thread and
// one transaction may stage a file per recipient (up to max_recipients):
// one goroutine per file could run into Go's limit of 10,000 threads,
// which kills the process. 64 is enough for the kernel's folding (fsyncs
// that overlap a running journal commit all wait for the next one,
// whatever their number) and to keep a device queue (NVMe, RAID) busy
// with the files' write-back, and small next to the thread limit.
const maxParallelFsyncs = 64

// fsyncBatch fsyncs every file of the batch in parallel, at most
// maxParallelFsyncs at once, and waits for all: the kernel (ext4's jbd2)
// folds fsyncs that overlap into one journal commit, so issuing them
// together costs about one commit.
func fsyncBatch(batch []*flushReq) {
	type job struct {
		r *flushReq
		i int
	}
	var jobs []job
	for _, r := range batch {
		for i := range r.files {
			jobs = append(jobs, job{r, i})
		}
	}
	if len(jobs) == 1 {
		// A lone file (no concurrent delivery): no goroutine needed.
		j := jobs[0]
		j.r.errs[j.i] = j.r.files[j.i].f.Sync()
		return
	}
	// A fixed set of workers taking the next file: no more threads
	// blocked in fsync than workers.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(jobs), maxParallelFsyncs) {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= len(jobs) {
					return
				}
				j := jobs[k]
				j.r.errs[j.i] = j.r.files[j.i].f.Sync()
			}
		})
	}
	wg.Wait()
}
