package sieve

import (
	"strings"
)

// tokKind is the kind of a lexical token (RFC 5228 section 8.1).
type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokTag
	tokNumber
	tokString // quoted or multi-line; the value is decoded
	tokLBracket
	tokRBracket
	tokLParen
	tokRParen
	tokLBrace
	tokRBrace
	tokComma
	tokSemicolon
)

var tokNames = [...]string{
	tokEOF: "end of script", tokIdent: "identifier", tokTag: "tag",
	tokNumber: "number", tokString: "string", tokLBracket: "'['",
	tokRBracket: "']'", tokLParen: "'('", tokRParen: "')'",
	tokLBrace: "'{'", tokRBrace: "'}'", tokComma: "','", tokSemicolon: "';'",
}

func (k tokKind) String() string { return tokNames[k] }

type token struct {
	kind tokKind
	pos  Pos
	text string // identifier or tag name (without ':'), decoded string
	num  int64
}

// maxNumber bounds number literals: RFC 5228 section 2.4.1 requires at least
// 2^31-1; we accept up to 2^53 so that sizes such as 4G fit, and refuse more.
const maxNumber = int64(1) << 53

// lexer splits a script into tokens. It accepts CRLF and bare LF line ends
// (scripts written on Unix have LF), keeps line:column positions and stops
// at the first error.
type lexer struct {
	src  string
	off  int
	line int
	col  int
	err  *Error
	file string
}

func newLexer(file, src string) *lexer {
	return &lexer{src: src, line: 1, col: 1, file: file}
}

func (l *lexer) errorf(p Pos, msg string) {
	if l.err == nil {
		l.err = &Error{File: l.file, Pos: p, Msg: msg}
	}
}

func (l *lexer) pos() Pos { return Pos{l.line, l.col} }

func (l *lexer) peekc(n int) byte {
	if l.off+n < len(l.src) {
		return l.src[l.off+n]
	}
	return 0
}

func (l *lexer) advance(n int) {
	for i := 0; i < n && l.off < len(l.src); i++ {
		if l.src[l.off] == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
		l.off++
	}
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipSpace skips white space and comments; it reports false after an error.
func (l *lexer) skipSpace() bool {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			l.advance(1)
		case c == '#':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.advance(1)
			}
		case c == '/' && l.peekc(1) == '*':
			p := l.pos()
			end := strings.Index(l.src[l.off+2:], "*/")
			if end < 0 {
				l.errorf(p, "unterminated comment")
				return false
			}
			l.advance(end + 4)
		default:
			return true
		}
	}
	return true
}

// next returns the next token; after an error it returns tokEOF and l.err
// is set.
func (l *lexer) next() token {
	if !l.skipSpace() {
		return token{kind: tokEOF, pos: l.pos()}
	}
	p := l.pos()
	if l.off >= len(l.src) {
		return token{kind: tokEOF, pos: p}
	}
	c := l.src[l.off]
	switch c {
	case '[':
		l.advance(1)
		return token{kind: tokLBracket, pos: p}
	case ']':
		l.advance(1)
		return token{kind: tokRBracket, pos: p}
	case '(':
		l.advance(1)
		return token{kind: tokLParen, pos: p}
	case ')':
		l.advance(1)
		return token{kind: tokRParen, pos: p}
	case '{':
		l.advance(1)
		return token{kind: tokLBrace, pos: p}
	case '}':
		l.advance(1)
		return token{kind: tokRBrace, pos: p}
	case ',':
		l.advance(1)
		return token{kind: tokComma, pos: p}
	case ';':
		l.advance(1)
		return token{kind: tokSemicolon, pos: p}
	case '"':
		return l.quoted(p)
	case ':':
		l.advance(1)
		if l.off >= len(l.src) || !(isAlpha(l.src[l.off]) || l.src[l.off] == '_') {
			l.errorf(p, "expected a tag name after ':'")
			return token{kind: tokEOF, pos: p}
		}
		return token{kind: tokTag, pos: p, text: l.ident()}
	}
	if isDigit(c) {
		return l.number(p)
	}
	if isAlpha(c) || c == '_' {
		id := l.ident()
		if strings.EqualFold(id, "text") && l.off < len(l.src) && l.src[l.off] == ':' {
			l.advance(1)
			return l.multiline(p)
		}
		return token{kind: tokIdent, pos: p, text: id}
	}
	l.errorf(p, "unexpected character "+quoteChar(c))
	return token{kind: tokEOF, pos: p}
}

