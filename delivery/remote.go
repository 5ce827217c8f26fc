package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// Remote LMTP defaults (LMTP.MaxConnections and the others at 0).
const (
	// DefaultRemoteMaxConnections is how many transactions lmtpd runs
	// with one backend at once, each on its own connection; as many idle
	// connections are kept for reuse.
	DefaultRemoteMaxConnections = 10
	// DefaultRemoteMaxWait is how long a delivery waits for one of them
	// to be free before its recipients get 451 4.4.5.
	DefaultRemoteMaxWait = 30 * time.Second
	// DefaultRemoteConnectTimeout bounds connecting and the greeting.
	DefaultRemoteConnectTimeout = 10 * time.Second
	// DefaultRemoteTimeout bounds every other exchange with the backend,
	// the final replies after the message included.
	DefaultRemoteTimeout = 5 * time.Minute
	// DefaultRemoteIdleTimeout is how long an idle connection stays in
	// the pool; an older one is closed instead of being reused.
	DefaultRemoteIdleTimeout = 60 * time.Second
)

// LMTP is a remote LMTP server that a route, or a directory record's
// forward field (directory.Record.Forward), hands recipients to: lmtpd as
// a proxy in front of other lmtpd instances or Dovecot's LMTP. The zero
// value of every field but Address means its default.
type LMTP struct {
	// Address is "host:port" for TCP or "unix:/path" for a unix socket.
	// Required on a route; ignored in Config.Forward, where each record
	// names its own.
	Address string
	// MaxConnections is how many connections to this server may carry a
	// transaction at once, and how many idle ones are kept for reuse
	// (DefaultRemoteMaxConnections).
	MaxConnections int
	// MaxWait is how long a delivery waits for a free connection
	// (DefaultRemoteMaxWait); past it, 451 4.4.5.
	MaxWait time.Duration
	// ConnectTimeout bounds connecting, the greeting and LHLO
	// (DefaultRemoteConnectTimeout); past it, 451 4.4.1.
	ConnectTimeout time.Duration
	// Timeout bounds each later command and reply, and the reply to the
	// message (DefaultRemoteTimeout); past it, 451 4.4.1.
	Timeout time.Duration
	// IdleTimeout is how long an unused connection is kept for the next
	// transaction (DefaultRemoteIdleTimeout).
	IdleTimeout time.Duration
}

// Reply codes of remote delivery (RFC 3463).
var (
	// ErrRemoteUnreachable: the backend could not be reached, did not
	// answer in time or refused the session (X.4.1 no answer from host).
	ErrRemoteUnreachable = protocol.NewError(protocol.CodeLocalError, protocol.EnhancedCode{4, 4, 1}, "Mail server temporarily unreachable, try again later")
	// ErrRemoteDropped: the connection to the backend broke during the
	// transaction (X.4.2 bad connection).
	ErrRemoteDropped = protocol.NewError(protocol.CodeLocalError, protocol.ECTempBadConnection, "Connection to the mail server lost, try again later")
	// ErrRemoteBusy: every connection to the backend stayed busy for
	// LMTP.MaxWait (X.4.5 system congestion).
	ErrRemoteBusy = protocol.NewError(protocol.CodeLocalError, protocol.EnhancedCode{4, 4, 5}, "Mail server busy, try again later")
	// ErrBadForward: a directory record's forward field is not an
	// address lmtpd can connect to; the entry can be fixed, so the
	// recipient is deferred (X.3.5 system incorrectly configured).
	ErrBadForward = protocol.NewError(protocol.CodeLocalError, protocol.ECTempMisconfigured, "Mailbox temporarily unavailable (misconfigured), try again later")
)

// Refusals for messages a remote server cannot take as they are.
var (
	errRemoteNoUTF8      = protocol.NewError(protocol.CodeMailboxNameInvalid, protocol.ECPermNeedsUTF8, "The mail server of this recipient does not accept internationalized mail (SMTPUTF8)")
	errRemoteNoExtension = protocol.NewError(protocol.CodeTransactionFailed, protocol.ECPermMedia, "The mail server of this recipient cannot accept this message's content")
)

