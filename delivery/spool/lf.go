package spool

import (
	"bytes"
	"io"
)

// lfChunk is how much input LFWriter converts per write to its
// destination. Its output never exceeds its input plus one held-back CR.
const lfChunk = 32 << 10

// LFWriter converts CRLF line endings to LF on the way to an underlying
// writer: "\r\n" becomes "\n"; a CR not followed by LF and a lone LF pass
// unchanged. A CR at the end of one Write is held back until the next
// Write (or Flush) shows what follows it, so pairs split across writes are
// converted too.
//
// Mail arrives with CRLF line endings (RFC 5321 section 2.3.8); maildir
// files and pipe commands use the local convention, LF, as Postfix
// local(8)/virtual(8) and Dovecot do.
//
// LFWriter converts in a fixed scratch buffer allocated on first use, with
// no allocation per line or per Write. It is not safe for concurrent use.
type LFWriter struct {
	w   io.Writer
	cr  bool   // a CR ended the previous Write and was not yet written
	buf []byte // scratch of lfChunk+1 bytes
	err error  // sticky error from w
}

// NewLFWriter returns an LFWriter writing to w. The caller must call Flush
// after the last Write.
func NewLFWriter(w io.Writer) *LFWriter { return &LFWriter{w: w} }

// Reset makes l write to w, dropping any held-back CR and error, and keeps
// the scratch buffer.
func (l *LFWriter) Reset(w io.Writer) {
	l.w, l.cr, l.err = w, false, nil
}

// Write converts p and writes the result. It returns len(p) on success; on
// an error from the underlying writer it returns the number of input bytes
// whose conversion was written in full, and the error, which every later
// call returns too.
func (l *LFWriter) Write(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if l.buf == nil {
		l.buf = make([]byte, 0, lfChunk+1)
	}
	n := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > lfChunk {
			chunk = chunk[:lfChunk]
		}
		out := l.convert(l.buf[:0], chunk)
		if len(out) > 0 {
			if _, err := l.w.Write(out); err != nil {
				l.err = err
				return n, err
			}
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// convert appends the conversion of in to out. len(out) stays within
// len(in)+1 because only a held-back CR can add a byte.
func (l *LFWriter) convert(out, in []byte) []byte {
	if l.cr {
		l.cr = false
		if in[0] != '\n' {
			out = append(out, '\r')
		}
	}
	for len(in) > 0 {
		i := bytes.IndexByte(in, '\r')
		if i < 0 {
			return append(out, in...)
		}
		out = append(out, in[:i]...)
		in = in[i+1:]
		if len(in) == 0 {
			l.cr = true
			return out
		}
		if in[0] != '\n' {
			out = append(out, '\r')
		}
	}
	return out
}

// Flush writes a CR held back at the end of the last Write: a message that
// ends in a bare CR keeps it.
func (l *LFWriter) Flush() error {
	if l.err != nil {
		return l.err
	}
	if l.cr {
		l.cr = false
		if _, err := l.w.Write([]byte{'\r'}); err != nil {
			l.err = err
			return err
		}
	}
	return nil
}

// AppendLF appends the LF form of the complete text p to dst: every CRLF
// becomes LF. It is meant for small, complete pieces such as a rendered
// header.
func AppendLF(dst, p []byte) []byte {
	for len(p) > 0 {
		i := bytes.Index(p, crlf)
		if i < 0 {
			return append(dst, p...)
		}
		dst = append(dst, p[:i]...)
		dst = append(dst, '\n')
		p = p[i+2:]
	}
	return dst
}

var crlf = []byte("\r\n")
