package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// DefaultThreshold is the in-memory limit used when Options.Threshold is 0.
const DefaultThreshold = 256 << 10

// ErrTooBig is returned by Write once the spool would exceed
// Options.MaxSize.
var ErrTooBig = errors.New("spool: message exceeds the size limit")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("spool: closed")

// Options configure a Spool. The zero value keeps 256 KiB in memory and
// spills to os.TempDir.
type Options struct {
	// Threshold is how many bytes stay in memory before the spool moves to
	// a file. 0 means DefaultThreshold; a negative value spools every
	// message to a file.
	Threshold int64
	// Dir is the directory for the temporary file; "" means os.TempDir().
	// It should be on the maildir file system.
	Dir string
	// MaxSize, when positive, is the largest body the spool accepts; a
	// Write past it fails with ErrTooBig and stores nothing more.
	MaxSize int64
}

func (o *Options) threshold() int64 {
	switch {
	case o.Threshold == 0:
		return DefaultThreshold
	case o.Threshold < 0:
		return 0
	}
	return o.Threshold
}

// Spool stores one message body. Fill it with Write (or ReadFrom); then
// read it as many times as needed with WriteTo, ReadAt or NewReader. It is
// an append-only buffer: reading while writing sees the bytes written so
// far.
//
// Write, ReadFrom and WriteTo must not be called concurrently with each
// other; ReadAt and readers from NewReader may be used concurrently with
// each other and with WriteTo. Close releases the memory or the file; no
// method may be used after it.
type Spool struct {
	opts   Options
	mem    []byte
	f      *os.File
	size   int64
	closed bool

	mu sync.Mutex // serialises WriteTo's use of the file offset
}

// New returns an empty Spool.
func New(opts Options) *Spool { return &Spool{opts: opts} }

// Size returns the number of bytes stored.
func (s *Spool) Size() int64 { return s.size }

// InMemory reports whether the content is still held in memory.
func (s *Spool) InMemory() bool { return s.f == nil }

// Write appends p. Once the total exceeds the threshold the content moves
// to a temporary file; errors from creating or writing it are returned as
// they are (an *os.PathError or *os.SyscallError wrapping the errno, such
// as ENOSPC), and the spool must then be closed.
func (s *Spool) Write(p []byte) (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	if s.opts.MaxSize > 0 && s.size+int64(len(p)) > s.opts.MaxSize {
		return 0, ErrTooBig
	}
	if s.f == nil && s.size+int64(len(p)) <= s.opts.threshold() {
		s.mem = append(s.mem, p...)
		s.size += int64(len(p))
		return len(p), nil
	}
	if s.f == nil {
		if err := s.spill(); err != nil {
			return 0, err
		}
	}
	n, err := s.f.Write(p)
	s.size += int64(n)
	return n, err
}

// spill moves the in-memory content to a new unnamed temporary file.
func (s *Spool) spill() error {
	dir := s.opts.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := openTemp(dir)
	if err != nil {
		return err
	}
	if _, err := f.Write(s.mem); err != nil {
		f.Close()
		return err
	}
	s.f = f
	s.mem = nil
	return nil
}

// Bytes returns the content and true while it is held in memory, nil and
// false once it is in a file (or after Close). The slice is the spool's
// own: the caller must not modify it, and it is valid until the next
// Write or Close. It lets a writer send a header and the body in one
// system call (a maildir delivery's writev(2)).
func (s *Spool) Bytes() ([]byte, bool) {
	if s.closed || s.f != nil {
		return nil, false
	}
	return s.mem, true
}

// ReadFrom appends everything r yields until io.EOF. It returns r's error
// unchanged (the protocol's *Error values pass through), or the spool's
// own write error.
func (s *Spool) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{s}, r)
}

// writerOnly hides Spool.ReadFrom from io.Copy, which would recurse.
type writerOnly struct{ io.Writer }

// ReadAt implements io.ReaderAt over the stored bytes.
func (s *Spool) ReadAt(p []byte, off int64) (int, error) {
	if s.closed {
		return 0, ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("spool: negative offset %d", off)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	if s.f == nil {
		n := copy(p, s.mem[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	if rem := s.size - off; int64(len(p)) > rem {
		n, err := s.f.ReadAt(p[:rem], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return s.f.ReadAt(p, off)
}

// NewReader returns a reader over the whole content. Readers are
// independent of each other and valid until Close.
func (s *Spool) NewReader() *io.SectionReader {
	return io.NewSectionReader(s, 0, s.size)
}

// WriteTo writes the whole content to w. When the content is in a file and
// w is an *os.File, the copy is done by copy_file_range(2) (Linux).
func (s *Spool) WriteTo(w io.Writer) (int64, error) {
	if s.closed {
		return 0, ErrClosed
	}
	if s.f == nil {
		n, err := w.Write(s.mem)
		return int64(n), err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	// A LimitedReader around the *os.File is what os.File.ReadFrom
	// recognises for copy_file_range; it also stops at the size recorded.
	n, err := io.Copy(w, &io.LimitedReader{R: s.f, N: s.size})
	if err == nil && n != s.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close releases the content. The temporary file has no name, so closing
// it frees its space. Close is idempotent.
func (s *Spool) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.mem = nil
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}
