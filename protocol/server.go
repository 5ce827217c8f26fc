package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Default limits and timeouts. A zero Server field means the default written
// in its documentation; these are those values.
const (
	DefaultMaxMessageBytes      = 50 << 20 // 50 MiB
	DefaultMaxRecipients        = 1000     // Postfix's smtpd_recipient_limit; RFC 5321 4.5.3.1.8 asks for at least 100
	DefaultMaxLineLength        = 512      // RFC 5321 4.5.3.1.4 (command line, CRLF included)
	DefaultMaxTextLineLength    = 998      // RFC 5321 4.5.3.1.6 (1000 with CRLF)
	DefaultMaxHeaderBytes       = 1 << 20  // 1 MiB
	DefaultMaxReceivedHeaders   = 50       // loop detection, RFC 5321 6.3
	DefaultMaxErrors            = 10
	DefaultMaxRefusedRecipients = 100 // RFC 5321 4.5.3.1.8's minimum recipient buffer
	DefaultMaxConnections       = 10000
	DefaultMaxConnectionsPerIP  = 20               // SMTP only; Postfix's smtpd_client_connection_count_limit is 50
	DefaultCommandTimeout       = 5 * time.Minute  // RFC 5321 4.5.3.2.7 server timeout
	DefaultDataTimeout          = 3 * time.Minute  // RFC 5321 4.5.3.2.5 data block
	DefaultFinalReplyTimeout    = 10 * time.Minute // RFC 5321 4.5.3.2.6: the client waits 10 min for the final reply
	DefaultDataTotalTimeout     = time.Hour
	DefaultMinDataRate          = 500 // octets per second, Postfix's smtpd_min_data_rate
	DefaultTLSHandshakeTimeout  = 30 * time.Second
	DefaultMaxAuthFailures      = 3
	DefaultMaxAuthFailuresPerIP = 30
	DefaultAuthFailureWindow    = time.Hour
)

// BareLineEndingPolicy says what happens to a CR or LF that is not part of
// a CRLF pair inside DATA (RFC 5321 section 2.3.8). Neither policy ever
// lets a bare line ending end the message or start a command.
type BareLineEndingPolicy int

const (
	// RejectBareLineEndings reads the message to its real end and then
	// answers 550 5.6.0. It is the default.
	RejectBareLineEndings BareLineEndingPolicy = iota
	// NormalizeBareLineEndings turns bare CR and bare LF into CRLF.
	NormalizeBareLineEndings
)

