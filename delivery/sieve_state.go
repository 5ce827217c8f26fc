package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/sieve"
)

// stateTracker remembers vacation replies and duplicate IDs of one user in
// SieveConfig.StateDir: a directory per user (domain/user, each one
// escaped path element, so no name leads outside the state directory),
// and in it one file per key, named by the key's SHA-256, holding the Unix
// time it was marked. Files are written to a temporary name, fsynced and
// renamed, so a crash leaves the old time or the new one. All access goes
// through an os.Root on StateDir. Marks older than stateMaxAge, which
// answer nothing, are removed by Mark once a day per user (prune).
type stateTracker struct {
	dir   string // StateDir
	user  string // domain/user, relative to dir
	now   func() time.Time
	marks *markCache // Seen's, shared by the trackers of one sieveStep; nil reads every time
}

var _ sieve.Tracker = (*stateTracker)(nil)

func newStateTracker(dir, domain, user string, now func() time.Time) *stateTracker {
	return &stateTracker{dir: dir, user: maildir.EscapeElement(domain) + "/" + maildir.EscapeElement(user), now: now}
}

func (t *stateTracker) file(key string) string {
	h := sha256.Sum256([]byte(key))
	return t.user + "/" + hex.EncodeToString(h[:])
}

// marked returns when key was marked, or the zero time.
func (t *stateTracker) marked(root *os.Root, key string) (time.Time, error) {
	return t.markedFile(root, t.file(key))
}

// markedFile returns the time in the state file name (relative to root),
// or the zero time if it is missing or damaged.
func (t *stateTracker) markedFile(root *os.Root, name string) (time.Time, error) {
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return time.Time{}, err
	}
	at, _ := parseMark(b) // damaged: as if never marked
	return at, nil
}

