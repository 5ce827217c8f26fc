package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// DefaultTmpMaxAge is how old a file in tmp/ must be before the first use
// of the maildir by this process removes it (the maildir specification's
// 36 hours).
const DefaultTmpMaxAge = 36 * time.Hour

// Modes of what a Store creates unless Options.DirMode and Options.FileMode
// say otherwise: maildirs are private to their owner.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// Owner is the user and group given to the files and directories a Store
// creates, with fchown(2) on the open descriptor, never by path. An id of
// -1 leaves that one as the process's own. Changing the user needs root
// (CAP_CHOWN); changing only the group needs lmtpd to be a member of it.
type Owner struct {
	UID, GID int
}

// set reports whether o changes anything.
func (o *Owner) set() bool { return o != nil && (o.UID >= 0 || o.GID >= 0) }

func sameOwner(a, b *Owner) bool {
	if !a.set() || !b.set() {
		return a.set() == b.set()
	}
	return *a == *b
}

// Options configure a Store. Either FS or Root must be set; the other
// fields have working zero values.
type Options struct {
	// Root is the directory all maildirs live under, used when FS is nil
	// (through NewRootFS, which confines every operation to it).
	Root string
	// FS replaces the file system, for tests.
	FS FS
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Names yields unique file names; nil means NewUniqueNames(Hostname).
	Names NameSource
	// Hostname goes into file names when Names is nil; "" means
	// os.Hostname().
	Hostname string
	// MaxMessageBytes, when positive, is the largest file (header
	// included) a delivery may write; larger ones fail with 552 5.3.4.
	MaxMessageBytes int64
	// CreateFolders makes a delivery to a Maildir++ folder that does not
	// exist create it; when false such a delivery goes to INBOX.
	CreateFolders bool
	// TmpMaxAge overrides DefaultTmpMaxAge when positive.
	TmpMaxAge time.Duration
	// Owner, if set, owns every file and directory the Store creates
	// (those that exist already are left alone); Mailbox.Owner overrides
	// it per delivery. nil: the process's own uid and gid.
	Owner *Owner
	// FileMode and DirMode, when not 0, are the permissions of the files
	// and directories the Store creates, set with fchmod(2) so that the
	// umask does not apply: 0640 and 0750 let an IMAP server in the
	// owner's group read the mail, as Dovecot's mail_uid and mail_gid
	// allow. 0 means FileMode (0600) and DirMode (0700), under the umask.
	// Only permission bits (0777) are allowed. Deliveries into a home
	// (Mailbox.Home) always get exactly 0600 and 0700.
	FileMode, DirMode fs.FileMode
	// HomeFS returns the FS of a Mailbox with Home set; nil means
	// NewHomeFS. Tests wrap it to act between two steps of a delivery.
	HomeFS func(home string) FS
	// Flush is how Commit makes staged files and their renames durable
	// (lmtpd's [delivery.maildir] flush): FlushAuto (the zero value),
	// FlushFsync, FlushSyncfs or FlushOrdered. See FlushMode for the
	// trade-offs.
	Flush FlushMode
	// QuietFlush logs which barrier FlushAuto chose for a file system
	// at debug level instead of info: for a process per message (lmtpd
	// deliver), where once per file system is once per message.
	QuietFlush bool
}

// Store delivers into the maildirs under one root. It is safe for
// concurrent use; concurrent deliveries into one maildir share directory
// fsyncs (see the package documentation).
type Store struct {
	fs        FS
	ownFS     *RootFS
	now       func() time.Time
	names     NameSource
	maxBytes  int64
	mkFolders bool
	tmpMaxAge time.Duration
	owner     *Owner
	fileMode  fs.FileMode
	dirMode   fs.FileMode
	chmod     bool // modes configured: fchmod what is created
	homeFS    func(home string) FS

	syncer     GroupSync      // new/ fsyncs (FlushFsync) and syncfs barriers (FlushSyncfs), by key
	ordered    orderedBarrier // FlushOrdered's barriers, by file system
	flushMode  FlushMode
	quietFlush bool         // the FlushAuto choice logged at debug level
	fsOrdered  sync.Map     // fsID -> orderedAnswer: its file system allows FlushOrdered (FlushAuto too)
	openStaged atomic.Int64 // staged files held open for their barrier (maxOpenStaged)
	known      sync.Map     // directory -> dirInfo: created, checked and cleaned by this process
	noAnon     sync.Map     // device -> true: its file system has no O_TMPFILE (see createAnon)
	health     fsHealth     // the file system checked after each rename barrier
}

