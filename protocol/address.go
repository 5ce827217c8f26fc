package protocol

import (
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Address syntax, RFC 5321 section 4.1.2 with the RFC 6531 section 3.3
// extensions for internationalised mail:
//
//	Reverse-path   = Path / "<>"
//	Forward-path   = Path / "<Postmaster>"       ; section 4.5.1
//	Path           = "<" [ A-d-l ":" ] Mailbox ">"
//	A-d-l          = At-domain *( "," At-domain ) ; source route, dropped
//	At-domain      = "@" Domain
//	Mailbox        = Local-part "@" ( Domain / address-literal )
//	Local-part     = Dot-string / Quoted-string
//	Dot-string     = Atom *("." Atom)
//	Atom           = 1*atext                     ; atext =/ UTF8-non-ascii
//	Quoted-string  = DQUOTE *QcontentSMTP DQUOTE
//	QcontentSMTP   = qtextSMTP / quoted-pairSMTP
//	quoted-pairSMTP = %d92 %d32-126
//	qtextSMTP      = %d32-33 / %d35-91 / %d93-126 ; =/ UTF8-non-ascii
//	Domain         = sub-domain *("." sub-domain)
//	sub-domain     = Let-dig [Ldh-str]           ; =/ U-label
//	address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
//	                  General-address-literal ) "]"
//
// The parser is a single forward pass over the string; it returns
// substrings of its input and allocates nothing unless it fails.

// Length limits, RFC 5321 section 4.5.3.1.
const (
	maxLocalPartLen = 64  // section 4.5.3.1.1
	maxDomainLen    = 255 // section 4.5.3.1.2
	maxPathLen      = 256 // section 4.5.3.1.3, counted between the brackets
)

// Client-visible messages of address errors. They are constants so that a
// failed parse allocates only the *Error that carries one.
const (
	msgAddrSyntax     = "Bad address syntax"
	msgAddrCtl        = "CR, LF or NUL in address"
	msgAddrUTF8       = "Invalid UTF-8 in address"
	msgAddrNoBracket  = "Address must be enclosed in <>"
	msgAddrNull       = "Null address not allowed here"
	msgAddrNoDomain   = "Address needs a domain"
	msgAddrLocal      = "Bad local part syntax"
	msgAddrDomain     = "Bad domain syntax"
	msgAddrLiteral    = "Bad address literal"
	msgAddrRoute      = "Bad source route syntax"
	msgAddrLocalLong  = "Local part too long (64 octets max)"
	msgAddrDomainLong = "Domain too long (255 octets max)"
	msgAddrPathLong   = "Path too long (256 octets max)"
)

// pathError returns the 501 reply for a bad MAIL (X.1.7) or RCPT (X.1.3)
// path (RFC 3463 section 3.2).
func pathError(rcpt bool, msg string) *Error {
	if rcpt {
		return NewError(CodeParamSyntax, ECPermBadDestSyntax, msg)
	}
	return NewError(CodeParamSyntax, ECPermBadSender, msg)
}

// parsePath parses the Reverse-path (rcpt false) or Forward-path (rcpt
// true) at the start of s, which must begin with '<'. It returns the
// mailbox, with any source route dropped, and the rest of s after the
// closing '>' (the parameters, untouched).
//
// The null path "<>" is accepted only when rcpt is false; the bare
// "<Postmaster>" (any case, RFC 5321 section 4.5.1) only when rcpt is true,
// with an empty Domain. Unquoted local parts may have leading, trailing or
// consecutive dots: real senders produce them and Postfix accepts them.
// Non-ASCII text is accepted where RFC 6531 allows it and must be valid
// UTF-8; whether SMTPUTF8 was requested is the caller's check.
//
// Errors are *Error with code 501 and enhanced code 5.1.7 for MAIL, 5.1.3
// for RCPT.
func parsePath(s string, rcpt bool) (addr Address, rest string, err error) {
	// A CR, LF or NUL can only come from a broken or hostile client; name
	// it rather than reporting a generic syntax error.
	if strings.ContainsAny(s, "\r\n\x00") {
		return Address{}, "", pathError(rcpt, msgAddrCtl)
	}
	if len(s) == 0 || s[0] != '<' {
		return Address{}, "", pathError(rcpt, msgAddrNoBracket)
	}
	i := 1
	if i < len(s) && s[i] == '>' {
		if rcpt {
			return Address{}, "", pathError(rcpt, msgAddrNull)
		}
		return Address{}, s[2:], nil
	}
	if rcpt && len(s) >= 12 && s[11] == '>' && strings.EqualFold(s[1:11], "postmaster") {
		return Address{LocalPart: s[1:11]}, s[12:], nil
	}
	if i < len(s) && s[i] == '@' {
		j, msg := skipRoute(s, i)
		if msg != "" {
			return Address{}, "", pathError(rcpt, msg)
		}
		i = j
	}
	local, domain, j, msg := parseMailbox(s, i)
	if msg != "" {
		return Address{}, "", pathError(rcpt, msg)
	}
	if j >= len(s) || s[j] != '>' {
		return Address{}, "", pathError(rcpt, msgAddrSyntax)
	}
	if j-1 > maxPathLen {
		return Address{}, "", pathError(rcpt, msgAddrPathLong)
	}
	return Address{LocalPart: local, Domain: domain}, s[j+1:], nil
}

// ParseAddress parses a mailbox written without angle brackets,
// "local@domain", by the same grammar and limits as the MAIL and RCPT
// commands (RFC 5321 section 4.1.2, RFC 6531 section 3.3): a dot-string or
// quoted local part, and a domain (ASCII or with UTF-8 U-labels) or an
// address literal. The whole of s must be the mailbox; the null path, the
// bare Postmaster and source routes are not accepted.
//
// The returned Address holds substrings of s. A failure is an *Error with
// code 501 and enhanced code 5.1.3 whose Message says what is wrong.
func ParseAddress(s string) (Address, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return Address{}, pathError(true, msgAddrCtl)
	}
	local, domain, j, msg := parseMailbox(s, 0)
	if msg != "" {
		return Address{}, pathError(true, msg)
	}
	if j != len(s) {
		return Address{}, pathError(true, msgAddrSyntax)
	}
	if len(s) > maxPathLen {
		return Address{}, pathError(true, msgAddrPathLong)
	}
	return Address{LocalPart: local, Domain: domain}, nil
}

