package pipe

import (
	"io"
	"sync"
)

// copyBufs holds the buffers that move a command's input and output. exec
// would otherwise allocate 32 KiB per direction per run (io.Copy's default).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// boundedBuffer keeps the first max bytes written to it and counts the
// rest, so that a command writing megabytes costs no more than max bytes.
// It is written by exec's single copying goroutine (Stdout and Stderr are
// the same writer, hence one pipe) and read only after Cmd.Wait returned.
type boundedBuffer struct {
	buf   []byte
	max   int
	total int64
}

// Write keeps what fits and always reports success, so that the copy keeps
// draining the pipe.
func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.total += int64(len(p))
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// ReadFrom drains r through a pooled buffer; exec's copy of the output pipe
// ends up here (io.Copy prefers it).
func (b *boundedBuffer) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	var n int64
	for {
		m, err := r.Read(*bp)
		if m > 0 {
			_, _ = b.Write((*bp)[:m])
			n += int64(m)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// recordingReader remembers the first error other than io.EOF that its
// reader returned: exec hides it when the command exits 0, yet it means the
// command saw a truncated message. Like boundedBuffer it is used by one exec
// goroutine and inspected after Cmd.Wait returned.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// WriteTo copies to w (the command's input pipe) through a pooled buffer;
// exec's copy of the input ends up here (io.Copy prefers it). A write error
// (EPIPE when the command stopped reading) ends the copy without being
// recorded as a read error.
func (r *recordingReader) WriteTo(w io.Writer) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	var n int64
	for {
		m, err := r.Read(*bp)
		if m > 0 {
			k, werr := w.Write((*bp)[:m])
			n += int64(k)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
