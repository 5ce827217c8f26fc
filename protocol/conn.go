package protocol

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Buffer sizes per connection. They are kept small because an idle
// connection should cost little (10,000 idle connections in 250 MiB); the
// DATA reader reads large blocks straight into the backend's buffer.
const (
	readBufferSize  = 8 << 10
	writeBufferSize = 4 << 10
	// maxAuthLineLength is the AUTH line limit of RFC 4954 section 4.
	maxAuthLineLength = 12288
)

var (
	errInterrupted = errors.New("protocol: read interrupted")
	errLineTooLong = errors.New("protocol: line too long")
)

// conn is one client connection. Its fields belong to the connection's
// goroutine, except where noted.
type conn struct {
	srv *Server
	nc  net.Conn
	ip  netip.Addr
	br  *bufio.Reader
	bw  *bufio.Writer
	// wmu guards bw while a delivery may write per-recipient replies from
	// another goroutine or the disconnect watcher may flush.
	wmu      sync.Mutex
	replyBuf []byte

	state ConnState
	log   zerolog.Logger
	// logBase is the session's logger without the XCLIENT client, saved
	// at the first XCLIENT (setSessionLogger).
	logBase *zerolog.Logger

	// ctx is cancelled when the connection ends, the client goes away
	// during a delivery, or a delivery outlives its budget; it is what
	// backends receive. Only the connection goroutine replaces it
	// (renewContext); other goroutines cancel it through cancelConn.
	ctx      context.Context
	cancelMu sync.Mutex
	cancelFn context.CancelCauseFunc

	// Per-connection state reused by every message.
	dr          dataReader
	dlv         msgDelivery
	txv         mailTx
	msgv        Message
	hdrv        headerState // msgv's header, reused
	outcome     Outcome     // Server.OnOutcome's argument, reused
	onDataEnd   func()
	hdr         headerScratch
	rcvBuf      []byte
	active      atomic.Pointer[msgDelivery] // the delivery in flight, for the timers
	budgetTimer *time.Timer
	slowTimer   *time.Timer
	budgetAt    atomic.Int64 // unix nanoseconds when the current budget ends

	// dl decides the deadline of each network read (see connReader).
	dl readDeadlines
	// idle is set while the session waits for a command outside a
	// transaction; Shutdown interrupts such a read at once.
	idle atomic.Bool
	// interrupt makes the next network read fail with errInterrupted.
	interrupt    atomic.Bool
	shuttingDown atomic.Bool

	greeted bool
	// noService is set when the greeting refused the session with a 5xx
	// (ConnChecker): from then on only QUIT is served.
	noService    bool
	tx           *mailTx
	txSeq        int
	errCount     int
	authFailures int
	quit         bool
}

// mailTx is the state between MAIL and the end of the message.
type mailTx struct {
	t      Transaction
	from   Address
	params MailParams
	rcpts  []*Recipient
	store  []Recipient // backing store of the accepted recipients (and the one being decided)
	bdat   *bdatState  // non-nil once BDAT started
	// refused counts the RCPTs refused in this transaction, by the backend
	// or for MaxRefusedRecipients; only the first refusalLogLines of them
	// are logged one by one.
	refused int
}

// refusalLogLines is how many refused recipients a transaction logs at
// info level one by one; the rest are logged at debug level and counted in
// one summary line when the transaction ends, so that a client sending
// millions of bad RCPTs cannot fill the log.
const refusalLogLines = 5

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		c.ip = ap.Addr().Unmap()
	}
	c.state = ConnState{
		ID:         s.ids.Next(),
		Protocol:   s.Protocol,
		RemoteAddr: nc.RemoteAddr(),
		LocalAddr:  nc.LocalAddr(),
		PeerAddr:   nc.RemoteAddr(),
	}
	c.log = s.logger().With().
		Str("session", c.state.ID).
		Str("proto", s.Protocol.String()).
		Str("peer", peerName(nc)).
		Logger()
	c.renewContext()
	c.onDataEnd = c.dataEnded
	c.dl.init(s)
	c.br = bufio.NewReaderSize(&connReader{c}, readBufferSize)
	c.bw = bufio.NewWriterSize(nc, writeBufferSize)
	c.replyBuf = make([]byte, 0, 256)
	return c
}