// New returns a Store. It touches no file: a missing root shows at the
// first delivery, as a temporary failure.
func New(opts Options) (*Store, error) {
	s := &Store{
		fs:         opts.FS,
		now:        opts.Now,
		names:      opts.Names,
		maxBytes:   opts.MaxMessageBytes,
		mkFolders:  opts.CreateFolders,
		tmpMaxAge:  opts.TmpMaxAge,
		owner:      opts.Owner,
		fileMode:   FileMode,
		dirMode:    DirMode,
		homeFS:     opts.HomeFS,
		flushMode:  opts.Flush,
		quietFlush: opts.QuietFlush,
	}
	if opts.Flush != FlushAuto && opts.Flush != FlushSyncfs && opts.Flush != FlushFsync && opts.Flush != FlushOrdered {
		return nil, fmt.Errorf("maildir: unknown flush mode %v", opts.Flush)
	}
	if opts.FileMode&^0o777 != 0 || opts.DirMode&^0o777 != 0 {
		return nil, fmt.Errorf("maildir: modes %#o and %#o: only permission bits (0777) are allowed", opts.FileMode, opts.DirMode)
	}
	if opts.FileMode != 0 {
		s.fileMode, s.chmod = opts.FileMode, true
	}
	if opts.DirMode != 0 {
		s.dirMode, s.chmod = opts.DirMode, true
	}
	if s.homeFS == nil {
		s.homeFS = func(home string) FS { return NewHomeFS(home) }
	}
	if s.fs == nil {
		if opts.Root == "" {
			return nil, errors.New("maildir: no root directory")
		}
		s.ownFS = NewRootFS(opts.Root)
		s.fs = s.ownFS
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.names == nil {
		s.names = NewUniqueNames(opts.Hostname)
	}
	if s.tmpMaxAge <= 0 {
		s.tmpMaxAge = DefaultTmpMaxAge
	}
	s.ordered.health = &s.health
	return s, nil
}

// Close releases the root directory if the Store opened it. Staged
// deliveries must be committed or aborted first.
func (s *Store) Close() error {
	if s.ownFS != nil {
		return s.ownFS.Close()
	}
	return nil
}

// Mailbox names a delivery destination: a maildir and optionally a
// Maildir++ folder in it.
type Mailbox struct {
	// Path is the maildir, relative to the root (or to Home), as
	// Template.Expand returns it.
	Path string
	// Home, when set, is an absolute directory that Path is relative to
	// instead of the root: a system user's home, which the user controls.
	// Nothing under Home is reached through a symbolic link, wherever it
	// points (see NewHomeFS and the package documentation, "Homes"); Home
	// itself is opened as the system resolves it, since its path comes
	// from the account database.
	Home string
	// Owner, if set, owns what this delivery creates instead of
	// Options.Owner: the user of a directory record with a uid and gid.
	Owner *Owner
	// Folder is "" for INBOX or a Maildir++ folder name from FolderName
	// (".lists"). A missing folder is created when CreateFolder or
	// Options.CreateFolders says so, and otherwise replaced by INBOX.
	Folder string
	// CreateFolder allows this delivery to create a missing Folder; it is
	// the per-user form of Options.CreateFolders (either one suffices).
	CreateFolder bool
	// Flags are IMAP flags and keywords for the message (Sieve
	// imap4flags): with any, it is committed into cur/ with the maildir
	// info ":2,LETTERS" (see keywords.go).
	Flags []string
}

// Body is the message body a delivery copies: a spool.Spool satisfies it.
// WriteTo must write exactly Size bytes and may be called several times.
type Body interface {
	Size() int64
	WriteTo(w io.Writer) (int64, error)
}

// Content is what one delivery writes: Header (the added fields and the
// message header with its terminating empty line, LF line endings), then
// Body.
type Content struct {
	Header []byte
	Body   Body
}

// Size returns the number of bytes the file will have.
func (c Content) Size() int64 {
	n := int64(len(c.Header))
	if c.Body != nil {
		n += c.Body.Size()
	}
	return n
}

// Staged is a message written into a maildir's tmp/ (where the file
// system allows, as an unnamed file there: see the package documentation,
// "Write path"), invisible to readers until Commit, which first makes it
// durable (the flush barrier it shares with concurrent deliveries), then
// renames it into new/ (or links the unnamed file there). Exactly one of
// Store.Commit or Abort must follow: the file is held open until then.
// Until then a named file stays in tmp/ (a crash leaves it, possibly
// incomplete, for the 36-hour cleanup; an unnamed one is freed by the
// file system). A Staged, and those linked to it (Store.Link), are used
// by one goroutine at a time.
type Staged struct {
	s     *Store
	l     loc    // where: the root or a home, and the owner
	dir   string // maildir (with folder) the file is in
	name  string // base name in tmp/
	size  int64
	info  string      // flag letters; "" for none (new/)
	state int         // staged, committed, aborted
	data  *stagedFile // the file's data, shared with its links; nil once released
	// anon is the unnamed file (O_TMPFILE), shared with its links, which
	// Commit links into new/; nil for a file named in tmp/. The last
	// Staged to end closes it (the barriers see it as held).
	anon File
	held heldFile // anon as the barriers see it, here to save an allocation
}

const (
	staged = iota
	committed
	aborted
)

// Dir returns the maildir (folder included, relative to the root) the
// message went to; it differs from the Mailbox asked for when a missing
// folder fell back to INBOX.
func (st *Staged) Dir() string { return st.dir }

// Home returns the Mailbox's Home the file went to, "" for the root.
func (st *Staged) Home() string { return st.l.home }

// Path returns the file's path relative to the root (or Home): in new/
// (cur/ with flags) once committed; before, its path in tmp/, or "" for
// an unnamed file, which has none until Commit links it (nothing in
// lmtpd reads a staged file by name: callers log Path after Commit).
func (st *Staged) Path() string {
	if st.state == committed {
		return st.dir + "/" + st.sub() + "/" + st.finalName()
	}
	if st.anon != nil {
		return ""
	}
	return st.dir + "/tmp/" + st.name
}

// Size returns the file's size in bytes.
func (st *Staged) Size() int64 { return st.size }

func (st *Staged) finalName() string {
	n := st.name + ",S=" + strconv.FormatInt(st.size, 10)
	if st.info != "" {
		n += ":2," + st.info
	}
	return n
}

// sub is the directory a committed file goes to: cur/ when it has flags
// (a message in new/ carries no info), else new/.
func (st *Staged) sub() string {
	if st.info != "" {
		return "cur"
	}
	return "new"
}

// Deliver stages and commits c into mb: on success the message is durably
// in new/ (cur/ with flags).
func (s *Store) Deliver(ctx context.Context, mb Mailbox, c Content) (*Staged, error) {
	st, err := s.Stage(ctx, mb, c)
	if err != nil {
		return nil, err
	}
	if errs := s.Commit(ctx, st); errs[0] != nil {
		return nil, errs[0]
	}
	return st, nil
}

// loc is where a delivery goes: the file system (the root's, or a home's),
// the home ("" for the root) and the owner of what it creates.
type loc struct {
	fs    FS
	home  string
	owner *Owner
	// modes of what is created; chmod: set them with fchmod(2)
	fileMode, dirMode fs.FileMode
	chmod             bool
}

// key names dir in the Store's caches, which the root and every home
// share.
func (l loc) key(dir string) string {
	if l.home == "" {
		return dir
	}
	return l.home + "\x00" + dir
}

// locate returns where mb's deliveries go.
func (s *Store) locate(mb Mailbox) (loc, error) {
	l := loc{fs: s.fs, owner: s.owner, fileMode: s.fileMode, dirMode: s.dirMode, chmod: s.chmod}
	if mb.Owner != nil {
		l.owner = mb.Owner
	}
	if mb.Home != "" {
		if !filepath.IsAbs(mb.Home) {
			return l, fmt.Errorf("%w: home %q is not an absolute path", ErrBadPath, mb.Home)
		}
		if !fs.ValidPath(mb.Path) || mb.Path == "." {
			return l, fmt.Errorf("%w: maildir %q is not a clean path inside the home", ErrBadPath, mb.Path)
		}
		l.home = filepath.Clean(mb.Home)
		l.fs = s.homeFS(l.home)
		// Mail in a home is the user's alone, whatever the modes for
		// the root say: the user's group may be a shared one.
		l.fileMode, l.dirMode, l.chmod = FileMode, DirMode, true
	}
	return l, nil
}

// Stage writes c into mb's tmp/, as an unnamed file where the file system
// allows, else under a new name with O_EXCL, creating the maildir (and
// folder) if needed. The file is not flushed yet and stays open: Commit's
// data barrier, shared with concurrent deliveries, makes it durable. On
// error nothing is left behind and the error is a *protocol.Error (see
// Classify); a problem an administrator must fix is logged on
// zerolog.Ctx(ctx).
func (s *Store) Stage(ctx context.Context, mb Mailbox, c Content) (*Staged, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.fail(ctx, "stage", mb.Path, err)
	}
	size := c.Size()
	if s.maxBytes > 0 && size > s.maxBytes {
		return nil, s.fail(ctx, "stage", mb.Path, fmt.Errorf("%w: %d bytes, limit %d", ErrTooBig, size, s.maxBytes))
	}
	l, err := s.locate(mb)
	if err != nil {
		return nil, s.fail(ctx, "stage", mb.Path, err)
	}
	dir, err := s.prepare(ctx, l, mb)
	if err != nil {
		return nil, s.fail(ctx, "create maildir", l.show(mb.Path), err)
	}
	st, err := s.write(ctx, l, dir, c, size)
	if errors.Is(err, fs.ErrNotExist) {
		// The maildir vanished since this process created or checked it.
		s.forget(l, dir)
		if dir, err = s.prepare(ctx, l, mb); err == nil {
			st, err = s.write(ctx, l, dir, c, size)
		}
	}
	if err != nil {
		return nil, s.fail(ctx, "write", l.show(dir), err)
	}
	if st.info, err = s.info(ctx, l, dir, mb.Flags); err != nil {
		st.Abort()
		return nil, s.fail(ctx, "keywords", l.show(dir), err)
	}
	return st, nil
}