// Seen reports whether key was marked less than period ago. It reads the
// file by its plain path, which is confined lexically (escaped elements
// and a hex name under StateDir, a directory only lmtpd writes); Mark,
// which writes, goes through an os.Root.
//
// With a markCache, a file read before and unchanged since costs one stat,
// not an open and a read: the mark of a sender answered already is
// looked up at every message that sender sends.
func (t *stateTracker) Seen(_ context.Context, key string, period time.Duration) (bool, error) {
	path := filepath.Join(t.dir, filepath.FromSlash(t.file(key)))
	var fi fs.FileInfo
	if t.marks != nil {
		var err error
		fi, err = os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !fi.Mode().IsRegular() {
			fi = nil // read below, for its error
		} else if at, ok, hit := t.marks.get(path, fi); hit {
			return ok && t.now().Sub(at) < period, nil
		}
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	at, ok := parseMark(b)
	if fi != nil {
		t.marks.put(path, fi, at, ok)
	}
	if !ok {
		return false, nil // damaged: as if never marked
	}
	return t.now().Sub(at) < period, nil
}

// parseMark reads a state file's Unix time.
func parseMark(b []byte) (time.Time, bool) {
	sec, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// Mark records key as seen now. Unless restart, a mark still running
// (younger than period) is kept, so the period runs from the first time
// (duplicate without :last, RFC 7352 section 3).
func (t *stateTracker) Mark(key string, period time.Duration, restart bool) error {
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll(t.user, 0o700); err != nil {
		return err
	}
	now := t.now()
	if !restart {
		if at, err := t.marked(root, key); err == nil && !at.IsZero() && now.Sub(at) < period {
			return nil
		}
	}
	name := t.file(key)
	tmp := name + ".tmp" + strconv.Itoa(os.Getpid()) + strconv.FormatInt(now.UnixNano(), 36)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.FormatInt(now.Unix(), 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return err
	}
	t.prune(root, now)
	d, err := root.Open(t.user)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Unmark removes the mark of key, if any: for a vacation reply marked
// before it was sent whose sending then failed.
func (t *stateTracker) Unmark(key string) error {
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Remove(t.file(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// stateMaxAge is the age past which a mark answers no Seen, whatever the
// key: vacation's :days are capped at 60 days (sieve.Options'
// VacationMaxPeriod default, which lmtpd keeps), duplicate marks at 48
// hours (DuplicateMaxPeriod), redirects at redirectMemory. Mark removes
// older marks (prune), so that a user's directory, which gains a file
// per redirected message and per message a duplicate test saw, does not
// grow without bound.
const stateMaxAge = 61 * 24 * time.Hour

// pruneEvery is how often Mark scans a user's directory for old marks;
// pruneMarker, a file in it, holds the time of the last scan.
const (
	pruneEvery  = 24 * time.Hour
	pruneMarker = ".pruned"
)

// prune removes t's marks older than stateMaxAge, and temporary files
// older than a day (a crash between create and rename), at most once per
// pruneEvery. Removing a mark that old changes no answer of Seen or Mark.
// A mark renamed over the file between its check and its removal (a
// concurrent Mark of the same key) is lost: the next vacation reply or
// duplicate test of that key answers as if never marked. Errors are
// ignored: pruning is housekeeping.
func (t *stateTracker) prune(root *os.Root, now time.Time) {
	marker := t.user + "/" + pruneMarker
	if at, err := t.markedFile(root, marker); err == nil && !at.IsZero() && now.Sub(at) < pruneEvery && !now.Before(at) {
		return
	}
	d, err := root.Open(t.user)
	if err != nil {
		return
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || name == pruneMarker {
			continue
		}
		p := t.user + "/" + name
		before, err := root.Lstat(p)
		if err != nil {
			continue
		}
		var stale bool
		switch {
		case strings.Contains(name, ".tmp"):
			stale = now.Sub(before.ModTime()) > 24*time.Hour
		default:
			at, err := t.markedFile(root, p)
			if err != nil {
				continue
			}
			if at.IsZero() { // damaged: by its age
				at = before.ModTime()
			}
			stale = now.Sub(at) > stateMaxAge
		}
		if !stale {
			continue
		}
		if after, err := root.Lstat(p); err == nil && os.SameFile(before, after) {
			root.Remove(p)
		}
	}
	f, err := root.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	f.WriteString(strconv.FormatInt(now.Unix(), 10) + "\n")
	f.Close()
}

// markCache holds the marks stateTracker.Seen read, by file path, each
// valid while the file keeps its inode, device, size, modification and
// change times. Mark replaces a file by renaming a new one over it (a new
// inode), and any other change to it (a write, a chmod) moves its change
// time, so what Seen answers from the cache is what reading the file
// would give (short of an edit in place within the file system's clock
// tick of the read, which lmtpd never makes). The zero value is ready;
// it is safe for concurrent use.
type markCache struct {
	mu sync.Mutex
	m  map[string]markEntry
}

type markEntry struct {
	id fileStamp
	at time.Time
	ok bool // the file held a time (false: damaged)
}

// fileStamp identifies one version of a file.
type fileStamp struct {
	ino, dev     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

// stampOf returns the version of the file fi describes, and false where
// the system gives no inode and change time (the cache is then not used:
// size and modification time alone do not tell an edit in place).
func stampOf(fi fs.FileInfo) (fileStamp, bool) {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	var ok bool
	s.ino, s.dev, s.ctime, ok = statIdentity(fi)
	return s, ok
}

// maxCachedMarks bounds a markCache; past it, it is emptied.
const maxCachedMarks = 10000

// get returns the mark cached for path, with hit false unless fi is the
// version of the file it was read from. (put stores what was read after
// fi was taken: a file replaced in between leaves an entry only for the
// version that is gone, which no later stat matches.)
func (c *markCache) get(path string, fi fs.FileInfo) (at time.Time, ok, hit bool) {
	c.mu.Lock()
	e, found := c.m[path]
	c.mu.Unlock()
	if !found {
		return time.Time{}, false, false
	}
	if id, ok := stampOf(fi); !ok || e.id != id {
		return time.Time{}, false, false
	}
	return e.at, e.ok, true
}

func (c *markCache) put(path string, fi fs.FileInfo, at time.Time, ok bool) {
	id, known := stampOf(fi)
	if !known {
		return
	}
	e := markEntry{id: id, at: at, ok: ok}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedMarks {
		c.m = make(map[string]markEntry)
	}
	c.m[path] = e
	c.mu.Unlock()
}
