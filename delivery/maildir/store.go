package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// DefaultTmpMaxAge is how old a file in tmp/ must be before the first use
// of the maildir by this process removes it (the maildir specification's
// 36 hours).
const DefaultTmpMaxAge = 36 * time.Hour

// Modes of what a Store creates: maildirs are private to their owner.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

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

	syncer syncer
	known  sync.Map // directory -> struct{}: created, checked and cleaned by this process
}

// New returns a Store. It touches no file: a missing root shows at the
// first delivery, as a temporary failure.
func New(opts Options) (*Store, error) {
	s := &Store{
		fs:        opts.FS,
		now:       opts.Now,
		names:     opts.Names,
		maxBytes:  opts.MaxMessageBytes,
		mkFolders: opts.CreateFolders,
		tmpMaxAge: opts.TmpMaxAge,
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
	// Path is the maildir, relative to the root, as Template.Expand
	// returns it.
	Path string
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

// Staged is a message written and fsynced into a maildir's tmp/, invisible
// to readers until Commit. Exactly one of Store.Commit or Abort must follow;
// until then the file stays in tmp/ (a crash leaves it for the 36-hour
// cleanup). A Staged is used by one goroutine at a time.
type Staged struct {
	s     *Store
	dir   string // maildir (with folder) the file is in
	name  string // base name in tmp/
	size  int64
	info  string // flag letters; "" for none (new/)
	state int    // staged, committed, aborted
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

// Path returns the file's path relative to the root: in tmp/ until
// committed, in new/ after.
func (st *Staged) Path() string {
	if st.state == committed {
		return st.dir + "/" + st.sub() + "/" + st.finalName()
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
// in new/.
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

// Stage writes c into mb's tmp/ with O_EXCL, fsyncs it and closes it,
// creating the maildir (and folder) if needed. On error nothing is left
// behind and the error is a *protocol.Error (see Classify); a problem an
// administrator must fix is logged on zerolog.Ctx(ctx).
func (s *Store) Stage(ctx context.Context, mb Mailbox, c Content) (*Staged, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.fail(ctx, "stage", mb.Path, err)
	}
	size := c.Size()
	if s.maxBytes > 0 && size > s.maxBytes {
		return nil, s.fail(ctx, "stage", mb.Path, fmt.Errorf("%w: %d bytes, limit %d", ErrTooBig, size, s.maxBytes))
	}
	dir, err := s.prepare(ctx, mb)
	if err != nil {
		return nil, s.fail(ctx, "create maildir", mb.Path, err)
	}
	st, err := s.write(dir, c, size)
	if errors.Is(err, fs.ErrNotExist) {
		// The maildir vanished since this process created or checked it.
		s.forget(dir)
		if dir, err = s.prepare(ctx, mb); err == nil {
			st, err = s.write(dir, c, size)
		}
	}
	if err != nil {
		return nil, s.fail(ctx, "write", dir, err)
	}
	if st.info, err = s.info(ctx, dir, mb.Flags); err != nil {
		st.Abort()
		return nil, s.fail(ctx, "keywords", dir, err)
	}
	return st, nil
}

// Link stages a hard link to src (a staged, uncommitted file) in mb, so that
// further recipients of identical bytes cost no copy and no file fsync. If
// the link cannot be made (another file system, the link limit, a file
// system without hard links) it stages a copy of c instead, which must be
// the content src was written from.
func (s *Store) Link(ctx context.Context, mb Mailbox, src *Staged, c Content) (*Staged, error) {
	if src == nil || src.state != staged {
		return s.Stage(ctx, mb, c)
	}
	if err := ctx.Err(); err != nil {
		return nil, s.fail(ctx, "link", mb.Path, err)
	}
	dir, err := s.prepare(ctx, mb)
	if err != nil {
		return nil, s.fail(ctx, "create maildir", mb.Path, err)
	}
	name := s.names.Next(s.now())
	if err := s.fs.Link(src.dir+"/tmp/"+src.name, dir+"/tmp/"+name); err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Str("maildir", dir).Msg("hard link failed; writing a copy")
		return s.Stage(ctx, mb, c)
	}
	st := &Staged{s: s, dir: dir, name: name, size: src.size}
	if st.info, err = s.info(ctx, dir, mb.Flags); err != nil {
		st.Abort()
		return nil, s.fail(ctx, "keywords", dir, err)
	}
	return st, nil
}

// write creates the file in dir/tmp, writes c and fsyncs it; on error it
// removes the file.
func (s *Store) write(dir string, c Content, size int64) (*Staged, error) {
	for attempt := 0; ; attempt++ {
		name := s.names.Next(s.now())
		tmp := dir + "/tmp/" + name
		f, err := s.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
		if errors.Is(err, fs.ErrExist) && attempt < 3 {
			continue // a name clash: another process with our pid, or a bad clock
		}
		if err != nil {
			return nil, err
		}
		err = writeContent(f, c, size)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.fs.Remove(tmp)
			return nil, err
		}
		return &Staged{s: s, dir: dir, name: name, size: size}, nil
	}
}

func writeContent(f File, c Content, size int64) error {
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

// Commit renames every staged file into new/ and fsyncs each new/ once
// (shared with concurrent commits into the same directory). It returns one
// error per file, nil for those now durably in new/. A file whose rename or
// directory fsync failed is removed again, so it is neither in tmp/ nor, as
// far as the file system lets us, in new/. Committed or aborted files are
// skipped with a nil error.
func (s *Store) Commit(ctx context.Context, files ...*Staged) []error {
	errs := make([]error, len(files))
	byDir := make(map[string][]int)
	for i, st := range files {
		if st.state != staged {
			continue
		}
		sub := st.dir + "/" + st.sub()
		if err := s.fs.Rename(st.dir+"/tmp/"+st.name, sub+"/"+st.finalName()); err != nil {
			s.fs.Remove(st.dir + "/tmp/" + st.name)
			st.state = aborted
			errs[i] = s.fail(ctx, "rename into "+st.sub(), st.dir, err)
			continue
		}
		st.state = committed
		byDir[sub] = append(byDir[sub], i)
	}
	var wg sync.WaitGroup
	for dir, idx := range byDir {
		wg.Go(func() {
			err := s.syncDir(dir)
			if err == nil {
				return
			}
			perr := s.fail(ctx, "fsync "+path.Base(dir), path.Dir(dir), err)
			for _, i := range idx {
				errs[i] = perr
				// Not known to be durable: take it back rather than
				// report a failure for a message that may show up.
				s.fs.Remove(files[i].Path())
				files[i].state = aborted
			}
		})
	}
	wg.Wait()
	return errs
}

// Abort removes a staged file. It does nothing after Commit or a previous
// Abort.
func (st *Staged) Abort() error {
	if st.state != staged {
		return nil
	}
	st.state = aborted
	return st.s.fs.Remove(st.dir + "/tmp/" + st.name)
}

// syncDir fsyncs a directory through the group-commit syncer.
func (s *Store) syncDir(dir string) error {
	return s.syncer.sync(dir, func() error { return fsyncDir(s.fs, dir) })
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
func (s *Store) prepare(ctx context.Context, mb Mailbox) (string, error) {
	if err := s.ensure(ctx, mb.Path, false); err != nil {
		return "", err
	}
	if mb.Folder == "" {
		return mb.Path, nil
	}
	if !strings.HasPrefix(mb.Folder, ".") || strings.ContainsAny(mb.Folder, "/\\") || mb.Folder == "." || mb.Folder == ".." {
		return "", fmt.Errorf("%w: bad folder name %q", ErrBadPath, mb.Folder)
	}
	dir := mb.Path + "/" + mb.Folder
	if _, ok := s.known.Load(dir); ok {
		return dir, nil
	}
	_, err := s.fs.Stat(dir)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && !s.mkFolders && !mb.CreateFolder:
		zerolog.Ctx(ctx).Debug().Str("maildir", mb.Path).Str("folder", mb.Folder).Msg("folder does not exist; delivering to INBOX")
		return mb.Path, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return "", err
	}
	if err := s.ensure(ctx, dir, true); err != nil {
		return "", err
	}
	return dir, nil
}

// ensure creates dir (and its parents) with tmp/, new/ and cur/ as needed,
// fsyncing each parent directory whose entries changed, and cleans old
// files out of tmp/ the first time this process sees dir. folder marks a
// Maildir++ folder, which gets the "maildirfolder" marker file.
func (s *Store) ensure(ctx context.Context, dir string, folder bool) error {
	if _, ok := s.known.Load(dir); ok {
		return nil
	}
	if err := s.mkdirAll(dir); err != nil {
		return err
	}
	created := false
	for _, sub := range []string{"tmp", "new", "cur"} {
		err := s.fs.Mkdir(dir+"/"+sub, DirMode)
		if err == nil {
			created = true
		} else if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	if folder && created {
		f, err := s.fs.OpenFile(dir+"/maildirfolder", os.O_WRONLY|os.O_CREATE, FileMode)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if created {
		if err := fsyncDir(s.fs, dir); err != nil {
			return err
		}
	}
	s.cleanTmp(ctx, dir)
	s.known.Store(dir, struct{}{})
	return nil
}

// mkdirAll creates the missing elements of dir, fsyncing the parent of
// each one it creates so the new entry survives a crash.
func (s *Store) mkdirAll(dir string) error {
	if fi, err := s.fs.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	elems := strings.Split(dir, "/")
	for i := range elems {
		p := strings.Join(elems[:i+1], "/")
		err := s.fs.Mkdir(p, DirMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		parent := path.Dir(p)
		if err := fsyncDir(s.fs, parent); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) forget(dir string) { s.known.Delete(dir) }

// cleanTmp removes files older than the tmp age limit from dir/tmp (the
// maildir specification: "a file in tmp/ that has not been accessed in 36
// hours" is litter from a crash). Failures are only logged.
func (s *Store) cleanTmp(ctx context.Context, dir string) {
	ents, err := s.fs.ReadDir(dir + "/tmp")
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("maildir", dir).Msg("cannot list tmp/ for cleanup")
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
		if err := s.fs.Remove(dir + "/tmp/" + e.Name()); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("maildir", dir).Str("file", e.Name()).Msg("cannot remove old tmp/ file")
		} else {
			zerolog.Ctx(ctx).Info().Str("maildir", dir).Str("file", e.Name()).Msg("removed tmp/ file older than the limit")
		}
	}
}
