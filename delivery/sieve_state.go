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
// through an os.Root on StateDir.
type stateTracker struct {
	dir  string // StateDir
	user string // domain/user, relative to dir
	now  func() time.Time
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
	f, err := root.Open(t.file(key))
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
func (t *stateTracker) Seen(_ context.Context, key string, period time.Duration) (bool, error) {
	b, err := os.ReadFile(filepath.Join(t.dir, filepath.FromSlash(t.file(key))))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	at, ok := parseMark(b)
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
	d, err := root.Open(t.user)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
