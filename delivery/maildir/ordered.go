package maildir

import (
	"context"
	"os"
	"sync"

	"github.com/rs/zerolog"
)

// orderedBarrier is FlushOrdered's barrier: per file system, one fsync of
// a new/ (on ext4 it commits the journal, and so every rename and link
// made before it) and, beside it, the fsyncs of the files those renames
// and links published, shared by concurrent Commits. A Commit is covered
// only by a run that started after it asked (after its renames), and
// runs of one file system follow one another: the Commits that ask while
// one runs make up the next, which starts as soon as it ends, from the
// goroutine that ran it, without waiting for a caller to be scheduled.
//
// The files are fsynced together with the directory, not after it: an
// fsync issued while the commit that carries the file's rename is being
// written waits for that commit and costs nothing more, where one issued
// after it issues a cache flush of its own (ext4_sync_file). On Linux
// the run submits the directory's fsync and then the files' in one
// io_submit(2) (aio_linux.go), so that they reach the file system within
// microseconds of each other, the directory first; elsewhere, or where
// AIO is refused, the files are fsynced after the directory.
//
// After its fsyncs, a run checks the file system (fsHealth) on the
// directory it synced, once for all its Commits: a barrier's success
// alone does not prove the renames kept (see fshealth_linux.go).
//
// The zero value is ready to use, without the check; safe for
// concurrent use.
type orderedBarrier struct {
	health *fsHealth // the check after each run; nil: none

	mu     sync.Mutex
	groups map[string]*orderedGroup
}

// orderedGroup is the state of one file system's barrier.
type orderedGroup struct {
	running bool        // a run is in progress
	next    *orderedRun // the Commits waiting for the run after it
}

// orderedRun is one barrier: a directory and the files of the Commits
// it covers.
type orderedRun struct {
	ctx    context.Context // the first Commit's: its logger says when the check fails
	l      loc
	dir    string  // the first Commit's new/ (or cur/): any of the file system will do
	files  []File  // every Commit's files, in the order they joined
	errs   []error // the files' results, once done is closed
	dirErr error   // the directory's result, once done is closed
	done   chan struct{}
}

// sync fsyncs dir (reached through l) and files, or joins a run of other
// Commits of the same file system (key) that has not started yet, and
// returns the directory's result, or the check's after it; the files'
// results are put in errs (len(files)).
func (b *orderedBarrier) sync(ctx context.Context, key string, l loc, dir string, files []File, errs []error) error {
	b.mu.Lock()
	if b.groups == nil {
		b.groups = make(map[string]*orderedGroup)
	}
	g := b.groups[key]
	if g == nil {
		g = &orderedGroup{}
		b.groups[key] = g
	}
	r := g.next
	if r == nil {
		r = &orderedRun{ctx: ctx, l: l, dir: dir, done: make(chan struct{})}
		g.next = r
	}
	off := len(r.files)
	r.files = append(r.files, files...)
	start := !g.running
	if start {
		g.running, g.next = true, nil
	}
	b.mu.Unlock()
	if start {
		go b.runFrom(key, g, r)
	}
	<-r.done
	copy(errs, r.errs[off:off+len(files)])
	return r.dirErr
}

// runFrom runs r, then each run that gathered meanwhile, until none did.
// An idle group is dropped, so that a file system no longer used leaves
// nothing behind.
func (b *orderedBarrier) runFrom(key string, g *orderedGroup, r *orderedRun) {
	for r != nil {
		r.errs = make([]error, len(r.files))
		r.dirErr = r.run(b.health)
		b.mu.Lock()
		next := g.next
		g.next = nil
		if next == nil {
			g.running = false
			delete(b.groups, key)
		}
		b.mu.Unlock()
		// Answered once the group is in order: when the last caller
		// returns, an idle barrier holds nothing.
		close(r.done)
		r = next
	}
}

// run opens the directory, fsyncs it and the files together
// (fsyncTogether), checks the file system on it (h, if not nil) and
// closes it again.
func (r *orderedRun) run(h *fsHealth) error {
	d, err := r.l.fs.OpenFile(r.dir, os.O_RDONLY, 0)
	if err != nil {
		// No barrier: the files' Commits fail and take them back, so
		// their fsyncs would be of no use.
		return err
	}
	err = fsyncTogether(d, r.files, r.errs)
	if why := aioRefused(); why != "" {
		aioLogged.Do(func() {
			zerolog.Ctx(r.ctx).Info().Str("reason", why).
				Msg("flush = \"ordered\": asynchronous fsync (Linux AIO) is refused here: each file is fsynced after its directory, a cache flush more per message")
		})
	}
	if err == nil && h != nil {
		err = h.checkOpen(r.ctx, d, r.l.show(r.dir))
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// aioLogged makes the refusal of AIO logged once per process.
var aioLogged sync.Once

// fsyncAfter fsyncs dir, then files in parallel, with each file's result
// in errs: fsyncTogether where the files cannot be submitted with the
// directory. A file's fsync then finds its commit done and issues a
// cache flush of its own.
func fsyncAfter(dir File, files []File, errs []error) error {
	err := dir.Sync()
	r := flushReq{errs: make([]error, len(files))}
	for _, f := range files {
		r.files = append(r.files, &stagedFile{f: f})
	}
	fsyncBatch([]*flushReq{&r})
	copy(errs, r.errs)
	return err
}
