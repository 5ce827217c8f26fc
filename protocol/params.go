package protocol

import (
	"math"
	"strings"
	"unicode/utf8"
)

// MAIL and RCPT parameters, RFC 5321 section 4.1.2:
//
//	Mail-parameters = esmtp-param *(SP esmtp-param)
//	esmtp-param     = esmtp-keyword ["=" esmtp-value]
//	esmtp-keyword   = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//	esmtp-value     = 1*(%d33-60 / %d62-126)   ; =/ UTF8-non-ascii (RFC 6531)
//
// Keywords are case-insensitive. An unknown keyword, or one of an extension
// the session did not advertise, is answered 555 (RFC 5321 section
// 4.1.1.11); a known keyword with a bad, missing or repeated value 501.

// paramSet says which parameter-carrying extensions the session
// advertised. esmtp is false after a plain HELO: then no parameter at all
// is allowed.
type paramSet struct {
	esmtp    bool // EHLO or LHLO was used
	smtputf8 bool // SMTPUTF8, RFC 6531
	dsn      bool // DSN, RFC 3461
	chunking bool // CHUNKING, RFC 3030 (allows BODY=BINARYMIME)
	size     bool // SIZE, RFC 1870
	auth     bool // AUTH, RFC 4954
}

// Limits on parameter values.
const (
	maxSizeDigits = 20  // RFC 1870 section 3: size-value = 1*20DIGIT
	maxEnvIDLen   = 100 // RFC 3461 section 4.4, counted as sent (xtext)
)

// Bits for duplicate detection.
const (
	pSize = 1 << iota
	pBody
	pSMTPUTF8
	pRet
	pEnvID
	pAuth
	pNotify
	pORcpt
)

// paramError is the 501 reply for a bad value of a known parameter.
func paramError(msg string) *Error {
	return NewError(CodeParamSyntax, ECPermInvalidArgs, msg)
}

// unsupportedParam is the 555 reply for a parameter we do not know or did
// not advertise (RFC 5321 section 4.1.1.11). kw is the keyword as sent; it
// has been checked to be esmtp-keyword syntax, so it is printable ASCII.
func unsupportedParam(kw string) *Error {
	return NewError(CodeParamsNotRecog, ECPermInvalidArgs, "Unsupported parameter "+kwText(kw))
}

// kwText returns a keyword for a reply: upper case and at most 32
// characters, so that a long one cannot make the reply line too long.
func kwText(kw string) string {
	if len(kw) > 32 {
		return strings.ToUpper(kw[:32]) + "..."
	}
	return strings.ToUpper(kw)
}

// paramScanner splits a parameter string into esmtp-params.
type paramScanner struct {
	s string
}

// next returns the next parameter. ok is false at the end. value is ""
// and hasValue false for a keyword alone. A syntax error is returned as a
// 501 *Error.
func (p *paramScanner) next() (kw, value string, hasValue, ok bool, err *Error) {
	// Parameters are separated by SP; RFC 5321 section 4.1.1.2 and 4.1.2
	// write one, real clients sometimes add a trailing or doubled one.
	for len(p.s) > 0 && p.s[0] == ' ' {
		p.s = p.s[1:]
	}
	if p.s == "" {
		return "", "", false, false, nil
	}
	end := strings.IndexByte(p.s, ' ')
	if end < 0 {
		end = len(p.s)
	}
	tok := p.s[:end]
	p.s = p.s[end:]
	eq := strings.IndexByte(tok, '=')
	if eq < 0 {
		kw = tok
	} else {
		kw, value, hasValue = tok[:eq], tok[eq+1:], true
	}
	if !isKeyword(kw) {
		return "", "", false, false, paramError("Bad parameter syntax")
	}
	if hasValue && !isESMTPValue(value) {
		return "", "", false, false, paramError("Bad value for parameter " + kwText(kw))
	}
	return kw, value, hasValue, true, nil
}

// isKeyword reports whether s is an esmtp-keyword.
func isKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return false
		}
	}
	return true
}

// isESMTPValue reports whether s is an esmtp-value: printable US-ASCII
// other than '=' (RFC 5321), or UTF-8 (RFC 6531 section 3.3). Space never
// occurs: the scanner splits on it.
func isESMTPValue(s string) bool {
	if s == "" {
		return false
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			continue
		}
		if c < 33 || c > 126 || c == '=' {
			return false
		}
	}
	return ascii || utf8.ValidString(s)
}

