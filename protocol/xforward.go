package protocol

import (
	"strings"
)

// cmdXForward handles Postfix's XFORWARD (XFORWARD_README): attributes of
// the original client, accepted only from trusted peers and outside a
// transaction. They apply to the next transaction and feed logs and the
// Received field.
func (c *conn) cmdXForward(arg string) bool {
	switch {
	case !c.srv.trusted(c):
		c.reply(CodeMailboxUnavailable, ECPermSecurity, "XFORWARD not allowed from this client")
		return c.countError()
	case !c.greeted:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "Send "+c.helloVerb()+" first")
		return c.countError()
	case c.tx != nil:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "XFORWARD not allowed during a mail transaction")
		return c.countError()
	case strings.TrimSpace(arg) == "":
		c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: XFORWARD attribute=value ...")
		return c.countError()
	}
	x := c.state.XForward
	for _, f := range strings.Fields(arg) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			c.reply(CodeParamSyntax, ECPermInvalidArgs, "Bad XFORWARD attribute: "+k)
			return c.countError()
		}
		dv, err := decodeXtext(v)
		if err != nil {
			c.reply(CodeParamSyntax, ECPermInvalidArgs, "Bad XFORWARD value for "+k)
			return c.countError()
		}
		if dv == "[UNAVAILABLE]" || dv == "[TEMPUNAVAIL]" {
			dv = ""
		}
		// NAME and HELO go into the Received field; every value is held to
		// the same rule. UTF-8 is allowed as in EHLO: Postfix forwards an
		// SMTPUTF8 client's HELO name as it is.
		if len(dv) > 255 || dv != "" && !isHeaderWord(dv, true) {
			c.reply(CodeParamSyntax, ECPermInvalidArgs, "Bad XFORWARD value for "+k)
			return c.countError()
		}
		switch strings.ToUpper(k) {
		case "NAME":
			x.Name = dv
		case "ADDR":
			if len(dv) > 5 && strings.EqualFold(dv[:5], "IPV6:") {
				dv = dv[5:]
			}
			x.Addr = dv
		case "PORT":
			x.Port = dv
		case "HELO":
			x.Helo = dv
		case "PROTO":
			x.Proto = dv
		case "IDENT":
			x.Ident = dv
		case "SOURCE":
			x.Source = dv
		default:
			c.reply(CodeParamSyntax, ECPermInvalidArgs, "Unknown XFORWARD attribute: "+k)
			return c.countError()
		}
	}
	c.state.XForward = x
	c.reply(CodeOK, ECOK, "OK")
	return true
}
