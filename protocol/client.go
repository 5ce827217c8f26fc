package protocol

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/rs/zerolog"
)

// Client timeouts. The defaults of the phases RFC 5321 section 4.5.3.2
// names are the minimums it sets for them; ConnectTimeout is ours.
const (
	DefaultClientConnectTimeout    = 30 * time.Second // not in the RFC
	DefaultClientGreetingTimeout   = 5 * time.Minute  // 4.5.3.2.1 initial 220 message
	DefaultClientCommandTimeout    = 5 * time.Minute  // 4.5.3.2.2 MAIL, 4.5.3.2.3 RCPT, and the others
	DefaultClientDataInitTimeout   = 2 * time.Minute  // 4.5.3.2.4 DATA initiation
	DefaultClientDataBlockTimeout  = 3 * time.Minute  // 4.5.3.2.5 data block
	DefaultClientFinalReplyTimeout = 10 * time.Minute // 4.5.3.2.6 DATA termination
	DefaultClientChunkSize         = 256 << 10        // BDAT chunk, octets
	maxPipelinedCommands           = 100              // commands per write before replies are read
)

// ErrNotOffered is wrapped by the error a Client returns when asked for
// something that needs an extension the server did not offer (STARTTLS,
// AUTH or the mechanism, XCLIENT, XFORWARD, 8BITMIME, BINARYMIME,
// SMTPUTF8). Nothing was sent; the client stays usable.
var ErrNotOffered = errors.New("protocol: not offered by the server")

// ErrClientClosed is returned by a Client used after Close or Quit.
var ErrClientClosed = errors.New("protocol: client closed")

// ClientOptions configure a Client. The zero value works: SMTP, the name
// "localhost", the RFC 5321 timeouts, PIPELINING when offered, DATA
// rather than BDAT.
type ClientOptions struct {
	// Protocol selects EHLO/HELO and one reply per message (SMTP, the
	// default) or LHLO and one reply per recipient (LMTP, RFC 2033).
	Protocol Protocol

	// LocalName is the name sent with EHLO, LHLO or HELO. Default
	// "localhost".
	LocalName string

	// TLSConfig, if not nil, makes Dial and NewClient upgrade the
	// connection with STARTTLS when the server offers it, and is the
	// default configuration of Client.StartTLS. When its ServerName is
	// empty, Dial fills in the host of the address it dialled.
	TLSConfig *tls.Config

	// RequireTLS makes Dial and NewClient fail with ErrNotOffered when
	// the server does not offer STARTTLS (TLSConfig must be set).
	RequireTLS bool

	// DisablePipelining sends one command at a time even when the
	// server offers PIPELINING (RFC 2920).
	DisablePipelining bool

	// Chunking sends the message with BDAT (RFC 3030) when the server
	// offers CHUNKING, in chunks of about ChunkSize octets. BODY=BINARYMIME
	// always uses BDAT.
	Chunking bool

	// ChunkSize is the number of message octets read for one BDAT chunk;
	// the chunk sent is longer by the CRs added to bare LFs. Default
	// DefaultClientChunkSize.
	ChunkSize int

	// ConnectTimeout bounds Dial's connection set-up (not the greeting).
	// Default DefaultClientConnectTimeout.
	ConnectTimeout time.Duration
	// GreetingTimeout bounds the wait for the 220 greeting (also after
	// XCLIENT). Default DefaultClientGreetingTimeout.
	GreetingTimeout time.Duration
	// CommandTimeout bounds each command and its reply, other than those
	// below. Default DefaultClientCommandTimeout.
	CommandTimeout time.Duration
	// DataInitTimeout bounds the reply to DATA. Default
	// DefaultClientDataInitTimeout.
	DataInitTimeout time.Duration
	// DataBlockTimeout bounds the sending of each block of message text
	// (and the reply to a BDAT chunk that is not the last). Default
	// DefaultClientDataBlockTimeout.
	DataBlockTimeout time.Duration
	// FinalReplyTimeout bounds the wait for the replies after the end of
	// the message; in LMTP, for each recipient's. Default
	// DefaultClientFinalReplyTimeout.
	FinalReplyTimeout time.Duration

	// Logger, if not nil, receives the wire at trace level: commands and
	// replies, never AUTH exchanges or message text.
	Logger *zerolog.Logger
}