// show returns dir for the log: as it is under the root, joined to the
// home otherwise.
func (l loc) show(dir string) string {
	if l.home == "" {
		return dir
	}
	return filepath.Join(l.home, filepath.FromSlash(dir))
}

// Link stages a hard link to src (a staged, uncommitted file) in mb, so that
// further recipients of identical bytes cost no copy and no flush of their
// own (the link is the same file: src's barrier covers it). For an
// unnamed src nothing is done on disk: Commit links src's descriptor
// into mb's new/. If the link cannot be made (another file system, the
// link limit, a file system without hard links), or src is in another
// home or has another owner (a link shares its owner), it stages a copy
// of c instead, which must be the content src was written from. (An
// unnamed file's link limit is met only at Commit, where that recipient
// fails temporarily; ext4's limit is 65,000 links, XFS's and tmpfs's
// far higher.)
func (s *Store) Link(ctx context.Context, mb Mailbox, src *Staged, c Content) (*Staged, error) {
	if src == nil || src.state != staged || src.s != s {
		return s.Stage(ctx, mb, c)
	}
	if err := ctx.Err(); err != nil {
		return nil, s.fail(ctx, "link", mb.Path, err)
	}
	l, err := s.locate(mb)
	if err != nil {
		return nil, s.fail(ctx, "link", mb.Path, err)
	}
	if l.home != src.l.home || !sameOwner(l.owner, src.l.owner) {
		return s.Stage(ctx, mb, c)
	}
	dir, err := s.prepare(ctx, l, mb)
	if err != nil {
		return nil, s.fail(ctx, "create maildir", l.show(mb.Path), err)
	}
	if src.anon != nil {
		// An unnamed file: nothing to do until Commit links it here,
		// if here is on its file system.
		st, ok := s.anonLink(l, dir, src)
		if !ok {
			return s.Stage(ctx, mb, c)
		}
		if st.info, err = s.info(ctx, l, dir, mb.Flags); err != nil {
			st.Abort()
			return nil, s.fail(ctx, "keywords", l.show(dir), err)
		}
		return st, nil
	}
	name := s.names.Next(s.now())
	if err := l.fs.Link(src.dir+"/tmp/"+src.name, dir+"/tmp/"+name); err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Str("maildir", l.show(dir)).Msg("hard link failed; writing a copy")
		return s.Stage(ctx, mb, c)
	}
	st := &Staged{s: s, l: l, dir: dir, name: name, size: src.size, data: src.data}
	st.data.refs++
	if st.info, err = s.info(ctx, l, dir, mb.Flags); err != nil {
		st.Abort()
		return nil, s.fail(ctx, "keywords", l.show(dir), err)
	}
	return st, nil
}

