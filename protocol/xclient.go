package protocol

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// XClientAttrSet is a set of XCLIENT attributes, one bit each.
type XClientAttrSet uint16

// The XCLIENT attributes: those of Postfix's XCLIENT_README, and TTL,
// Dovecot's hop count extension (see ProxyHop).
const (
	XClientName XClientAttrSet = 1 << iota
	XClientAddr
	XClientPort
	XClientProto
	XClientHelo
	XClientLogin
	XClientDestAddr
	XClientDestPort
	XClientTTL
)

// xclientKeyword is the EHLO/LHLO keyword with the attributes the server
// accepts, offered to trusted peers only (XCLIENT_README: "It is followed
// by the names of the attributes that the XCLIENT implementation
// supports"). A client sends TTL only to a server that lists it.
const xclientKeyword = "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT TTL"

// xclientNames maps attribute names (matched without regard to case) to
// their bits, in the order of xclientKeyword.
var xclientNames = []struct {
	name string
	attr XClientAttrSet
}{
	{"NAME", XClientName}, {"ADDR", XClientAddr}, {"PORT", XClientPort},
	{"PROTO", XClientProto}, {"HELO", XClientHelo}, {"LOGIN", XClientLogin},
	{"DESTADDR", XClientDestAddr}, {"DESTPORT", XClientDestPort}, {"TTL", XClientTTL},
}

// maxXClientValue is the longest attribute value accepted, after xtext
// decoding (XCLIENT_README note 1: names up to 255 characters; Postfix
// refuses any longer value).
const maxXClientValue = 255

// XClient holds what a trusted proxy said about the original client with
// XCLIENT (Postfix's XCLIENT_README). Attributes accumulate over the
// session: each XCLIENT command replaces the attributes it names and
// keeps the others, so a proxy may split a long set over several commands
// as the README advises. Sent tells which attributes were given; a given
// attribute whose value was [UNAVAILABLE] (or [TEMPUNAVAIL] for NAME) has
// its zero value.
type XClient struct {
	// Sent is the set of attributes the proxy sent.
	Sent XClientAttrSet
	// Name is the client's host name as the proxy verified it (NAME).
	Name string
	// Addr is the client's address (ADDR; an IPv6 address may come with
	// or without the IPV6: prefix). IPv4-mapped IPv6 addresses are
	// unmapped.
	Addr netip.Addr
	// Port is the client's TCP port (PORT), 0 when unknown.
	Port int
	// Proto is SMTP, ESMTP or LMTP (PROTO, upper-cased): how the client
	// spoke to the proxy. It is recorded, not acted on: this connection's
	// own dialect still follows its EHLO, LHLO or HELO.
	Proto string
	// Helo is the client's HELO/EHLO name (HELO).
	Helo string
	// Login is the client's SASL login name (LOGIN); it also becomes
	// ConnState.AuthIdentity.
	Login string
	// DestAddr and DestPort are the address and port of the proxy's
	// listener the client connected to (DESTADDR, DESTPORT).
	DestAddr netip.Addr
	DestPort int
	// TTL is how many more times the message may be handed from one
	// proxy to the next (Dovecot's TTL extension; see ProxyHop).
	TTL int
}

// Has reports whether the proxy sent every attribute in a.
func (x *XClient) Has(a XClientAttrSet) bool { return a != 0 && x.Sent&a == a }

// IsZero reports whether no XCLIENT attribute was sent.
func (x *XClient) IsZero() bool { return x.Sent == 0 }

// xclientUnavailable reports whether v is [UNAVAILABLE], or for NAME also
// [TEMPUNAVAIL] (any case, XCLIENT_README note 2).
func xclientUnavailable(v string, a XClientAttrSet) bool {
	return strings.EqualFold(v, "[UNAVAILABLE]") || a == XClientName && strings.EqualFold(v, "[TEMPUNAVAIL]")
}