// peerName names the client for logs: its address, or for a unix-socket
// client (whose address is empty) the socket it came in on.
func peerName(nc net.Conn) string {
	if ua, ok := nc.RemoteAddr().(*net.UnixAddr); ok && (ua.Name == "" || ua.Name == "@") {
		return "unix:" + nc.LocalAddr().String()
	}
	return nc.RemoteAddr().String()
}

// connReader is the reader under c.br. Before it blocks on the network it
// flushes pending replies, so a pipelined batch costs one write and the
// client never waits for a reply that sits in our buffer. It applies the
// read deadline of the current phase.
type connReader struct{ c *conn }

func (r *connReader) Read(p []byte) (int, error) {
	c := r.c
	c.wmu.Lock()
	var err error
	if c.bw.Buffered() > 0 {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	timeout := c.dl.readTimeout()
	start := time.Now()
	creditEnd := c.dl.creditEnd(start)
	n, err := r.read(p, start, timeout, creditEnd)
	if creditEnd != 0 {
		c.dl.spend(time.Since(start), n)
	}
	return n, err
}

// read reads from the network within the phase's timeout from start, the
// transfer's and the command line's deadlines, and creditEnd if not 0.
func (r *connReader) read(p []byte, start time.Time, timeout time.Duration, creditEnd int64) (int, error) {
	c := r.c
	for {
		// This read's deadline: its start plus the phase's timeout, and
		// not after the end of the transfer (DataTotalTimeout), of the
		// command line, or of the data rate's credit.
		want := start.Add(timeout)
		if end := c.dl.hard(); end != 0 && end < want.UnixNano() {
			want = time.Unix(0, end)
		}
		if creditEnd != 0 && creditEnd < want.UnixNano() {
			want = time.Unix(0, creditEnd)
		}
		if c.dl.needsArm(want, timeout) {
			c.dl.arm(c.nc, start, want)
		}
		// Checked after the deadline: interruptRead sets interrupt first
		// and the deadline after, so one of the two stops this read.
		if c.interrupt.Load() {
			return 0, errInterrupted
		}
		n, err := c.nc.Read(p)
		if n > 0 || !isTimeout(err) || c.interrupt.Load() {
			return n, err
		}
		now := time.Now()
		if !now.Before(want) {
			return n, err
		}
		// The socket's deadline came before this read's: read on.
		c.dl.arm(c.nc, now, want)
	}
}

// interruptRead makes a read in progress or about to start return at once
// (errInterrupted or a timeout). The caller clears c.interrupt when done.
func (c *conn) interruptRead() {
	c.interrupt.Store(true)
	c.dl.markDirty()
	c.nc.SetReadDeadline(time.Now())
}

// cancelConn cancels the context backends hold. Safe from any goroutine.
func (c *conn) cancelConn(cause error) {
	c.cancelMu.Lock()
	c.cancelFn(cause)
	c.cancelMu.Unlock()
}

// renewContext gives the connection a fresh context when there is none yet
// or the last one was cancelled while the session goes on (a delivery over
// its budget, an abandoned BDAT).
func (c *conn) renewContext() {
	if c.ctx != nil && c.ctx.Err() == nil {
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	c.cancelMu.Lock()
	if c.cancelFn != nil {
		c.cancelFn(nil)
	}
	c.ctx, c.cancelFn = c.log.WithContext(ctx), cancel
	c.cancelMu.Unlock()
}

// refuse answers 421 to a connection that is not admitted and closes it.
func (c *conn) refuse(reason string) {
	c.log.Warn().Str("reason", reason).Msg("connection refused")
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	ec := ECTempSecurity
	if reason == "shutdown" {
		ec = ECTempNotAccepting
	}
	c.reply(CodeServiceUnavailable, ec, c.srv.hostname()+" "+reasonText(reason))
	c.bw.Flush()
	c.nc.Close()
	c.cancelConn(ErrConnectionLost)
}

func reasonText(reason string) string {
	if reason == "shutdown" {
		return "Service shutting down, try again later"
	}
	return "Too many connections, try again later"
}

// shutdownRequested is called by Server.Shutdown from another goroutine.
func (c *conn) shutdownRequested() {
	c.shuttingDown.Store(true)
	if c.idle.Load() {
		c.interruptRead()
	}
}

// abort ends the connection at once (Server.Close, or Shutdown's context
// expiring). Safe to call from any goroutine.
func (c *conn) abort() {
	c.cancelConn(ErrShuttingDown)
	c.nc.Close()
}

func (c *conn) serve() {
	start := time.Now()
	defer c.srv.release(c)
	defer func() {
		if v := recover(); v != nil {
			c.log.Error().Interface("panic", v).Bytes("stack", debug.Stack()).Msg("session panicked")
			c.wmu.Lock()
			c.reply(CodeServiceUnavailable, ECTempSystem, c.srv.hostname()+" Internal error, closing connection (session "+c.state.ID+")")
			c.bw.Flush()
			c.wmu.Unlock()
		}
		c.endTransaction()
		c.stopTimers()
		c.cancelConn(ErrConnectionLost)
		c.nc.Close()
		c.log.Debug().Dur("duration", time.Since(start)).Msg("connection closed")
	}()

	c.log.Debug().Msg("connection opened")
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := c.handshake(tc); err != nil {
			return
		}
	}
	if cc, ok := c.srv.Backend.(ConnChecker); ok {
		if err := cc.CheckConn(c.ctx, &c.state); err != nil {
			e := AsError(err)
			if e == nil {
				e = NewError(CodeTransactionFailed, ECPermSecurity, "Connection refused")
			}
			c.log.Info().Err(err).Msg("connection refused by backend")
			c.replyErr(e)
			if e.Code/100 != 5 {
				c.bw.Flush() // 421: the server may close at once
				return
			}
			// RFC 5321 section 3.1: after a 554 greeting the server
			// waits for QUIT and answers other commands 503.
			c.noService = true
		}
	}
	if !c.noService {
		c.writeReply(CodeReady, EnhancedCode{}, false, c.greeting())
	}

	for !c.quit {
		if !c.nextCommand() {
			return
		}
	}
	c.bw.Flush()
}

// nextCommand reads and runs one command. It returns false when the
// connection must close.
func (c *conn) nextCommand() bool {
	if c.shuttingDown.Load() && c.tx == nil {
		c.reply(CodeServiceUnavailable, ECTempNotAccepting, c.srv.hostname()+" Service shutting down, closing connection")
		c.bw.Flush()
		return false
	}
	c.idle.Store(c.tx == nil)
	line, err := c.readLine(orInt(c.srv.MaxLineLength, DefaultMaxLineLength))
	c.idle.Store(false)
	switch {
	case err == nil:
	case errors.Is(err, errLineTooLong):
		c.reply(CodeSyntaxError, ECPermSyntax, "Line too long")
		return c.countError()
	case c.shuttingDown.Load() && (errors.Is(err, errInterrupted) || isTimeout(err)):
		c.interrupt.Store(false)
		c.reply(CodeServiceUnavailable, ECTempNotAccepting, c.srv.hostname()+" Service shutting down, closing connection")
		c.bw.Flush()
		return false
	case isTimeout(err):
		c.log.Info().Msg("command timeout")
		c.reply(CodeServiceUnavailable, ECTempBadConnection, c.srv.hostname()+" Timeout waiting for command, closing connection")
		c.bw.Flush()
		return false
	default:
		c.log.Debug().Err(err).Msg("read failed")
		return false
	}
	if c.log.Trace().Enabled() {
		c.traceIn(line)
	}
	verb, arg := splitCommand(line)
	return c.dispatch(verb, arg)
}

// readLine reads one command line of at most limit octets (CRLF included;
// a bare LF is accepted as the end of a command line, as Postfix does). An
// over-long line is drained to its end and reported as errLineTooLong. The
// returned slice is valid until the next read.
//
// The whole line must arrive within the read timeout (CommandTimeout),
// counted from the call, not only each read of it: otherwise a client
// trickling one byte per timeout holds the session for as long as it
// likes (Postfix's smtpd_per_record_deadline, RFC 5321 4.5.3.2.7).
func (c *conn) readLine(limit int) ([]byte, error) {
	c.dl.startLine()
	defer c.dl.endLine()
	line, err := c.br.ReadSlice('\n')
	if err == nil && len(line) <= limit {
		return trimEOL(line), nil
	}
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	// Too long: drain to the end of the line without keeping it.
	for errors.Is(err, bufio.ErrBufferFull) {
		_, err = c.br.ReadSlice('\n')
	}
	if err != nil {
		return nil, err
	}
	return nil, errLineTooLong
}

func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// countError counts a protocol error; past the limit the session ends
// with 421 (RFC 5321 4.3.2 allows it; chasquid and Postfix do the same).
func (c *conn) countError() bool {
	c.errCount++
	if c.errCount >= orInt(c.srv.MaxErrors, DefaultMaxErrors) {
		c.log.Info().Int("errors", c.errCount).Msg("too many errors")
		c.reply(CodeServiceUnavailable, ECTempSecurity, c.srv.hostname()+" Too many errors, closing connection")
		c.bw.Flush()
		return false
	}
	return true
}

// splitCommand splits a command line into its upper-cased verb and the
// argument after one space. Verbs are case-insensitive (RFC 5321 2.4).
func splitCommand(line []byte) (verb, arg string) {
	i := 0
	for i < len(line) && line[i] != ' ' {
		i++
	}
	verb = upperVerb(line[:i])
	if i < len(line) {
		arg = string(line[i+1:])
	}
	return verb, arg
}

// knownVerbs lets upperVerb return a constant instead of allocating.
var knownVerbs = []string{"MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "EHLO", "HELO", "LHLO", "VRFY", "HELP", "AUTH", "STARTTLS", "XFORWARD", "XCLIENT", "EXPN"}

func upperVerb(b []byte) string {
	for _, v := range knownVerbs {
		if len(v) == len(b) && equalFoldASCII(b, v) {
			return v
		}
	}
	if len(b) > 16 {
		b = b[:16]
	}
	return strings.ToUpper(string(b))
}

func equalFoldASCII(b []byte, s string) bool {
	for i := 0; i < len(b); i++ {
		ch := b[i]
		if 'a' <= ch && ch <= 'z' {
			ch -= 'a' - 'A'
		}
		if ch != s[i] {
			return false
		}
	}
	return true
}

func (c *conn) traceIn(line []byte) {
	verb, _ := splitCommand(line)
	if verb == "AUTH" {
		// Never log credentials (RFC 4954 section 9); the lines of the
		// exchange after it are read by cmdAuth and never traced.
		c.log.Trace().Str("dir", "in").Str("line", verb+" ...").Msg("wire")
		return
	}
	c.log.Trace().Str("dir", "in").Bytes("line", line).Msg("wire")
}

func (c *conn) dispatch(verb, arg string) bool {
	if c.noService && verb != "QUIT" {
		c.reply(CodeBadSequence, ECPermInvalidCommand, "No service here; send QUIT")
		return c.countError()
	}
	if c.srv.RequireTLS && c.state.TLS == nil {
		switch verb {
		case "EHLO", "HELO", "LHLO", "NOOP", "RSET", "QUIT", "STARTTLS":
		default:
			c.reply(CodeAuthRequired, ECPermSecurity, "Must issue a STARTTLS command first")
			return c.countError()
		}
	}
	switch verb {
	case "EHLO", "HELO":
		if c.srv.Protocol == LMTP {
			// RFC 2033 section 4.1: HELO and EHLO "are not present in
			// LMTP", 500 recommended; unrecognized, as LHLO in SMTP.
			c.reply(CodeSyntaxError, ECPermSyntax, "This is an LMTP server: use LHLO")
			return c.countError()
		}
		return c.cmdHello(verb, arg)
	case "LHLO":
		if c.srv.Protocol != LMTP {
			return c.unknownCommand()
		}
		return c.cmdHello(verb, arg)
	case "MAIL":
		return c.cmdMail(arg)
	case "RCPT":
		return c.cmdRcpt(arg)
	case "DATA":
		return c.cmdData(arg)
	case "BDAT":
		return c.cmdBdat(arg)
	case "RSET":
		if arg != "" {
			c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: RSET")
			return c.countError()
		}
		c.endTransaction()
		c.reply(CodeOK, ECOK, "Reset OK")
	case "NOOP":
		c.reply(CodeOK, ECOK, "OK")
	case "QUIT":
		c.reply(CodeClosing, ECOK, c.srv.hostname()+" Bye")
		c.bw.Flush()
		c.quit = true
	case "VRFY", "EXPN":
		// RFC 5321 3.5.3: 252 says nothing about whether the user exists.
		if arg == "" {
			c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: "+verb+" <address>")
			return c.countError()
		}
		c.reply(CodeCannotVerify, ECProtocolOK, "Cannot verify user, but will accept message and attempt delivery")
	case "HELP":
		c.reply(CodeHelp, ECOK, "See RFC 5321 and RFC 2033; commands: LHLO EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH")
	case "STARTTLS":
		return c.cmdStartTLS(arg)
	case "AUTH":
		return c.cmdAuth(arg)
	case "XFORWARD":
		return c.cmdXForward(arg)
	case "XCLIENT":
		return c.cmdXClient(arg)
	default:
		return c.unknownCommand()
	}
	return true
}

// unknownCommand answers a verb this dialect does not know: 500 (RFC 5321
// section 4.2.4) with X.5.2, which RFC 3463 section 3.6 gives to a command
// that "could not be interpreted, either because the syntax was wrong or
// the command is unrecognized" (X.5.1 is for a known command out of
// sequence or not supported).
func (c *conn) unknownCommand() bool {
	c.reply(CodeSyntaxError, ECPermSyntax, "Unrecognized command")
	return c.countError()
}

func (c *conn) helloVerb() string {
	if c.srv.Protocol == LMTP {
		return "LHLO"
	}
	return "EHLO/HELO"
}

func (c *conn) cmdHello(verb, arg string) bool {
	arg = strings.Trim(arg, " \t") // ASCII only: TrimSpace would drop a trailing NEL or U+2028 unseen
	// The name goes into the Received field: printable ASCII, or for
	// EHLO and LHLO (whose reply offers SMTPUTF8, RFC 6531 section 3.7.1)
	// also UTF-8 that cannot break a header (isHeaderWord).
	if !isHeaderWord(arg, verb != "HELO") {
		c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: "+verb+" hostname")
		return c.countError()
	}
	// RFC 5321 4.1.4: HELO/EHLO resets the transaction state.
	c.endTransaction()
	c.greeted = true
	if !c.state.XClient.Has(XClientHelo) { // XCLIENT's HELO outlives the proxy's own greeting
		c.state.Hostname = arg
	}
	c.state.ESMTP = verb != "HELO"
	host := c.srv.hostname()
	if verb == "HELO" {
		c.writeReply(CodeOK, EnhancedCode{}, false, host+" Hello "+arg)
		return true
	}
	c.writeReply(CodeOK, EnhancedCode{}, false, c.extensions(host+" Hello "+arg)...)
	return true
}

// extensions lists the EHLO/LHLO reply lines.
func (c *conn) extensions(first string) []string {
	s := c.srv
	lines := make([]string, 0, 16)
	lines = append(lines, first, "PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
		"CHUNKING", "BINARYMIME", "DSN")
	if m := s.maxMessageBytes(); m > 0 {
		lines = append(lines, "SIZE "+strconv.FormatInt(m, 10))
	} else {
		lines = append(lines, "SIZE")
	}
	lines = append(lines, "LIMITS RCPTMAX="+strconv.Itoa(orInt(s.MaxRecipients, DefaultMaxRecipients)))
	if s.TLSConfig != nil && c.state.TLS == nil {
		lines = append(lines, "STARTTLS")
	}
	if mechs := c.authMechanisms(); len(mechs) > 0 {
		lines = append(lines, "AUTH "+strings.Join(mechs, " "))
	}
	if s.trusted(c) {
		lines = append(lines, "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE", xclientKeyword)
	}
	return lines
}

func (c *conn) paramSet() paramSet {
	return paramSet{
		esmtp:    c.state.ESMTP,
		smtputf8: true,
		dsn:      true,
		chunking: true,
		size:     true,
		auth:     c.srv.Auth != nil,
	}
}

// cutKeyword removes "FROM:" or "TO:" (any case) and the spaces real
// clients put after the colon.
func cutKeyword(arg, kw string) (string, bool) {
	if len(arg) < len(kw) || !strings.EqualFold(arg[:len(kw)], kw) {
		return "", false
	}
	return strings.TrimLeft(arg[len(kw):], " "), true
}

func (c *conn) cmdMail(arg string) bool {
	switch {
	case !c.greeted:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "Send "+c.helloVerb()+" first")
		return c.countError()
	case c.tx != nil:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "Nested MAIL command")
		return c.countError()
	case c.srv.RequireAuth && c.state.AuthIdentity == "":
		c.reply(CodeAuthRequired, ECPermSecurity, "Authentication required")
		return c.countError()
	}
	rest, ok := cutKeyword(arg, "FROM:")
	if !ok || rest == "" || rest[0] != '<' {
		c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: MAIL FROM:<address> [parameters]")
		return c.countError()
	}
	from, params, err := parsePath(rest, false)
	if err != nil {
		c.replyErr(err)
		return c.countError()
	}
	mp, err := parseMailParams(params, c.paramSet())
	if err != nil {
		c.replyErr(err)
		return c.countError()
	}
	if !from.IsASCII() && !mp.SMTPUTF8 {
		c.reply(CodeMailboxNameInvalid, ECPermNeedsUTF8, "Non-ASCII address requires the SMTPUTF8 parameter")
		return c.countError()
	}
	if max := c.srv.maxMessageBytes(); max > 0 && mp.Size > max {
		c.reply(ErrMessageTooBig.Code, ErrMessageTooBig.EnhancedCode, "Message size exceeds fixed maximum message size of "+strconv.FormatInt(max, 10)+" octets")
		return true
	}
	// The parameters live in the connection's reused transaction value, so
	// the pointer the backend gets costs no allocation.
	c.txv.params = mp
	t, err := c.srv.Backend.Mail(c.ctx, &c.state, from, &c.txv.params)
	if err != nil {
		c.log.Info().Str("from", from.String()).Err(err).Msg("sender rejected")
		c.replyErr(err)
		// Counted as a refused recipient is, so that refusals cannot be
		// repeated (and logged) without end.
		return c.countRefusal()
	}
	// The transaction value and its recipients' storage are reused by the
	// connection (backends must not keep them past the transaction).
	c.txv = mailTx{t: t, from: from, params: c.txv.params, rcpts: c.txv.rcpts[:0], store: c.txv.store[:0]}
	c.tx = &c.txv
	c.reply(CodeOK, ECAddressOK, "Sender OK")
	return true
}