// write creates the file in dir/tmp (unnamed where createAnon can, else
// with a unique name and O_EXCL), gives it its owner and mode and writes
// c, without flushing it: Commit's barrier does that, for many
// deliveries at once. The file stays open for the barrier (an unnamed
// one until Commit has linked it). On error it removes the file.
func (s *Store) write(ctx context.Context, l loc, dir string, c Content, size int64) (*Staged, error) {
	for attempt := 0; ; attempt++ {
		name := s.names.Next(s.now())
		tmp := dir + "/tmp/" + name
		f, anon, err := s.createAnon(ctx, l, dir)
		if !anon {
			f, err = l.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, l.fileMode)
		}
		if errors.Is(err, fs.ErrExist) && attempt < 3 {
			continue // a name clash: another process with our pid, or a bad clock
		}
		if err != nil {
			return nil, err
		}
		err = s.own(f, l, tmp, l.fileMode)
		if err == nil {
			err = writeContent(f, c, size)
		}
		if err != nil {
			f.Close()
			if !anon {
				l.fs.Remove(tmp)
			}
			return nil, err
		}
		d := &stagedFile{f: f, refs: 1, open: &s.openStaged}
		st := &Staged{s: s, l: l, dir: dir, name: name, size: size, data: d}
		if anon {
			// Kept open past the barrier, until Commit links it.
			st.anon, st.held = f, heldFile{f}
			d.f = &st.held
		}
		if s.openStaged.Add(1) > maxOpenStaged {
			// Too many files held open for their barrier: make this
			// one durable now, on its own, and let it go (Commit then
			// only renames it and fsyncs new/).
			err := f.Sync()
			if cerr := d.close(); err == nil {
				err = cerr
			}
			if err != nil {
				if anon {
					f.Close()
				} else {
					l.fs.Remove(tmp)
				}
				return nil, err
			}
			d.key, d.done = "f", true
			return st, nil
		}
		if s.flushMode == FlushOrdered || s.flushMode == FlushAuto {
			var ok, first bool
			var why string
			if d.key, ok, why, first = orderedKey(&s.fsOrdered, f); ok {
				d.kind = barrierOrdered
			}
			if first {
				s.logFlush(ctx, l.show(dir), ok, why)
			}
		} else if d.key, d.syncfs = flushKey(s.flushMode, f); d.syncfs {
			d.kind = barrierSyncfs
		}
		return st, nil
	}
}

