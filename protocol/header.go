package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/emersion/go-message/textproto"
)

// headerReaderSize is the buffer through which the header is read. Once
// the header is parsed, large body reads bypass it (bufio.Reader reads
// straight into a caller's buffer that is at least this big), so the body
// is not copied an extra time.
const headerReaderSize = 4 << 10

var headerReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headerReaderSize) }}

func getHeaderReader(r io.Reader) *bufio.Reader {
	br := headerReaderPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putHeaderReader(br *bufio.Reader) {
	br.Reset(nil)
	headerReaderPool.Put(br)
}

// headerScratch holds a per-connection buffer for readHeader.
type headerScratch struct {
	raw []byte // the header as read, reused
}

// readHeader reads the message header from br, bounded by max octets. The
// header ends at the first empty line (which is consumed) or at the first
// line that cannot be a header field, which then starts the body (RFC 5322
// section 2.1). The returned body reader yields the rest of the message
// through br.
//
// raw is the header section in one buffer of its exact size: top (if not
// nil, a complete field: the server's Received) first, then the message's
// own fields as they came, then the empty line CRLF if the client sent
// one. A message of header fields only (no empty line, no body), or one
// whose first body line follows the fields directly, gets none, so that
// raw and the body together are exactly what the client sent. Nothing is
// parsed here;
// Message.Header parses raw with go-message when a backend asks for it.
// received counts the message's own Received fields, for the hop limit.
func readHeader(br *bufio.Reader, max int, sc *headerScratch, top []byte) (raw []byte, received int, body io.Reader, err error) {
	buf := sc.raw[:0]
	defer func() { sc.raw = buf[:0] }()
	var pending []byte // a body line read while looking for the header's end
	inLine := false    // buf ends inside a line longer than br's buffer
	blank := false     // the empty line that ends the section was read
	fields := 0
scan:
	for {
		line, err := br.ReadSlice('\n')
		if len(buf)+len(line) > max {
			return nil, 0, nil, ErrHeaderTooBig
		}
		full := err == nil || err == io.EOF
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, 0, nil, err
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		switch {
		case inLine:
			// The rest of a line longer than the buffer.
		case isBlankLine(line):
			blank = true
			break scan
		case isHeaderLine(line):
			fields++
			if isReceivedLine(line) {
				received++
			}
		case fields > 0 && isContinuation(line):
		default:
			// The first body line; if it is longer than br's buffer, its
			// rest follows from br.
			pending = bytes.Clone(line)
			break scan
		}
		buf = append(buf, line...)
		inLine = !full
		if err == io.EOF {
			break
		}
	}
	if n := len(buf); n > 0 && buf[n-1] != '\n' {
		buf = append(buf, '\r', '\n')
	}
	end := 0
	if blank {
		end = len("\r\n")
	}
	raw = make([]byte, len(top)+len(buf)+end)
	n := copy(raw, top)
	n += copy(raw[n:], buf)
	copy(raw[n:], "\r\n"[:end])
	body = br
	if len(pending) > 0 {
		body = io.MultiReader(bytes.NewReader(pending), br)
	}
	return raw, received, body, nil
}

// parseHeader parses a header section as readHeader returns it (complete
// fields, each ending in a line feed, then the empty line CRLF if there is
// one) into a go-message header whose fields reference raw, so that fields
// a backend does not touch are written back byte for byte.
func parseHeader(raw []byte) textproto.Header {
	var h textproto.Header
	end := len(raw)
	if hasBlankLine(raw) {
		end -= len("\r\n") // leave out the empty line
	}
	// AddRaw inserts at the top: walk the fields from the last one up.
	for end > 0 {
		start := end
		for {
			start = bytes.LastIndexByte(raw[:start-1], '\n') + 1
			if start == 0 || !isContinuation(raw[start:end]) {
				break
			}
		}
		if bytes.IndexByte(raw[start:end], ':') >= 0 {
			h.AddRaw(raw[start:end:end])
		}
		end = start
	}
	return h
}

// isReceivedLine reports whether a header line, as isHeaderLine accepts
// it, is a Received field.
func isReceivedLine(line []byte) bool {
	const name = "RECEIVED"
	if len(line) <= len(name) || !equalFoldASCII(line[:len(name)], name) {
		return false
	}
	i := len(name)
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i < len(line) && line[i] == ':'
}

// hasBlankLine reports whether a header section as readHeader returns it
// ends with the empty line. Every field ends in a line feed and no field
// line is empty, so the section ends with one exactly when it is CRLF alone
// or ends in LF CR LF.
func hasBlankLine(raw []byte) bool {
	return string(raw) == "\r\n" || bytes.HasSuffix(raw, []byte("\n\r\n"))
}

func isBlankLine(line []byte) bool {
	return len(line) == 2 && line[0] == '\r' && line[1] == '\n' || len(line) == 1 && line[0] == '\n'
}

func isContinuation(line []byte) bool {
	return len(line) > 0 && (line[0] == ' ' || line[0] == '\t')
}

// isHeaderLine reports whether line starts with a field name and a colon
// (RFC 5322 section 2.2: printable US-ASCII but colon; white space before
// the colon is tolerated, as go-message does).
func isHeaderLine(line []byte) bool {
	i := 0
	for i < len(line) && line[i] > 32 && line[i] < 127 && line[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i < len(line) && line[i] == ':'
}
