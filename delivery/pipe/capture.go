package pipe

import "io"

// boundedBuffer keeps the first max bytes written to it and counts the
// rest, so that a command writing megabytes costs no more than max bytes
// (plus exec's copy buffer). It is written by exec's single copying
// goroutine (Stdout and Stderr are the same writer, hence one pipe) and read
// only after Cmd.Wait returned.
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
