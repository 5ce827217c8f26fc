package sasl

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Length bounds applied to every mechanism. RFC 4616 section 2 lets a
// server bound these; 256 and 1024 bytes are far above any real user name
// or password and keep a single AUTH line cheap to process.
const (
	// MaxUsernameLength is the longest user name, authorization identity
	// included, in bytes, before and after preparation.
	MaxUsernameLength = 256
	// MaxPasswordLength is the longest password in bytes accepted by
	// PLAIN and LOGIN and by HashPassword.
	MaxPasswordLength = 1024
)

// Reasons PrepareUsername rejects a name. They never quote the name.
var (
	errNameEmpty      = errors.New("sasl: user name is empty")
	errNameTooLong    = errors.New("sasl: user name is too long")
	errNameUTF8       = errors.New("sasl: user name is not valid UTF-8")
	errNameProhibited = errors.New("sasl: user name contains a character prohibited by SASLprep (RFC 4013 section 2.3)")
)

// PrepareUsername returns the form of a user name that this package
// compares and stores. It implements these parts of SASLprep (RFC 4013)
// for stored strings:
//
//   - the input must be valid UTF-8 (RFC 4013 section 1);
//   - mapping (section 2.1): the "commonly mapped to nothing" characters of
//     RFC 3454 table B.1 are removed, and the non-ASCII spaces of table
//     C.1.2 become U+0020;
//   - prohibited output (section 2.3): the control, private-use,
//     non-character, surrogate, display-changing and tagging characters
//     of tables C.2.1 through C.9 are rejected.
//
// It does not apply Unicode normalisation form KC (section 2.2), the
// bidirectional-text rules (section 2.4) or the unassigned code point
// check (section 2.5), which need Unicode tables the standard library
// lacks. ASCII names are unaffected by those steps, so the result is exact
// SASLprep for them; a non-ASCII name must be written in NFKC form in the
// configuration, which is what SASLprep clients send.
//
// The result is never empty and never longer than MaxUsernameLength bytes.
// The errors returned do not contain the name.
func PrepareUsername(name string) (string, error) {
	if name == "" {
		return "", errNameEmpty
	}
	if len(name) > MaxUsernameLength {
		return "", errNameTooLong
	}
	out, ok := saslprep(name)
	if !ok {
		if !utf8.ValidString(name) {
			return "", errNameUTF8
		}
		return "", errNameProhibited
	}
	if out == "" {
		return "", errNameEmpty
	}
	return out, nil
}

// preparePassword applies the same SASLprep subset to a password before
// SCRAM derives its keys (RFC 5802 section 2.2, Normalize). When the
// password is not valid UTF-8 or contains a prohibited character the raw
// bytes are used instead, as PostgreSQL does, so such a password still
// works with clients that send it unchanged.
func preparePassword(password string) string {
	if out, ok := saslprep(password); ok {
		return out
	}
	return password
}

// saslprep maps s and checks the result for prohibited characters. ok is
// false when s is not valid UTF-8 or contains a prohibited character.
func saslprep(s string) (out string, ok bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	// Fast path: printable ASCII maps to itself and is never prohibited.
	ascii := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			ascii = false
			break
		}
	}
	if ascii {
		return s, true
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case mappedToNothing(r):
			continue
		case nonASCIISpace(r):
			r = ' '
		}
		if prohibited(r) {
			return "", false
		}
		b.WriteRune(r)
	}
	return b.String(), true
}

// mappedToNothing reports whether r is in RFC 3454 table B.1. U+200B is in
// both B.1 and C.1.2; like most implementations we remove it.
func mappedToNothing(r rune) bool {
	switch r {
	case 0x00AD, 0x034F, 0x1806, 0x180B, 0x180C, 0x180D, 0x200B, 0x200C,
		0x200D, 0x2060, 0xFEFF:
		return true
	}
	return r >= 0xFE00 && r <= 0xFE0F
}

// nonASCIISpace reports whether r is in RFC 3454 table C.1.2.
func nonASCIISpace(r rune) bool {
	switch r {
	case 0x00A0, 0x1680, 0x202F, 0x205F, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200B
}

// prohibited reports whether r is in one of RFC 3454 tables C.2.1 to C.9,
// the prohibited output of RFC 4013 section 2.3 (C.1.2 is mapped away
// before this check).
func prohibited(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7F: // C.2.1 ASCII control
		return true
	case r >= 0x80 && r <= 0x9F: // C.2.2 non-ASCII control
		return true
	case r == 0x06DD, r == 0x070F, r == 0x180E, r == 0x200C, r == 0x200D,
		r == 0x2028, r == 0x2029, r >= 0x2060 && r <= 0x2063,
		r >= 0x206A && r <= 0x206F, r == 0xFEFF, r >= 0x1D173 && r <= 0x1D17A:
		return true // C.2.2 continued; 206A-206F is also C.8
	case r >= 0xE000 && r <= 0xF8FF, r >= 0xF0000 && r <= 0xFFFFD,
		r >= 0x100000 && r <= 0x10FFFD: // C.3 private use
		return true
	case r >= 0xFDD0 && r <= 0xFDEF, r&0xFFFE == 0xFFFE: // C.4 non-characters
		return true
	case r >= 0xD800 && r <= 0xDFFF: // C.5 surrogates
		return true
	case r >= 0xFFF9 && r <= 0xFFFD: // C.6 inappropriate for plain text
		return true
	case r >= 0x2FF0 && r <= 0x2FFB: // C.7 inappropriate for canonical representation
		return true
	case r == 0x0340, r == 0x0341, r == 0x200E, r == 0x200F,
		r >= 0x202A && r <= 0x202E: // C.8 change display properties
		return true
	case r == 0xE0001, r >= 0xE0020 && r <= 0xE007F: // C.9 tagging
		return true
	}
	return false
}
