package protocol

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Reply is one reply read by a Client: a basic code, the RFC 3463
// enhanced code if the server sent one, and the text of each line with
// the codes removed (RFC 5321 section 4.2, RFC 2034 section 4).
type Reply struct {
	// Code is the three-digit basic reply code, 200-599.
	Code int
	// EnhancedCode is the RFC 3463 code found at the start of the first
	// line's text, or the zero value when the server sent none.
	EnhancedCode EnhancedCode
	// Lines are the texts of the reply's lines in order, without the
	// basic code, the separator and, where the line starts with it, the
	// enhanced code. A reply has at least one line; its text may be "".
	Lines []string
}

// Positive reports whether the reply is a 2xx or 3xx.
func (r *Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Text returns the lines joined by a space: the reply text as one line,
// fit for Error.Message.
func (r *Reply) Text() string { return strings.Join(r.Lines, " ") }

// String formats the reply on one line, "550 5.1.1 text".
func (r *Reply) String() string {
	s := strconv.Itoa(r.Code)
	if !r.EnhancedCode.IsZero() {
		s += " " + r.EnhancedCode.String()
	}
	if t := r.Text(); t != "" {
		s += " " + t
	}
	return s
}

// Err returns nil for a positive reply and otherwise the reply as an
// *Error with its code, enhanced code (zero when the server sent none)
// and text, so that a proxy can relay it as it came.
func (r *Reply) Err() error {
	if r.Positive() {
		return nil
	}
	return &Error{Code: r.Code, EnhancedCode: r.EnhancedCode, Message: r.Text()}
}

// ErrMalformedReply is wrapped by the error a Client returns when the
// server's reply does not follow RFC 5321 section 4.2 (bad code, a line
// too long, a multi-line reply whose codes differ). The connection is
// unusable afterwards.
var ErrMalformedReply = errors.New("protocol: malformed reply")

// Reply parsing bounds. RFC 5321 section 4.5.3.1.5 limits a reply line to
// 512 octets; real servers send longer EHLO and error lines, so the client
// allows more, but not without bound.
const (
	maxReplyLine  = 4096 // octets per line, CRLF included
	maxReplyLines = 512  // lines per reply
)

// replyParser assembles one reply from its lines:
//
//	Reply-line = *( Reply-code "-" [ textstring ] CRLF )
//	             Reply-code [ SP textstring ] CRLF
//
// (RFC 5321 section 4.2). A bare LF ends a line too. The enhanced code
// is taken from the first line when it starts with one of the same class
// as the basic code (RFC 2034 section 4), and removed from every line
// that starts with it.
type replyParser struct {
	r    Reply
	ecs  string // the enhanced code as written on the first line, with its space
	done bool
}

// add takes one line (with or without its line ending). It returns an
// error wrapping ErrMalformedReply for a bad line, and sets p.done after
// the last line.
func (p *replyParser) add(line []byte) error {
	if p.done {
		return fmt.Errorf("%w: line after the last one", ErrMalformedReply)
	}
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
		if n > 0 && line[n-1] == '\r' {
			n--
		}
	}
	l := line[:n]
	if len(l) < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' {
		return fmt.Errorf("%w: %q", ErrMalformedReply, truncate(l))
	}
	code := int(l[0]-'0')*100 + int(l[1]-'0')*10 + int(l[2]-'0')
	last := true
	var text []byte
	if len(l) > 3 {
		switch l[3] {
		case ' ':
		case '-':
			last = false
		default:
			return fmt.Errorf("%w: %q", ErrMalformedReply, truncate(l))
		}
		text = l[4:]
	}
	for _, c := range text {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("%w: control character in %q", ErrMalformedReply, truncate(l))
		}
	}
	first := len(p.r.Lines) == 0
	switch {
	case first:
		p.r.Code = code
		if ec, rest, ok := cutEnhancedCode(text, code); ok {
			p.r.EnhancedCode = ec
			p.ecs = string(text[:len(text)-len(rest)])
			text = rest
		}
	case code != p.r.Code:
		return fmt.Errorf("%w: code %d inside reply %d", ErrMalformedReply, code, p.r.Code)
	case p.ecs != "" && strings.HasPrefix(string(text), p.ecs):
		text = text[len(p.ecs):]
	case p.ecs != "" && string(text) == strings.TrimSuffix(p.ecs, " "):
		text = nil
	}
	if len(p.r.Lines) >= maxReplyLines {
		return fmt.Errorf("%w: more than %d lines", ErrMalformedReply, maxReplyLines)
	}
	p.r.Lines = append(p.r.Lines, string(text))
	p.done = last
	return nil
}

// cutEnhancedCode splits "5.1.1 text" into the code and "text" when the
// code's class is that of the basic code. A code alone at the end of the
// text counts too.
func cutEnhancedCode(text []byte, code int) (EnhancedCode, []byte, bool) {
	end := 0
	for end < len(text) && text[end] != ' ' {
		end++
	}
	if end < 5 || end > 11 {
		return EnhancedCode{}, text, false
	}
	ec, err := ParseEnhancedCode(string(text[:end]))
	if err != nil || ec[0] != code/100 {
		return EnhancedCode{}, text, false
	}
	if end < len(text) {
		end++ // the space after it
	}
	return ec, text[end:], true
}

// truncate shortens a wire line for an error message.
func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// parseReply parses the whole of s as one reply, for tests and fuzzing.
// Every line must end in LF (CRLF or a bare LF); nothing may follow the
// last line.
func parseReply(s string) (*Reply, error) {
	var p replyParser
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return nil, fmt.Errorf("%w: unterminated line", ErrMalformedReply)
		}
		if i+1 > maxReplyLine {
			return nil, fmt.Errorf("%w: line too long", ErrMalformedReply)
		}
		if err := p.add([]byte(s[:i+1])); err != nil {
			return nil, err
		}
		s = s[i+1:]
	}
	if !p.done {
		return nil, fmt.Errorf("%w: no last line", ErrMalformedReply)
	}
	return &p.r, nil
}
