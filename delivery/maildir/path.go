package maildir

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxElement is the longest path element an expansion may produce: the
// NAME_MAX of common Linux file systems.
const MaxElement = 255

// ErrBadPath is wrapped by Template.Expand when a value cannot be mapped
// to a path: an empty element or one longer than MaxElement.
var ErrBadPath = errors.New("maildir: address does not map to a valid path")

// Vars are the values a Template expands. They are typically derived from
// an address after routing: User is the canonical user name, LocalPart the
// local part (decoded from a quoted string), Detail the part after the
// detail delimiter, Domain the domain (lower-cased by Expand).
type Vars struct {
	Domain, User, LocalPart, Detail string
}

// Template maps Vars to a maildir path relative to the root, such as
// "{domain}/{user}" or "users/{user}/Maildir". Placeholders: {domain},
// {user}, {localpart}, {detail}. A Template is immutable and safe for
// concurrent use.
type Template struct {
	src   string
	elems [][]piece // one entry per path element
}

type piece struct {
	lit string // literal text, when v == 0
	v   byte   // 'd' domain, 'u' user, 'l' localpart, 'x' detail
}

// ParseTemplate parses a template. It must be a relative slash-separated
// path without empty, "." or ".." elements, its literal text must not
// contain control characters, backslashes or unknown {placeholders}, and
// no element may start with "." (those are Maildir++ folders).
func ParseTemplate(s string) (*Template, error) {
	if s == "" {
		return nil, errors.New("maildir: empty path template")
	}
	if strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("maildir: path template %q must be relative to the maildir root", s)
	}
	t := &Template{src: s}
	for _, e := range strings.Split(s, "/") {
		if e == "" || e == "." || e == ".." {
			return nil, fmt.Errorf("maildir: path template %q has an empty, \".\" or \"..\" element", s)
		}
		if e[0] == '.' {
			return nil, fmt.Errorf("maildir: path template %q: element %q starts with a dot", s, e)
		}
		var ps []piece
		for rest := e; rest != ""; {
			i := strings.IndexByte(rest, '{')
			if i < 0 {
				ps = append(ps, piece{lit: rest})
				break
			}
			if i > 0 {
				ps = append(ps, piece{lit: rest[:i]})
			}
			j := strings.IndexByte(rest, '}')
			if j < i {
				return nil, fmt.Errorf("maildir: path template %q: unterminated placeholder", s)
			}
			var v byte
			switch rest[i : j+1] {
			case "{domain}":
				v = 'd'
			case "{user}":
				v = 'u'
			case "{localpart}":
				v = 'l'
			case "{detail}":
				v = 'x'
			default:
				return nil, fmt.Errorf("maildir: path template %q: unknown placeholder %s", s, rest[i:j+1])
			}
			ps = append(ps, piece{v: v})
			rest = rest[j+1:]
		}
		for _, p := range ps {
			if p.v == 0 && strings.ContainsFunc(p.lit, func(r rune) bool {
				return r == '\\' || r == '}' || unicode.IsControl(r) || r == utf8.RuneError
			}) {
				return nil, fmt.Errorf("maildir: path template %q: bad character in %q", s, p.lit)
			}
		}
		t.elems = append(t.elems, ps)
	}
	return t, nil
}

// String returns the template's source.
func (t *Template) String() string { return t.src }

// UsesDetail reports whether the template contains {detail}.
func (t *Template) UsesDetail() bool {
	for _, e := range t.elems {
		for _, p := range e {
			if p.v == 'x' {
				return true
			}
		}
	}
	return false
}