func (c *conn) cmdRcpt(arg string) bool {
	if c.tx == nil {
		c.reply(CodeBadSequence, ECPermInvalidCommand, "Need MAIL before RCPT")
		return c.countError()
	}
	if c.tx.bdat != nil {
		c.reply(CodeBadSequence, ECPermInvalidCommand, "RCPT not allowed during BDAT")
		return c.countError()
	}
	rest, ok := cutKeyword(arg, "TO:")
	if !ok || rest == "" || rest[0] != '<' {
		c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: RCPT TO:<address> [parameters]")
		return c.countError()
	}
	to, params, err := parsePath(rest, true)
	if err != nil {
		c.replyErr(err)
		return c.countError()
	}
	rp, err := parseRcptParams(params, c.paramSet())
	if err != nil {
		c.replyErr(err)
		return c.countError()
	}
	if !to.IsASCII() && !c.tx.params.SMTPUTF8 {
		c.reply(CodeMailboxNameInvalid, ECPermNeedsUTF8, "Non-ASCII address requires the SMTPUTF8 parameter")
		return c.countError()
	}
	if len(c.tx.rcpts) >= orInt(c.srv.MaxRecipients, DefaultMaxRecipients) {
		c.reply(CodeInsufficientSpace, ECTempTooManyRcpts, "Too many recipients")
		return true
	}
	if m := c.srv.maxRefusedRecipients(); m > 0 && c.tx.refused >= m {
		// RFC 5321 4.5.3.1.10: 452 asks the client to try the rest in a
		// later transaction; the backend is not asked any more.
		c.tx.refused++
		c.reply(CodeInsufficientSpace, ECTempTooManyRcpts, "Too many recipients refused in this transaction")
		return c.countRefusal()
	}
	c.tx.store = append(c.tx.store, Recipient{Address: to, Params: rp})
	n := len(c.tx.store)
	r := &c.tx.store[n-1]
	if err := c.tx.t.Rcpt(c.ctx, r); err != nil {
		// Nothing is kept of a refused recipient: its slot is cleared and
		// reused (the backend must not keep r after refusing it).
		c.tx.store[n-1] = Recipient{}
		c.tx.store = c.tx.store[:n-1]
		c.tx.refused++
		ev := c.log.Info()
		if c.tx.refused > refusalLogLines {
			ev = c.log.Debug()
		}
		if ev.Enabled() {
			ev.Str("to", to.String()).Err(err).Msg("recipient rejected")
		}
		c.replyErr(err)
		return c.countRefusal()
	}
	c.tx.rcpts = append(c.tx.rcpts, r)
	c.reply(CodeOK, ECDestinationValid, "Recipient OK")
	return true
}

