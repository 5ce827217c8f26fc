package protocol

import (
	"crypto/tls"
	"strings"
	"time"
)

// receivedValue returns the value of the Received field the server
// prepends (RFC 5321 section 4.4), with the protocol keyword registered
// by RFC 3848 and RFC 6531: ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP, LMTPS,
// LMTPA, LMTPSA, and the UTF8SMTP/UTF8LMTP forms of each. The "for"
// clause names the recipient only when there is exactly one, so that a
// copy shared by several recipients does not disclose them to each other.
func (c *conn) receivedValue(m *Message) string {
	var b strings.Builder
	b.Grow(256)
	st := &c.state
	helo, name, addr := st.Hostname, "", ""
	if ip := c.ip; ip.IsValid() {
		addr = ip.String()
	}
	if x := &st.XForward; !x.IsZero() {
		if x.Helo != "" {
			helo = x.Helo
		}
		name, addr = x.Name, x.Addr
	}
	b.WriteString("from ")
	b.WriteString(sanitizeHeaderWord(helo))
	b.WriteString(" (")
	if name != "" {
		b.WriteString(sanitizeHeaderWord(name))
		b.WriteByte(' ')
	}
	if addr != "" {
		b.WriteString("[" + sanitizeHeaderWord(addr) + "]")
	} else {
		b.WriteString("local")
	}
	b.WriteString(")\r\n\tby ")
	b.WriteString(c.srv.hostname())
	b.WriteString(" (lmtpd) with ")
	b.WriteString(protocolKeyword(st, m.Params.SMTPUTF8))
	if st.TLS != nil {
		b.WriteString(" (")
		b.WriteString(tls.VersionName(st.TLS.Version))
		b.WriteString(" with cipher ")
		b.WriteString(tls.CipherSuiteName(st.TLS.CipherSuite))
		b.WriteString(")")
	}
	b.WriteString("\r\n\tid ")
	b.WriteString(m.ID)
	if len(m.Recipients) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(sanitizeHeaderWord(m.Recipients[0].Address.String()))
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(time.Now().Format("Mon, 02 Jan 2006 15:04:05 -0700 (MST)"))
	return b.String()
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

// sanitizeHeaderWord keeps client-supplied words from breaking the header:
// no white space, no control characters, no parentheses or brackets.
func sanitizeHeaderWord(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch <= ' ' || ch == 0x7f || ch == '(' || ch == ')' || ch == '[' || ch == ']' || ch == ';' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, ch := range b {
		if ch <= ' ' || ch == 0x7f || ch == '(' || ch == ')' || ch == '[' || ch == ']' || ch == ';' {
			b[i] = '_'
		}
	}
	return string(b)
}
