package delivery

import (
	"bytes"
	"mime"
	"strings"

	"github.com/lmtpd/lmtpd/sieve"
)

// applyEdits returns header (LF line endings, as Message keeps the header
// as received, with its terminating empty line if any) with the
// editheader changes of RFC 5293 applied in order: addheader prepends a
// field (appends with :last), its value RFC 2047-encoded when not ASCII;
// deleteheader removes the listed occurrences, counted among the fields of
// that name as the header stood before that edit.
func applyEdits(header []byte, edits []sieve.HeaderEdit) []byte {
	if len(edits) == 0 {
		return header
	}
	var fields [][]byte // each field with its continuation lines
	rest := header
	var tail []byte // the empty line ending the header, if any
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest
		if i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		switch {
		case len(bytes.TrimRight(line, "\r\n")) == 0:
			tail = append(line, rest...)
			rest = nil
		case (line[0] == ' ' || line[0] == '\t') && len(fields) > 0:
			fields[len(fields)-1] = append(fields[len(fields)-1], line...)
		default:
			fields = append(fields, append([]byte(nil), line...))
		}
	}
	name := func(f []byte) string {
		n, _, _ := bytes.Cut(f, []byte(":"))
		return strings.TrimSpace(string(n))
	}
	for _, e := range edits {
		if e.Add {
			v := e.Value
			if !isASCII(v) {
				v = mime.QEncoding.Encode("utf-8", v)
			}
			f := []byte(e.Name + ": " + headerValue(v) + "\n")
			if e.Last {
				fields = append(fields, f)
			} else {
				fields = append([][]byte{f}, fields...)
			}
			continue
		}
		drop := map[int]bool{}
		for _, n := range e.Delete {
			drop[n] = true
		}
		out := fields[:0]
		k := 0
		for _, f := range fields {
			if strings.EqualFold(name(f), e.Name) {
				k++
				if drop[k] {
					continue
				}
			}
			out = append(out, f)
		}
		fields = out
	}
	var b bytes.Buffer
	for _, f := range fields {
		b.Write(f)
	}
	b.Write(tail)
	return b.Bytes()
}