// logFlush says, once per file system (the first delivery to it), which
// barrier FlushAuto or FlushOrdered gives its deliveries and why: at info
// level for auto (debug with QuietFlush), which falls back by design; as
// a warning when ordered was asked for and is not safe there.
func (s *Store) logFlush(ctx context.Context, maildir string, ordered bool, why string) {
	log := zerolog.Ctx(ctx)
	level := zerolog.InfoLevel
	if s.quietFlush {
		level = zerolog.DebugLevel
	}
	switch {
	case s.flushMode == FlushAuto && ordered:
		log.WithLevel(level).Str("maildir", maildir).Str("flush", "ordered").
			Str("reason", "ext4 with an internal journal in data=ordered mode, barriers, no fast_commit").
			Msg(`flush = "auto": this file system's deliveries use flush = "ordered" (file and new/ fsynced, one journal commit)`)
	case s.flushMode == FlushAuto:
		log.WithLevel(level).Str("maildir", maildir).Str("flush", "fsync").Str("reason", why).
			Msg(`flush = "auto": this file system's deliveries use flush = "fsync" (flush = "ordered" is not safe on it)`)
	case !ordered:
		log.Warn().Str("maildir", maildir).Str("reason", why).
			Msg(`flush = "ordered" is not safe on this file system: its deliveries use flush = "fsync"`)
	}
}

// ownable is the part of *os.File that sets owner and mode on the open
// descriptor (fchown(2), fchmod(2)).
type ownable interface {
	Chown(uid, gid int) error
	Chmod(mode fs.FileMode) error
}

// own gives f, just created as name, the owner of l and mode, if any is
// configured: on the descriptor, so that nothing swapped in at the path
// since it was created is touched.
func (s *Store) own(f File, l loc, name string, mode fs.FileMode) error {
	if !l.owner.set() && !l.chmod {
		return nil
	}
	of, ok := f.(ownable)
	if !ok {
		return &OwnerError{Path: l.show(name), Owner: l.owner, Err: errors.ErrUnsupported}
	}
	if l.owner.set() {
		if err := of.Chown(l.owner.UID, l.owner.GID); err != nil {
			return &OwnerError{Path: l.show(name), Owner: l.owner, Err: err}
		}
	}
	if l.chmod {
		if err := of.Chmod(mode); err != nil {
			return err
		}
	}
	return nil
}

// mkdir creates one directory and gives it its owner and mode through a
// descriptor opened on it. If that fails the directory is removed again,
// so that the next delivery creates it with them.
func (s *Store) mkdir(l loc, name string) error {
	if err := l.fs.Mkdir(name, l.dirMode); err != nil {
		return err
	}
	if !l.owner.set() && !l.chmod {
		return nil
	}
	f, err := l.fs.OpenFile(name, os.O_RDONLY, 0)
	if err == nil {
		err = s.own(f, l, name, l.dirMode)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		l.fs.Remove(name)
	}
	return err
}

// vectorWriter is a File that writes several buffers with one system
// call (writev(2)): fdFile.
type vectorWriter interface {
	writev(bufs [][]byte) (int64, error)
}

// memBody is a Body whose content is in memory: spool.Spool under its
// threshold. The slice is only read.
type memBody interface {
	Bytes() ([]byte, bool)
}

// writeContent writes the header and the body: in one writev(2) when the
// body is in memory and the file can, else one after the other.
func writeContent(f File, c Content, size int64) error {
	if vw, ok := f.(vectorWriter); ok {
		var body []byte
		mem := c.Body == nil
		if mb, ok := c.Body.(memBody); ok {
			body, mem = mb.Bytes()
		}
		if mem {
			bufs := [2][]byte{c.Header, body}
			written, err := vw.writev(bufs[:])
			if err == nil && written != size {
				err = fmt.Errorf("maildir: wrote %d bytes, want %d", written, size)
			}
			return err
		}
	}
	n, err := f.Write(c.Header)
	written := int64(n)
	if err == nil && c.Body != nil {
		var m int64
		m, err = c.Body.WriteTo(f)
		written += m
	}
	if err == nil && written != size {
		err = fmt.Errorf("maildir: wrote %d bytes, want %d", written, size)
	}
	return err
}

