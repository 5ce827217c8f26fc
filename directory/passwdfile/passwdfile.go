// Package passwdfile is a Directory over a Dovecot passwd-file:
//
//	user:password:uid:gid:(gecos):home:(shell):extra_fields
//
// one user a line, as Dovecot's passdb and userdb passwd-file drivers
// read it (doc.dovecot.org, "Passwd-file"), so a file copied from a
// Dovecot setup works unchanged. Empty lines and lines starting with '#'
// are ignored.
//
// The first field is the full address, or a local part alone, which
// then matches that local part in every domain served from the file.
// Entries are lower-cased (lmtpd lower-cases keys) unless CaseSensitive.
//
// The password field is "{SCHEME}hash", a bare crypt(3) hash (Dovecot
// assumes CRYPT), or libpam-pwdfile's "hash[13]" (CRYPT) and "hash[34]"
// (MD5-CRYPT); LookupPassword returns it with its scheme prefix. An empty
// password, "*", "x" or one starting with '!' means no login.
//
// uid, gid and home set the record's fields. The extra fields are
// space-separated key=value pairs; keys starting with "userdb_" set
// result fields by the rest of their name: userdb_mail (Dovecot's mail
// location: maildir:~/Maildir becomes the mailbox), userdb_home,
// userdb_quota_rule (*:storage=1G:messages=1000, Dovecot's units),
// userdb_sieve, userdb_forward, userdb_uid, userdb_gid, and lmtpd's own
// names (userdb_mailbox, userdb_quota_bytes, userdb_quota_messages).
// Dovecot's variables (%u %n %d %h) expand in them. Every other field is
// warned about once, at load: userdb fields land in the record's Extra,
// passdb fields (no prefix) are ignored, as lmtpd has no use for them.
//
// The file is read at New, and again at the first lookup after its
// modification time, size or inode changes. A file that cannot be parsed
// at New is an error; one that breaks later is logged and the last good
// contents stay in use until it is fixed. A file that cannot be read at
// all fails lookups (a temporary failure, never "no such user").
package passwdfile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/rs/zerolog"
)

// Options configures a passwd-file directory.
type Options struct {
	// Name is the directory's name, for logs and metrics.
	Name string
	// Path is the file.
	Path string
	// CaseSensitive keeps the first field as written; by default it is
	// lower-cased, as lmtpd lower-cases the keys it looks up.
	CaseSensitive bool
	// Log receives the warnings about unknown fields and reload errors.
	// The zero Logger logs nothing.
	Log zerolog.Logger
}

// Dir is a passwd-file Directory. It is safe for concurrent use.
type Dir struct {
	o    Options
	warn *directory.FieldWarner

	mu      sync.RWMutex
	state   fileState
	byAddr  map[string]*entry // entries whose first field has an '@'
	byLocal map[string]*entry // entries that are a local part alone
	badSeen fileState         // the broken version last logged
	badErr  error             // why badSeen does not parse
	closed  bool
}

// fileState identifies one version of the file.
type fileState struct {
	mtime time.Time
	size  int64
	ino   uint64
}

type entry struct {
	line     int
	user     string
	password string
	fields   map[string]string // result fields by name (uid, gid, home and userdb_*)
}

var (
	_ directory.Directory = (*Dir)(nil)
	// ErrClosed is returned by lookups after Close.
	ErrClosed = errors.New("passwd-file: directory closed")
)

// New reads the file. Errors name the file and line.
func New(o Options) (*Dir, error) {
	if o.Path == "" {
		return nil, errors.New("passwd-file: path is empty")
	}
	d := &Dir{o: o, warn: &directory.FieldWarner{Log: o.Log, Directory: o.Name}}
	st, err := stat(o.Path)
	if err != nil {
		return nil, err
	}
	if err := d.load(st); err != nil {
		return nil, err
	}
	return d, nil
}