// parseMailParams parses the parameters of MAIL FROM, s being what follows
// the closing '>' of the reverse-path ("" or starting with a space).
// allowed says which extensions the session advertised.
//
// Known parameters: SIZE (RFC 1870), BODY (RFC 6152; BINARYMIME needs
// CHUNKING, RFC 3030), SMTPUTF8 (RFC 6531), RET and ENVID (RFC 3461), AUTH
// (RFC 4954 section 5). A SIZE too large for an int64 becomes
// math.MaxInt64, which any size limit then refuses. Errors are *Error:
// 555 5.5.4 for an unknown or unadvertised parameter, 501 5.5.4 for bad
// syntax, a bad or missing value or a repeated keyword.
func parseMailParams(s string, allowed paramSet) (MailParams, error) {
	var mp MailParams
	if s != "" && s[0] != ' ' {
		return mp, paramError("Bad parameter syntax")
	}
	sc := paramScanner{s: s}
	seen := 0
	for {
		kw, value, hasValue, ok, perr := sc.next()
		if perr != nil {
			return MailParams{}, perr
		}
		if !ok {
			return mp, nil
		}
		if !allowed.esmtp {
			// RFC 5321 section 4.1.1.11: parameters need EHLO.
			return MailParams{}, unsupportedParam(kw)
		}
		var bit int
		switch {
		case strings.EqualFold(kw, "SIZE") && allowed.size:
			bit = pSize
		case strings.EqualFold(kw, "BODY"):
			bit = pBody
		case strings.EqualFold(kw, "SMTPUTF8") && allowed.smtputf8:
			bit = pSMTPUTF8
		case strings.EqualFold(kw, "RET") && allowed.dsn:
			bit = pRet
		case strings.EqualFold(kw, "ENVID") && allowed.dsn:
			bit = pEnvID
		case strings.EqualFold(kw, "AUTH") && allowed.auth:
			bit = pAuth
		default:
			return MailParams{}, unsupportedParam(kw)
		}
		if seen&bit != 0 {
			return MailParams{}, paramError("Duplicate parameter " + kwText(kw))
		}
		seen |= bit
		if bit == pSMTPUTF8 {
			if hasValue {
				return MailParams{}, paramError("SMTPUTF8 takes no value")
			}
			mp.SMTPUTF8 = true
			continue
		}
		if !hasValue {
			return MailParams{}, paramError("Missing value for parameter " + kwText(kw))
		}
		switch bit {
		case pSize:
			n, ok := parseSize(value)
			if !ok {
				return MailParams{}, paramError("Bad SIZE value")
			}
			mp.Size = n
		case pBody:
			switch {
			case strings.EqualFold(value, "7BIT"):
				mp.Body = Body7Bit
			case strings.EqualFold(value, "8BITMIME"):
				mp.Body = Body8BitMIME
			case strings.EqualFold(value, "BINARYMIME"):
				if !allowed.chunking {
					// RFC 3030 section 3: BINARYMIME needs CHUNKING.
					return MailParams{}, unsupportedParam("BODY=BINARYMIME")
				}
				mp.Body = BodyBinaryMIME
			default:
				return MailParams{}, paramError("Bad BODY value")
			}
		case pRet:
			switch {
			case strings.EqualFold(value, "FULL"):
				mp.Return = DSNReturnFull
			case strings.EqualFold(value, "HDRS"):
				mp.Return = DSNReturnHeaders
			default:
				return MailParams{}, paramError("Bad RET value")
			}
		case pEnvID:
			if len(value) > maxEnvIDLen {
				return MailParams{}, paramError("ENVID too long (100 characters max)")
			}
			id, err := decodeXtext(value)
			if err != nil || !isPrintableText(id) {
				return MailParams{}, paramError("Bad ENVID value")
			}
			mp.EnvelopeID = id
		case pAuth:
			if value == "<>" {
				// RFC 4954 section 5: the submitter is unknown.
				mp.Auth = value
				continue
			}
			a, err := decodeXtext(value)
			if err != nil || !isPrintableText(a) {
				return MailParams{}, paramError("Bad AUTH value")
			}
			mp.Auth = a
		}
	}
}