// Commit makes every staged file durable, renames it into new/ (cur/ when
// it has flags; an unnamed file is linked there instead: publish) and
// makes the renames durable, in two flush barriers that
// it shares with concurrent commits (see FlushMode): the first covers the
// files' data, so nothing incomplete ever shows in new/; the second, which
// starts after the renames, covers the directory entries. With
// FlushOrdered the first is a write-back without a journal commit and
// each file is fsynced with its new/, in the second (see FlushOrdered).
// It returns one error per file, nil for those now durably in new/. A
// file whose barrier or rename failed is removed again, so it is neither
// in tmp/ nor, as far as the file system lets us, in new/. Committed or
// aborted files are skipped with a nil error. Every file must come from
// this Store.
func (s *Store) Commit(ctx context.Context, files ...*Staged) []error {
	errs := make([]error, len(files))
	s.flushData(ctx, files, errs)
	// The renames, then one barrier per new/ (FlushFsync) or per file
	// system (FlushSyncfs) they went to.
	type barrier struct {
		key  string
		l    loc
		dir  string      // a new/ (or cur/) written to
		data *stagedFile // with syncfs: a file on the file system, still open
		fs   bool        // with ordered: the file system's one directory barrier
		idx  []int
		// With ordered, the files of idx (each inode once), fsynced
		// beside the directory.
		files flushReq
	}
	// A message has a few barriers (one per maildir at most): a list
	// searched in order costs less than a map, and one on the stack
	// serves the common case.
	var one [1]barrier
	barriers := one[:0]
	for i, st := range files {
		if st.state != staged {
			continue
		}
		l := st.l
		sub := st.dir + "/" + st.sub() // cur/ with flags, else new/
		if err := s.publish(ctx, st); err != nil {
			st.end(aborted)
			errs[i] = s.fail(ctx, "rename into "+st.sub(), l.show(st.dir), err)
			continue
		}
		st.state = committed
		k := l.key(sub)
		var data *stagedFile
		fs := false
		switch {
		case st.data.syncfs:
			k, data = st.data.key, st.data
		case st.data.kind == barrierOrdered:
			// One directory fsync for the file system: see FlushOrdered.
			k, fs = st.data.key, true
		}
		j := slices.IndexFunc(barriers, func(b barrier) bool { return b.key == k })
		if j < 0 {
			j = len(barriers)
			barriers = append(barriers, barrier{key: k, l: l, dir: sub, data: data, fs: fs})
		}
		barriers[j].idx = append(barriers[j].idx, i)
	}
	run := func(b *barrier) {
		var err error
		checked := false // the file system checked after the barrier
		switch {
		case b.data != nil:
			// The file's own descriptor: no directory to open.
			err = s.syncer.Sync(b.key, func() error { return syncfsFile(b.data.f) })
		case b.fs:
			// Any new/ of the file system will do: on ext4 a
			// directory's fsync commits the whole journal. The files
			// are fsynced beside it, waiting for the same commit.
			b.files = orderedFiles(files, b.idx)
			open := make([]File, len(b.files.files))
			for i, d := range b.files.files {
				open[i] = d.f
			}
			b.files.errs = make([]error, len(open))
			// The run checks the file system itself, once for all.
			err = s.ordered.sync(ctx, b.key, b.l, b.dir, open, b.files.errs)
			checked = true
		default:
			err = s.syncDir(b.l, b.dir)
		}
		if err == nil && !checked {
			// A barrier's success does not prove the file system kept
			// the renames (ext4 after a journal abort): see fshealth_linux.go.
			err = s.health.check(ctx, b.key, b.l, b.dir)
		}
		if err == nil {
			return
		}
		// With syncfs the barrier is per file system: its files may be
		// in the root and in several homes, each reached through its own
		// loc (b.l is only the first file's).
		for _, i := range b.idx {
			st := files[i]
			errs[i] = s.fail(ctx, "fsync "+st.sub(), st.l.show(st.dir), err)
			// Not known to be durable: take it back rather than
			// report a failure for a message that may show up.
			st.l.fs.Remove(st.Path())
			st.state = aborted
		}
	}
	if len(barriers) == 1 {
		run(&barriers[0])
	} else {
		var wg sync.WaitGroup
		for j := range barriers {
			wg.Go(func() { run(&barriers[j]) })
		}
		wg.Wait()
	}
	for j := range barriers {
		s.orderedSynced(ctx, files, errs, &barriers[j].files)
	}
	for _, st := range files {
		if st.state != staged {
			st.end(st.state)
		}
	}
	return errs
}

// orderedFiles lists the files of files[idx] that Commit put into new/
// (or cur/) under FlushOrdered, each inode once however many links of it
// were committed, for their fsync beside the directory barrier (see
// FlushOrdered).
func orderedFiles(files []*Staged, idx []int) flushReq {
	var r flushReq
	for _, i := range idx {
		st := files[i]
		d := st.data
		if st.state != committed || d == nil || d.kind != barrierOrdered || d.f == nil ||
			slices.ContainsFunc(r.files, func(o *stagedFile) bool { return o == d }) {
			continue
		}
		r.files = append(r.files, d)
	}
	return r
}

