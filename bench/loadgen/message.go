package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// The test message: a realistic header, then 76-character text lines, the
// last one padded so that header plus body is exactly the requested size.
// No line starts with '.', so the text needs no dot-stuffing and its size
// on the wire is size plus the ".\r\n" terminator.

const (
	// bodyLine is one line of body text, CRLF included.
	bodyLine = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 lmtpd bench\r\n"
	// idDigits is the width of the sequence number in the Message-ID, so
	// that a prebuilt message can be renumbered in place.
	idDigits = 20
	// prebuiltMax is the largest message kept in memory whole; larger ones
	// are generated while they are written.
	prebuiltMax = 4 << 20
	// chunkLines is the number of body lines in one streamed write.
	chunkLines = 64 << 10 / len(bodyLine)
)

// terminator ends the message text (RFC 5321 section 4.1.1.4).
const terminator = ".\r\n"

// header returns the message header (with its blank line) for message
// number seq. Its length does not depend on seq.
func header(seq uint64) []byte {
	return fmt.Appendf(nil, "From: Load Generator <loadgen@example.org>\r\n"+
		"To: Benchmark <bench0@example.test>\r\n"+
		"Subject: lmtpd end-to-end benchmark message\r\n"+
		"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"+
		"Message-ID: <%0*d@loadgen.example.org>\r\n"+
		"MIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n"+
		"\r\n", idDigits, seq)
}

// headerSize is the size of every header.
var headerSize = int64(len(header(0)))

// minSize is the smallest message the generator makes: the header alone.
var minSize = headerSize

// nextLine returns the length of the next body line (CRLF included) when
// rem bytes of body are left: a whole bodyLine unless that would leave a
// remainder too short for a line of its own (one byte), in which case the
// rest goes into one shorter line. rem must be at least 2.
func nextLine(rem int64) int64 {
	full := int64(len(bodyLine))
	if rem == full || rem-full >= 2 {
		return full
	}
	if rem > full {
		// rem is full+1: end with a shorter line now, the rest later.
		return full - 1
	}
	return rem
}

// writeLine writes a body line of n bytes (n >= 2): a prefix of bodyLine,
// or 'x' padding, ending in CRLF.
func writeLine(w *bufio.Writer, n int64) error {
	if n == int64(len(bodyLine)) {
		_, err := w.WriteString(bodyLine)
		return err
	}
	for range n - 2 {
		w.WriteByte('x')
	}
	_, err := w.WriteString("\r\n")
	return err
}

// message is one worker's copy of the test message. A message of up to
// prebuiltMax bytes is built once and only renumbered per transaction;
// a larger one is generated as it is written, so its size does not cost
// the load generator memory.
type message struct {
	size     int64
	prebuilt []byte // header, body and terminator; nil when streaming
	idAt     int    // offset of the Message-ID digits in prebuilt
	chunk    []byte // chunkLines whole body lines, for streaming
}

// newMessage prepares a message of size bytes (header included, terminator
// excluded). size must be at least minSize, and not minSize+1 (no line can
// be one byte long).
func newMessage(size int64) (*message, error) {
	if size < minSize || size == minSize+1 {
		return nil, fmt.Errorf("message size %d: the smallest is %d (the header alone) and it cannot be %d", size, minSize, minSize+1)
	}
	m := &message{size: size}
	if size > prebuiltMax {
		for range chunkLines {
			m.chunk = append(m.chunk, bodyLine...)
		}
		return m, nil
	}
	w := &sliceWriter{}
	bw := bufio.NewWriter(w)
	if err := m.stream(bw, 0); err != nil {
		return nil, err
	}
	m.prebuilt = w.b
	m.idAt = len("From: Load Generator <loadgen@example.org>\r\n" +
		"To: Benchmark <bench0@example.test>\r\n" +
		"Subject: lmtpd end-to-end benchmark message\r\n" +
		"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n" +
		"Message-ID: <")
	return m, nil
}

// writeTo writes message number seq with its terminator to w.
func (m *message) writeTo(w io.Writer, seq uint64) error {
	if m.prebuilt != nil {
		d := m.prebuilt[m.idAt : m.idAt+idDigits]
		s := strconv.AppendUint(make([]byte, 0, idDigits), seq, 10)
		for i := range d {
			d[i] = '0'
		}
		copy(d[idDigits-len(s):], s)
		_, err := w.Write(m.prebuilt)
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	return m.stream(bw, seq)
}

// stream generates the message into w and flushes it.
func (m *message) stream(w *bufio.Writer, seq uint64) error {
	if _, err := w.Write(header(seq)); err != nil {
		return err
	}
	rem := m.size - headerSize
	for len(m.chunk) > 0 && (rem-int64(len(m.chunk)) >= int64(len(bodyLine))+2 || rem == int64(len(m.chunk))) {
		if _, err := w.Write(m.chunk); err != nil {
			return err
		}
		rem -= int64(len(m.chunk))
	}
	for rem > 0 {
		n := nextLine(rem)
		if err := writeLine(w, n); err != nil {
			return err
		}
		rem -= n
	}
	if _, err := w.WriteString(terminator); err != nil {
		return err
	}
	return w.Flush()
}

// sliceWriter collects writes in memory.
type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}