// parseRcptParams parses the parameters of RCPT TO, s being what follows
// the closing '>' of the forward-path ("" or starting with a space).
//
// Known parameters: NOTIFY and ORCPT (RFC 3461 sections 4.1 and 4.2), both
// needing DSN. NOTIFY is NEVER alone or a comma list of SUCCESS, FAILURE
// and DELAY (a repeated entry is kept once); ORCPT is addr-type ";" xtext,
// the address decoded. Errors are as for parseMailParams.
func parseRcptParams(s string, allowed paramSet) (RcptParams, error) {
	var rp RcptParams
	if s != "" && s[0] != ' ' {
		return rp, paramError("Bad parameter syntax")
	}
	sc := paramScanner{s: s}
	seen := 0
	for {
		kw, value, hasValue, ok, perr := sc.next()
		if perr != nil {
			return RcptParams{}, perr
		}
		if !ok {
			return rp, nil
		}
		if !allowed.esmtp {
			return RcptParams{}, unsupportedParam(kw)
		}
		var bit int
		switch {
		case strings.EqualFold(kw, "NOTIFY") && allowed.dsn:
			bit = pNotify
		case strings.EqualFold(kw, "ORCPT") && allowed.dsn:
			bit = pORcpt
		default:
			return RcptParams{}, unsupportedParam(kw)
		}
		if seen&bit != 0 {
			return RcptParams{}, paramError("Duplicate parameter " + kwText(kw))
		}
		seen |= bit
		if !hasValue {
			return RcptParams{}, paramError("Missing value for parameter " + kwText(kw))
		}
		switch bit {
		case pNotify:
			n, err := parseNotify(value)
			if err != nil {
				return RcptParams{}, err
			}
			rp.Notify = n
		case pORcpt:
			// RFC 3461 section 4.2: addr-type ";" xtext, addr-type an
			// atom; the decoded address must be printable US-ASCII.
			semi := strings.IndexByte(value, ';')
			if semi <= 0 || !isAtom(value[:semi]) {
				return RcptParams{}, paramError("Bad ORCPT value")
			}
			a, err := decodeXtext(value[semi+1:])
			if err != nil || a == "" || !isPrintableText(a) {
				return RcptParams{}, paramError("Bad ORCPT value")
			}
			rp.OriginalRecipientType = value[:semi]
			rp.OriginalRecipient = a
		}
	}
}

// parseNotify parses a NOTIFY value (RFC 3461 section 4.1).
func parseNotify(v string) ([]DSNNotify, *Error) {
	if strings.EqualFold(v, "NEVER") {
		return []DSNNotify{DSNNotifyNever}, nil
	}
	var seen [3]bool
	out := make([]DSNNotify, 0, 3)
	for v != "" {
		item := v
		if c := strings.IndexByte(v, ','); c >= 0 {
			item, v = v[:c], v[c+1:]
			if v == "" {
				return nil, paramError("Bad NOTIFY value")
			}
		} else {
			v = ""
		}
		var k int
		var n DSNNotify
		switch {
		case strings.EqualFold(item, "SUCCESS"):
			k, n = 0, DSNNotifySuccess
		case strings.EqualFold(item, "FAILURE"):
			k, n = 1, DSNNotifyFailure
		case strings.EqualFold(item, "DELAY"):
			k, n = 2, DSNNotifyDelay
		case strings.EqualFold(item, "NEVER"):
			return nil, paramError("NOTIFY=NEVER must be alone")
		default:
			return nil, paramError("Bad NOTIFY value")
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// parseSize parses an RFC 1870 size-value, 1*20DIGIT. A value that does
// not fit an int64 (which 20 digits can exceed) is returned as
// math.MaxInt64; so is one with more than 20 digits, which is answered as
// too big rather than as a syntax error.
func parseSize(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	overflow := len(s) > maxSizeDigits
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			overflow = true
		}
		if !overflow {
			n = n*10 + d
		}
	}
	if overflow {
		return math.MaxInt64, true
	}
	return n, true
}

// isAtom reports whether s is an RFC 5322 atom (1*atext), the syntax of
// an ORCPT addr-type.
func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || !atextTable[c] {
			return false
		}
	}
	return true
}

// isPrintableText reports whether s is printable US-ASCII or space, what
// RFC 3461 sections 4.2 and 4.4 require of a decoded ORCPT or ENVID; the
// same is required of AUTH, whose value is an addr-spec.
func isPrintableText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 32 || c > 126 {
			return false
		}
	}
	return true
}

// errXtext is the cause returned by decodeXtext.
var errXtext = NewError(CodeParamSyntax, ECPermInvalidArgs, "Bad xtext encoding")

// decodeXtext decodes RFC 3461 section 4 xtext: characters 33-126 other
// than '+' and '=' stand for themselves, "+" followed by two upper-case
// hex digits for the octet they name. Anything else is an error (a 501
// *Error). A string without '+' is returned as it is, without allocating.
func decodeXtext(s string) (string, error) {
	plus := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '=' {
			return "", errXtext
		}
		if c == '+' && plus < 0 {
			plus = i
		}
	}
	if plus < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:plus])
	for i := plus; i < len(s); i++ {
		c := s[i]
		if c != '+' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return "", errXtext
		}
		hi, ok1 := upperHex(s[i+1])
		lo, ok2 := upperHex(s[i+2])
		if !ok1 || !ok2 {
			return "", errXtext
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

// upperHex decodes one hexchar digit of RFC 3461 ("0"-"9", "A"-"F").
func upperHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// encodeXtext encodes s as RFC 3461 section 4 xtext: '+', '=' and octets
// outside 33-126 become "+XX" with upper-case hex. A string that needs no
// encoding is returned as it is.
func encodeXtext(s string) string {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == '+' || c == '=' {
			break
		}
	}
	if i == len(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