// Expand returns the slash-separated path for v, relative to the root.
// Every value is escaped with EscapeElement, so it stays inside its path
// element; the domain is lower-cased first. The result is always a local
// path (filepath.IsLocal) of non-empty elements none of which is "." or
// ".."; errors wrap ErrBadPath.
func (t *Template) Expand(v Vars) (string, error) {
	var b strings.Builder
	for i, e := range t.elems {
		if i > 0 {
			b.WriteByte('/')
		}
		start := b.Len()
		for _, p := range e {
			switch p.v {
			case 0:
				b.WriteString(p.lit)
			case 'd':
				b.WriteString(EscapeElement(strings.ToLower(v.Domain)))
			case 'u':
				b.WriteString(EscapeElement(v.User))
			case 'l':
				b.WriteString(EscapeElement(v.LocalPart))
			case 'x':
				b.WriteString(EscapeElement(v.Detail))
			}
		}
		elem := b.String()[start:]
		if elem == "" {
			return "", fmt.Errorf("%w: empty path element in %q", ErrBadPath, t.src)
		}
		if len(elem) > MaxElement {
			return "", fmt.Errorf("%w: path element longer than %d bytes", ErrBadPath, MaxElement)
		}
	}
	p := b.String()
	// Defence in depth: EscapeElement makes this impossible, and the
	// os.Root below would refuse it anyway.
	if !filepath.IsLocal(p) || filepath.Clean(p) != p {
		return "", fmt.Errorf("%w: %q is not a clean local path", ErrBadPath, p)
	}
	return p, nil
}

// EscapeElement maps s to a string that is safe as one path element and
// differs for different inputs (the mapping is injective): ASCII letters,
// digits and "-_.+=@,~" stay, as do printable non-space UTF-8 characters
// outside ASCII; every other byte, "%" itself, and a leading "." become
// %XX. The result never contains "/", "\", NUL or control characters, and
// is never "." or "..". An empty s gives "".
func EscapeElement(s string) string {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !keep(r, size, i) {
			n++
		}
		i += size
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n*utf8.UTFMax)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if keep(r, size, i) {
			b.WriteString(s[i : i+size])
		} else {
			for j := i; j < i+size; j++ {
				b.WriteByte('%')
				b.WriteByte(hex[s[j]>>4])
				b.WriteByte(hex[s[j]&15])
			}
		}
		i += size
	}
	return b.String()
}

const hex = "0123456789ABCDEF"

// keep reports whether the rune r (size bytes, at byte offset i) is
// written as it is by EscapeElement.
func keep(r rune, size, i int) bool {
	switch {
	case r == utf8.RuneError && size <= 1:
		return false // invalid UTF-8
	case r == '.':
		return i > 0
	case r < utf8.RuneSelf:
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
			strings.ContainsRune("-_+=@,~", r)
	default:
		// unicode.IsPrint excludes format characters (bidi overrides,
		// zero-width joiners), which could disguise a name.
		return unicode.IsPrint(r) && !unicode.IsSpace(r)
	}
}

// FolderName returns the Maildir++ folder (".name") for a detail, such as
// ".lists" for bob+lists, and false if the detail gives no usable name.
// The detail is sanitised as Maildir++ requires: "/", "\", control
// characters, "&" (the modified UTF-7 escape of IMAP folder names, RFC
// 3501 section 5.1.3) and non-ASCII characters become "_"; leading and
// trailing dots are dropped and runs of dots (the Maildir++ hierarchy
// separator, and "..") collapse to one. Matching of detail and folder is
// case-sensitive, as IMAP folder names are.
func FolderName(detail string) (string, bool) {
	var b strings.Builder
	b.Grow(len(detail) + 1)
	b.WriteByte('.')
	dot := true // suppress leading dots and runs of dots
	for _, r := range detail {
		switch {
		case r == '.':
			if !dot {
				b.WriteByte('.')
				dot = true
			}
			continue
		case r == '/' || r == '\\' || r == '&' || r < 0x20 || r >= 0x7f:
			r = '_'
		}
		b.WriteRune(r)
		dot = false
	}
	f := strings.TrimRight(b.String(), ".")
	if len(f) <= 1 || len(f) > MaxElement {
		return "", false
	}
	return f, true
}
