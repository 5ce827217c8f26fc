package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maildirStore delivers the way a competent LDA on go-smtp does, with the
// fsyncs lmtpd makes per delivery but without lmtpd's group commit (one
// directory fsync shared by concurrent deliveries):
//
//   - link mode (the default, the benchmark's fair reference): the message
//     is streamed once from the client into the first recipient's tmp/ and
//     fsynced; every further recipient gets a hard link of that file in its
//     own tmp/ (no copy, no second file fsync: the data and inode are
//     already on disk); then, recipient after recipient, the file is
//     renamed into new/ and new/ is fsynced. Every copy holds the same
//     bytes, so Delivered-To: is written only when there is one recipient,
//     as Dovecot and lmtpd (delivered_to = "single") do.
//   - copy mode (-copy): a separate file per recipient with its own
//     Delivered-To: line, created in tmp/, written, fsynced, renamed into
//     new/ and new/ fsynced before the next one; the message is read from
//     the client into the first recipient's file and copied from there.
//
// The links are made from the first file while it is still in tmp/, where
// nobody but this delivery touches it (a mail reader may move a file out
// of new/ at any time), so the system calls and fsyncs are those of "link
// into tmp/, rename into new/, fsync new/" for each further recipient.
//
// Mailboxes are root/<domain>/<local part>/ (created on first use).
// A maildirStore is safe for concurrent use.
type maildirStore struct {
	root string
	host string // maildir file name host part, with '/' and ':' escaped
	pid  int
	seq  atomic.Uint64
	made sync.Map // mailbox directory -> struct{}, once tmp/ new/ cur/ exist
	copy bool     // copy mode: a file per recipient instead of hard links

	// syncFile and syncDir make data durable; tests replace them to fail.
	syncFile func(*os.File) error
	syncDir  func(path string) error
	// link makes a hard link; tests replace it to fail.
	link func(oldname, newname string) error
}

func newMaildirStore(root string) (*maildirStore, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", root)
	}
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	return &maildirStore{root: root, host: host, pid: os.Getpid(),
		syncFile: (*os.File).Sync, syncDir: fsyncDir, link: os.Link}, nil
}

// fsyncDir makes the directory entries of path durable.
func fsyncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// errBadAddress rejects a recipient that cannot name a mailbox.
var errBadAddress = errors.New("recipient is not local@domain with safe parts")

// mailbox returns the directory for rcpt, checking that neither part can
// leave the root. It does not touch the file system.
func (m *maildirStore) mailbox(rcpt string) (string, error) {
	local, domain, ok := strings.Cut(rcpt, "@")
	if !ok || !safeElement(local) || !safeElement(domain) {
		return "", errBadAddress
	}
	return filepath.Join(m.root, strings.ToLower(domain), local), nil
}

// safeElement accepts a non-empty path element without separators that
// does not start with a dot (so neither "." nor ".." nor a hidden name).
func safeElement(s string) bool {
	return s != "" && s[0] != '.' && !strings.ContainsAny(s, "/\\\x00")
}

// ensure creates the maildir's tmp/, new/ and cur/ once per process.
func (m *maildirStore) ensure(dir string) error {
	if _, ok := m.made.Load(dir); ok {
		return nil
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	m.made.Store(dir, struct{}{})
	return nil
}

// name returns a unique maildir file name (cr.yp.to/proto/maildir.html).
func (m *maildirStore) name() string {
	now := time.Now()
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, m.pid, m.seq.Add(1), m.host)
}

// prefix is the header lines an LDA prepends for one recipient.
func prefix(from, rcpt string) string {
	return "Return-Path: <" + from + ">\r\nDelivered-To: " + rcpt + "\r\n"
}

// deliver reads the message from r and delivers it to every recipient, by
// hard links or (copy mode) copies. It returns one error per recipient
// (nil: delivered). If r fails, nothing is delivered and every error is
// r's.
func (m *maildirStore) deliver(from string, rcpts []string, r io.Reader) []error {
	errs := make([]error, len(rcpts))
	if len(rcpts) == 0 {
		io.Copy(io.Discard, r) // go-smtp requires r to be consumed
		return errs
	}
	if m.copy {
		return m.deliverCopies(from, rcpts, r, errs)
	}
	return m.deliverLinks(from, rcpts, r, errs)
}

