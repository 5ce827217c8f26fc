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

// headerScratch holds per-connection buffers for readHeader.
type headerScratch struct {
	raw    []byte // the header as read, reused
	starts []int  // offset of each field in raw, reused
}

// readHeader reads the message header from br, bounded by max octets, and
// parses it into a go-message textproto.Header. The header ends at the
// first empty line (which is consumed) or at the first line that cannot be
// a header field, which then starts the body (RFC 5322 section 2.1). The
// returned body reader yields the rest of the message through br.
//
// The header is kept in one buffer of its exact size that the fields
// reference (textproto.Header.AddRaw), so fields the backend does not
// touch are written back byte for byte.
//
// top, if not nil, is a complete field (the server's Received) added above
// the message's own fields, in the same buffer.
func readHeader(br *bufio.Reader, max int, sc *headerScratch, top []byte) (textproto.Header, io.Reader, error) {
	raw := sc.raw[:0]
	starts := sc.starts[:0]
	defer func() { sc.raw, sc.starts = raw[:0], starts[:0] }()
	var pending []byte // a body line read while looking for the header's end
	inLine := false    // raw ends inside a line longer than br's buffer
scan:
	for {
		line, err := br.ReadSlice('\n')
		if len(raw)+len(line) > max {
			return textproto.Header{}, nil, ErrHeaderTooBig
		}
		full := err == nil || err == io.EOF
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return textproto.Header{}, nil, err
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		switch {
		case inLine:
			// The rest of a line longer than the buffer.
		case isBlankLine(line):
			break scan
		case isHeaderLine(line):
			starts = append(starts, len(raw))
		case len(starts) > 0 && isContinuation(line):
		default:
			// The first body line; if it is longer than br's buffer, its
			// rest follows from br.
			pending = bytes.Clone(line)
			break scan
		}
		raw = append(raw, line...)
		inLine = !full
		if err == io.EOF {
			break
		}
	}
	var hdr textproto.Header
	if n := len(raw); n > 0 && raw[n-1] != '\n' {
		raw = append(raw, '\r', '\n')
	}
	n := len(raw)
	own := make([]byte, n+len(top))
	copy(own, raw)
	copy(own[n:], top)
	// AddRaw inserts at the top: add the last field first.
	for i := len(starts) - 1; i >= 0; i-- {
		end := n
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		hdr.AddRaw(own[starts[i]:end:end])
	}
	if len(top) > 0 {
		hdr.AddRaw(own[n:])
	}
	var body io.Reader = br
	if len(pending) > 0 {
		body = io.MultiReader(bytes.NewReader(pending), br)
	}
	return hdr, body, nil
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

// countReceived counts the Received fields of h.
func countReceived(h *textproto.Header) int {
	return h.FieldsByKey("Received").Len()
}