func stat(path string) (fileState, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}, fmt.Errorf("passwd-file: %w", err)
	}
	st := fileState{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// load parses the file and, if it is good, makes it current. Called with
// d.mu held for writing, or before d is shared.
func (d *Dir) load(st fileState) error {
	data, err := os.ReadFile(d.o.Path)
	if err != nil {
		return fmt.Errorf("passwd-file: %w", err)
	}
	byAddr, byLocal, unknown, err := d.parse(data)
	if err != nil {
		return err
	}
	d.warn.Warn(unknown)
	d.byAddr, d.byLocal, d.state = byAddr, byLocal, st
	d.badSeen, d.badErr = fileState{}, nil
	return nil
}

func (d *Dir) parse(data []byte) (byAddr, byLocal map[string]*entry, unknown []string, err error) {
	byAddr, byLocal = make(map[string]*entry), make(map[string]*entry)
	seenUnknown := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		e, unk, err := d.parseLine(line, n)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("passwd-file %s line %d: %w", d.o.Path, n, err)
		}
		for _, u := range unk {
			if !seenUnknown[u] {
				seenUnknown[u] = true
				unknown = append(unknown, u)
			}
		}
		m := byLocal
		if strings.Contains(e.user, "@") {
			m = byAddr
		}
		if prev, dup := m[e.user]; dup {
			d.o.Log.Warn().Str("directory", d.o.Name).Str("path", d.o.Path).Str("user", e.user).
				Int("line", n).Int("first_line", prev.line).Msg("passwd-file: user listed twice; the first entry is used")
			continue
		}
		m[e.user] = e
	}
	if err := sc.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("passwd-file %s line %d: %w", d.o.Path, n+1, err)
	}
	return byAddr, byLocal, unknown, nil
}

// parseLine parses one entry and checks that its fields make a record.
func (d *Dir) parseLine(line string, n int) (*entry, []string, error) {
	f := strings.SplitN(line, ":", 8) // extra fields may hold colons
	for len(f) < 8 {
		f = append(f, "")
	}
	e := &entry{line: n, user: f[0], password: f[1], fields: make(map[string]string)}
	if e.user == "" {
		return nil, nil, errors.New("empty user field")
	}
	if strings.ContainsAny(e.user, " \t\x00") {
		return nil, nil, fmt.Errorf("user %q contains a space or NUL", e.user)
	}
	if !d.o.CaseSensitive {
		e.user = strings.ToLower(e.user)
	} else if at := strings.LastIndexByte(e.user, '@'); at >= 0 {
		e.user = e.user[:at] + strings.ToLower(e.user[at:])
	}
	var err error
	if f[2] != "" {
		if e.fields[directory.FieldNameUID], err = resolveID(f[2], false); err != nil {
			return nil, nil, err
		}
	}
	if f[3] != "" {
		if e.fields[directory.FieldNameGID], err = resolveID(f[3], true); err != nil {
			return nil, nil, err
		}
	}
	if f[5] != "" {
		e.fields[directory.FieldNameHome] = f[5]
	}
	var unknown []string
	for _, kv := range strings.Fields(f[7]) {
		k, v, _ := strings.Cut(kv, "=")
		name, ok := strings.CutPrefix(k, "userdb_")
		if !ok {
			unknown = append(unknown, k) // a passdb field: nothing lmtpd does with it
			continue
		}
		switch name {
		case directory.FieldNameUID:
			v, err = resolveID(v, false)
		case directory.FieldNameGID:
			v, err = resolveID(v, true)
		}
		if err != nil {
			return nil, nil, err
		}
		e.fields[name] = v
	}
	// Check the record now, for the entry's own address, so a bad value
	// is a load error and not a failure at delivery time.
	_, unk, err := directory.NewRecord(directory.KeyFor(e.user), e.fields)
	if err != nil {
		return nil, nil, fmt.Errorf("user %s: %w", e.user, err)
	}
	return e, append(unknown, prefixed(unk)...), nil
}

func prefixed(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "userdb_" + n
	}
	return out
}

// resolveID accepts a number or, as Dovecot does, a user or group name.
func resolveID(v string, group bool) (string, error) {
	if _, err := strconv.ParseUint(v, 10, 31); err == nil {
		return v, nil
	}
	if group {
		g, err := user.LookupGroup(v)
		if err != nil {
			return "", fmt.Errorf("gid %q: %w", v, err)
		}
		return g.Gid, nil
	}
	u, err := user.Lookup(v)
	if err != nil {
		return "", fmt.Errorf("uid %q: %w", v, err)
	}
	return u.Uid, nil
}