// orderedSynced ends Commit under FlushOrdered with the result of the
// files' fsyncs (r, from orderedFiles). A file whose fsync failed is taken
// back out of new/ with each of its links in this Commit, as when a
// directory's fsync fails, and its links staged for a later Commit fail
// there.
func (s *Store) orderedSynced(ctx context.Context, files []*Staged, errs []error, r *flushReq) {
	for k, d := range r.files {
		if r.errs[k] == nil {
			continue
		}
		// Its write-back failed: a later fsync may not report it again
		// (the error is reported once per descriptor), so links of it
		// committed later fail too, before their rename (flushData).
		d.err, d.done = r.errs[k], false
		for i, st := range files {
			if st.data == d && st.state == committed {
				errs[i] = s.fail(ctx, "fsync", st.l.show(st.dir), r.errs[k])
				st.l.fs.Remove(st.Path())
				st.state = aborted
			}
		}
	}
}

// flushData runs the first barrier of Commit: the data of every staged
// file made durable: with syncfs one syncfs(2) per file system, shared
// with concurrent commits; with fsync this Commit's own files fsynced in
// parallel (the kernel folds overlapping fsyncs of concurrent commits);
// with ordered each file written back. A file whose data could
// not be made durable (now or in an earlier Commit of one of its links) is
// removed and gets the error in errs.
func (s *Store) flushData(ctx context.Context, files []*Staged, errs []error) {
	// One request per barrier group (file system or kind): nearly always
	// one, so a list, on the stack for that case.
	type keyed struct {
		key string
		r   flushReq
	}
	var one [1]keyed
	reqs := one[:0]
	for i, st := range files {
		d := st.data
		if st.state != staged || d.done || d.err != nil || slices.ContainsFunc(files[:i], func(o *Staged) bool { return o.data == d }) {
			continue // durable, failed, or a link of a file already in
		}
		j := slices.IndexFunc(reqs, func(k keyed) bool { return k.key == d.key })
		if j < 0 {
			j = len(reqs)
			reqs = append(reqs, keyed{key: d.key})
		}
		reqs[j].r.files = append(reqs[j].r.files, d)
	}
	run := func(key string, r *flushReq) {
		switch r.files[0].kind {
		case barrierOrdered:
			// Each file's own write-back, no commit: nothing to share
			// (the rename barrier's directory fsync commits).
			r.errs = make([]error, len(r.files))
			for i, d := range r.files {
				r.errs[i] = orderedFile(d.f)
			}
		case barrierFsync:
			// No batching across deliveries: the kernel folds fsyncs that
			// overlap into one journal commit, and waiting for another
			// delivery's batch only added its latency (bench/README.md).
			r.errs = make([]error, len(r.files))
			fsyncBatch([]*flushReq{r})
		default:
			// Any descriptor on the file system will do: every
			// caller's syncfs is equivalent (GroupSync runs one).
			err := s.syncer.Sync(key, func() error { return syncfsFile(r.files[0].f) })
			r.errs = make([]error, len(r.files))
			for i, d := range r.files {
				if r.errs[i] = err; err == nil {
					r.errs[i] = checkFile(d.f)
				}
			}
		}
		for i, d := range r.files {
			err := r.errs[i]
			if d.kind == barrierFsync {
				// Durable: the descriptor is no longer needed (a link
				// is the same inode). close(2) reports some file
				// systems' errors (NFS, quotas), before the rename.
				// With syncfs (local file systems whose close does not
				// flush), it stays open for the rename's barrier; with
				// ordered (written, its allocation in the running
				// journal transaction, which the rename barrier
				// commits) for the file's own fsync that ends Commit.
				if cerr := d.close(); err == nil {
					err = cerr
				}
			}
			d.err, d.done = err, err == nil
		}
	}
	if len(reqs) == 1 {
		run(reqs[0].key, &reqs[0].r)
	} else {
		var wg sync.WaitGroup
		for j := range reqs {
			wg.Go(func() { run(reqs[j].key, &reqs[j].r) })
		}
		wg.Wait()
	}
	for i, st := range files {
		if st.state != staged || st.data.err == nil {
			continue
		}
		err := st.data.err
		st.l.fs.Remove(st.dir + "/tmp/" + st.name)
		st.end(aborted)
		errs[i] = s.fail(ctx, "fsync", st.l.show(st.dir), err)
	}
}

// end moves st out of the staged state and drops its hold on the file;
// the last Staged of an unnamed file closes it (which frees it, if no
// Commit linked it anywhere).
func (st *Staged) end(state int) {
	st.state = state
	if d := st.data; d != nil {
		last := d.refs == 1
		d.release()
		st.data = nil
		if last && st.anon != nil {
			st.anon.Close()
		}
	}
	st.anon = nil
}

// Abort removes a staged file (an unnamed one has nothing to remove: it
// is freed when its last Staged ends). It does nothing after Commit or a
// previous Abort.
func (st *Staged) Abort() error {
	if st.state != staged {
		return nil
	}
	anon := st.anon != nil
	st.end(aborted)
	if anon {
		return nil
	}
	return st.l.fs.Remove(st.dir + "/tmp/" + st.name)
}

