package protocol

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// XClientAttrs are the attributes of Postfix's XCLIENT command
// (XCLIENT_README): the original client a proxy speaks for. Empty fields
// are not sent; "[UNAVAILABLE]" and "[TEMPUNAVAIL]" may be given as
// values, as the README defines them.
type XClientAttrs struct {
	Addr     string // client address; an IPv6 address gets the "IPV6:" prefix
	Name     string // client host name, as verified by the proxy
	Port     string // client port
	Helo     string // the name the client sent with HELO/EHLO
	Proto    string // SMTP or ESMTP
	Login    string // SASL login name, if the client authenticated
	DestAddr string // address the client connected to
	DestPort string // port the client connected to
	// Other holds further attributes by upper-case name, for servers that
	// announce them; sent in name order after the ones above.
	Other map[string]string
}

func (x *XClientAttrs) pairs() [][2]string {
	p := [][2]string{
		{"NAME", x.Name}, {"ADDR", ipv6Prefix(x.Addr)}, {"PORT", x.Port},
		{"PROTO", x.Proto}, {"HELO", x.Helo}, {"LOGIN", x.Login},
		{"DESTADDR", ipv6Prefix(x.DestAddr)}, {"DESTPORT", x.DestPort},
	}
	keys := make([]string, 0, len(x.Other))
	for k := range x.Other {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p = append(p, [2]string{strings.ToUpper(k), x.Other[k]})
	}
	return p
}

// ipv6Prefix writes an IPv6 address as Postfix wants it in XCLIENT and
// XFORWARD ADDR: "IPV6:2001:db8::1".
func ipv6Prefix(a string) string {
	if ip, err := netip.ParseAddr(a); err == nil && ip.Is6() && !ip.Is4In6() {
		return "IPV6:" + a
	}
	return a
}

// maxXCommand bounds an XCLIENT or XFORWARD line (CRLF excluded): RFC
// 5321's 512-octet command line. Attributes that do not fit go in a
// further command, as Postfix's client does.
const maxXCommand = 510

// xLines builds the command lines for verb from the attributes the
// server offered; the others are left out. Values are xtext-encoded.
func xLines(verb string, offered []string, pairs [][2]string) ([]string, error) {
	var lines []string
	cur := verb
	for _, p := range pairs {
		if p[1] == "" || !slices.Contains(offered, p[0]) {
			continue
		}
		if !isKeyword(p[0]) {
			return nil, fmt.Errorf("protocol: client: bad %s attribute name %q", verb, p[0])
		}
		a := " " + p[0] + "=" + encodeXtext(p[1])
		if len(verb)+len(a) > maxXCommand {
			return nil, fmt.Errorf("protocol: client: %s attribute %s too long", verb, p[0])
		}
		if len(cur)+len(a) > maxXCommand {
			lines = append(lines, cur)
			cur = verb
		}
		cur += a
	}
	if cur != verb {
		lines = append(lines, cur)
	}
	return lines, nil
}

// XClient sends Postfix's XCLIENT with the attributes the server offered
// (XClientAttributes; the others are left out, and nothing is sent when
// none is left), then, as the server answers a successful XCLIENT with a
// new 220 greeting, says hello again (also after the 250 that smtp-sink
// and Postfix before 2.3 send). It wraps ErrNotOffered when the
// server does not offer XCLIENT. A refusal is an *Error. It must be sent
// outside a transaction.
func (c *Client) XClient(ctx context.Context, x *XClientAttrs) error {
	offered := c.XClientAttributes()
	if offered == nil {
		return fmt.Errorf("%w: XCLIENT", ErrNotOffered)
	}
	lines, err := xLines("XCLIENT", offered, x.pairs())
	if err != nil || len(lines) == 0 {
		return err
	}
	timeout := c.opts.dur(c.opts.GreetingTimeout, DefaultClientGreetingTimeout)
	for _, l := range lines {
		r, err := c.cmd(ctx, timeout, l)
		if err != nil {
			return err
		}
		switch r.Code {
		case CodeReady:
			c.greeting = r
		case CodeOK:
			// smtp-sink, and Postfix before 2.3, answer 250 and keep
			// the session; saying hello again is harmless there.
		default:
			return r.errOr(fmt.Errorf("protocol: client: unexpected reply to XCLIENT: %s", r))
		}
	}
	return c.Hello(ctx)
}

// XForward sends Postfix's XFORWARD (XFORWARD_README) with the
// attributes of x the server offered (XForwardAttributes; the others are
// left out, and nothing is sent when none is left). They apply to the
// next transaction. It wraps ErrNotOffered when the server does not
// offer XFORWARD. A refusal is an *Error.
func (c *Client) XForward(ctx context.Context, x *XForward) error {
	offered := c.XForwardAttributes()
	if offered == nil {
		return fmt.Errorf("%w: XFORWARD", ErrNotOffered)
	}
	lines, err := xLines("XFORWARD", offered, [][2]string{
		{"NAME", x.Name}, {"ADDR", ipv6Prefix(x.Addr)}, {"PORT", x.Port},
		{"PROTO", x.Proto}, {"HELO", x.Helo}, {"IDENT", x.Ident}, {"SOURCE", x.Source},
	})
	if err != nil {
		return err
	}
	for _, l := range lines {
		if err := c.simple(ctx, l); err != nil {
			return err
		}
	}
	return nil
}
