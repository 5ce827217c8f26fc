package protocol

import (
	"unicode"
	"unicode/utf8"
)

// What client-given text may reach a header field.
//
// The HELO/EHLO/LHLO argument, the XFORWARD attributes and the recipient's
// address are written into the Received field the server prepends. A
// reader that splits lines on more than CRLF (Unicode line breaking: NEL
// U+0085, LINE SEPARATOR U+2028, PARAGRAPH SEPARATOR U+2029, or a lone CR
// or LF) would otherwise see a field the client made up. So every such
// value passes one check, isHeaderWord, when it is received, and is
// written through appendHeaderWord, which applies the same rune rule.

// isHeaderWord reports whether s is a non-empty word that may be written
// into a header field as it is: printable ASCII without space (0x21 to
// 0x7E), and, when utf8 is true (RFC 6531/6532: SMTPUTF8), also valid
// UTF-8 whose non-ASCII characters pass isHeaderRune. Invalid UTF-8,
// controls (C0, DEL, C1 such as NEL), line and paragraph separators and
// non-ASCII spaces never pass.
func isHeaderWord(s string, utf8OK bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		if !utf8OK {
			return false
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if !isHeaderRune(r, n) {
			return false
		}
		i += n
	}
	return true
}

// isHeaderRune reports whether the non-ASCII rune r, decoded from n bytes,
// may appear in a header word: a valid encoding of a printable character
// (unicode.IsPrint: letters, marks, numbers, punctuation, symbols), or one
// of the joiners U+200C and U+200D that IDNA2008 allows in context (RFC
// 5892 appendix A.1, A.2) and names in several scripts need. Left out:
// C1 controls, U+2028, U+2029, non-ASCII spaces, format characters such as
// bidi overrides and the BOM, surrogates, private use and unassigned code
// points.
func isHeaderRune(r rune, n int) bool {
	if r == utf8.RuneError && n <= 1 {
		return false
	}
	return unicode.IsPrint(r) || r == 0x200c || r == 0x200d
}