func quoteChar(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return "'" + string(c) + "'"
	}
	const hex = "0123456789abcdef"
	return "0x" + string(hex[c>>4]) + string(hex[c&15])
}

func (l *lexer) ident() string {
	start := l.off
	for l.off < len(l.src) {
		c := l.src[l.off]
		if !(isAlpha(c) || isDigit(c) || c == '_') {
			break
		}
		l.advance(1)
	}
	return l.src[start:l.off]
}

func (l *lexer) number(p Pos) token {
	var n int64
	for l.off < len(l.src) && isDigit(l.src[l.off]) {
		n = n*10 + int64(l.src[l.off]-'0')
		if n > maxNumber {
			l.errorf(p, "number too large")
			return token{kind: tokEOF, pos: p}
		}
		l.advance(1)
	}
	if l.off < len(l.src) {
		mult := int64(1)
		switch l.src[l.off] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			l.advance(1)
			if n > maxNumber/mult {
				l.errorf(p, "number too large")
				return token{kind: tokEOF, pos: p}
			}
			n *= mult
		}
	}
	if l.off < len(l.src) && (isAlpha(l.src[l.off]) || l.src[l.off] == '_') {
		l.errorf(l.pos(), "unexpected character "+quoteChar(l.src[l.off])+" after number")
		return token{kind: tokEOF, pos: p}
	}
	return token{kind: tokNumber, pos: p, num: n}
}

// quoted reads a quoted string. RFC 5228 section 2.4.2: backslash escapes
// the next character; "\\" and "\"" are the defined escapes, and any other
// escaped character stands for itself (as Pigeonhole does).
func (l *lexer) quoted(p Pos) token {
	l.advance(1)
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			l.errorf(p, "unterminated string")
			return token{kind: tokEOF, pos: p}
		}
		c := l.src[l.off]
		switch c {
		case '"':
			l.advance(1)
			return token{kind: tokString, pos: p, text: b.String()}
		case '\\':
			if l.off+1 >= len(l.src) {
				l.errorf(p, "unterminated string")
				return token{kind: tokEOF, pos: p}
			}
			b.WriteByte(l.src[l.off+1])
			l.advance(2)
		case '\r':
			// A bare LF line end inside the script becomes CRLF, as a
			// CRLF one stays: strings hold CRLF line ends (section 2.4.2).
			l.advance(1)
		case '\n':
			b.WriteString("\r\n")
			l.advance(1)
		default:
			b.WriteByte(c)
			l.advance(1)
		}
	}
}

// multiline reads the rest of "text:" (RFC 5228 section 2.4.2): optional
// blanks, an optional hash comment, the line end, then lines up to a line
// holding only ".". A leading "." is removed when another "." follows it.
// Line ends become CRLF.
func (l *lexer) multiline(p Pos) token {
	for l.off < len(l.src) && (l.src[l.off] == ' ' || l.src[l.off] == '\t') {
		l.advance(1)
	}
	if l.off < len(l.src) && l.src[l.off] == '#' {
		for l.off < len(l.src) && l.src[l.off] != '\n' {
			l.advance(1)
		}
	}
	if l.off < len(l.src) && l.src[l.off] == '\r' {
		l.advance(1)
	}
	if l.off >= len(l.src) || l.src[l.off] != '\n' {
		l.errorf(l.pos(), "expected end of line after text:")
		return token{kind: tokEOF, pos: p}
	}
	l.advance(1)
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			l.errorf(p, "unterminated multi-line string (missing a line with a single '.')")
			return token{kind: tokEOF, pos: p}
		}
		end := strings.IndexByte(l.src[l.off:], '\n')
		var line string
		if end < 0 {
			line = l.src[l.off:]
		} else {
			line = l.src[l.off : l.off+end]
		}
		n := len(line)
		if end >= 0 {
			n++
		}
		line = strings.TrimSuffix(line, "\r")
		if line == "." {
			l.advance(n)
			return token{kind: tokString, pos: p, text: b.String()}
		}
		if end < 0 {
			l.advance(n)
			l.errorf(p, "unterminated multi-line string (missing a line with a single '.')")
			return token{kind: tokEOF, pos: p}
		}
		if strings.HasPrefix(line, "..") {
			line = line[1:]
		}
		b.WriteString(line)
		b.WriteString("\r\n")
		l.advance(n)
	}
}
