package protocol

import (
	"crypto/tls"
	"strings"
	"time"
	"unicode/utf8"
)

// receivedField returns the Received field the server prepends (RFC 5321
// section 4.4), folded and CRLF-terminated, in a per-connection buffer
// that readHeader copies.
// The "with" keyword is the one registered by RFC 3848 and RFC 6531:
// ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP, LMTPS, LMTPA, LMTPSA, and the
// UTF8SMTP/UTF8LMTP forms of each. The "for" clause names the recipient
// only when there is exactly one, so that a copy shared by several
// recipients does not disclose them to each other.
func (c *conn) receivedField(m *Message) []byte {
	b := c.rcvBuf[:0]
	st := &c.state
	// The client is the one XFORWARD (this transaction) or XCLIENT (the
	// session) names, else the socket's peer; its HELO name is in
	// Hostname after XCLIENT.
	helo, name, addr := st.Hostname, st.XClient.Name, ""
	ip, ipUnknown := c.clientIP()
	if x := &st.XForward; !x.IsZero() {
		if x.Helo != "" {
			helo = x.Helo
		}
		name, addr = x.Name, x.Addr
	}
	// Non-ASCII text is written as it is only into a message sent with
	// SMTPUTF8 (RFC 6532); the values were checked when they were received
	// (isHeaderWord), and appendHeaderWord checks them again.
	utf8OK := m.Params.SMTPUTF8
	b = append(b, "Received: from "...)
	if helo == "" {
		helo = "unknown" // XCLIENT HELO=[UNAVAILABLE]
	}
	if isAddressLiteral(helo) {
		// RFC 5321 section 4.1.4: a client without a name greets with
		// its address literal, which section 4.4's Extended-Domain
		// takes as it is ("from [192.0.2.1] ([192.0.2.1])").
		b = append(b, helo...)
	} else {
		b = appendHeaderWord(b, helo, utf8OK)
	}
	b = append(b, " ("...)
	if name != "" {
		b = appendHeaderWord(b, name, utf8OK)
		b = append(b, ' ')
	}
	switch {
	case addr != "":
		b = append(b, '[')
		b = appendHeaderWord(b, addr, false)
		b = append(b, ']')
	case ip.IsValid():
		b = append(b, '[')
		b = ip.AppendTo(b)
		b = append(b, ']')
	case ipUnknown:
		b = append(b, "unknown"...)
	default:
		b = append(b, "local"...)
	}
	b = append(b, ")\r\n\tby "...)
	b = appendHeaderWord(b, c.srv.hostname(), utf8OK)
	if c.srv.Software != "" {
		b = append(b, " ("...)
		b = appendCommentText(b, c.srv.Software)
		b = append(b, ')')
	}
	b = append(b, " with "...)
	b = append(b, protocolKeyword(st, m.Params.SMTPUTF8)...)
	if st.TLS != nil {
		b = append(b, " ("...)
		b = append(b, tls.VersionName(st.TLS.Version)...)
		b = append(b, " with cipher "...)
		b = append(b, tls.CipherSuiteName(st.TLS.CipherSuite)...)
		b = append(b, ')')
	}
	b = append(b, "\r\n\tid "...)
	b = append(b, m.ID...)
	if len(m.Recipients) == 1 {
		b = appendFor(b, &m.Recipients[0].Address, utf8OK)
	}
	b = append(b, ";\r\n\t"...)
	b = time.Now().AppendFormat(b, receivedDateLayout)
	b = append(b, "\r\n"...)
	c.rcvBuf = b
	return b
}

// receivedDateLayout is the date-time of the Received field (RFC 5322
// section 3.3), with the zone's name as a comment.
const receivedDateLayout = "Mon, 02 Jan 2006 15:04:05 -0700 (MST)"

// appendFor appends the Received field's "for" clause naming a, as the
// Path of RFC 5321 section 4.4: the address as the client wrote it, so a
// quoted local part keeps its quotes and spaces and an address literal its
// brackets. The address passed the path grammar (no controls; a space
// only inside quotes); appendPathText still keeps anything that could
// break the header out of it.
func appendFor(b []byte, a *Address, utf8OK bool) []byte {
	b = append(b, "\r\n\tfor <"...)
	b = appendPathText(b, a.LocalPart, utf8OK)
	if a.Domain != "" {
		b = append(b, '@')
		b = appendPathText(b, a.Domain, utf8OK)
	}
	return append(b, '>')
}

// appendPathText appends a part of a parsed address: printable ASCII and
// spaces as they are, controls as '_', non-ASCII as appendHeaderWord does.
func appendPathText(b []byte, s string, utf8OK bool) []byte {
	return appendSafe(b, s, utf8OK, func(ch byte) bool { return ch < ' ' || ch == 0x7f })
}

// isAddressLiteral reports whether s is exactly an RFC 5321 section 4.1.3
// address-literal ("[192.0.2.1]", "[IPv6:2001:db8::1]").
func isAddressLiteral(s string) bool {
	if len(s) < 2 || s[0] != '[' {
		return false
	}
	end, msg := scanLiteral(s, 0)
	return msg == "" && end == len(s)
}

// protocolKeyword returns the "with" keyword (RFC 3848 section 2, RFC 6531
// section 3.7.3).
func protocolKeyword(st *ConnState, utf8 bool) string {
	var kw string
	switch {
	case st.Protocol == LMTP:
		kw = "LMTP"
	case !st.ESMTP:
		return "SMTP"
	default:
		kw = "ESMTP"
	}
	if utf8 {
		kw = "UTF8" + strings.TrimPrefix(kw, "E")
	}
	suffix := ""
	if st.TLS != nil {
		suffix += "S"
	}
	if st.AuthIdentity != "" {
		suffix += "A"
	}
	return kw + suffix
}

// appendHeaderWord appends a client-supplied word so that it cannot break
// the header: white space, control characters, parentheses, brackets and
// semicolons become '_', and so does each non-ASCII character unless utf8OK
// is set and it passes isHeaderRune (each byte of invalid UTF-8 becomes
// one '_').
func appendHeaderWord(b []byte, s string, utf8OK bool) []byte {
	return appendSafe(b, s, utf8OK, func(ch byte) bool {
		return ch <= ' ' || ch == 0x7f || ch == '(' || ch == ')' || ch == '[' || ch == ']' || ch == ';'
	})
}

// appendSafe appends s with each ASCII byte that bad refuses written as
// '_', and each non-ASCII character as it is if utf8OK is set and it
// passes isHeaderRune, else as '_' (one for each byte of invalid UTF-8).
func appendSafe(b []byte, s string, utf8OK bool, bad func(byte) bool) []byte {
	for i := 0; i < len(s); {
		ch := s[i]
		if ch >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if utf8OK && isHeaderRune(r, n) {
				b = append(b, s[i:i+n]...)
			} else {
				b = append(b, '_')
			}
			i += n
			continue
		}
		if bad(ch) {
			ch = '_'
		}
		b = append(b, ch)
		i++
	}
	return b
}

// appendCommentText appends s as the text of a header comment or a reply
// word list: printable US-ASCII and spaces stay, anything that could end
// the comment or break the line (controls, parentheses, backslash,
// non-ASCII bytes) becomes '_'.
func appendCommentText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < ' ' || ch >= 0x7f || ch == '(' || ch == ')' || ch == '\\' {
			ch = '_'
		}
		b = append(b, ch)
	}
	return b
}
