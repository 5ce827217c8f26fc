package quota

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// FileName is the Maildir++ quota file at the top of a maildir.
	FileName = "maildirsize"
	// maxFileSize: a maildirsize this long is recalculated (Maildir++,
	// Dovecot's MAILDIRSIZE read buffer).
	maxFileSize = 5120
	// staleAge: an over-quota maildirsize older than this is not trusted
	// (Dovecot's MAILDIRSIZE_STALE_SECS).
	staleAge = 15 * time.Minute
)

// Maildir is one user's maildir as quota sees it. Open it with Open; it is
// not safe for concurrent use (the Tracker serialises its users).
type Maildir struct {
	root   *os.Root
	limits Limits
	now    func() time.Time
	mode   os.FileMode
}

// Options are the parts of a Maildir that are not the limits.
type Options struct {
	// Now replaces time.Now (for the staleness rule); for tests.
	Now func() time.Time
	// FileMode is the mode of a maildirsize this package creates; 0 means
	// 0600.
	FileMode os.FileMode
}

// Open opens the maildir at dir with the configured limits. The maildir
// must exist.
func Open(dir string, l Limits, o Options) (*Maildir, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	m := &Maildir{root: r, limits: l, now: o.Now, mode: o.FileMode}
	if m.now == nil {
		m.now = time.Now
	}
	if m.mode == 0 {
		m.mode = 0o600
	}
	return m, nil
}

// Close releases the maildir.
func (m *Maildir) Close() error { return m.root.Close() }

// Usage returns what the maildir holds, from maildirsize, recalculating
// it first when the Maildir++ rules say so (see the package doc).
func (m *Maildir) Usage() (Usage, error) {
	u, ok, err := m.read()
	if err != nil {
		return Usage{}, err
	}
	if ok {
		return u, nil
	}
	return m.Recalculate()
}

// Add records a change of usage (a stored message: its size and 1) with
// one O_APPEND write. If maildirsize is missing or due for recalculation,
// it is recalculated instead; the scan then counts the stored message
// itself, so Add must be called after the message is in new/ or cur/.
func (m *Maildir) Add(d Usage) error {
	if d == (Usage{}) {
		return nil
	}
	if _, ok, err := m.read(); err != nil {
		return err
	} else if !ok {
		_, err := m.Recalculate()
		return err
	}
	f, err := m.root.OpenFile(FileName, os.O_WRONLY|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// Removed since we read it (an IMAP server recalculating).
		_, err = m.Recalculate()
		return err
	}
	if err != nil {
		return fmt.Errorf("quota: %w", err)
	}
	line := strconv.AppendInt(make([]byte, 0, 32), d.Bytes, 10)
	line = append(line, ' ')
	line = strconv.AppendInt(line, d.Messages, 10)
	line = append(line, '\n')
	_, werr := f.Write(line)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("quota: append to %s: %w", FileName, werr)
	}
	if cerr != nil {
		return fmt.Errorf("quota: %w", cerr)
	}
	return nil
}

// read reads maildirsize. ok is false when the file must be recalculated
// (missing, damaged, stale, limits changed, too long); err is set only
// for a failure that a recalculation could not mend either.
func (m *Maildir) read() (u Usage, ok bool, err error) {
	f, err := m.root.Open(FileName)
	if errors.Is(err, fs.ErrNotExist) {
		return Usage{}, false, nil
	}
	if err != nil {
		// Unreadable: recalculation writes a new one.
		return Usage{}, false, nil
	}
	defer f.Close()
	buf := make([]byte, maxFileSize+1)
	n, rerr := io.ReadFull(f, buf)
	if rerr != nil && rerr != io.ErrUnexpectedEOF && rerr != io.EOF {
		return Usage{}, false, nil
	}
	if n >= maxFileSize {
		return Usage{}, false, nil
	}
	st, serr := f.Stat()
	if serr != nil {
		return Usage{}, false, nil
	}
	u, lines, ok := parse(buf[:n], m.limits)
	if !ok {
		return Usage{}, false, nil
	}
	if m.limits.Bytes > 0 && u.Bytes > m.limits.Bytes || m.limits.Messages > 0 && u.Messages > m.limits.Messages {
		// Over quota: trust the figure only when it is fresh and
		// is a single summary (Maildir++; Dovecot's maildirsize_parse).
		if lines > 1 || st.ModTime().Before(m.now().Add(-staleAge)) {
			return Usage{}, false, nil
		}
	}
	return u, true, nil
}

// parse parses the contents of a maildirsize. lines is the number of
// change lines; ok is false when the file must be recalculated: no
// header, limits that differ from l, a NUL, a line that does not parse,
// or a negative total. A last line without LF is being written by
// someone else and is ignored.
func parse(b []byte, l Limits) (u Usage, lines int, ok bool) {
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else {
		return Usage{}, 0, false
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return Usage{}, 0, false
	}
	header, rest, _ := bytes.Cut(b, []byte{'\n'})
	got, _ := ParseLimits(string(header))
	if got != l {
		return Usage{}, 0, false
	}
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		f := strings.Fields(string(line))
		if len(f) < 2 {
			return Usage{}, 0, false
		}
		nb, err1 := strconv.ParseInt(f[0], 10, 64)
		nc, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return Usage{}, 0, false
		}
		u.Bytes += nb
		u.Messages += nc
		lines++
	}
	if u.Bytes < 0 || u.Messages < 0 {
		return Usage{}, 0, false
	}
	return u, lines, true
}