// checkRemoteAddress reports whether a is "host:port" or "unix:/path".
func checkRemoteAddress(a string) error {
	if p, ok := strings.CutPrefix(a, "unix:"); ok {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("address %q: want unix:/absolute/path", a)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("address %q: want host:port or unix:/path", a)
	}
	if host == "" || strings.ContainsAny(host, " \t/") {
		return fmt.Errorf("address %q: no host", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("address %q: bad port %q", a, port)
	}
	return nil
}

// validate checks l's values; k is its key, route says whether it is a
// route's (Address required) or Config.Forward (Address unused).
func (l *LMTP) validate(k []string, route bool, fail func([]string, string, ...any)) {
	if route {
		if l.Address == "" {
			fail(key(k, "Address"), "required")
		} else if err := checkRemoteAddress(l.Address); err != nil {
			fail(key(k, "Address"), "%v", err)
		}
	} else if l.Address != "" {
		fail(key(k, "Address"), "not used here: each directory record names its server in its forward field")
	}
	if l.MaxConnections < 0 {
		fail(key(k, "MaxConnections"), "%d is negative", l.MaxConnections)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MaxWait", l.MaxWait}, {"ConnectTimeout", l.ConnectTimeout}, {"Timeout", l.Timeout}, {"IdleTimeout", l.IdleTimeout}} {
		if d.v < 0 {
			fail(key(k, d.name), "%v is negative", d.v)
		}
	}
}

// withDefaults returns l with its defaults applied and Address set to
// addr.
func (l LMTP) withDefaults(addr string) LMTP {
	l.Address = addr
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultRemoteMaxConnections
	}
	if l.MaxWait == 0 {
		l.MaxWait = DefaultRemoteMaxWait
	}
	if l.ConnectTimeout == 0 {
		l.ConnectTimeout = DefaultRemoteConnectTimeout
	}
	if l.Timeout == 0 {
		l.Timeout = DefaultRemoteTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultRemoteIdleTimeout
	}
	return l
}

// remoteTarget hands recipients to remote LMTP servers. One target serves
// every remote destination of a plan, so that a message's remote
// recipients are one group: Stage splits them by server (the
// destination's Forward field: the route's address, or the directory
// record's forward) and feeds the servers concurrently, each from its
// own reader of the spooled message. The answer of a server is final
// (Final): a 250 from it is the 250 lmtpd gives.
type remoteTarget struct {
	routes  map[string]LMTP // settings of the servers routes name, by address
	forward LMTP            // settings of servers named by forward fields
	pools   *remotePools    // nil until bound
}

func (r *remoteTarget) Kind() string { return "lmtp" }

// Key is the server and the recipient: one RCPT per address and server.
func (r *remoteTarget) Key(d *Destination) string {
	return "l" + d.Forward + "\x00" + strings.ToLower(d.Address)
}

// Group puts every remote destination of a message in one Stage call,
// which feeds the servers concurrently.
func (r *remoteTarget) Group(*Destination) string { return "" }

// Final: a server's 250 cannot be undone.
func (r *remoteTarget) Final() bool { return true }

func (r *remoteTarget) bind(b *binding) (Target, error) {
	bound := *r
	bound.pools = b.r.remotePools()
	return &bound, nil
}

// settings returns the settings of the server at addr.
func (r *remoteTarget) settings(addr string) LMTP {
	if l, ok := r.routes[addr]; ok {
		return l.withDefaults(addr)
	}
	return r.forward.withDefaults(addr)
}