// skipRoute skips an A-d-l and its ':' starting at s[i] == '@' and returns
// the index after the colon. RFC 5321 section 4.1.2 says source routes
// "MUST BE accepted" and "SHOULD be ignored": the domains are checked and
// dropped.
func skipRoute(s string, i int) (int, string) {
	for {
		if i >= len(s) || s[i] != '@' {
			return 0, msgAddrRoute
		}
		j, msg := scanDomain(s, i+1)
		if msg != "" {
			return 0, msg
		}
		if j >= len(s) {
			return 0, msgAddrRoute
		}
		switch s[j] {
		case ',':
			i = j + 1
		case ':':
			return j + 1, ""
		default:
			return 0, msgAddrRoute
		}
	}
}

// parseMailbox parses Local-part "@" (Domain / address-literal) at s[i:]
// and returns both parts and the index after the mailbox. msg is empty on
// success.
func parseMailbox(s string, i int) (local, domain string, end int, msg string) {
	start := i
	var j int
	if i < len(s) && s[i] == '"' {
		j, msg = scanQuoted(s, i)
	} else {
		j, msg = scanDotString(s, i)
	}
	if msg != "" {
		return "", "", 0, msg
	}
	local = s[start:j]
	if j >= len(s) || s[j] != '@' {
		if j == len(s) || s[j] == '>' {
			return "", "", 0, msgAddrNoDomain
		}
		return "", "", 0, msgAddrLocal
	}
	if len(local) > maxLocalPartLen {
		return "", "", 0, msgAddrLocalLong
	}
	i = j + 1
	if i < len(s) && s[i] == '[' {
		j, msg = scanLiteral(s, i)
	} else {
		j, msg = scanDomain(s, i)
		// A character no domain can hold ("x_y.org"): name the domain
		// rather than the address.
		if msg == "" && j < len(s) && s[j] != '>' && s[j] != ' ' && s[j] != '@' {
			msg = msgAddrDomain
		}
	}
	if msg != "" {
		return "", "", 0, msg
	}
	domain = s[i:j]
	if len(domain) > maxDomainLen {
		return "", "", 0, msgAddrDomainLong
	}
	return local, domain, j, ""
}