// parseXClient applies the attributes of an XCLIENT argument to x. It
// changes x only when the whole argument is valid: a bad attribute leaves
// the session as it was (Postfix applies the attributes before the bad
// one). Errors are 501 5.5.4 replies.
//
//	xclient-command = XCLIENT 1*( SP attribute-name"="attribute-value )
//	attribute-value = xtext
func parseXClient(arg string, x *XClient) error {
	fields := strings.Fields(arg)
	if len(fields) == 0 {
		return NewError(CodeParamSyntax, ECPermInvalidArgs, "Syntax: XCLIENT attribute=value ...")
	}
	n := *x
	for _, f := range fields {
		k, raw, ok := strings.Cut(f, "=")
		if !ok || k == "" || raw == "" {
			return NewError(CodeParamSyntax, ECPermInvalidArgs, "Syntax: XCLIENT attribute=value ...")
		}
		var attr XClientAttrSet
		for _, a := range xclientNames {
			if strings.EqualFold(k, a.name) {
				attr = a.attr
				k = a.name
				break
			}
		}
		if attr == 0 {
			return NewError(CodeParamSyntax, ECPermInvalidArgs, "Unknown XCLIENT attribute: "+printableWord(k))
		}
		v, err := decodeXtext(raw)
		if err != nil || len(v) > maxXClientValue {
			return badXClientValue(k)
		}
		if err := n.set(attr, v); err != nil {
			return badXClientValue(k)
		}
		n.Sent |= attr
	}
	*x = n
	return nil
}

func badXClientValue(name string) error {
	return NewError(CodeParamSyntax, ECPermInvalidArgs, "Bad XCLIENT value for "+name)
}

// printableWord returns s if it is printable ASCII of reasonable length,
// else a placeholder, for echoing a client's word in a reply.
func printableWord(s string) string {
	if len(s) > 32 || !isHeaderWord(s, false) {
		return "(unprintable)"
	}
	return s
}

// errXClientValue marks a value set refuses.
var errXClientValue = NewError(CodeParamSyntax, ECPermInvalidArgs, "Bad XCLIENT value")

// set stores the decoded value v of attribute a.
func (x *XClient) set(a XClientAttrSet, v string) error {
	if a != XClientTTL && a != XClientProto && xclientUnavailable(v, a) {
		switch a {
		case XClientName:
			x.Name = ""
		case XClientAddr:
			x.Addr = netip.Addr{}
		case XClientPort:
			x.Port = 0
		case XClientHelo:
			x.Helo = ""
		case XClientLogin:
			x.Login = ""
		case XClientDestAddr:
			x.DestAddr = netip.Addr{}
		case XClientDestPort:
			x.DestPort = 0
		}
		return nil
	}
	switch a {
	case XClientName:
		if !isHostName(v) {
			return errXClientValue
		}
		x.Name = v
	case XClientAddr, XClientDestAddr:
		ip, ok := parseXClientAddr(v)
		if !ok {
			return errXClientValue
		}
		if a == XClientAddr {
			x.Addr = ip
		} else {
			x.DestAddr = ip
		}
	case XClientPort, XClientDestPort:
		p, ok := parseSmallNumber(v, 65535)
		if !ok {
			return errXClientValue
		}
		if a == XClientPort {
			x.Port = p
		} else {
			x.DestPort = p
		}
	case XClientProto:
		switch u := strings.ToUpper(v); u {
		case "SMTP", "ESMTP", "LMTP": // LMTP: Dovecot's proxy sends it
			x.Proto = u
		default:
			return errXClientValue
		}
	case XClientHelo:
		// The same rule as the EHLO argument: it goes into the Received
		// field (isHeaderWord; UTF-8 as after EHLO).
		if !isHeaderWord(v, true) {
			return errXClientValue
		}
		x.Helo = v
	case XClientLogin:
		if !isHeaderWord(v, true) {
			return errXClientValue
		}
		x.Login = v
	case XClientTTL:
		t, ok := parseSmallNumber(v, 65535)
		if !ok {
			return errXClientValue
		}
		x.TTL = t
	}
	return nil
}