// Server is an SMTP or LMTP server. Fill in the fields and call Serve or
// ListenAndServe; a Server must not be copied after first use. Every field
// has a working zero value whose meaning is written in its documentation,
// except Backend, which is required. Fields must not be changed while the
// server runs.
//
// One Server serves one dialect; a process that speaks both runs two
// Servers, which may share a Backend.
type Server struct {
	// Addr is the address ListenAndServe listens on: "host:port" for TCP,
	// or "unix:/path/to/socket". Default ":25" for SMTP, ":24" for LMTP.
	Addr string

	// Protocol selects SMTP (default) or LMTP.
	Protocol Protocol

	// Hostname is this server's name in the greeting, the EHLO reply and the
	// Received header. Default: os.Hostname.
	Hostname string

	// Backend receives transactions. Required.
	Backend Backend

	// Logger receives structured logs. Each session logs through a child
	// logger carrying the session id, peer and protocol. Nil: no logs.
	Logger *zerolog.Logger

	// TLSConfig enables STARTTLS when non-nil (RFC 3207). For an
	// implicit-TLS listener, pass a tls.Listener to Serve; the handshake
	// then happens before the greeting.
	TLSConfig *tls.Config

	// RequireTLS refuses every command but EHLO/LHLO, HELO, NOOP, RSET, QUIT
	// and STARTTLS with 530 5.7.0 until TLS is active (RFC 3207 section 4).
	RequireTLS bool

	// Auth enables the AUTH command (RFC 4954). Nil: no AUTH.
	Auth Authenticator

	// RequireAuth refuses MAIL with 530 5.7.0 until AUTH succeeded.
	RequireAuth bool

	// MaxAuthFailures is the number of failed AUTH attempts after which
	// the connection is closed with 421. Default 3.
	MaxAuthFailures int

	// AuthFailureDelay is the delay before answering a failed AUTH; it
	// doubles with each further failure on the connection. Default 1s;
	// negative disables the delay (tests).
	AuthFailureDelay time.Duration

	// MaxAuthFailuresPerIP is the number of failed AUTH attempts one
	// client address may make within AuthFailureWindow, over all its
	// connections; after that AUTH is answered 421 4.7.0 without checking
	// anything. Default 30; negative disables the budget. Unix-socket
	// clients have no address and no budget. Each step of an exchange
	// reserves a failure before it runs and gives it back when it does not
	// fail, so N clients from one address at once never get more than the
	// remaining budget verified.
	MaxAuthFailuresPerIP int

	// AuthFailureWindow is the period of MaxAuthFailuresPerIP, counted from
	// an address's first failure. Default 1 hour.
	AuthFailureWindow time.Duration

	// MaxAuthVerifications bounds the AUTH steps (calls of SASLServer.Next:
	// password verifications, SCRAM proofs) in progress at once on the
	// server; further clients wait up to AuthQueueTimeout, then get 454
	// 4.7.0. Default runtime.GOMAXPROCS(0), the usable cores. Ignored when
	// AuthLimiter is set. The process's resident memory, whatever the
	// number of clients, stays under R + 4 × MaxAuthVerifications × m_max
	// + C × 64 KiB, where R is the process without AUTH (about 20 MiB for
	// lmtpd on linux/amd64), m_max is the largest argon2id memory
	// parameter among the hashes (64 MiB by default, at most 1 GiB:
	// sasl.VerifyPassword's bound; sasl.Store.MaxVerifyMemory), C the
	// connections open (at most MaxConnections), each with its buffers,
	// and the factor 4 is Go's collector at GOGC=100: the heap grows to
	// twice what a collection found in use, and a collection counts all
	// it sees allocated while it runs, so it can find a second check per
	// slot started meanwhile.
	MaxAuthVerifications int

	// AuthQueueTimeout is how long an AUTH step waits for a verification
	// slot before 454 4.7.0. Default 10 seconds; negative: no waiting.
	// Ignored when AuthLimiter is set.
	AuthQueueTimeout time.Duration

	// AuthLimiter, if not nil, is the limiter of AUTH steps, shared with
	// other Servers so that the bound holds for all of them together. Nil:
	// the server makes its own from MaxAuthVerifications and
	// AuthQueueTimeout when first needed.
	AuthLimiter *AuthLimiter

	// MaxMessageBytes is the largest message accepted, in octets as
	// received (after dot-unstuffing). Advertised with SIZE (RFC 1870).
	// Default 50 MiB; negative means no limit.
	MaxMessageBytes int64

	// MaxRecipients is the number of RCPT accepted per transaction;
	// further ones get 452 4.5.3 (RFC 5321 4.5.3.1.10). Advertised as
	// LIMITS RCPTMAX (RFC 9422). Default 1000.
	MaxRecipients int

	// MaxLineLength bounds a command line, CRLF included. Default 512
	// (RFC 5321 4.5.3.1.4). AUTH exchanges allow 12288 (RFC 4954 section 4).
	MaxLineLength int

	// MaxTextLineLength bounds a line of message text, CRLF excluded, in
	// DATA and BDAT alike (not under BODY=BINARYMIME).
	// Default 998 (RFC 5321 4.5.3.1.6); negative means no limit.
	MaxTextLineLength int

	// MaxHeaderBytes bounds the message header. Default 1 MiB.
	MaxHeaderBytes int

	// MaxReceivedHeaders refuses a message that carries more Received
	// fields with 554 5.4.6 (mail loop). Default 50.
	MaxReceivedHeaders int

	// MaxErrors is the number of protocol errors after which the session
	// is closed with 421 4.7.0. Default 10. Bad commands, bad arguments and
	// over-long lines count, and so does each refused MAIL and RCPT (refused
	// by the backend or past MaxRefusedRecipients), as with Postfix's
	// smtpd_hard_error_limit, except from a trusted peer (a unix-socket
	// client or one in TrustedNetworks): there a refused recipient is the
	// ordinary answer for mail the peer already queued.
	MaxErrors int

	// MaxRefusedRecipients is the number of refused RCPTs one transaction
	// may have; further RCPTs are answered 452 4.5.3 without asking the
	// backend, until the transaction ends (RFC 5321 4.5.3.1.10). Nothing
	// is kept per refused recipient, and only the first few are logged one
	// by one, then one summary line when the transaction ends. Default 100;
	// negative means no per-transaction cap (MaxErrors still applies).
	MaxRefusedRecipients int

	// MaxConnections caps the concurrent connections; further ones get
	// 421 4.7.0 and are closed. Default 10000.
	MaxConnections int

	// MaxConnectionsPerIP caps concurrent connections from one IP address;
	// further ones get 421 4.7.0 and are closed, so that one client cannot
	// take every MaxConnections slot. Loopback clients and unix-socket
	// clients are never counted: they are this host's own programs.
	// Default 20 for SMTP; for LMTP, whose clients are the MTAs in front,
	// no limit. Negative means no limit.
	MaxConnectionsPerIP int

	// CommandTimeout is how long the server waits for the next command
	// line, counted for the whole line and not per read, so that a line
	// trickled a byte at a time cannot hold the session. Default 5 minutes
	// (RFC 5321 4.5.3.2.7).
	CommandTimeout time.Duration

	// DataTimeout is how long the server waits for each block of message
	// text. Default 3 minutes (RFC 5321 4.5.3.2.5).
	DataTimeout time.Duration

	// DataTotalTimeout bounds the whole transfer of one message (DATA, or
	// all BDAT chunks from the first), however steadily the client
	// trickles it: DataTimeout alone would let a byte every few minutes
	// hold a session for as long as MaxMessageBytes allows. Default 1 hour;
	// negative means no total limit.
	DataTotalTimeout time.Duration

	// MinDataRate is the lowest average rate, in octets per second, at
	// which message text (DATA, or a BDAT chunk) may arrive once its grace
	// is spent: a transfer starts with DataTimeout of credit, time spent
	// waiting for the client's data uses it up, each octet received adds
	// 1/MinDataRate seconds, the credit never exceeds DataTimeout, and the
	// transfer ends with 421 4.4.2 when the credit runs out. Time the
	// backend spends not reading the body does not count. A client at 1
	// octet per second is so cut off after about DataTimeout instead of
	// DataTotalTimeout. This is Postfix's smtpd_min_data_rate. Default 500;
	// negative disables the check.
	MinDataRate int

	// FinalReplyTimeout bounds the backend's delivery after the end of
	// the message; when it expires the delivery context is cancelled.
	// Default 10 minutes (what RFC 5321 4.5.3.2.6 lets the client wait).
	FinalReplyTimeout time.Duration

	// TLSHandshakeTimeout bounds a TLS handshake. Default 30 seconds.
	TLSHandshakeTimeout time.Duration

	// BareLineEndings is the policy for bare CR and LF in message text,
	// DATA and BDAT alike (not under BODY=BINARYMIME). Default
	// RejectBareLineEndings.
	BareLineEndings BareLineEndingPolicy

	// TrustedNetworks may send XFORWARD and XCLIENT, which are offered to
	// them only. Connections over unix sockets are always trusted. Trust
	// is decided by the socket's peer, never by an address XCLIENT
	// claims. Default: none.
	TrustedNetworks []netip.Prefix

	// DisableReceived stops the server from prepending its Received field.
	DisableReceived bool

	// Software is the name the server gives itself in the greeting
	// ("220 host ESMTP Software ready") and in the comment of its
	// Received field ("by host (Software) with ESMTP"). Default "": the
	// greeting says "220 host ESMTP ready" and the Received field has no
	// comment. Characters that could break the header or the reply
	// (controls, parentheses, backslash, non-ASCII) are replaced.
	Software string

	// OnOutcome, if not nil, receives the outcome of every recipient of
	// every message that reached the end of its transaction (delivered,
	// refused by the backend, or refused as a whole), one call per
	// recipient in RCPT order, on the connection's goroutine after the
	// reply was written; it must not keep o. With a hook the hook owns the
	// administrator's record: the server's own outcome line per recipient
	// ("delivery"), written at info level when OnOutcome is nil, goes to
	// debug level, so that the log has one info line per recipient
	// whether the server or the backend writes it.
	OnOutcome func(ctx context.Context, o *Outcome)

	mu         sync.Mutex
	listeners  map[*net.Listener]struct{}
	conns      map[*conn]struct{}
	perIP      map[netip.Addr]int
	inShutdown atomic.Bool
	connWG     sync.WaitGroup
	serveWG    sync.WaitGroup // one per Serve loop, from trackListener to its return
	ids        SessionIDs
	ownMarker  []byte // ownMarker(Software), for ProxyHop
	initOnce   sync.Once
	nop        zerolog.Logger
	authFails  authBudget

	// limitLoopback counts loopback clients against MaxConnectionsPerIP
	// (a test seam: tests can only connect from loopback).
	limitLoopback bool
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.listeners = make(map[*net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
		s.perIP = make(map[netip.Addr]int)
		s.nop = zerolog.Nop()
		s.ownMarker = ownMarker(s.Software)
	})
}

