package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/sieve"
)

// scriptCache holds compiled scripts by path, valid while the file's
// modification time, size and inode stay the same: a changed script is
// compiled again at the next message, no reload needed. A script that
// does not compile is cached with its error, so that the error is logged
// (and counted) once per version of the file.
type scriptCache struct {
	mu      sync.Mutex
	entries map[string]*scriptEntry
	onError func() // counts a compile error, once per version
}

type scriptEntry struct {
	mtime  time.Time
	size   int64
	ino    uint64
	dev    uint64
	script *sieve.Script
	err    error
}

// maxCachedScripts bounds the cache; past it, it is emptied (the next
// messages compile again).
const maxCachedScripts = 10000

func newScriptCache() *scriptCache { return &scriptCache{entries: make(map[string]*scriptEntry)} }

// errNoScript is a script file that does not exist.
var errNoScript = errors.New("no such script")

// load returns the compiled script rel under root (an os.Root, so that no
// link leads outside it), named full in errors and logs. A missing file
// is errNoScript; a script that does not compile returns its
// sieve.ErrorList, logged at the first load of that version.
func (c *scriptCache) load(ctx context.Context, root *os.Root, rel, full string) (*sieve.Script, error) {
	f, err := root.Open(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoScript
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", full)
	}
	ino, dev := fileID(fi)
	c.mu.Lock()
	e := c.entries[full]
	c.mu.Unlock()
	if e != nil && e.same(fi) {
		return e.script, e.err
	}
	src, err := io.ReadAll(io.LimitReader(f, sieve.DefaultMaxScriptSize+1))
	if err != nil {
		return nil, err
	}
	e = &scriptEntry{mtime: fi.ModTime(), size: fi.Size(), ino: ino, dev: dev}
	e.script, e.err = sieve.Compile(full, src, nil)
	if e.err != nil {
		zerolog.Ctx(ctx).Error().Str("script", full).Strs("errors", errorLines(e.err)).
			Msg("sieve: script does not compile; its messages are kept in INBOX until it is fixed")
		if c.onError != nil {
			c.onError()
		}
	}
	c.mu.Lock()
	if len(c.entries) >= maxCachedScripts {
		clear(c.entries)
	}
	c.entries[full] = e
	c.mu.Unlock()
	return e.script, e.err
}

// fileID returns a file's inode and device numbers.
func fileID(fi fs.FileInfo) (ino, dev uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino), uint64(st.Dev)
	}
	return 0, 0
}

// same reports whether fi is the file e was compiled from.
func (e *scriptEntry) same(fi fs.FileInfo) bool {
	ino, dev := fileID(fi)
	return e.mtime.Equal(fi.ModTime()) && e.size == fi.Size() && e.ino == ino && e.dev == dev
}

// cached answers from the cache without opening the file: ok is true
// when path is missing (errNoScript) or is, by inode, device, size and
// modification time, the very file cached under it, which was read
// through its root before; the caller then needs no os.Root. Following
// links here is safe: a link to any other file has another inode.
func (c *scriptCache) cached(path string) (*sieve.Script, error, bool) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoScript, true
	}
	if err != nil {
		return nil, nil, false
	}
	c.mu.Lock()
	e := c.entries[path]
	c.mu.Unlock()
	if e == nil || !e.same(fi) {
		return nil, nil, false
	}
	return e.script, e.err, true
}

// loadPath loads an administrator's script by absolute path.
func (c *scriptCache) loadPath(ctx context.Context, path string) (*sieve.Script, error) {
	root, err := os.OpenRoot(filepath.Dir(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoScript
	}
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return c.load(ctx, root, filepath.Base(path), path)
}

// errorLines returns an error's lines: a sieve.ErrorList gives one
// "file:line:column: message" per entry.
func errorLines(err error) []string {
	var el sieve.ErrorList
	if errors.As(err, &el) {
		out := make([]string, len(el))
		for i, e := range el {
			out[i] = e.Error()
		}
		return out
	}
	return []string{err.Error()}
}

// adminScripts expands Before or After: files as they are, directories
// into their *.sieve files in name order. Missing entries are skipped.
func adminScripts(paths []string) []string {
	var out []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if !fi.IsDir() {
			out = append(out, p)
			continue
		}
		es, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		var names []string
		for _, e := range es {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".sieve") && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, filepath.Join(p, n))
		}
	}
	return out
}

// scriptLoader answers include: :personal scripts NAME.sieve next to the
// user's script, :global ones in GlobalDir, each through an os.Root on
// that directory (sieve has checked the name: no "/", no leading ".").
type scriptLoader struct {
	cache    *scriptCache
	personal string // the user's script's directory, "" when none
	global   string
}

func (l *scriptLoader) LoadScript(ctx context.Context, loc sieve.Location, name string) (*sieve.Script, error) {
	dir := l.personal
	if loc == sieve.Global {
		dir = l.global
	}
	if dir == "" || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("%s script %q: %w", loc, name, sieve.ErrNotFound)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("%s script %q: %w", loc, name, sieve.ErrNotFound)
	}
	defer root.Close()
	s, err := l.cache.load(ctx, root, name+".sieve", filepath.Join(dir, name+".sieve"))
	if errors.Is(err, errNoScript) {
		return nil, fmt.Errorf("%s script %q: %w", loc, name, sieve.ErrNotFound)
	}
	return s, err
}
