package maildir

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/rs/zerolog"
)

// anonFS is implemented by an FS that can stage a message as a file
// without a name (Linux: open(2) with O_TMPFILE in tmp/) and give it one
// later (linkat(2) of its descriptor): RootFS and HomeFS on Linux. An FS
// without it, and every FS that wraps another one (tests), stages into
// tmp/ by name.
type anonFS interface {
	// OpenAnon creates an unnamed regular file on dir's file system,
	// open for writing, with mode perm (under the umask), resolving dir
	// as OpenFile resolves names. A file system that cannot answers an
	// error for which anonUnsupported is true.
	OpenAnon(dir string, perm fs.FileMode) (File, error)
	// LinkAnon gives f, a file from OpenAnon of this FS (or one already
	// linked), the name newname, which must not exist (fs.ErrExist if it
	// does). Only newname's parent is resolved; f is reached through its
	// descriptor.
	LinkAnon(f File, newname string) error
}

// stageNamed makes every Store stage by name in tmp/; tests set it to
// take the classic way where unnamed files would be used.
var stageNamed atomic.Bool

// anonUnsupported reports whether err from OpenAnon says that the file
// system (or the kernel, or the FS) has no unnamed files, as open(2)
// with O_TMPFILE answers it: EOPNOTSUPP from a file system without
// them, EISDIR from a kernel before 3.11 that takes O_TMPFILE for
// O_DIRECTORY, EINVAL from one that rejects the flag combination; or
// errors.ErrUnsupported from the FS itself.
func anonUnsupported(err error) bool {
	return errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EISDIR) ||
		errors.Is(err, syscall.EINVAL) || errors.Is(err, errors.ErrUnsupported)
}

// dirInfo is what the Store remembers of a maildir (with folder) it has
// created or checked: the device of its tmp/, when the FS can stage
// unnamed files, so that a staged unnamed file is linked only into
// maildirs on its own file system and O_TMPFILE support is learnt once
// per file system.
type dirInfo struct {
	dev   uint64
	devOK bool
}

// dirInfoOf returns what ensure records for dir: with an anonFS, the
// device of dir/tmp (one stat, once per maildir and process).
func dirInfoOf(l loc, dir string) dirInfo {
	if _, ok := l.fs.(anonFS); !ok {
		return dirInfo{}
	}
	fi, err := l.fs.Stat(dir + "/tmp")
	if err != nil {
		return dirInfo{}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return dirInfo{}
	}
	return dirInfo{dev: uint64(st.Dev), devOK: true}
}

// dirDev returns the device of dir's tmp/ as ensure recorded it.
func (s *Store) dirDev(l loc, dir string) (uint64, bool) {
	v, ok := s.known.Load(l.key(dir))
	if !ok {
		return 0, false
	}
	di, ok := v.(dirInfo)
	return di.dev, ok && di.devOK
}

// createAnon creates the unnamed file of a delivery into dir when the FS
// and dir's file system allow it and the Store holds fewer than
// maxOpenStaged files open (past that a file is fsynced and closed when
// staged, and needs a name in tmp/ to be renamed later). ok is false
// when the classic way (a name in tmp/) is to be taken: then nothing was
// created. A file system that turns out to have no O_TMPFILE is
// remembered, by device, and never asked again by this Store.
func (s *Store) createAnon(ctx context.Context, l loc, dir string) (f File, ok bool, err error) {
	af, isAnon := l.fs.(anonFS)
	if !isAnon || stageNamed.Load() || s.openStaged.Load() >= maxOpenStaged {
		return nil, false, nil
	}
	dev, known := s.dirDev(l, dir)
	if !known {
		return nil, false, nil
	}
	if no, _ := s.noAnon.Load(dev); no != nil {
		return nil, false, nil
	}
	f, err = af.OpenAnon(dir+"/tmp", l.fileMode)
	if err != nil && anonUnsupported(err) {
		s.noAnon.Store(dev, true)
		zerolog.Ctx(ctx).Debug().Err(err).Str("maildir", l.show(dir)).
			Msg("no unnamed files (O_TMPFILE) on this file system: staging into tmp/ by name")
		return nil, false, nil
	}
	return f, true, err
}

// heldFile is an unnamed staged file as the flush barriers see it: they
// close a file once it is durable (or at the end of Commit), but an
// unnamed one must stay open until every Staged sharing it has linked it
// into its new/, through Staged.anon. So its Close leaves the descriptor
// open; the last Staged to end closes it.
type heldFile struct{ File }

// Close does nothing: see heldFile.
func (heldFile) Close() error { return nil }

// Fd returns the file's descriptor, for the barriers that need it
// (syncfs(2), sync_file_range(2)); an unnamed file always has one.
func (h heldFile) Fd() uintptr {
	if f, ok := h.File.(interface{ Fd() uintptr }); ok {
		return f.Fd()
	}
	return ^uintptr(0)
}

// Name returns the name the file was opened with, for errors.
func (h heldFile) Name() string {
	if f, ok := h.File.(interface{ Name() string }); ok {
		return f.Name()
	}
	return ""
}

// publish gives a staged file, whose data barrier is behind it, its name
// in new/ (cur/ with flags): a rename from tmp/, or for an unnamed file a
// link of its descriptor. A name taken already (only an unnamed file can
// tell: rename replaces) is retried with fresh unique names, as the
// classic way does when it creates the file in tmp/. A maildir removed
// since this process knew it is made again first: a further recipient's
// unnamed link touched nothing when staged (a named one found the
// maildir missing then, and wrote a copy into a new one). On failure
// nothing is left under either name.
func (s *Store) publish(ctx context.Context, st *Staged) error {
	l := st.l
	sub := st.dir + "/" + st.sub()
	if st.anon == nil {
		err := l.fs.Rename(st.dir+"/tmp/"+st.name, sub+"/"+st.finalName())
		if err != nil {
			l.fs.Remove(st.dir + "/tmp/" + st.name)
		}
		return err
	}
	af := l.fs.(anonFS)
	remade := false
	for attempt := 0; ; attempt++ {
		err := af.LinkAnon(st.anon, sub+"/"+st.finalName())
		switch {
		case errors.Is(err, fs.ErrExist) && attempt < 3:
			st.name = s.names.Next(s.now())
			continue
		case errors.Is(err, fs.ErrNotExist) && !remade:
			// A Maildir++ folder's name starts with "." (FolderName);
			// a maildir's own cannot (Template encodes a leading dot).
			s.forget(l, st.dir)
			if err := s.ensure(ctx, l, st.dir, strings.HasPrefix(path.Base(st.dir), ".")); err != nil {
				return err
			}
			remade = true
			continue
		}
		return err
	}
}

// anonLink stages a further recipient's copy of src, an unnamed file, in
// dir: nothing on disk until Commit links the same descriptor into dir's
// new/. ok is false when dir is on another file system than src (a link
// cannot cross it; the caller writes a copy).
func (s *Store) anonLink(l loc, dir string, src *Staged) (*Staged, bool) {
	sd, ok1 := s.dirDev(src.l, src.dir)
	dd, ok2 := s.dirDev(l, dir)
	if !ok1 || !ok2 || sd != dd {
		return nil, false
	}
	st := &Staged{s: s, l: l, dir: dir, name: s.names.Next(s.now()), size: src.size, data: src.data, anon: src.anon}
	st.data.refs++
	return st, true
}