func (o *ClientOptions) dur(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// Client is an SMTP or LMTP client connection (RFC 5321, RFC 2033) with
// the extensions a relay needs: PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
// DSN, CHUNKING and BINARYMIME, STARTTLS, AUTH (through go-sasl clients),
// and Postfix's XCLIENT and XFORWARD.
//
// Every method takes a context: when it is cancelled, or a phase's
// timeout (ClientOptions) expires, the operation stops and the client is
// broken. After a network error, a timeout, a cancelled context or a
// malformed reply the state of the dialogue is unknown, so the connection
// is closed and every later call returns the same error; a reply from the
// server, by contrast, is returned as an *Error and leaves the client
// usable. A Client is not safe for concurrent use.
//
// Parameters of MAIL and RCPT, and what the Client does when the server
// did not offer the extension that defines one:
//
//   - SIZE (RFC 1870), RET and ENVID (RFC 3461), AUTH= (RFC 4954 section
//     5), NOTIFY and ORCPT (RFC 3461): left out. SIZE is advisory; without
//     DSN the relaying side keeps the duty of notifications (RFC 3461
//     section 4), as Postfix does; AUTH= is informational.
//   - BODY=8BITMIME (RFC 6152), BODY=BINARYMIME (RFC 3030) and SMTPUTF8
//     (RFC 6531): the command is not sent and the error wraps
//     ErrNotOffered, since leaving them out would change what the
//     message means to the server. BODY=7BIT is sent only when 8BITMIME
//     is offered (the parameter belongs to it).
//   - A non-ASCII address needs SMTPUTF8: MailParams.SMTPUTF8 is implied
//     by one in the envelope given to Send, and Rcpt refuses one in a
//     transaction started without it.
//   - XCLIENT and XFORWARD attributes the server did not list are left
//     out; the command itself not offered wraps ErrNotOffered.
//
// ENVID and ORCPT's address are xtext-encoded (RFC 3461 section 4); an
// ORCPT without a type is sent as "rfc822".
type Client struct {
	opts       ClientOptions
	conn       net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
	serverName string
	log        zerolog.Logger

	greeting *Reply
	hello    *Reply
	esmtp    bool
	ext      map[string]string
	isTLS    bool

	inTx     bool // MAIL accepted, transaction not ended
	accepted int  // RCPTs accepted in the transaction
	body     BodyType
	utf8     bool // the transaction has SMTPUTF8
	broken   error
}

// Dial connects to addr, "host:port" for TCP or "unix:/path" for a unix
// socket, then does what NewClient does. The connection phase is bounded
// by ClientOptions.ConnectTimeout and ctx.
func Dial(ctx context.Context, addr string, opts *ClientOptions) (*Client, error) {
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	network, address := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", p
	}
	dctx, cancel := context.WithTimeout(ctx, o.dur(o.ConnectTimeout, DefaultClientConnectTimeout))
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("protocol: client: connect: %w", err)
	}
	c := initClient(conn, &o)
	if network == "tcp" {
		if host, _, err := net.SplitHostPort(address); err == nil {
			c.serverName = host
		}
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// NewClient starts a session on a connection the caller made: it reads
// the greeting, sends LHLO or EHLO (HELO when EHLO is refused), and
// upgrades with STARTTLS as ClientOptions say. The Client owns conn from
// then on, also when NewClient fails (conn is then closed). A negative
// greeting is returned as an *Error.
func NewClient(ctx context.Context, conn net.Conn, opts *ClientOptions) (*Client, error) {
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	c := initClient(conn, &o)
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func initClient(conn net.Conn, o *ClientOptions) *Client {
	c := &Client{opts: *o, conn: conn}
	c.br = bufio.NewReaderSize(conn, maxReplyLine)
	c.bw = bufio.NewWriterSize(conn, 8192)
	if o.Logger != nil {
		c.log = o.Logger.With().Str("peer", conn.RemoteAddr().String()).Str("proto", o.Protocol.String()).Logger()
	} else {
		c.log = zerolog.Nop()
	}
	return c
}

// start reads the greeting, says hello and upgrades to TLS if asked.
func (c *Client) start(ctx context.Context) error {
	var err error
	if c.opts.RequireTLS && c.opts.TLSConfig == nil {
		err = errors.New("protocol: client: RequireTLS without a TLSConfig")
	}
	if err == nil {
		err = c.readGreeting(ctx)
	}
	if err == nil {
		err = c.Hello(ctx)
	}
	if err == nil && c.opts.TLSConfig != nil {
		if _, ok := c.ext["STARTTLS"]; ok {
			err = c.StartTLS(ctx, nil)
		} else if c.opts.RequireTLS {
			err = fmt.Errorf("%w: STARTTLS", ErrNotOffered)
		}
	}
	if err != nil {
		c.Close()
	}
	return err
}

// readGreeting reads a 220 greeting (RFC 5321 section 3.1).
func (c *Client) readGreeting(ctx context.Context) error {
	r, err := c.exchange(ctx, c.opts.dur(c.opts.GreetingTimeout, DefaultClientGreetingTimeout), "", false)
	if err != nil {
		return err
	}
	c.greeting = r
	if r.Code != CodeReady {
		return r.errOr(fmt.Errorf("protocol: client: unexpected greeting %s", r))
	}
	return nil
}

// errOr returns the reply as an *Error when it is negative, otherwise
// err (for a positive reply of the wrong kind).
func (r *Reply) errOr(err error) error {
	if e := r.Err(); e != nil {
		return e
	}
	return err
}

// Hello sends LHLO (LMTP) or EHLO (SMTP), falling back to HELO when the
// server refuses EHLO with a 5xx (RFC 5321 section 3.2), and records the
// extensions offered. Dial and NewClient call it, and so do StartTLS and
// XClient after the server's new greeting; calling it again resets any
// transaction (RFC 5321 section 4.1.4).
func (c *Client) Hello(ctx context.Context) error {
	name := c.opts.LocalName
	if name == "" {
		name = "localhost"
	}
	if strings.ContainsAny(name, " \r\n") {
		return fmt.Errorf("protocol: client: bad local name %q", name)
	}
	verb := "EHLO"
	if c.opts.Protocol == LMTP {
		verb = "LHLO"
	}
	r, err := c.cmd(ctx, c.opts.dur(c.opts.CommandTimeout, DefaultClientCommandTimeout), verb+" "+name)
	if err != nil {
		return err
	}
	c.inTx, c.accepted = false, 0
	if r.Code/100 == 5 && verb == "EHLO" {
		if r, err = c.cmd(ctx, c.opts.dur(c.opts.CommandTimeout, DefaultClientCommandTimeout), "HELO "+name); err != nil {
			return err
		}
		if r.Code != CodeOK {
			return r.errOr(fmt.Errorf("protocol: client: unexpected reply to HELO: %s", r))
		}
		c.hello, c.esmtp, c.ext = r, false, map[string]string{}
		return nil
	}
	if r.Code != CodeOK {
		return r.errOr(fmt.Errorf("protocol: client: unexpected reply to %s: %s", verb, r))
	}
	c.hello, c.esmtp = r, true
	c.ext = parseExtensions(r)
	return nil
}

// parseExtensions reads the EHLO/LHLO reply's lines after the first:
// "KEYWORD [params]" (RFC 5321 section 4.1.1.1). Keywords are stored in
// upper case. The old "AUTH=MECH ..." form some servers still add counts
// as AUTH when no AUTH line is present.
func parseExtensions(r *Reply) map[string]string {
	ext := make(map[string]string, len(r.Lines))
	var oldAuth string
	for _, l := range r.Lines[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(l), " ")
		kw = strings.ToUpper(kw)
		if kw == "" {
			continue
		}
		if m, ok := strings.CutPrefix(kw, "AUTH="); ok {
			oldAuth = strings.TrimSpace(m + " " + params)
			continue
		}
		ext[kw] = strings.TrimSpace(params)
	}
	if _, ok := ext["AUTH"]; !ok && oldAuth != "" {
		ext["AUTH"] = oldAuth
	}
	return ext
}

// Greeting returns the server's 220 greeting.
func (c *Client) Greeting() *Reply { return c.greeting }

// HelloReply returns the reply to the last EHLO, LHLO or HELO.
func (c *Client) HelloReply() *Reply { return c.hello }

// ESMTP reports whether the server accepted EHLO or LHLO (false after a
// HELO fallback: no extensions, no parameters).
func (c *Client) ESMTP() bool { return c.esmtp }

// Extension reports whether the server offered the extension named by
// keyword (any case) in its last EHLO/LHLO reply, and returns its
// parameters ("" when it has none).
func (c *Client) Extension(keyword string) (params string, ok bool) {
	params, ok = c.ext[strings.ToUpper(keyword)]
	return params, ok
}

// MaxMessageSize returns the SIZE the server announced (RFC 1870); ok
// is false when it announced none, or SIZE without a limit.
func (c *Client) MaxMessageSize() (size int64, ok bool) {
	p, ok := c.ext["SIZE"]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(p, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// AuthMechanisms returns the SASL mechanisms the server offered with
// AUTH (RFC 4954), upper case.
func (c *Client) AuthMechanisms() []string { return c.extList("AUTH") }

// XClientAttributes returns the attributes the server accepts with
// XCLIENT, upper case; nil when it does not offer XCLIENT.
func (c *Client) XClientAttributes() []string { return c.extList("XCLIENT") }

// XForwardAttributes returns the attributes the server accepts with
// XFORWARD, upper case; nil when it does not offer XFORWARD.
func (c *Client) XForwardAttributes() []string { return c.extList("XFORWARD") }

func (c *Client) extList(kw string) []string {
	p, ok := c.ext[kw]
	if !ok {
		return nil
	}
	f := strings.Fields(strings.ToUpper(p))
	if f == nil {
		f = []string{}
	}
	return f
}

// TLSConnectionState returns the TLS state after StartTLS; ok is false
// on a connection without TLS (or one the caller wrapped in TLS itself).
func (c *Client) TLSConnectionState() (state tls.ConnectionState, ok bool) {
	if tc, isTLS := c.conn.(*tls.Conn); isTLS && c.isTLS {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// StartTLS upgrades the connection (RFC 3207) with config, or
// ClientOptions.TLSConfig when config is nil, and says hello again as
// the RFC requires (section 4.2). A refusal is returned as an *Error and
// the client stays usable in plain text; a failed handshake breaks it.
func (c *Client) StartTLS(ctx context.Context, config *tls.Config) error {
	if config == nil {
		config = c.opts.TLSConfig
	}
	if config == nil {
		return errors.New("protocol: client: StartTLS needs a tls.Config")
	}
	if _, ok := c.ext["STARTTLS"]; !ok {
		return fmt.Errorf("%w: STARTTLS", ErrNotOffered)
	}
	if c.isTLS {
		return errors.New("protocol: client: TLS is already active")
	}
	timeout := c.opts.dur(c.opts.CommandTimeout, DefaultClientCommandTimeout)
	r, err := c.cmd(ctx, timeout, "STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != CodeReady {
		return r.errOr(fmt.Errorf("protocol: client: unexpected reply to STARTTLS: %s", r))
	}
	if c.br.Buffered() > 0 {
		// Bytes after the 220 would be plain-text injection (the
		// STARTTLS command injection class, CVE-2011-0411 in servers).
		return c.fail(ctx, errors.New("protocol: client: data after the STARTTLS reply"))
	}
	if config.ServerName == "" && !config.InsecureSkipVerify && c.serverName != "" {
		config = config.Clone()
		config.ServerName = c.serverName
	}
	tc := tls.Client(c.conn, config)
	stop, err := c.begin(ctx, timeout)
	if err != nil {
		return err
	}
	err = tc.HandshakeContext(ctx)
	stop()
	if err != nil {
		return c.fail(ctx, fmt.Errorf("protocol: client: TLS handshake: %w", err))
	}
	c.conn, c.isTLS = tc, true
	c.br.Reset(tc)
	c.bw.Reset(tc)
	return c.Hello(ctx)
}

// Auth authenticates with a go-sasl client (RFC 4954), for example
// sasl.NewPlainClient("", user, password). The mechanism must be among
// AuthMechanisms, or ErrNotOffered is returned. An initial response is
// sent with the command ("=" when it is empty). A refusal is returned as
// an *Error; an error from the SASL client cancels the exchange with "*"
// and is returned (wrapped).
func (c *Client) Auth(ctx context.Context, a sasl.Client) error {
	mech, ir, err := a.Start()
	if err != nil {
		return fmt.Errorf("protocol: client: AUTH: %w", err)
	}
	offered := false
	for _, m := range c.AuthMechanisms() {
		offered = offered || strings.EqualFold(m, mech)
	}
	if !offered {
		return fmt.Errorf("%w: AUTH %s", ErrNotOffered, mech)
	}
	line := "AUTH " + mech
	if ir != nil {
		line += " " + encodeAuth(ir)
	}
	timeout := c.opts.dur(c.opts.CommandTimeout, DefaultClientCommandTimeout)
	c.log.Trace().Str("dir", "out").Str("line", "AUTH "+mech+" [redacted]").Msg("wire")
	r, err := c.exchange(ctx, timeout, line, true)
	for err == nil && r.Code == CodeAuthContinue {
		challenge, derr := base64.StdEncoding.DecodeString(r.Text())
		var resp []byte
		if derr != nil {
			derr = fmt.Errorf("protocol: client: AUTH: bad challenge: %w", derr)
		} else if resp, derr = a.Next(challenge); derr != nil {
			derr = fmt.Errorf("protocol: client: AUTH: %w", derr)
		}
		if derr != nil {
			// RFC 4954 section 4: "*" cancels; the server answers 501.
			if _, err := c.exchange(ctx, timeout, "*", true); err != nil {
				return err
			}
			return derr
		}
		r, err = c.exchange(ctx, timeout, base64.StdEncoding.EncodeToString(resp), true)
	}
	if err != nil {
		return err
	}
	if r.Code != CodeAuthSucceeded {
		return r.errOr(fmt.Errorf("protocol: client: unexpected reply to AUTH: %s", r))
	}
	return nil
}

func encodeAuth(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Noop sends NOOP, to check that the connection still works (a pool
// does before reusing one).
func (c *Client) Noop(ctx context.Context) error {
	return c.simple(ctx, "NOOP")
}

// Reset sends RSET, ending any transaction, so the connection can carry
// the next one (RFC 5321 section 4.1.1.5).
func (c *Client) Reset(ctx context.Context) error {
	err := c.simple(ctx, "RSET")
	if err == nil {
		c.inTx, c.accepted = false, 0
	}
	return err
}

// simple sends a command that must be answered 250.
func (c *Client) simple(ctx context.Context, line string) error {
	r, err := c.cmd(ctx, c.opts.dur(c.opts.CommandTimeout, DefaultClientCommandTimeout), line)
	if err != nil {
		return err
	}
	if r.Code != CodeOK {
		return r.errOr(fmt.Errorf("protocol: client: unexpected reply to %s: %s", line, r))
	}
	return nil
}

// Quit sends QUIT, waits for the reply and closes the connection. The
// connection is closed whatever happens.
func (c *Client) Quit(ctx context.Context) error {
	if c.broken != nil {
		c.Close()
		return c.broken
	}
	r, err := c.cmd(ctx, c.opts.dur(c.opts.CommandTimeout, DefaultClientCommandTimeout), "QUIT")
	c.Close()
	if err != nil {
		return err
	}
	if r.Code != CodeClosing {
		return r.errOr(fmt.Errorf("protocol: client: unexpected reply to QUIT: %s", r))
	}
	return nil
}

// Close closes the connection without QUIT. It is safe to call more than
// once.
func (c *Client) Close() error {
	if c.broken == nil {
		c.broken = ErrClientClosed
	}
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Err returns nil while the client is usable, and otherwise the error
// that broke it (ErrClientClosed after Close).
func (c *Client) Err() error { return c.broken }

// cmd sends one command and reads its reply.
func (c *Client) cmd(ctx context.Context, timeout time.Duration, line string) (*Reply, error) {
	c.log.Trace().Str("dir", "out").Str("line", line).Msg("wire")
	return c.exchange(ctx, timeout, line, false)
}

// exchange sends line (unless it is "" ) and reads one reply, within
// timeout and ctx. quiet keeps the line and the reply out of the trace.
func (c *Client) exchange(ctx context.Context, timeout time.Duration, line string, quiet bool) (*Reply, error) {
	stop, err := c.begin(ctx, timeout)
	if err != nil {
		return nil, err
	}
	defer stop()
	if line != "" {
		if err := c.writeLine(line); err != nil {
			return nil, c.fail(ctx, err)
		}
		if err := c.bw.Flush(); err != nil {
			return nil, c.fail(ctx, err)
		}
	}
	return c.readReply(ctx, quiet)
}

// writeLine buffers one command line. Lines are checked by the callers;
// a CR or LF here would be an injected command, so it is refused.
func (c *Client) writeLine(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return errors.New("protocol: client: CR or LF in a command")
	}
	c.bw.WriteString(line)
	_, err := c.bw.WriteString("\r\n")
	return err
}

// begin checks that the client is usable, sets the deadline for one
// phase (timeout, or ctx's deadline if sooner) and arranges for ctx's
// cancellation to interrupt the I/O. stop undoes the latter.
func (c *Client) begin(ctx context.Context, timeout time.Duration) (stop func() bool, err error) {
	if c.broken != nil {
		return nil, c.broken
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	c.setDeadline(ctx, timeout)
	// The cancellation must not land after stop returns, on the next
	// operation's fresh deadline: the mutex orders the two.
	var mu sync.Mutex
	stopped := false
	after := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			c.conn.SetDeadline(time.Unix(1, 0))
		}
	})
	return func() bool {
		mu.Lock()
		stopped = true
		mu.Unlock()
		return after()
	}, nil
}

// setDeadline sets the connection's deadline to now+timeout, or ctx's
// deadline if that is sooner.
func (c *Client) setDeadline(ctx context.Context, timeout time.Duration) {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	c.conn.SetDeadline(d)
	if ctx.Err() != nil {
		c.conn.SetDeadline(time.Unix(1, 0))
	}
}

// fail breaks the client: the connection is closed and err (with ctx's
// cause when ctx ended) is kept for every later call.
func (c *Client) fail(ctx context.Context, err error) error {
	if c.broken != nil && c.broken != ErrClientClosed {
		return c.broken
	}
	var cause error
	if ctx.Err() != nil {
		cause = context.Cause(ctx)
	} else if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
		// The connection's deadline was ctx's, and fired first.
		cause = context.DeadlineExceeded
	}
	if cause != nil {
		err = fmt.Errorf("protocol: client: %w (%v)", cause, err)
	} else if !strings.HasPrefix(err.Error(), "protocol:") {
		err = fmt.Errorf("protocol: client: %w", err)
	}
	c.conn.Close()
	c.broken = err
	return err
}

// readReply reads one reply.
func (c *Client) readReply(ctx context.Context, quiet bool) (*Reply, error) {
	var p replyParser
	for !p.done {
		line, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, c.fail(ctx, fmt.Errorf("%w: line longer than %d octets", ErrMalformedReply, maxReplyLine))
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, c.fail(ctx, fmt.Errorf("protocol: client: reading reply: %w", err))
		}
		if !quiet {
			c.log.Trace().Str("dir", "in").Bytes("line", line).Msg("wire")
		}
		if err := p.add(line); err != nil {
			return nil, c.fail(ctx, err)
		}
	}
	if p.r.Code == CodeServiceUnavailable {
		// RFC 5321 section 3.8: 421 ends the session; the server closes
		// the connection. The reply is returned; the client is broken.
		c.conn.Close()
		c.broken = p.r.Err()
	}
	return &p.r, nil
}