// parseXClientAddr parses an ADDR or DESTADDR value: an IPv4 address, or
// an IPv6 address with the IPV6: prefix of the README or without it (as
// Dovecot sends it). Zones and brackets are refused.
func parseXClientAddr(v string) (netip.Addr, bool) {
	v6 := len(v) > 5 && strings.EqualFold(v[:5], "IPV6:")
	if v6 {
		v = v[5:]
	}
	ip, err := netip.ParseAddr(v)
	if err != nil || ip.Zone() != "" || v6 && !ip.Is6() {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// parseSmallNumber parses 1 to 5 decimal digits up to max.
func parseSmallNumber(v string, max int) (int, bool) {
	if v == "" || len(v) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int(v[i]-'0')
	}
	return n, n <= max
}

// isHostName reports whether s looks like a host name: labels of letters,
// digits, '-' and '_' (or UTF-8 that isHeaderWord allows) separated by
// dots, at most 255 octets.
func isHostName(s string) bool {
	if s == "" || len(s) > 255 || !isHeaderWord(s, true) || s[0] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80, 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// cmdXClient handles XCLIENT (Postfix's XCLIENT_README): a trusted proxy
// tells who the original client is. Only peers the server trusts (unix
// sockets and TrustedNetworks, as for XFORWARD) may send it; trust stays a
// property of the socket's peer, whatever address XCLIENT claims, so a
// proxy may send XCLIENT again before each transaction on a reused
// connection (Postfix instead re-checks its list against the new address).
// It is refused inside a transaction. On success the session returns to
// the greeting: 220 and a new greeting, after which the client must send
// EHLO or LHLO again.
func (c *conn) cmdXClient(arg string) bool {
	switch {
	case !c.srv.trusted(c):
		c.log.Info().Msg("XCLIENT refused: peer not trusted")
		c.reply(CodeMailboxUnavailable, ECPermSecurity, "XCLIENT not allowed from this client: insufficient authorization")
		return c.countError()
	case c.tx != nil:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "XCLIENT not allowed during a mail transaction")
		return c.countError()
	}
	if err := parseXClient(arg, &c.state.XClient); err != nil {
		c.replyErr(err)
		return c.countError()
	}
	c.applyXClient()
	// Debug: every later line of the session names the client anyway,
	// and a proxy may send XCLIENT before each transaction.
	c.log.Debug().
		Str("client_name", c.state.XClient.Name).
		Str("client_helo", c.state.XClient.Helo).
		Str("client_proto", c.state.XClient.Proto).
		Str("login", c.state.XClient.Login).
		Bool("ttl_sent", c.state.XClient.Has(XClientTTL)).
		Int("ttl", c.state.XClient.TTL).
		Msg("XCLIENT")
	c.writeReply(CodeReady, EnhancedCode{}, false, c.greeting())
	return true
}

// applyXClient makes the session act for the client XCLIENT described,
// and resets it to the greeting stage (XCLIENT_README, "XCLIENT Server
// response"): no transaction, no HELO; TLS stays. The client's address,
// port, HELO name and login replace the socket's address, the HELO name
// and the AUTH identity in ConnState; per-address limits and the trust
// decision keep using the socket's peer (ConnState.PeerAddr).
func (c *conn) applyXClient() {
	c.endTransaction()
	x := &c.state.XClient
	st := &c.state
	c.greeted = false
	st.ESMTP = false
	st.XForward = XForward{}
	// The HELO name is reset unless XCLIENT gave one (Postfix keeps it;
	// cmdHello then keeps it too: a proxy like Dovecot's sends its own
	// name in the EHLO that follows).
	st.Hostname = x.Helo
	// LOGIN names the client's identity; without it the proxy's own AUTH,
	// if any, does not carry over to the client (Postfix resets it too).
	st.AuthIdentity = x.Login
	st.RemoteAddr = c.clientAddr()
	c.setSessionLogger()
}

// clientAddr returns the address of the client the session acts for: the
// socket's peer, with the address and port XCLIENT gave. It is nil when
// XCLIENT said the address is [UNAVAILABLE].
func (c *conn) clientAddr() net.Addr {
	x := &c.state.XClient
	if !x.Has(XClientAddr) && !x.Has(XClientPort) {
		return c.state.PeerAddr
	}
	ip, port := c.ip, 0
	if ta, ok := c.state.PeerAddr.(*net.TCPAddr); ok {
		port = ta.Port
	}
	if x.Has(XClientAddr) {
		ip = x.Addr
	}
	if x.Has(XClientPort) {
		port = x.Port
	}
	if !ip.IsValid() {
		if x.Has(XClientAddr) || port == 0 {
			return nil
		}
		return c.state.PeerAddr // a unix-socket peer: only a port was given
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port)))
}