// countRefusal counts a refused recipient (or sender) as a protocol
// error, as Postfix's smtpd_hard_error_limit does, except in LMTP and
// from a trusted peer (a unix-socket client or one in TrustedNetworks):
// there the client is the MTA in front, for which an unknown recipient is
// an ordinary outcome of mail it already accepted, and closing its
// session would turn each such bounce into a deferral. MaxRefusedRecipients
// bounds those transactions.
func (c *conn) countRefusal() bool {
	if c.srv.Protocol == LMTP || c.srv.trusted(c) {
		return true
	}
	return c.countError()
}

// endTransaction closes the backend transaction, if any.
func (c *conn) endTransaction() {
	if c.tx == nil {
		return
	}
	if n := c.tx.refused; n > refusalLogLines {
		c.log.Info().Int("refused", n).Int("not_logged", n-refusalLogLines).Msg("recipients rejected in this transaction")
	}
	if c.tx.bdat != nil {
		c.tx.bdat.abandon()
	}
	if err := c.tx.t.Close(); err != nil {
		c.log.Warn().Err(err).Msg("closing transaction")
	}
	c.tx = nil
	c.dl.endTransaction()
	c.state.XForward = XForward{}
}

func (c *conn) cmdData(arg string) bool {
	switch {
	case arg != "":
		c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: DATA")
		return c.countError()
	case c.tx == nil:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "Need MAIL command")
		return c.countError()
	case c.tx.bdat != nil:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "DATA not allowed after BDAT")
		return c.countError()
	case len(c.tx.rcpts) == 0:
		// RFC 2033 4.2: no accepted recipient, no DATA.
		c.reply(CodeBadSequence, ECPermInvalidCommand, "No valid recipients")
		return c.countError()
	case c.tx.params.Body == BodyBinaryMIME:
		// RFC 3030 section 3: BINARYMIME requires BDAT.
		c.reply(CodeBadSequence, ECPermInvalidCommand, "BODY=BINARYMIME requires BDAT")
		return c.countError()
	}
	c.reply(CodeStartMailInput, EnhancedCode{}, "Start mail input; end with <CRLF>.<CRLF>")
	c.startDataPhase()
	defer c.endDataPhase()

	c.dr.reset(c.br, dataOptions{
		MaxBytes:      c.srv.maxMessageBytes(),
		MaxLineLength: c.srv.maxTextLineLength(),
		Normalize:     c.srv.BareLineEndings == NormalizeBareLineEndings,
	})
	dr := &c.dr
	d := c.newDelivery()
	dr.onEnd = c.onDataEnd
	d.track.r = dr
	d.run(&d.track)
	if !dr.Done() && !dr.Broken() {
		if err := dr.Drain(c.drainLimit()); err != nil {
			d.setStreamErr(err)
		}
	}
	return c.finishDelivery(d, dr.Done() && !dr.Broken())
}

// startDataPhase switches the read deadline to the data timeout, bounded
// by the total transfer limit and the data rate.
func (c *conn) startDataPhase() { c.dl.startData() }

// endDataPhase restores the command timeout. The total transfer limit
// stays until the transaction ends (BDAT spans several commands).
func (c *conn) endDataPhase() { c.dl.endData() }

// dataEnded is the data reader's end callback (bound once per connection
// in c.onDataEnd, since a method value allocates each time it is made).
func (c *conn) dataEnded() { c.dlv.inputEnded() }

// drainLimit bounds how much of an abandoned message is read to find its
// end before the connection is closed instead.
func (c *conn) drainLimit() int64 {
	if m := c.srv.maxMessageBytes(); m > 0 {
		return m + m/2
	}
	return 0
}

// trackingReader records the first error the message stream returned, so
// that an incomplete message is never acknowledged, whatever the backend
// says.
type trackingReader struct {
	r io.Reader
	d *msgDelivery
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.d.setStreamErr(err)
	}
	return n, err
}