// Stage delivers to every server concurrently and waits for all of them:
// the recipients of one server go in one transaction, and each gets the
// server's reply to it as its own. It returns nil: nothing is left to
// commit.
func (r *remoteTarget) Stage(ctx context.Context, m *Message, ds []*Destination, res []Result) Staged {
	var order []string
	byAddr := make(map[string][]int)
	for i, d := range ds {
		if byAddr[d.Forward] == nil {
			order = append(order, d.Forward)
		}
		byAddr[d.Forward] = append(byAddr[d.Forward], i)
	}
	if len(order) == 1 {
		r.deliver(ctx, m, order[0], byAddr[order[0]], ds, res)
		return nil
	}
	var wg sync.WaitGroup
	for _, addr := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.deliver(ctx, m, addr, byAddr[addr], ds, res)
		}()
	}
	wg.Wait()
	return nil
}

// deliver runs one transaction with the server at addr for the
// destinations idx of ds and fills in their results. Results of
// different calls are disjoint, so concurrent calls do not race.
func (r *remoteTarget) deliver(ctx context.Context, m *Message, addr string, idx []int, ds []*Destination, res []Result) {
	start := time.Now()
	l := zerolog.Ctx(ctx).With().Str("server", addr).Logger()
	finish := func(err error) {
		for _, i := range idx {
			if res[i].Err == nil {
				res[i].Err = err
			}
			res[i].Elapsed += time.Since(start)
			res[i].LogKey, res[i].LogValue = "server", addr
		}
	}
	if addr == "" || checkRemoteAddress(addr) != nil {
		l.Error().Msg("remote delivery: the destination has no usable server address")
		finish(ErrBadForward.Wrap(fmt.Errorf("delivery: bad LMTP server address %q", addr)))
		return
	}
	// The loop guard (package protocol, "Proxy loops"): a message that
	// came through too many proxies, or whose proxy said TTL=0, is not
	// handed on again; the next server learns the hop count left, with
	// XCLIENT TTL= where it offers that (Dovecot's convention).
	ttl, err := protocol.ProxyHop(m.Conn, m.proto)
	if err != nil {
		l.Warn().Err(err).Msg("remote delivery: refused, the message would loop between proxies")
		finish(err)
		return
	}
	set := r.settings(addr)
	p := r.pools.pool(set)
	xc := xclientFor(m.Conn)
	xc.Other = map[string]string{"TTL": strconv.Itoa(ttl)}
	pc, err := p.get(ctx, xc, &l)
	if err != nil {
		l.Warn().Err(err).Msg("remote delivery: no connection to the server")
		finish(err)
		return
	}
	rcpts := make([]*protocol.Recipient, len(idx))
	for k, i := range idx {
		d := ds[i]
		a, err := protocol.ParseAddress(d.Address)
		if err != nil {
			// Destination addresses are built from routed recipients;
			// one that does not parse is a bug, not the client's fault.
			a = protocol.Address{LocalPart: d.User, Domain: d.Domain}
		}
		rc := &protocol.Recipient{Address: a}
		if len(d.Rcpts) > 0 {
			orig := m.Recipients[d.Rcpts[0]]
			rc.Params = orig.Params
			if rc.Params.OriginalRecipient == "" && !strings.EqualFold(orig.Address.String(), d.Address) && orig.Address.IsASCII() {
				// An alias was expanded here: the server learns the
				// address the client gave (RFC 3461 section 4.2, where
				// the server offers DSN).
				rc.Params.OriginalRecipientType, rc.Params.OriginalRecipient = "rfc822", orig.Address.String()
			}
		}
		rcpts[k] = rc
	}
	var params protocol.MailParams
	if m.params != nil {
		params = *m.params
	}
	params.Size = 0 // the client's SIZE counted another copy; the server measures its own
	if _, ok := pc.c.Extension("8BITMIME"); !ok && strings.EqualFold(string(params.Body), string(protocol.Body8BitMIME)) {
		// As Postfix's smtp client does: 8-bit text goes as it is to a
		// server that did not say it takes it, rather than never.
		params.Body = ""
	}
	body := io.MultiReader(bytes.NewReader(m.base), m.Body())
	st, err := pc.c.Send(ctx, m.from, &params, rcpts, body)
	broken := pc.c.Err() != nil
	for k, i := range idx {
		res[i].Err = relay(st[k], ds[i].Address, broken)
		if res[i].Err != nil {
			ev := l.Info()
			if pe := protocol.AsError(res[i].Err); pe == nil || pe.Temporary() {
				ev = l.Warn()
			}
			ev.Str("to", ds[i].Address).AnErr("reply", st[k].Err).Msg("remote delivery: the server did not accept the recipient")
		}
	}
	if err != nil {
		l.Warn().Err(err).Bool("connection_lost", broken).Msg("remote delivery: transaction failed")
	}
	p.put(pc)
	finish(nil)
}

