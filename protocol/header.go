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

// readHeader reads the message header from br, bounded by max octets, and
// parses it with go-message. The header ends at the first empty line (which
// is consumed) or at the first line that cannot be a header field, which is
// then the first line of the body (RFC 5322 section 2.1: a message without
// a blank line is all header or all body). The returned body reader yields
// the rest of the message; it reads through br.
func readHeader(br *bufio.Reader, max int) (textproto.Header, io.Reader, error) {
	var raw []byte
	var pending []byte // a body line read while looking for the header's end
	for {
		line, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) && len(raw)+len(line) <= max {
			// A header line longer than the buffer: keep collecting.
			raw = append(raw, line...)
			line, err = br.ReadSlice('\n')
		}
		if errors.Is(err, bufio.ErrBufferFull) || len(raw)+len(line) > max {
			return textproto.Header{}, nil, ErrHeaderTooBig
		}
		if err != nil && err != io.EOF {
			return textproto.Header{}, nil, err
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		lineStart := len(raw)
		if lineStart > 0 && raw[lineStart-1] != '\n' {
			// Continuing a line collected above.
			raw = append(raw, line...)
			if err == io.EOF {
				break
			}
			continue
		}
		if isBlankLine(line) {
			break
		}
		if !isHeaderLine(line) && !(lineStart > 0 && isContinuation(line)) {
			pending = bytes.Clone(line)
			break
		}
		raw = append(raw, line...)
		if err == io.EOF {
			break
		}
	}
	var hdr textproto.Header
	if len(raw) > 0 {
		if raw[len(raw)-1] != '\n' {
			raw = append(raw, '\r', '\n')
		}
		raw = append(raw, '\r', '\n')
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			// A field go-message cannot parse: deliver the header
			// lines unparsed as the start of the body rather than
			// lose or reject the message.
			pending = append(raw[:len(raw)-2:len(raw)-2], pending...)
			h = textproto.Header{}
		}
		hdr = h
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
