package delivery

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lmtpd/lmtpd/delivery/maildir"
)

// DedupConfig configures idempotent delivery: a journal of recent
// deliveries so that a client that resends a transaction after losing the
// final reply (the classic LMTP duplicate, RFC 2033 section 4.2: "the
// message may be sent more than once") does not deliver a second copy.
// The resend still gets its 250.
//
// A delivery counts as a resend of an earlier one, and is skipped, only
// when all of these are equal within the window: the destination (a
// mailbox and folder, or a pipe command and recipient), the envelope
// sender, the Message-ID field (or its absence), and the content: every
// header field byte for byte except the Received field lmtpd itself puts
// on top, and the body. Anything that differs, a reused Message-ID with
// another text or another Subject included, is a different message and is
// delivered. Two messages without Message-ID with identical header and
// body are indistinguishable and count as one.
type DedupConfig struct {
	// Enabled turns the journal on. Default false.
	Enabled bool
	// Path is the journal file, an absolute path. Required when enabled.
	Path string
	// Window is how long a delivery is remembered; 0 means
	// DefaultDedupWindow.
	Window time.Duration
}

// DefaultDedupWindow is the journal window when DedupConfig.Window is 0:
// long enough for an MTA's first retries (Postfix retries after 5 to 15
// minutes), short enough that a message deliberately sent again a day
// later is delivered.
const DefaultDedupWindow = 2 * time.Hour

func (c *DedupConfig) window() time.Duration {
	if c.Window <= 0 {
		return DefaultDedupWindow
	}
	return c.Window
}

// journal remembers delivered (message, destination) keys. Entries are
// appended to a file and fsynced before add returns, that is before the
// 250 they stand for is sent: a client that resends after a power cut
// took the reply is recognised (tests/powercut_test.go asserts it).
// Concurrent adds share one fsync (group commit through
// maildir.GroupSync), so a burst of deliveries costs about one flush of
// the journal, not one each. Safe for concurrent use.
type journal struct {
	gs      maildir.GroupSync // fsyncs of f, keyed by path
	mu      sync.Mutex
	path    string
	f       *os.File
	seen    map[string]time.Time
	written int // lines in the file
	now     func() time.Time
	// syncFile fsyncs the journal file; a seam for tests, nil means
	// (*os.File).Sync.
	syncFile func(*os.File) error
}

// openJournal loads the journal at path, dropping entries older than
// window, and opens it for appending.
func openJournal(path string, window time.Duration, now func() time.Time) (*journal, error) {
	j := &journal{path: path, seen: make(map[string]time.Time), now: now}
	f, err := os.Open(path)
	switch {
	case err == nil:
		cutoff := now().Add(-window)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			ts, key, ok := strings.Cut(sc.Text(), " ")
			sec, err := strconv.ParseInt(ts, 10, 64)
			if !ok || err != nil || len(key) != 64 {
				continue // a line torn by a crash
			}
			if t := time.Unix(sec, 0); t.After(cutoff) {
				j.seen[key] = t
			}
			j.written++
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("dedup journal %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("dedup journal: %w", err)
	}
	if err := j.rewrite(); err != nil {
		return nil, err
	}
	return j, nil
}

// rewrite replaces the file with the live entries and reopens it for
// appending. Called with mu held (or before j is shared).
func (j *journal) rewrite() error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("dedup journal: %w", err)
	}
	w := bufio.NewWriter(f)
	for k, t := range j.seen {
		fmt.Fprintf(w, "%d %s\n", t.Unix(), k)
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("dedup journal: %w", err)
	}
	if d, err := os.Open(filepath.Dir(j.path)); err == nil {
		d.Sync()
		d.Close()
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, err = os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("dedup journal: %w", err)
	}
	j.written = len(j.seen)
	return nil
}

// dedupKeyVersion starts every message key. Journals written before it
// keyed on Message-ID and sender alone, which took a different message
// with a reused Message-ID for a resend; their lines stay readable (same
// format, a 64-digit hex key) and are kept until they leave the window,
// but no new key can equal one of them, so they never suppress a delivery.
// The cost of the change is at most one duplicate per message resent
// across the upgrade, the safe direction.
const dedupKeyVersion = "v2"

// dedupKey is the journal key of a message (delivery.messageKey), a sender
// and a destination.
func dedupKey(msgKey, sender, dest string) string {
	h := sha256.New()
	for _, s := range []string{msgKey, sender, dest} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// has reports whether key was recorded within window.
func (j *journal) has(key string, window time.Duration) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	t, ok := j.seen[key]
	return ok && j.now().Sub(t) < window
}

// add records keys and returns once they are on the disk (fsynced, or
// in a rewritten file that was). Failures to write or sync are returned
// for the log; the in-memory record is kept anyway.
func (j *journal) add(window time.Duration, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	err := j.append(window, keys)
	// The fsync runs outside mu so that other deliveries append their
	// lines meanwhile and share the next one. An fsync started after our
	// write covers it; if a rewrite closed the file in between, the
	// rewrite wrote our keys (they are in seen) into a file it fsynced
	// before renaming it into place.
	serr := j.gs.Sync(j.path, func() error {
		j.mu.Lock()
		f := j.f
		j.mu.Unlock()
		if f == nil {
			return errJournalClosed
		}
		sync := (*os.File).Sync
		if j.syncFile != nil {
			sync = j.syncFile
		}
		if err := sync(f); err != nil && !errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("dedup journal: %w", err)
		}
		return nil
	})
	if err == nil {
		err = serr
	}
	return err
}

// errJournalClosed is add's error after close.
var errJournalClosed = errors.New("dedup journal: closed")

// append writes the lines of keys (not synced) and rewrites the file when
// it has grown to twice its live entries.
func (j *journal) append(window time.Duration, keys []string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errJournalClosed
	}
	now := j.now()
	var b strings.Builder
	for _, k := range keys {
		j.seen[k] = now
		fmt.Fprintf(&b, "%d %s\n", now.Unix(), k)
	}
	_, err := j.f.WriteString(b.String())
	j.written += len(keys)
	if j.written > 2*len(j.seen)+1024 {
		cutoff := now.Add(-window)
		for k, t := range j.seen {
			if !t.After(cutoff) {
				delete(j.seen, k)
			}
		}
		if rerr := j.rewrite(); err == nil {
			err = rerr
		}
	}
	return err
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