// syncDir fsyncs a directory through the group-commit syncer.
func (s *Store) syncDir(l loc, dir string) error {
	return s.syncer.Sync(l.key(dir), func() error { return fsyncDir(l.fs, dir) })
}

func fsyncDir(fsys FS, dir string) error {
	f, err := fsys.OpenFile(dir, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fail classifies err, logs configuration problems with what to fix, and
// returns the reply.
func (s *Store) fail(ctx context.Context, op, dir string, err error) error {
	r := Classify(err)
	if h := Hint(err); h != "" {
		zerolog.Ctx(ctx).Error().Err(err).Str("op", op).Str("maildir", dir).Str("fix", h).Msg("maildir delivery failed")
	}
	return r
}

// prepare makes sure the maildir of mb exists and returns the directory to
// deliver into: the folder, or the maildir itself when the folder is
// missing and may not be created.
func (s *Store) prepare(ctx context.Context, l loc, mb Mailbox) (string, error) {
	if err := s.ensure(ctx, l, mb.Path, false); err != nil {
		return "", err
	}
	if mb.Folder == "" {
		return mb.Path, nil
	}
	if !strings.HasPrefix(mb.Folder, ".") || strings.ContainsAny(mb.Folder, "/\\") || mb.Folder == "." || mb.Folder == ".." {
		return "", fmt.Errorf("%w: bad folder name %q", ErrBadPath, mb.Folder)
	}
	dir := mb.Path + "/" + mb.Folder
	if _, ok := s.known.Load(l.key(dir)); ok {
		return dir, nil
	}
	_, err := l.fs.Stat(dir)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && !s.mkFolders && !mb.CreateFolder:
		zerolog.Ctx(ctx).Debug().Str("maildir", l.show(mb.Path)).Str("folder", mb.Folder).Msg("folder does not exist; delivering to INBOX")
		return mb.Path, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return "", err
	}
	if err := s.ensure(ctx, l, dir, true); err != nil {
		return "", err
	}
	return dir, nil
}

// ensure creates dir (and its parents) with tmp/, new/ and cur/ as needed,
// fsyncing each parent directory whose entries changed, and cleans old
// files out of tmp/ the first time this process sees dir. folder marks a
// Maildir++ folder, which gets the "maildirfolder" marker file.
func (s *Store) ensure(ctx context.Context, l loc, dir string, folder bool) error {
	if _, ok := s.known.Load(l.key(dir)); ok {
		return nil
	}
	if err := s.mkdirAll(l, dir); err != nil {
		return err
	}
	created := false
	for _, sub := range []string{"tmp", "new", "cur"} {
		err := s.mkdir(l, dir+"/"+sub)
		if err == nil {
			created = true
		} else if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	if folder && created {
		name := dir + "/maildirfolder"
		f, err := l.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, l.fileMode)
		switch {
		case errors.Is(err, fs.ErrExist):
		case err != nil:
			return err
		default:
			err = s.own(f, l, name, l.fileMode)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				l.fs.Remove(name)
				return err
			}
		}
	}
	if created {
		if err := fsyncDir(l.fs, dir); err != nil {
			return err
		}
	}
	s.cleanTmp(ctx, l, dir)
	s.known.Store(l.key(dir), dirInfoOf(l, dir))
	return nil
}

// mkdirAll creates the missing elements of dir, fsyncing the parent of
// each one it creates so the new entry survives a crash.
func (s *Store) mkdirAll(l loc, dir string) error {
	if fi, err := l.fs.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: l.show(dir), Err: syscall.ENOTDIR}
		}
		return nil
	}
	elems := strings.Split(dir, "/")
	for i := range elems {
		p := strings.Join(elems[:i+1], "/")
		err := s.mkdir(l, p)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		parent := path.Dir(p)
		if err := fsyncDir(l.fs, parent); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) forget(l loc, dir string) { s.known.Delete(l.key(dir)) }

// cleanTmp removes files older than the tmp age limit from dir/tmp (the
// maildir specification: "a file in tmp/ that has not been accessed in 36
// hours" is litter from a crash). Failures are only logged.
func (s *Store) cleanTmp(ctx context.Context, l loc, dir string) {
	ents, err := l.fs.ReadDir(dir + "/tmp")
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("maildir", l.show(dir)).Msg("cannot list tmp/ for cleanup")
		return
	}
	limit := s.now().Add(-s.tmpMaxAge)
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(limit) {
			continue
		}
		if err := l.fs.Remove(dir + "/tmp/" + e.Name()); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("maildir", l.show(dir)).Str("file", e.Name()).Msg("cannot remove old tmp/ file")
		} else {
			zerolog.Ctx(ctx).Info().Str("maildir", l.show(dir)).Str("file", e.Name()).Msg("removed tmp/ file older than the limit")
		}
	}
}