// current reloads the file if it changed and returns the tables.
func (d *Dir) current(ctx context.Context) (byAddr, byLocal map[string]*entry, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	st, err := stat(d.o.Path)
	if err != nil {
		return nil, nil, err
	}
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return nil, nil, ErrClosed
	}
	if st == d.state || st == d.badSeen {
		defer d.mu.RUnlock()
		return d.byAddr, d.byLocal, nil
	}
	d.mu.RUnlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if st != d.state && st != d.badSeen {
		if err := d.load(st); err != nil {
			d.badSeen, d.badErr = st, err
			d.o.Log.Error().Err(err).Str("directory", d.o.Name).Str("path", d.o.Path).
				Msg("passwd-file changed but does not parse; still using the last good version")
		} else {
			d.o.Log.Info().Str("directory", d.o.Name).Str("path", d.o.Path).
				Int("users", len(d.byAddr)+len(d.byLocal)).Msg("passwd-file reloaded")
		}
	}
	return d.byAddr, d.byLocal, nil
}

func (d *Dir) find(ctx context.Context, k directory.Key) (*entry, error) {
	byAddr, byLocal, err := d.current(ctx)
	if err != nil {
		return nil, err
	}
	addr, local := k.Address, k.LocalPart
	if !d.o.CaseSensitive {
		addr, local = strings.ToLower(addr), strings.ToLower(local)
	}
	if e, ok := byAddr[addr]; ok {
		return e, nil
	}
	if local == "" && !strings.Contains(addr, "@") {
		local = addr // a login name without a domain
	}
	if e, ok := byLocal[local]; ok && local != "" {
		return e, nil
	}
	return nil, directory.ErrNotFound
}

// Name returns the directory's name.
func (d *Dir) Name() string { return d.o.Name }

// LookupUser returns the record of the entry for k.Address, or else for
// k.LocalPart.
func (d *Dir) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	e, err := d.find(ctx, k)
	if err != nil {
		return directory.Record{}, err
	}
	r, _, err := directory.NewRecord(k, e.fields)
	if err != nil {
		return directory.Record{}, fmt.Errorf("passwd-file %s line %d: %w", d.o.Path, e.line, err)
	}
	return r, nil
}

// LookupAlias always returns ErrNotFound: a passwd-file has no aliases.
func (d *Dir) LookupAlias(ctx context.Context, k directory.Key) ([]string, error) {
	if _, _, err := d.current(ctx); err != nil {
		return nil, err
	}
	return nil, directory.ErrNotFound
}

// LookupPassword returns the entry's password with its scheme prefix.
func (d *Dir) LookupPassword(ctx context.Context, k directory.Key) (string, error) {
	e, err := d.find(ctx, k)
	if err != nil {
		return "", err
	}
	return normalizePassword(e.password)
}

// normalizePassword gives a passwd-file password field a scheme prefix.
func normalizePassword(p string) (string, error) {
	switch {
	case p == "" || p == "*" || p == "x" || strings.HasPrefix(p, "!"):
		return "", directory.ErrNotFound // no login for this user
	case strings.HasPrefix(p, "{"):
		return p, nil
	case strings.HasSuffix(p, "[13]"):
		return "{CRYPT}" + strings.TrimSuffix(p, "[13]"), nil
	case strings.HasSuffix(p, "[34]"):
		return "{MD5-CRYPT}" + strings.TrimSuffix(p, "[34]"), nil
	case strings.HasPrefix(p, "$"):
		return p, nil // a modular crypt hash, recognised by its $id$
	}
	return "{CRYPT}" + p, nil // Dovecot's default scheme for a bare value
}

// Check reads the file again if it changed and reports whether it can be
// read and parsed.
func (d *Dir) Check(ctx context.Context) error {
	if _, _, err := d.current(ctx); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.badErr != nil {
		return fmt.Errorf("%w (lookups use the last good version)", d.badErr)
	}
	return nil
}

// Close makes later lookups fail with ErrClosed.
func (d *Dir) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	return nil
}
