package directory

import (
	"fmt"
	"strings"
)

// Field names one part of a Key, as a placeholder names it.
type Field int

// The placeholders a query, filter or DN template may use. {user} is
// accepted as another name for {localpart}, as the maildir template
// spells it.
const (
	FieldAddress   Field = iota + 1 // {address}
	FieldLocalPart                  // {localpart} (also {user})
	FieldDomain                     // {domain}
	FieldDetail                     // {detail}
)

var fieldNames = map[string]Field{
	"address":   FieldAddress,
	"localpart": FieldLocalPart,
	"user":      FieldLocalPart,
	"domain":    FieldDomain,
	"detail":    FieldDetail,
}

// String returns the placeholder's canonical name, without braces.
func (f Field) String() string {
	switch f {
	case FieldAddress:
		return "address"
	case FieldLocalPart:
		return "localpart"
	case FieldDomain:
		return "domain"
	case FieldDetail:
		return "detail"
	}
	return fmt.Sprintf("Field(%d)", int(f))
}

// Value returns the part of k that f names.
func (k Key) Value(f Field) string {
	switch f {
	case FieldAddress:
		return k.Address
	case FieldLocalPart:
		return k.LocalPart
	case FieldDomain:
		return k.Domain
	case FieldDetail:
		return k.Detail
	}
	return ""
}

// TemplatePart is one piece of a parsed Template: literal text, or a
// placeholder (Field != 0, Literal "").
type TemplatePart struct {
	Literal string
	Field   Field
}

// Template is a query, filter or DN with placeholders, parsed once at
// load. The zero Template is empty. A Template is immutable and safe for
// concurrent use.
//
// Syntax: {address}, {localpart} (or {user}), {domain} and {detail} are
// placeholders; "{{" and "}}" stand for a literal brace; any other "{" is
// an error, so a misspelt placeholder is caught at load instead of
// being sent to the directory as text.
//
// How a value enters the result is the driver's business, never the
// template's: SQL turns each placeholder into a bind parameter
// (sql.Parts), LDAP escapes it per RFC 4515 or RFC 4514 (Expand).
type Template struct {
	src   string
	parts []TemplatePart
}

// ParseTemplate parses s. The error names the offending placeholder and
// lists the known ones.
func ParseTemplate(s string) (Template, error) {
	t := Template{src: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, TemplatePart{Literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i += 2
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i += 2
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return Template{}, fmt.Errorf("unterminated placeholder at offset %d in %q (write {{ for a literal brace)", i, s)
			}
			name := s[i+1 : i+end]
			f, ok := fieldNames[name]
			if !ok {
				return Template{}, fmt.Errorf("unknown placeholder {%s} in %q (known: {address} {localpart} {domain} {detail}; write {{ for a literal brace)", name, s)
			}
			flush()
			t.parts = append(t.parts, TemplatePart{Field: f})
			i += end + 1
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	return t, nil
}

// MustParseTemplate is ParseTemplate for templates fixed in code; it
// panics on error.
func MustParseTemplate(s string) Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template as written.
func (t Template) String() string { return t.src }

// Parts returns the parsed pieces in order. The slice is shared: callers
// must not modify it.
func (t Template) Parts() []TemplatePart { return t.parts }

// Uses reports whether the template contains placeholder f.
func (t Template) Uses(f Field) bool {
	for _, p := range t.parts {
		if p.Field == f {
			return true
		}
	}
	return false
}

// Expand returns the template with each placeholder replaced by
// escape(value). escape must make any value harmless in the target
// syntax (LDAP filter or DN escaping); a nil escape inserts values as
// they are, which is only right for text that is never interpreted.
func (t Template) Expand(k Key, escape func(string) string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.Field == 0 {
			b.WriteString(p.Literal)
			continue
		}
		v := k.Value(p.Field)
		if escape != nil {
			v = escape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// KeyFor splits address into a Key the simple way: local part and domain
// at the last '@', the domain lower-cased, no detail. Callers that know
// the recipient delimiter and case rules (delivery) build the Key
// themselves.
func KeyFor(address string) Key {
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return Key{Address: address, LocalPart: address}
	}
	local, domain := address[:at], strings.ToLower(address[at+1:])
	return Key{Address: local + "@" + domain, LocalPart: local, Domain: domain}
}