func (s *Server) hostname() string {
	if s.Hostname != "" {
		return s.Hostname
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// greeting returns the text of the 220 greeting after the host name.
func (s *Server) greeting() string {
	b := make([]byte, 0, 32)
	b = append(b, " ESMTP"...)
	if s.Protocol == LMTP {
		b = append(b[:0], " LMTP"...)
	}
	if s.Software != "" {
		b = append(b, ' ')
		b = appendCommentText(b, s.Software)
	}
	return string(append(b, " ready"...))
}

func (s *Server) logger() *zerolog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return &s.nop
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func (s *Server) maxMessageBytes() int64 {
	switch {
	case s.MaxMessageBytes == 0:
		return DefaultMaxMessageBytes
	case s.MaxMessageBytes < 0:
		return 0
	}
	return s.MaxMessageBytes
}

func (s *Server) maxTextLineLength() int {
	if s.MaxTextLineLength < 0 {
		return 0
	}
	return orInt(s.MaxTextLineLength, DefaultMaxTextLineLength)
}

func (s *Server) minDataRate() int {
	if s.MinDataRate < 0 {
		return 0
	}
	return orInt(s.MinDataRate, DefaultMinDataRate)
}

func (s *Server) maxRefusedRecipients() int {
	if s.MaxRefusedRecipients < 0 {
		return 0
	}
	return orInt(s.MaxRefusedRecipients, DefaultMaxRefusedRecipients)
}

// perIPLimit returns the per-address connection limit that applies to
// ip, or 0 for none.
func (s *Server) perIPLimit(ip netip.Addr) int {
	if !ip.IsValid() || ip.IsLoopback() && !s.limitLoopback {
		return 0
	}
	switch {
	case s.MaxConnectionsPerIP < 0:
		return 0
	case s.MaxConnectionsPerIP > 0:
		return s.MaxConnectionsPerIP
	case s.Protocol == LMTP:
		return 0
	}
	return DefaultMaxConnectionsPerIP
}

func (s *Server) authFailureDelay() time.Duration {
	if s.AuthFailureDelay < 0 {
		return 0
	}
	return orDur(s.AuthFailureDelay, time.Second)
}

// ListenAndServe listens on s.Addr and serves until Shutdown or Close.
// A unix socket path that already exists is not removed: the caller owns
// stale-socket handling.
func (s *Server) ListenAndServe() error {
	if s.inShutdown.Load() {
		return ErrServerClosed
	}
	l, err := s.listen()
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// ListenAndServeTLS is ListenAndServe on an implicit-TLS listener (RFC
// 8314) with the certificate and key from the given files; s.TLSConfig, if
// set, is used as the base configuration.
func (s *Server) ListenAndServeTLS(certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLSConfig != nil {
		cfg = s.TLSConfig.Clone()
	}
	cfg.Certificates = []tls.Certificate{cert}
	l, err := s.listen()
	if err != nil {
		return err
	}
	return s.Serve(tls.NewListener(l, cfg))
}

func (s *Server) listen() (net.Listener, error) {
	addr := s.Addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return net.Listen("unix", path)
	}
	if addr == "" {
		addr = ":25"
		if s.Protocol == LMTP {
			addr = ":24"
		}
	}
	return net.Listen("tcp", addr)
}

// Serve accepts connections on l and serves each in its own goroutine. It
// returns ErrServerClosed after Shutdown or Close, or the accept error.
// Serve closes l when it returns, whatever it returns. Shutdown and Close
// wait for every Serve loop to return, so that nothing a loop does (such
// as refusing, and logging, a connection accepted while the server
// stops) happens after they return.
func (s *Server) Serve(l net.Listener) error {
	if s.Backend == nil {
		l.Close()
		return errors.New("protocol: Server.Backend is nil")
	}
	s.init()
	if !s.trackListener(&l, true) {
		l.Close()
		return ErrServerClosed
	}
	// Untracking is the loop's last act (deferred first), so that when
	// Close returns the listener is closed too.
	defer s.trackListener(&l, false)
	defer l.Close()

	var tempDelay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Back off like net/http on EMFILE and friends.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				s.logger().Warn().Err(err).Dur("retry_in", tempDelay).Msg("accept failed")
				time.Sleep(tempDelay)
				continue
			}
			return err
		}
		tempDelay = 0
		s.ServeConn(c)
	}
}

