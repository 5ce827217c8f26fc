package protocol

import "strconv"

// writeReply buffers one reply line set. Replies are flushed by the
// connection reader just before it would block on the network, so a
// pipelined batch of commands is answered with one write (RFC 2920 3.2).
//
// The enhanced code is written for every 2xx, 4xx and 5xx reply
// (RFC 2034, RFC 3463) except where withEC is false: the greeting and the
// EHLO/LHLO/HELO reply.
func (c *conn) writeReply(code int, ec EnhancedCode, withEC bool, lines ...string) {
	if withEC && ec.IsZero() {
		ec = EnhancedCode{code / 100, 0, 0}
	}
	b := c.replyBuf[:0]
	for i, l := range lines {
		start := len(b)
		b = strconv.AppendInt(b, int64(code), 10)
		if i == len(lines)-1 {
			b = append(b, ' ')
		} else {
			b = append(b, '-')
		}
		if withEC && code/100 != 3 {
			b = ec.appendTo(b)
			b = append(b, ' ')
		}
		b = appendSafeText(b, l)
		b = capReplyLine(b, start)
		b = append(b, '\r', '\n')
	}
	c.replyBuf = b[:0]
	c.bw.Write(b)
	if c.log.Trace().Enabled() {
		c.log.Trace().Str("dir", "out").Bytes("line", b).Msg("wire")
	}
}

// replyRcpt writes an LMTP per-recipient reply, "<rcpt> text1text2",
// without building the text first.
func (c *conn) replyRcpt(code int, ec EnhancedCode, rcpt *Address, text1, text2 string) {
	b := c.replyBuf[:0]
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = ec.appendTo(b)
	b = append(b, " <"...)
	b = appendSafeText(b, rcpt.LocalPart)
	if rcpt.Domain != "" {
		b = append(b, '@')
		b = appendSafeText(b, rcpt.Domain)
	}
	b = append(b, "> "...)
	b = appendSafeText(b, text1)
	b = appendSafeText(b, text2)
	b = capReplyLine(b, 0)
	b = append(b, '\r', '\n')
	c.replyBuf = b[:0]
	c.bw.Write(b)
	if c.log.Trace().Enabled() {
		c.log.Trace().Str("dir", "out").Bytes("line", b).Msg("wire")
	}
}

// reply writes a single-line reply with an enhanced code.
func (c *conn) reply(code int, ec EnhancedCode, text string) {
	c.writeReply(code, ec, true, text)
}

// replyErr turns err into a reply. This is the one place where errors
// become replies: an *Error anywhere in err's chain is sent as it is
// (once replyFor made its codes well-formed); anything else is a generic
// transient failure naming the session id, so internal text never
// reaches the client. The cause is logged.
func (c *conn) replyErr(err error) {
	switch e := AsError(err); {
	case e == nil:
		c.log.Error().Err(err).Msg("internal error")
	case e.Code < 400 || e.Code > 599:
		c.log.Error().Err(err).Int("code", e.Code).Msg("error with a reply code that is not a failure")
	case e.Err != nil:
		c.log.Debug().Err(e.Err).Int("code", e.Code).Msg("reply with cause")
	}
	e := c.errorFor(err)
	c.reply(e.Code, e.Enhanced(), e.Message)
}

// errorFor returns the *Error that err is answered with (see replyErr).
func (c *conn) errorFor(err error) *Error { return replyFor(err, c.state.ID) }

// replyFor returns the *Error that err is answered with in the session
// sessionID: an *Error in err's chain, or a generic transient failure
// that names the session, so that internal text never reaches the client.
//
// An *Error is sent only as a well-formed failure reply: a basic code
// outside 400-599 (a backend's 0, 250 or 354 would break the dialogue)
// makes it the generic failure, and an enhanced code whose class is not
// the basic code's (550 with 4.2.2) or whose numbers are out of range
// takes the basic code's class (RFC 3463 section 2, RFC 2034 section 4:
// the class must match the reply's first digit), keeping its subject
// and detail when they are valid.
func replyFor(err error, sessionID string) *Error {
	e := AsError(err)
	if e == nil || e.Code < 400 || e.Code > 599 {
		return NewError(CodeLocalError, ECTempSystem, "Internal error, try again later (session "+sessionID+")")
	}
	ec := e.Enhanced()
	if ec[0] == e.Code/100 && validEnhanced(ec) {
		return e
	}
	fixed := *e
	fixed.EnhancedCode = EnhancedCode{e.Code / 100, 0, 0}
	if validEnhanced(EnhancedCode{e.Code / 100, ec[1], ec[2]}) {
		fixed.EnhancedCode = EnhancedCode{e.Code / 100, ec[1], ec[2]}
	}
	return &fixed
}

// validEnhanced reports whether c is a failure or success code of RFC 3463
// section 2: class 2, 4 or 5, subject and detail 0 to 999.
func validEnhanced(c EnhancedCode) bool {
	return (c[0] == 2 || c[0] == 4 || c[0] == 5) && c[1] >= 0 && c[1] <= 999 && c[2] >= 0 && c[2] <= 999
}

// maxSentReplyLine is the longest reply line the server writes, CRLF
// included (RFC 5321 section 4.5.3.1.5).
const maxSentReplyLine = 512

// capReplyLine cuts the reply line that starts at b[start] (written
// without its CRLF) to maxSentReplyLine with the CRLF. Lines that echo what
// the client sent (the EHLO name, an address) could otherwise pass the
// limit; the text is ASCII by then, so a cut never splits a character.
func capReplyLine(b []byte, start int) []byte {
	if len(b)-start > maxSentReplyLine-2 {
		b = b[:start+maxSentReplyLine-2]
	}
	return b
}

// appendSafeText appends s with everything but printable US-ASCII replaced
// by '?': reply text must not carry CR, LF or 8-bit bytes (RFC 5321 4.2).
func appendSafeText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < 0x20 || ch > 0x7e {
			ch = '?'
		}
		b = append(b, ch)
	}
	return b
}
