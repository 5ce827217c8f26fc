// Package passwd is a Directory of the system's accounts, as Postfix's
// local(8) and Dovecot's userdb passwd see them: a recipient's local
// part is a login name, its mail goes to a maildir in its home
// directory, delivered as its uid and gid.
//
// Accounts come from the name service (os/user: NSS through the C
// library when lmtpd is built with cgo, /etc/passwd otherwise), or from a
// file in passwd(5) format when Options.Path is set. Only accounts with
// MinUID <= uid <= MaxUID and not in Exclude are users; the others, and
// accounts whose home is not an absolute directory other than "/", are
// ErrNotFound, so system accounts never receive mail this way.
//
// Records are marked Trusted: the mailbox lies in the user's home, not
// under the maildir root, and the path comes from the system's account
// database. It is always the home joined with a relative path (Mailbox),
// never a path the account names otherwise.
//
// System passwords live in shadow(5), which lmtpd does not read:
// LookupPassword is always ErrNotFound. There are no aliases here
// (/etc/aliases is the MTA's).
package passwd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lmtpd/lmtpd/directory"
)

// Defaults of Options. Debian gives normal users uids 1000 to 59999;
// nobody is 65534.
const (
	DefaultMinUID  = 1000
	DefaultMaxUID  = 59999
	DefaultMailbox = "{home}/Maildir"
)

// Options configures a passwd directory.
type Options struct {
	// Name is the directory's name, for logs and errors.
	Name string
	// Path, if set, is a passwd(5) file read instead of the name
	// service (re-read when it changes), for tests and chroots.
	Path string
	// MinUID and MaxUID bound the uids that are users; 0 means the
	// defaults. MinUID < 0 allows every uid from 0 (tests only).
	MinUID, MaxUID int
	// Exclude lists login names that are never users (root, say).
	Exclude []string
	// Mailbox is the maildir, "{home}/" followed by a relative path;
	// "" means DefaultMailbox.
	Mailbox string
}

// Dir is a passwd Directory. It is safe for concurrent use.
type Dir struct {
	o       Options
	min     int
	max     int
	maildir string // the relative path after {home}/

	mu    sync.Mutex
	mtime time.Time
	size  int64
	users map[string]account // from Path
}

type account struct {
	name     string
	uid, gid int
	home     string
}

var _ directory.Directory = (*Dir)(nil)