// atextTable marks the US-ASCII atext characters of RFC 5322 section
// 3.2.3: letters, digits and !#$%&'*+-/=?^_`{|}~.
var atextTable = func() (t [128]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-/=?^_`{|}~" {
		t[c] = true
	}
	return t
}()

// scanDotString scans an unquoted local part: atext, UTF8-non-ascii
// (RFC 6531 section 3.3) and dots. Dots are not checked for position:
// "a..b", ".a" and "a." occur in the wild and Postfix accepts them. It
// returns the index of the first byte that is not part of it.
func scanDotString(s string, i int) (int, string) {
	atoms := false
	for i < len(s) {
		c := s[i]
		switch {
		case c < utf8.RuneSelf && atextTable[c]:
			atoms = true
			i++
		case c == '.':
			i++
		case c >= utf8.RuneSelf:
			n, msg := scanUTF8(s, i)
			if msg != "" {
				return 0, msg
			}
			atoms = true
			i += n
		default:
			return scanDotEnd(i, atoms)
		}
	}
	return scanDotEnd(i, atoms)
}

// scanDotEnd ends a dot-string: it needs at least one atext character.
func scanDotEnd(i int, atoms bool) (int, string) {
	if !atoms {
		return 0, msgAddrLocal
	}
	return i, ""
}

// scanQuoted scans a Quoted-string starting at s[i] == '"' and returns the
// index after the closing quote. A quoted pair must quote a printable
// US-ASCII character or space (RFC 5321 section 4.1.2, quoted-pairSMTP).
func scanQuoted(s string, i int) (int, string) {
	i++
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			return i + 1, ""
		case c == '\\':
			if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
				return 0, msgAddrLocal
			}
			i += 2
		case c >= 32 && c <= 126:
			i++
		case c >= utf8.RuneSelf:
			n, msg := scanUTF8(s, i)
			if msg != "" {
				return 0, msg
			}
			i += n
		default:
			return 0, msgAddrLocal
		}
	}
	return 0, msgAddrLocal
}

// scanUTF8 checks the UTF8-non-ascii sequence at s[i] (RFC 6532 section
// 3.1) and returns its length. Characters that isHeaderRune refuses are
// refused too, since the address goes into header fields (Received,
// Delivered-To): C1 controls (RFC 5198 section 2 excludes them from text
// for interchange), line and paragraph separators, non-ASCII spaces and
// format characters. No address needs them.
func scanUTF8(s string, i int) (int, string) {
	r, n := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && n <= 1 {
		return 0, msgAddrUTF8
	}
	if !isHeaderRune(r, n) {
		return 0, msgAddrLocal
	}
	return n, ""
}

// scanDomain scans a Domain at s[i:] and returns the index of the first
// byte after it. Each label is an LDH label (letters, digits, inner
// hyphens), or a U-label (RFC 6531 section 3.3, RFC 5890 section 2.3.2.1)
// when it contains UTF-8: the non-ASCII characters must then be letters,
// marks or digits, or one of the few IDNA2008 contextual characters (RFC
// 5892 appendix A). That approximates the IDNA2008 tables with the
// standard library; it refuses spaces, symbols, punctuation and controls.
func scanDomain(s string, i int) (int, string) {
	start := i
	for {
		// One label.
		ls := i
		for i < len(s) {
			c := s[i]
			if c < utf8.RuneSelf {
				if c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
					i++
					continue
				}
				break
			}
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n <= 1 {
				return 0, msgAddrUTF8
			}
			if !isULabelRune(r) {
				return 0, msgAddrDomain
			}
			i += n
		}
		if i == ls || s[ls] == '-' || s[i-1] == '-' {
			return 0, msgAddrDomain
		}
		if i < len(s) && s[i] == '.' {
			i++
			continue
		}
		if i-start > maxDomainLen {
			return 0, msgAddrDomainLong
		}
		return i, ""
	}
}

// isULabelRune reports whether a non-ASCII r may appear in a U-label; see
// scanDomain.
func isULabelRune(r rune) bool {
	switch r {
	case 0x00b7, 0x0375, 0x05f3, 0x05f4, 0x30fb, 0x200c, 0x200d:
		// RFC 5892 appendix A: CONTEXTO and CONTEXTJ code points.
		return true
	}
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r)
}

// scanLiteral scans an address-literal starting at s[i] == '[' (RFC 5321
// section 4.1.3) and returns the index after the closing ']'.
func scanLiteral(s string, i int) (int, string) {
	end := strings.IndexByte(s[i:], ']')
	if end < 0 {
		return 0, msgAddrLiteral
	}
	end += i
	body := s[i+1 : end]
	if colon := strings.IndexByte(body, ':'); colon >= 0 {
		tag, content := body[:colon], body[colon+1:]
		if strings.EqualFold(tag, "IPv6") {
			// IPv6-address-literal: RFC 5321 has no zone, and an
			// IPv4 address is not an IPv6-addr.
			a, err := netip.ParseAddr(content)
			if err != nil || !a.Is6() || a.Zone() != "" {
				return 0, msgAddrLiteral
			}
			return end + 1, ""
		}
		// General-address-literal = Standardized-tag ":" 1*dcontent;
		// the tag is an Ldh-str and dcontent is %d33-90 / %d94-126.
		if !isLdhStr(tag) || content == "" {
			return 0, msgAddrLiteral
		}
		for k := 0; k < len(content); k++ {
			if c := content[k]; c < 33 || c > 126 || c == '[' || c == '\\' {
				return 0, msgAddrLiteral
			}
		}
		return end + 1, ""
	}
	if !isIPv4Literal(body) {
		return 0, msgAddrLiteral
	}
	return end + 1, ""
}

// isLdhStr reports whether s is an Ldh-str: *( ALPHA / DIGIT / "-" )
// Let-dig, so at least one character, not ending with a hyphen.
func isLdhStr(s string) bool {
	if s == "" || s[len(s)-1] == '-' {
		return false
	}
	for k := 0; k < len(s); k++ {
		c := s[k]
		if !(c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// isIPv4Literal reports whether s is an IPv4-address-literal: Snum
// 3("." Snum), Snum being 1*3DIGIT with a value of at most 255. Leading
// zeros are allowed by the grammar, so net/netip (which refuses them) is
// not used here.
func isIPv4Literal(s string) bool {
	parts := 0
	for len(s) > 0 {
		n, digits := 0, 0
		for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
			n = n*10 + int(s[digits]-'0')
			digits++
			if digits > 3 {
				return false
			}
		}
		if digits == 0 || n > 255 {
			return false
		}
		parts++
		s = s[digits:]
		if len(s) > 0 {
			if s[0] != '.' || len(s) == 1 {
				return false
			}
			s = s[1:]
		}
	}
	return parts == 4
}