// failAll drains r after a failed first write (go-smtp requires r to be
// consumed, and the client's data may be unread) and sets every error.
func failAll(errs []error, err error, r io.Reader) []error {
	if _, derr := io.Copy(io.Discard, r); derr != nil {
		err = derr
	}
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// deliverLinks writes the message once into the first recipient's tmp/,
// links it into every further recipient's tmp/, then commits each
// recipient's file in RCPT order.
func (m *maildirStore) deliverLinks(from string, rcpts []string, r io.Reader, errs []error) []error {
	head := "Return-Path: <" + from + ">\r\n"
	if len(rcpts) == 1 {
		head = prefix(from, rcpts[0])
	}
	first, _, err := m.write(rcpts[0], head, r)
	if err != nil {
		return failAll(errs, err, r)
	}
	first.Close()
	tmps := make([]string, len(rcpts))
	tmps[0] = first.Name()
	for i, rcpt := range rcpts[1:] {
		tmps[i+1], errs[i+1] = m.linkInto(first.Name(), rcpt)
	}
	for i, tmp := range tmps {
		if errs[i] == nil {
			errs[i] = m.commit(tmp, rcpts[i])
		}
	}
	return errs
}

// linkInto hard-links src into rcpt's tmp/ under a new unique name and
// returns that path.
func (m *maildirStore) linkInto(src, rcpt string) (string, error) {
	dir, err := m.mailbox(rcpt)
	if err != nil {
		return "", err
	}
	if err := m.ensure(dir); err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, "tmp", m.name())
	if err := m.link(src, tmp); err != nil {
		return "", err
	}
	return tmp, nil
}

// deliverCopies delivers a separate copy to every recipient, one after
// the other.
func (m *maildirStore) deliverCopies(from string, rcpts []string, r io.Reader, errs []error) []error {
	// The first copy takes the message from the client.
	first, bodyAt, err := m.write(rcpts[0], prefix(from, rcpts[0]), r)
	if err != nil {
		return failAll(errs, err, r)
	}
	defer first.Close()
	errs[0] = m.commit(first.Name(), rcpts[0])
	for i, rcpt := range rcpts[1:] {
		if _, err := first.Seek(bodyAt, io.SeekStart); err != nil {
			errs[i+1] = err
			continue
		}
		f, _, err := m.write(rcpt, prefix(from, rcpt), first)
		if err != nil {
			errs[i+1] = err
			continue
		}
		f.Close()
		errs[i+1] = m.commit(f.Name(), rcpt)
	}
	return errs
}

// write creates a file in rcpt's tmp/, writes head and then body into it
// and fsyncs it. It returns the open file and the offset where the body
// starts; on an error the file is removed.
func (m *maildirStore) write(rcpt, head string, body io.Reader) (*os.File, int64, error) {
	dir, err := m.mailbox(rcpt)
	if err != nil {
		return nil, 0, err
	}
	if err := m.ensure(dir); err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "tmp", m.name()), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, 0, err
	}
	_, err = io.WriteString(f, head)
	if err == nil {
		_, err = io.Copy(f, body)
	}
	if err == nil {
		err = m.syncFile(f)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, int64(len(head)), nil
}

// commit renames the tmp/ file into new/ and fsyncs new/.
func (m *maildirStore) commit(tmpPath, rcpt string) error {
	dir := filepath.Dir(filepath.Dir(tmpPath))
	newDir := filepath.Join(dir, "new")
	if err := os.Rename(tmpPath, filepath.Join(newDir, filepath.Base(tmpPath))); err != nil {
		os.Remove(tmpPath)
		return err
	}
	if err := m.syncDir(newDir); err != nil {
		return fmt.Errorf("%s: %w", rcpt, err)
	}
	return nil
}