// ServeConn serves one already accepted connection in a new goroutine and
// returns at once. The server owns c from then on.
func (s *Server) ServeConn(c net.Conn) {
	s.init()
	cn := newConn(s, c)
	if reason := s.admit(cn); reason != "" {
		cn.refuse(reason)
		return
	}
	go cn.serve()
}

// admit counts the connection in, or returns why it is refused.
func (s *Server) admit(c *conn) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return "shutdown"
	}
	if len(s.conns) >= orInt(s.MaxConnections, DefaultMaxConnections) {
		return "too many connections"
	}
	if limit := s.perIPLimit(c.ip); limit > 0 {
		if s.perIP[c.ip] >= limit {
			return "too many connections from your address"
		}
		s.perIP[c.ip]++
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return ""
}

func (s *Server) release(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIPLimit(c.ip) > 0 {
		if n := s.perIP[c.ip] - 1; n > 0 {
			s.perIP[c.ip] = n
		} else {
			delete(s.perIP, c.ip)
		}
	}
	s.mu.Unlock()
	s.connWG.Done()
}

// trackListener adds a Serve loop's listener to those Shutdown and Close
// close and counts the loop in serveWG, or takes it out when the loop
// ends. It refuses to add one once the server is stopping, so that
// serveWG.Add never races with serveWG.Wait: both the check here and the
// closing of the listeners hold s.mu, and inShutdown is set before.
func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		s.listeners[l] = struct{}{}
		s.serveWG.Add(1)
	} else {
		delete(s.listeners, l)
		s.serveWG.Done()
	}
	return true
}

