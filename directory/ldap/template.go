package ldap

import (
	"fmt"
	"strings"

	"github.com/lmtpd/lmtpd/directory"
)

// template is a filter or DN with placeholders, split once at load.
type template struct {
	// parts alternates literal text and placeholder names: even indexes
	// are literal, odd ones a placeholder.
	parts []string
}

// placeholders are the names a template may use.
var placeholders = []string{"address", "localpart", "domain", "detail"}

// parseTemplate splits s at {name} placeholders. An unknown {name} is an
// error (a typo would otherwise search for the literal text); a "{" not
// starting a placeholder is literal.
func parseTemplate(s string) (template, error) {
	var t template
	lit := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '{' {
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			break
		}
		name := s[i+1 : i+end]
		known := false
		for _, p := range placeholders {
			known = known || name == p
		}
		if !known {
			if isIdent(name) {
				return template{}, fmt.Errorf("unknown placeholder {%s} (known: {address}, {localpart}, {domain}, {detail})", name)
			}
			continue
		}
		t.parts = append(t.parts, s[lit:i], name)
		i += end
		lit = i + 1
	}
	t.parts = append(t.parts, s[lit:])
	return t, nil
}

// isIdent reports whether s looks like a placeholder name.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// hasPlaceholders reports whether t uses any placeholder.
func (t template) hasPlaceholders() bool { return len(t.parts) > 1 }

// expand fills in k's values, each passed through escape.
func (t template) expand(k directory.Key, escape func(string) string) string {
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		var v string
		switch p {
		case "address":
			v = k.Address
		case "localpart":
			v = k.LocalPart
		case "domain":
			v = k.Domain
		case "detail":
			v = k.Detail
		}
		b.WriteString(escape(v))
	}
	return b.String()
}

// escapeFilterValue escapes an assertion value for a search filter as RFC
// 4515 section 3 asks: '*', '(', ')', '\' and NUL become \XX, and so does
// every byte above 0x7f (allowed raw for UTF-8, but escaping keeps
// invalid UTF-8 from reaching the server as filter text).
func escapeFilterValue(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '*' || c == '(' || c == ')' || c == '\\' || c == 0 || c > 0x7f {
			b.WriteByte('\\')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// escapeDNValue escapes an attribute value for a DN string as RFC 4514
// section 2.4 asks: '"', '+', ',', ';', '<', '>', '\' and '=' are
// backslash-escaped, a leading '#' or space and a trailing space too, and
// NUL (and any other control byte) is written \XX. An empty value stays
// empty.
func escapeDNValue(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' || c == '\\' || c == '=',
			c == '#' && i == 0,
			c == ' ' && (i == 0 || i == len(s)-1):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			b.WriteByte('\\')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