// relay turns a server's status for one recipient into the recipient's
// result: the server's own reply (code, enhanced code, text) when it gave
// one, else the reason nothing is known. rcpt is the recipient's address,
// broken says whether the connection failed.
func relay(s protocol.RcptStatus, rcpt string, broken bool) error {
	if s.Err == nil {
		return nil
	}
	if pe := protocol.AsError(s.Err); pe != nil {
		if pe.Code == protocol.CodeServiceUnavailable {
			// 421 ends the server's session, not ours: the recipient is
			// deferred as for a dropped connection.
			return ErrRemoteDropped.Wrap(s.Err)
		}
		out := *pe
		// An LMTP server names the recipient in its reply, and so does
		// lmtpd's own per-recipient reply: keep one.
		if rest, ok := strings.CutPrefix(out.Message, "<"); ok {
			if a, text, ok := strings.Cut(rest, ">"); ok && strings.EqualFold(a, rcpt) {
				out.Message = strings.TrimLeft(text, " ")
			}
		}
		if out.EnhancedCode.IsZero() {
			// LMTP servers send enhanced codes (RFC 2033 section 4.2
			// requires ENHANCEDSTATUSCODES); one that did not gets the
			// class's undefined code rather than none.
			out.EnhancedCode = protocol.EnhancedCode{out.Code / 100, 0, 0}
		}
		return &out
	}
	if errors.Is(s.Err, protocol.ErrNotOffered) {
		// The message needs an extension the server lacks (RFC 6531
		// section 3.2: no SMTPUTF8 transaction with a server that does
		// not offer it): trying again will not help.
		if strings.Contains(s.Err.Error(), "SMTPUTF8") {
			return errRemoteNoUTF8.Wrap(s.Err)
		}
		return errRemoteNoExtension.Wrap(s.Err)
	}
	if !broken {
		// Not the server's answer and not the connection: a local
		// failure (the spooled message could not be read, a parameter
		// the server cannot take).
		return protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, "Local error in processing, try again later").Wrap(s.Err)
	}
	if errors.Is(s.Err, os.ErrDeadlineExceeded) || errors.Is(s.Err, context.DeadlineExceeded) {
		return ErrRemoteUnreachable.Wrap(s.Err)
	}
	return ErrRemoteDropped.Wrap(s.Err)
}

// xclientFor returns what lmtpd knows of the original client of conn,
// to pass on with XCLIENT or XFORWARD: the attributes its own proxy sent
// with XFORWARD, else the socket's address and the HELO name. Nothing is
// invented: an attribute lmtpd does not know is left out.
func xclientFor(c *protocol.ConnState) protocol.XClientAttrs {
	var x protocol.XClientAttrs
	if c == nil {
		return x
	}
	if f := c.XForward; !f.IsZero() {
		x.Addr, x.Name, x.Port, x.Helo, x.Proto = f.Addr, f.Name, f.Port, f.Helo, f.Proto
		return x
	}
	if a, ok := c.RemoteAddr.(*net.TCPAddr); ok && a != nil && a.IP != nil {
		x.Addr, x.Port = a.IP.String(), strconv.Itoa(a.Port)
	}
	x.Helo = c.Hostname
	if c.Hostname != "" {
		x.Proto = "SMTP"
		if c.ESMTP {
			x.Proto = "ESMTP"
		}
	}
	return x
}