// clientIP returns the client's IP address for the Received field: the
// XCLIENT address if one was sent, else the socket peer's. It is invalid
// for a unix-socket peer without XCLIENT ADDR, and when the proxy said the
// address is unavailable (then clientIPUnknown is true).
func (c *conn) clientIP() (ip netip.Addr, unknown bool) {
	if x := &c.state.XClient; x.Has(XClientAddr) {
		return x.Addr, !x.Addr.IsValid()
	}
	return c.ip, false
}

// setSessionLogger gives the session's log lines the claimed client next
// to the real peer: the session's base logger (session id, peer,
// protocol) plus "client" (name[addr]:port as XCLIENT gave them), once
// XCLIENT named the client at all (NAME, ADDR or PORT). The
// connection's context, which backends receive and take the logger from,
// is replaced: XCLIENT runs outside any transaction, so no backend call
// holds the old one.
func (c *conn) setSessionLogger() {
	if c.logBase == nil {
		base := c.log
		c.logBase = &base
	}
	l := *c.logBase
	if x := &c.state.XClient; x.Sent&(XClientName|XClientAddr|XClientPort) != 0 {
		l = l.With().Str("client", x.String()).Logger()
	}
	c.log = l
	ctx, cancel := context.WithCancelCause(context.Background())
	c.cancelMu.Lock()
	old := c.cancelFn
	c.ctx, c.cancelFn = l.WithContext(ctx), cancel
	c.cancelMu.Unlock()
	if old != nil {
		old(nil)
	}
}

// resetXClient forgets XCLIENT (STARTTLS: RFC 3207 section 4.2, nothing
// learned from the client before TLS is kept).
func (c *conn) resetXClient() {
	if c.state.XClient.IsZero() {
		return
	}
	c.state.XClient = XClient{}
	c.state.RemoteAddr = c.state.PeerAddr
	c.setSessionLogger()
}

// String formats the client as Postfix logs it, name[addr]:port, with
// "unknown" for what is not known.
func (x *XClient) String() string {
	var b strings.Builder
	if x.Name != "" {
		b.WriteString(x.Name)
	} else {
		b.WriteString("unknown")
	}
	b.WriteByte('[')
	if x.Addr.IsValid() {
		b.WriteString(x.Addr.String())
	} else {
		b.WriteString("unknown")
	}
	b.WriteByte(']')
	if x.Port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(x.Port))
	}
	return b.String()
}

// greeting is the text of the 220 greeting, sent when the connection opens
// and again after XCLIENT.
func (c *conn) greeting() string {
	return c.srv.hostname() + c.srv.greeting()
}

// The loop guard (package doc, "Proxy loops").

// DefaultProxyTTL is how many times a message may be handed on from one
// proxying server to the next when no hop count came with it: the TTL a
// proxy sends when it received none, and the number of lmtpd Received
// fields at the top of a message after which it is not handed on again.
// It is Dovecot's LMTP_PROXY_DEFAULT_TTL, so lmtpd and Dovecot proxies
// count alike.
const DefaultProxyTTL = 5