// New checks the options and, with Path set, reads the file.
func New(o Options) (*Dir, error) {
	d := &Dir{o: o, min: o.MinUID, max: o.MaxUID}
	if d.min == 0 {
		d.min = DefaultMinUID
	} else if d.min < 0 {
		d.min = 0
	}
	if d.max == 0 {
		d.max = DefaultMaxUID
	}
	if d.min > d.max {
		return nil, fmt.Errorf("passwd: min_uid %d is above max_uid %d", d.min, d.max)
	}
	mb := o.Mailbox
	if mb == "" {
		mb = DefaultMailbox
	}
	rel, ok := strings.CutPrefix(mb, "{home}/")
	if !ok || rel == "" || path.IsAbs(rel) || rel != path.Clean(rel) || rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(rel, "{") {
		return nil, fmt.Errorf(`passwd: mailbox %q: want "{home}/" followed by a relative path inside the home, such as %q`, mb, DefaultMailbox)
	}
	d.maildir = rel
	if o.Path != "" {
		if _, err := d.file(context.Background()); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Name returns the directory's name.
func (d *Dir) Name() string { return d.o.Name }

// file returns the accounts of Path, reading it again if it changed.
func (d *Dir) file(ctx context.Context) (map[string]account, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(d.o.Path)
	if err != nil {
		return nil, fmt.Errorf("passwd: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.users != nil && fi.ModTime().Equal(d.mtime) && fi.Size() == d.size {
		return d.users, nil
	}
	data, err := os.ReadFile(d.o.Path)
	if err != nil {
		return nil, fmt.Errorf("passwd: %w", err)
	}
	users, err := parse(d.o.Path, data)
	if err != nil {
		return nil, err
	}
	d.users, d.mtime, d.size = users, fi.ModTime(), fi.Size()
	return users, nil
}

// parse reads passwd(5) lines: name:password:uid:gid:gecos:home:shell.
func parse(name string, data []byte) (map[string]account, error) {
	users := make(map[string]account)
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			continue // NIS compat entries are the name service's business
		}
		f := strings.Split(line, ":")
		if len(f) != 7 {
			return nil, fmt.Errorf("passwd %s line %d: %d fields, want 7", name, n, len(f))
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
			return nil, fmt.Errorf("passwd %s line %d: uid or gid is not a number", name, n)
		}
		if _, dup := users[f[0]]; !dup { // the first entry wins, as getpwnam's
			users[f[0]] = account{name: f[0], uid: uid, gid: gid, home: f[5]}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("passwd %s: %w", name, err)
	}
	return users, nil
}

// lookup finds the account for a login name: nil when there is none.
func (d *Dir) lookup(ctx context.Context, name string) (*account, error) {
	if d.o.Path != "" {
		users, err := d.file(ctx)
		if err != nil {
			return nil, err
		}
		if a, ok := users[name]; ok {
			return &a, nil
		}
		return nil, nil
	}
	// The name service may block (LDAP, sssd): wait no longer than ctx.
	type result struct {
		a   *account
		err error
	}
	ch := make(chan result, 1)
	go func() {
		u, err := user.Lookup(name)
		var unknown user.UnknownUserError
		switch {
		case errors.As(err, &unknown):
			ch <- result{}
			return
		case err != nil:
			ch <- result{err: fmt.Errorf("passwd: %w", err)}
			return
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			ch <- result{err: fmt.Errorf("passwd: user %s: non-numeric uid %q or gid %q", name, u.Uid, u.Gid)}
			return
		}
		ch <- result{a: &account{name: u.Username, uid: uid, gid: gid, home: u.HomeDir}}
	}()
	select {
	case r := <-ch:
		return r.a, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("passwd: looking up %s: %w", name, ctx.Err())
	}
}

// validName reports whether s can be a login name at all (shadow's
// rules, loosely: no '/', ':', NUL, space, and not "." or ".."), so a
// hostile local part never reaches the name service.
func validName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 256 || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		return false
	}
	return !strings.ContainsAny(s, "/:\x00 \t\r\n,")
}

// LookupUser returns the account named by k.LocalPart (the local part
// without detail), if it is a user by MinUID, MaxUID and Exclude.
func (d *Dir) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	name := k.LocalPart
	if !validName(name) || slices.Contains(d.o.Exclude, name) {
		return directory.Record{}, directory.ErrNotFound
	}
	a, err := d.lookup(ctx, name)
	if err != nil {
		return directory.Record{}, err
	}
	return d.record(a)
}

// record makes the record of an account, or ErrNotFound if it is not a
// user (nil, uid out of range, no usable home).
func (d *Dir) record(a *account) (directory.Record, error) {
	if a == nil || a.uid < d.min || a.uid > d.max {
		return directory.Record{}, directory.ErrNotFound
	}
	home := filepath.Clean(a.home)
	if !filepath.IsAbs(a.home) || home == "/" {
		return directory.Record{}, directory.ErrNotFound // no home to deliver into
	}
	return directory.Record{
		Mailbox: filepath.Join(home, d.maildir),
		Home:    home,
		UID:     a.uid,
		GID:     a.gid,
		Trusted: true,
	}, nil
}

// LookupAlias always returns ErrNotFound.
func (d *Dir) LookupAlias(ctx context.Context, k directory.Key) ([]string, error) {
	return nil, directory.ErrNotFound
}

// LookupPassword always returns ErrNotFound: lmtpd does not read
// shadow(5).
func (d *Dir) LookupPassword(ctx context.Context, k directory.Key) (string, error) {
	return "", directory.ErrNotFound
}

// Check reads the file (with Path) or asks the name service for root,
// which every system has.
func (d *Dir) Check(ctx context.Context) error {
	if d.o.Path != "" {
		_, err := d.file(ctx)
		return err
	}
	a, err := d.lookup(ctx, "root")
	if err != nil {
		return err
	}
	if a == nil {
		return errors.New("passwd: the name service does not know root")
	}
	return nil
}

// Close does nothing: there is nothing to release.
func (d *Dir) Close() error { return nil }