// Shutdown stops the server gracefully: it closes the listeners, waits
// for the Serve loops to return, lets transactions in flight finish and
// answers 421 4.3.2 to idle sessions at once and to busy ones at their
// next command. A connection a Serve loop accepts while the server stops
// is answered 421 4.3.2 and closed before Shutdown returns. If ctx ends
// first, the remaining connections are closed and their delivery
// contexts cancelled, and Shutdown returns ctx.Err() once their
// goroutines have returned. A backend that heeds neither its context nor
// the closed connection holds Shutdown (and Close) for as long as it
// runs: a caller that must stop by a deadline waits for Shutdown with its
// own timer.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.inShutdown.Store(true)
	s.closeListeners()
	s.serveWG.Wait()
	s.mu.Lock()
	for c := range s.conns {
		c.shutdownRequested()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeConns()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, cancelling
// deliveries in flight, and returns when the Serve loops and the
// connections' goroutines have. A connection a Serve loop accepts while
// Close runs is answered 421 4.3.2 and closed before Close returns. Use
// Shutdown for a graceful stop.
func (s *Server) Close() error {
	s.init()
	s.inShutdown.Store(true)
	err := s.closeListeners()
	// The loops first: a connection one of them accepted as the listener
	// closed is refused (and logged) before Close returns, not after.
	s.serveWG.Wait()
	s.closeConns()
	s.connWG.Wait()
	return err
}

func (s *Server) closeListeners() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for l := range s.listeners {
		if cerr := (*l).Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.abort()
	}
}

// trusted reports whether the socket's peer may send XFORWARD and XCLIENT.
func (s *Server) trusted(c *conn) bool {
	if _, ok := c.nc.RemoteAddr().(*net.UnixAddr); ok {
		return true
	}
	if !c.ip.IsValid() {
		return false
	}
	for _, p := range s.TrustedNetworks {
		if p.Contains(c.ip) {
			return true
		}
	}
	return false
}