// ErrProxyLoop refuses a recipient that would be handed to another
// proxying server once more than the hop count allows: 554 5.4.6 (RFC
// 3463 X.4.6 routing loop detected), Dovecot's reply in the same case.
var ErrProxyLoop = NewError(CodeTransactionFailed, EnhancedCode{5, 4, 6}, "Proxying appears to be looping")

// ownMarker is what follows the "by" host name in the Received fields a
// server with this Software name writes (see receivedField), or nil when
// the name is empty: such fields carry no comment to know them by.
func ownMarker(software string) []byte {
	if software == "" {
		return nil
	}
	return append(appendCommentText([]byte(" ("), software), ')')
}

// ProxyHop decides whether a message received in the session conn may be
// handed to another server that may proxy it again (an lmtpd or Dovecot
// LMTP backend): it returns the TTL to send to that server with XCLIENT
// TTL= (when the server offers it), or ErrProxyLoop. msg may be nil to
// decide at RCPT, from the session alone; with a message, the lmtpd
// Received fields at its top count too.
//
// The rule: a session whose proxy sent TTL=0 must not hand anything on;
// TTL=n gives n-1 to the next server; without TTL the next gets
// DefaultProxyTTL. Independently, a message whose header starts with k
// Received fields written by lmtpd (the fronts it passed, not counting
// this server's own field) is refused when k > DefaultProxyTTL and
// otherwise gives at most DefaultProxyTTL-k, so a loop through servers
// that do not carry TTL (or not over XCLIENT) ends within as many hops.
//
// Only a forwarding target calls it; local delivery of a message with
// TTL=0 is not refused.
func ProxyHop(conn *ConnState, msg *Message) (ttl int, err error) {
	ttl = DefaultProxyTTL
	if conn != nil && conn.XClient.Has(XClientTTL) {
		if conn.XClient.TTL <= 0 {
			return 0, ErrProxyLoop
		}
		ttl = conn.XClient.TTL - 1
	}
	if msg != nil && msg.hdr != nil {
		k := proxyReceivedCount(msg.hdr.raw[msg.hdr.top:], msg.hdr.own)
		if k > DefaultProxyTTL {
			return 0, ErrProxyLoop
		}
		ttl = min(ttl, DefaultProxyTTL-k)
	}
	return ttl, nil
}

// proxyReceivedCount counts the Received fields written by lmtpd at the
// top of a header section (complete fields, as readHeader returns them):
// it stops at the first Received field that is not lmtpd's. Other fields
// are passed over.
func proxyReceivedCount(raw, own []byte) int {
	if own == nil {
		return 0
	}
	n := 0
	for len(raw) > 0 {
		// One field: its first line and the continuation lines.
		end := 0
		for {
			i := bytes.IndexByte(raw[end:], '\n')
			if i < 0 {
				end = len(raw)
				break
			}
			end += i + 1
			if end >= len(raw) || !isContinuation(raw[end:]) {
				break
			}
		}
		field := raw[:end]
		raw = raw[end:]
		if !isReceivedLine(field) {
			continue
		}
		if !isOwnReceived(field, own) {
			break
		}
		n++
	}
	return n
}

// isOwnReceived reports whether a Received field was written by a server
// of the same software: its "by" clause is followed by own, the
// "(Software)" comment, then " with ".
func isOwnReceived(field, own []byte) bool {
	i := bytes.Index(field, append(own[:len(own):len(own)], " with "...))
	if i < 0 {
		return false
	}
	by := bytes.LastIndex(field[:i], []byte("by "))
	if by <= 0 || field[by-1] != '\t' && field[by-1] != ' ' {
		return false
	}
	host := field[by+3 : i]
	return len(host) > 0 && !bytes.ContainsAny(host, " \t\r\n")
}