// errChanged: a directory changed while it was scanned.
var errChanged = errors.New("quota: maildir changed during recalculation")

// Recalculate scans the maildir (new/ and cur/ of INBOX and of every
// Maildir++ folder) and writes maildirsize anew, unless a directory
// changed during the scan: then the figure is returned but not written,
// as Dovecot does, and the next reader recalculates again.
func (m *Maildir) Recalculate() (Usage, error) {
	u, err := m.scan()
	if errors.Is(err, errChanged) {
		return u, nil
	}
	if err != nil {
		return Usage{}, err
	}
	return u, m.write(u)
}

// scan sums the maildir.
func (m *Maildir) scan() (Usage, error) {
	dirs := []string{"new", "cur"}
	top, err := m.root.Open(".")
	if err != nil {
		return Usage{}, fmt.Errorf("quota: %w", err)
	}
	ents, err := top.ReadDir(-1)
	top.Close()
	if err != nil {
		return Usage{}, fmt.Errorf("quota: read maildir: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		// Maildir++ folders: ".Name" directories (not "." or "..").
		if len(n) > 1 && n[0] == '.' && n != ".." && e.IsDir() {
			dirs = append(dirs, n+"/new", n+"/cur")
		}
	}
	var u Usage
	mtimes := make([]time.Time, len(dirs))
	for i, d := range dirs {
		st, err := m.root.Stat(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				continue
			}
			return Usage{}, fmt.Errorf("quota: %w", err)
		}
		mtimes[i] = st.ModTime()
		du, err := m.sumDir(d)
		if err != nil {
			return Usage{}, err
		}
		u = u.Add(du)
	}
	for i, d := range dirs {
		if mtimes[i].IsZero() {
			continue
		}
		if st, err := m.root.Stat(d); err != nil || !st.ModTime().Equal(mtimes[i]) {
			return u, errChanged
		}
	}
	return u, nil
}

// sumDir sums the messages of one new/ or cur/ directory.
func (m *Maildir) sumDir(dir string) (Usage, error) {
	f, err := m.root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Usage{}, nil
	}
	if err != nil {
		return Usage{}, fmt.Errorf("quota: %w", err)
	}
	defer f.Close()
	var u Usage
	for {
		ents, err := f.ReadDir(256)
		for _, e := range ents {
			name := e.Name()
			if size, ok := SizeFromName(name); ok {
				u.Bytes += size
				u.Messages++
				continue
			}
			st, err := m.root.Lstat(path.Join(dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue // expunged meanwhile
			}
			if err != nil {
				return Usage{}, fmt.Errorf("quota: %w", err)
			}
			u.Bytes += st.Size()
			u.Messages++
		}
		if err == io.EOF || len(ents) == 0 && err == nil {
			return u, nil
		}
		if err != nil {
			return Usage{}, fmt.Errorf("quota: read %s: %w", dir, err)
		}
	}
}

// SizeFromName returns the size a maildir file name carries in ",S=",
// Maildir++'s convention: digits after ",S=" up to ':', ',' or the end.
func SizeFromName(name string) (int64, bool) {
	i := strings.Index(name, ",S=")
	if i < 0 {
		return 0, false
	}
	s := name[i+3:]
	j := 0
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == 0 || j < len(s) && s[j] != ':' && s[j] != ',' {
		return 0, false
	}
	v, err := strconv.ParseInt(s[:j], 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// write replaces maildirsize with the limits and one summary line: a
// temporary file beside it, renamed over it.
func (m *Maildir) write(u Usage) error {
	tmp := fmt.Sprintf("%s.%s.%d.%d", FileName, hostname(), os.Getpid(), m.now().UnixNano())
	f, err := m.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, m.mode)
	if err != nil {
		return fmt.Errorf("quota: %w", err)
	}
	m.chownLikeMaildir(f)
	content := fmt.Sprintf("%s\n%d %d\n", m.limits, u.Bytes, u.Messages)
	_, werr := f.WriteString(content)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = m.root.Rename(tmp, FileName)
	}
	if werr != nil {
		_ = m.root.Remove(tmp)
		return fmt.Errorf("quota: write %s: %w", FileName, werr)
	}
	return nil
}

// chownLikeMaildir gives f the owner and group of the maildir when this
// process runs as root and they differ: a maildirsize lmtpd writes as
// root into a maildir owned by the mail user must stay readable and
// replaceable by that user's IMAP server. Failing to do so is not an
// error: the file still holds the right figures.
func (m *Maildir) chownLikeMaildir(f *os.File) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := m.root.Stat(".")
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != 0 || st.Gid != 0) {
		f.Chown(int(st.Uid), int(st.Gid))
	}
}

// hostname is the host part of temporary names, with '/' and '.' kept out.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return strings.NewReplacer("/", "_", ".", "_").Replace(h)
}
