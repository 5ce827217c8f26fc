package protocol

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/wiretest"
	"github.com/rs/zerolog"
)

// client is a minimal line-oriented test client.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func newClient(t testing.TB, c net.Conn) *client {
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(lines ...string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.c, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// reply reads one whole reply and returns its lines joined with "\n".
func (c *client) reply() string {
	c.t.Helper()
	var out []string
	for {
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply after %q: %v", out, err)
		}
		l = strings.TrimRight(l, "\r\n")
		out = append(out, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(out, "\n")
		}
	}
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	r := c.reply()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("want reply %q..., got %q", prefix, r)
	}
	return r
}

// startLMTPData greets with LHLO, opens a transaction for one recipient
// and sends DATA, checking every reply up to the 354.
func (c *client) startLMTPData(from, to string) {
	c.t.Helper()
	c.send("LHLO x", "MAIL FROM:<"+from+">", "RCPT TO:<"+to+">", "DATA")
	for range 3 {
		c.expect("250")
	}
	c.expect("354")
}

// upgradeTLS runs the client side of a TLS handshake on nc after the
// server's 220 to STARTTLS, and returns a client on the TLS connection.
func (c *client) upgradeTLS(nc net.Conn) *client {
	c.t.Helper()
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	return newClient(c.t, tc)
}

func (c *client) expectClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.br.ReadString('\n')
	if err == nil {
		c.t.Fatalf("want connection closed, got %q", l)
	}
}

func TestStartTLS(t *testing.T) {
	_, b, nc := testServer(t, SMTP, "tcp", []string{"tls"})
	c := newClient(t, nc)
	c.expect("220 ")
	c.send("EHLO client.test")
	if r := c.expect("250"); !strings.Contains(r, "STARTTLS") {
		t.Fatalf("STARTTLS not advertised: %q", r)
	}
	// Command injection (CVE-2011-0411 class): commands in the same write
	// as STARTTLS must not run inside the TLS session.
	c.send("STARTTLS\r\nMAIL FROM:<injected@example.org>")
	c.expect("220 2.0.0 Ready to start TLS")
	c = c.upgradeTLS(nc)
	// RFC 3207 4.2: state reset, so MAIL needs EHLO first.
	c.send("MAIL FROM:<a@example.org>")
	c.expect("503 5.5.1")
	c.send("EHLO client.test")
	if r := c.expect("250"); strings.Contains(r, "STARTTLS") {
		t.Fatalf("STARTTLS advertised again after TLS: %q", r)
	}
	c.send("STARTTLS")
	c.expect("503 5.5.1")
	c.send("MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	c.expect("354")
	c.send("Subject: tls", "", "x", ".")
	c.expect("250 2.0.0")
	msgs := b.messages()
	if len(msgs) != 1 {
		t.Fatalf("want 1 message, got %d", len(msgs))
	}
	if msgs[0].From != "a@example.org" {
		t.Errorf("injected command ran: from %q", msgs[0].From)
	}
	recv := msgs[0].Header.Get("Received")
	if !strings.Contains(recv, "with ESMTPS") || !strings.Contains(recv, "TLS") {
		t.Errorf("Received lacks TLS details: %q", recv)
	}
}

func TestRequireTLS(t *testing.T) {
	_, _, nc := testServer(t, SMTP, "pipe", []string{"tls", "requiretls"})
	c := newClient(t, nc)
	c.expect("220 ")
	c.send("EHLO client.test")
	c.expect("250")
	for _, cmd := range []string{"MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA", "VRFY x", "AUTH PLAIN"} {
		c.send(cmd)
		c.expect("530 5.7.0 Must issue a STARTTLS command first")
	}
	c.send("NOOP")
	c.expect("250")
}

func TestImplicitTLS(t *testing.T) {
	b := newFakeBackend()
	s := &Server{Hostname: "mx.test", Backend: b}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(tls.NewListener(l, testTLSConfig(t)))
	defer s.Close()
	tc, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := newClient(t, tc)
	c.expect("220 mx.test ESMTP")
	c.send("EHLO x")
	if r := c.expect("250"); strings.Contains(r, "STARTTLS") {
		t.Errorf("STARTTLS offered on implicit TLS: %q", r)
	}
}

// TestShutdownGraceful: an idle session gets 421 4.3.2 at once; a session
// inside a transaction finishes it, then gets 421 at its next command.
func TestShutdownGraceful(t *testing.T) {
	b := newFakeBackend()
	s := &Server{Hostname: "mx.test", Backend: b, Protocol: LMTP}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	dial := func() *client {
		nc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		c := newClient(t, nc)
		c.expect("220")
		c.send("LHLO x")
		c.expect("250")
		return c
	}
	idle := dial()
	busy := dial()
	busy.send("MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA")
	busy.expect("250")
	busy.expect("250")
	busy.expect("354")
	busy.send("Subject: half")

	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownDone <- s.Shutdown(ctx)
	}()
	idle.expect("421 4.3.2")
	idle.expectClosed()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
	busy.send("", "rest of the message", ".")
	busy.expect("250 2.0.0 <b@example.test>")
	busy.send("NOOP")
	busy.expect("421 4.3.2")
	busy.expectClosed()
	if err := <-shutdownDone; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := len(b.messages()); n != 1 {
		t.Errorf("want the in-flight message delivered, got %d messages", n)
	}
}

// TestShutdownDeadline: when Shutdown's context ends, deliveries in flight
// are cancelled and connections closed.
func TestShutdownDeadline(t *testing.T) {
	s, b, nc := testServer(t, LMTP, "tcp", nil)
	c := newClient(t, nc)
	c.expect("220")
	c.send("LHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<slow@example.test>", "DATA")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("x", ".")
	waitFor(t, func() bool { return len(s.conns) == 1 })
	time.Sleep(50 * time.Millisecond) // let the delivery start
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want deadline exceeded", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.ctxErrs) != 1 {
		t.Fatalf("delivery context not cancelled: %v", b.ctxErrs)
	}
}

// lateListener hands out one connection only after it has been closed,
// as a kernel does with a connection it accepted just before the
// listening socket closed: the Serve loop gets it while the server
// stops. Every further Accept says the listener is closed; lastAccept is
// set when the first of those returns, the loop's last step before
// Serve returns.
type lateListener struct {
	net.Listener // the real listener pending was accepted on
	pending      net.Conn
	delay        time.Duration // between Close and handing out pending
	closing      chan struct{}
	closeOnce    sync.Once
	handed       atomic.Bool
	lastAccept   atomic.Bool
}

func (l *lateListener) Accept() (net.Conn, error) {
	<-l.closing
	if l.handed.CompareAndSwap(false, true) {
		time.Sleep(l.delay)
		return l.pending, nil
	}
	l.lastAccept.Store(true)
	return nil, net.ErrClosed
}

func (l *lateListener) Close() error {
	l.closeOnce.Do(func() { close(l.closing) })
	return nil
}

// stopLog is a log writer that records what is written after the test
// sets stopped, the moment Close or Shutdown returned.
type stopLog struct {
	mu      sync.Mutex
	stopped bool
	before  strings.Builder
	late    []string
}

func (w *stopLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		w.late = append(w.late, string(p))
	} else {
		w.before.Write(p)
	}
	return len(p), nil
}

// TestStopWaitsForServe: Close and Shutdown return only after every
// Serve loop has returned, and a connection a loop accepts while the
// server stops is answered 421 4.3.2 and closed, its refusal logged
// before Close or Shutdown returned and nothing logged after. (Close used
// to return at once, and the refusal was logged later.)
func TestStopWaitsForServe(t *testing.T) {
	tests := []struct {
		name string
		stop func(s *Server) error
	}{
		{"Close", func(s *Server) error { return s.Close() }},
		{"Shutdown", func(s *Server) error { return s.Shutdown(context.Background()) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &stopLog{}
			log := zerolog.New(w)
			s := &Server{Hostname: "mx.test", Backend: newFakeBackend(), Protocol: LMTP, Logger: &log}

			const loops = 2
			var clients []*client
			var listeners []*lateListener
			served := make([]chan error, loops)
			for i := range loops {
				real, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { real.Close() })
				nc, err := net.Dial("tcp", real.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { nc.Close() })
				pending, err := real.Accept()
				if err != nil {
					t.Fatal(err)
				}
				clients = append(clients, newClient(t, nc))
				l := &lateListener{Listener: real, pending: pending, delay: 100 * time.Millisecond, closing: make(chan struct{})}
				listeners = append(listeners, l)
				served[i] = make(chan error, 1)
				go func() { served[i] <- s.Serve(l) }()
			}
			waitFor(t, func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return len(s.listeners) == loops
			})

			if err := tc.stop(s); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			w.mu.Lock()
			w.stopped = true
			before := w.before.String()
			w.mu.Unlock()
			for i, l := range listeners {
				if !l.lastAccept.Load() {
					t.Errorf("%s returned before Serve %d's loop ended", tc.name, i)
				}
			}
			for i, ch := range served {
				if err := <-ch; !errors.Is(err, ErrServerClosed) {
					t.Errorf("Serve %d returned %v, want ErrServerClosed", i, err)
				}
			}
			if n := strings.Count(before, `"reason":"shutdown"`); n != loops {
				t.Errorf("%d refusals for shutdown logged before %s returned, want %d:\n%s", n, tc.name, loops, before)
			}
			for _, c := range clients {
				c.expect("421 4.3.2")
				c.expectClosed()
			}
			time.Sleep(200 * time.Millisecond) // past the listeners' delay: a late log would be written by now
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.late) > 0 {
				t.Errorf("logged after %s returned:\n%s", tc.name, strings.Join(w.late, ""))
			}
		})
	}
}

// TestServeClosesListener: Serve closes its listener whatever it
// returns, also when it refuses to start (no Backend, or a server
// already closed).
func TestServeClosesListener(t *testing.T) {
	closed := &Server{Backend: newFakeBackend()}
	closed.Close()
	tests := []struct {
		name string
		s    *Server
		want string
	}{
		{"no backend", &Server{}, "Backend is nil"},
		{"after Close", closed, ErrServerClosed.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if err := tc.s.Serve(l); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Serve = %v, want %q", err, tc.want)
			}
			if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept after Serve returned: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestClientGoneDuringDelivery: the backend's context is cancelled when
// the client disconnects while it delivers.
func TestClientGoneDuringDelivery(t *testing.T) {
	for _, tr := range []string{"tcp", "pipe"} {
		t.Run(tr, func(t *testing.T) {
			_, b, nc := testServer(t, LMTP, tr, nil)
			c := newClient(t, nc)
			c.expect("220")
			c.startLMTPData("a@example.org", "slow@example.test")
			c.send("x", ".")
			time.Sleep(50 * time.Millisecond)
			nc.Close()
			waitFor(t, func() bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				return len(b.ctxErrs) == 1
			})
			b.mu.Lock()
			defer b.mu.Unlock()
			if !errors.Is(b.ctxErrs[0], ErrConnectionLost) {
				t.Errorf("cause %v, want ErrConnectionLost", b.ctxErrs[0])
			}
		})
	}
}

// TestPipelinedQuitDuringDelivery: QUIT pipelined after the final dot (as
// Postfix does) does not cancel the delivery and is answered after it.
func TestPipelinedQuitDuringDelivery(t *testing.T) {
	_, b, nc := testServer(t, LMTP, "tcp", nil)
	c := newClient(t, nc)
	c.expect("220")
	c.startLMTPData("a@example.org", "b@example.test")
	c.send("x", ".", "QUIT")
	c.expect("250 2.0.0 <b@example.test>")
	c.expect("221")
	if len(b.messages()) != 1 {
		t.Fatal("message not delivered")
	}
}

func TestMaxConnections(t *testing.T) {
	b := newFakeBackend()
	s := &Server{Hostname: "mx.test", Backend: b, MaxConnections: 2}
	l := serveTCP(t, s)
	var kept []*client
	for range 2 {
		nc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		c := newClient(t, nc)
		c.expect("220")
		kept = append(kept, c)
	}
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := newClient(t, nc)
	c.expect("421 4.7.0")
	c.expectClosed()
	kept[0].send("QUIT")
	kept[0].expect("221")
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.conns) == 1 })
	nc2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	newClient(t, nc2).expect("220")
}

func TestMaxConnectionsPerIP(t *testing.T) {
	b := newFakeBackend()
	s := &Server{Hostname: "mx.test", Backend: b, MaxConnectionsPerIP: 1, limitLoopback: true}
	l := serveTCP(t, s)
	nc1, _ := net.Dial("tcp", l.Addr().String())
	defer nc1.Close()
	newClient(t, nc1).expect("220")
	nc2, _ := net.Dial("tcp", l.Addr().String())
	defer nc2.Close()
	c := newClient(t, nc2)
	c.expect("421 4.7.0")
	c.expectClosed()
}

func TestCommandTimeout(t *testing.T) {
	b := newFakeBackend()
	s := &Server{Hostname: "mx.test", Backend: b, CommandTimeout: 100 * time.Millisecond}
	c1, c2 := net.Pipe()
	s.ServeConn(c1)
	defer s.Close()
	c := newClient(t, c2)
	c.expect("220")
	c.expect("421 4.4.2 mx.test Timeout waiting for command")
	c.expectClosed()
}

func TestDataTimeout(t *testing.T) {
	b := newFakeBackend()
	s := &Server{Hostname: "mx.test", Backend: b, DataTimeout: 100 * time.Millisecond, Protocol: LMTP}
	c1, c2 := net.Pipe()
	s.ServeConn(c1)
	defer s.Close()
	c := newClient(t, c2)
	c.expect("220")
	c.startLMTPData("", "b@example.test")
	c.send("Subject: stalled")
	c.expect("421 4.4.2")
	c.expectClosed()
	if len(b.messages()) != 0 {
		t.Fatal("a message with a stalled DATA was delivered")
	}
}

// TestAuthNeedsTLS: a mechanism offered only under TLS is not advertised
// on the plain connection, and asking for it there gets RFC 4954's 538
// 5.7.11 (an unknown one still 504 5.5.4); after STARTTLS it works.
func TestAuthNeedsTLS(t *testing.T) {
	_, _, nc := testServer(t, SMTP, "tcp", []string{"authtls", "tls"})
	c := newClient(t, nc)
	c.expect("220")
	c.send("EHLO client.test")
	if r := c.expect("250"); strings.Contains(r, "AUTH") {
		t.Errorf("AUTH advertised without TLS:\n%s", r)
	}
	c.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
	c.expect("538 5.7.11 Encryption required for requested authentication mechanism")
	c.send("AUTH login")
	c.expect("538 5.7.11")
	c.send("AUTH CRAM-MD5")
	c.expect("504 5.5.4")
	c.send("STARTTLS")
	c.expect("220")
	c = c.upgradeTLS(nc)
	c.send("EHLO client.test")
	if r := c.expect("250"); !strings.Contains(r, "AUTH PLAIN LOGIN") {
		t.Errorf("AUTH not advertised under TLS:\n%s", r)
	}
	c.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
	c.expect("235 2.7.0")
}

// TestTimeoutsNeverEarly: the socket deadline is kept no further ahead
// than the shorter of the command and data timeouts and extended when it
// fires early, so a pause longer than the shorter timeout but within the
// phase's own must not end the session, also under TLS; and an idle
// client is cut off no earlier than the command timeout.
func TestTimeoutsNeverEarly(t *testing.T) {
	const long, short = 1500, 300 // milliseconds
	for _, tt := range []struct {
		name      string
		cmd, data int
		tls       bool
		pause     string // the phase that has the long timeout
	}{
		{name: "long command timeout", cmd: long, data: short, pause: "command"},
		{name: "long data timeout", cmd: short, data: long, pause: "data"},
		{name: "long command timeout/TLS", cmd: long, data: short, pause: "command", tls: true},
		{name: "long data timeout/TLS", cmd: short, data: long, pause: "data", tls: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := []string{"cmdtimeout=" + strconv.Itoa(tt.cmd), "datatimeout=" + strconv.Itoa(tt.data)}
			if tt.tls {
				opts = append(opts, "tls")
			}
			_, b, nc := testServer(t, SMTP, "tcp", opts)
			c := newClient(t, nc)
			c.expect("220")
			c.send("EHLO client.test")
			c.expect("250")
			if tt.tls {
				c.send("STARTTLS")
				c.expect("220")
				c = c.upgradeTLS(nc)
				c.send("EHLO client.test")
				c.expect("250")
			}
			pause := time.Duration(long/2) * time.Millisecond
			if tt.pause == "command" {
				time.Sleep(pause)
			}
			c.send("MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA")
			c.expect("250")
			c.expect("250")
			c.expect("354")
			c.send("Subject: paused")
			if tt.pause == "data" {
				time.Sleep(pause)
			}
			c.send("", "body", ".")
			c.expect("250")
			if n := len(b.messages()); n != 1 {
				t.Fatalf("%d messages delivered, want 1", n)
			}
			start := time.Now()
			c.expect("421 4.4.2")
			idle := time.Since(start)
			timeout := time.Duration(tt.cmd) * time.Millisecond
			if idle < timeout-50*time.Millisecond {
				t.Errorf("cut off after %v idle, command timeout %v", idle, timeout)
			}
		})
	}
}

// panicBackend panics in Mail.
type panicBackend struct{}

func (panicBackend) Mail(context.Context, *ConnState, Address, *MailParams) (Transaction, error) {
	panic("boom")
}

func TestPanicRecovered(t *testing.T) {
	s := &Server{Hostname: "mx.test", Backend: panicBackend{}}
	c1, c2 := net.Pipe()
	s.ServeConn(c1)
	defer s.Close()
	c := newClient(t, c2)
	c.expect("220")
	c.send("EHLO x", "MAIL FROM:<a@example.org>")
	c.expect("250")
	r := c.expect("421 4.3.0 mx.test Internal error")
	if strings.Contains(r, "boom") {
		t.Errorf("panic text leaked: %q", r)
	}
	c.expectClosed()
}

// TestTransactionClosedOnce: every transaction is closed exactly once
// whatever ends it (fakeTx panics on a second Close).
func TestTransactionClosedOnce(t *testing.T) {
	_, b, nc := testServer(t, SMTP, "pipe", nil)
	c := newClient(t, nc)
	c.expect("220")
	c.send("EHLO x", "MAIL FROM:<a@example.org>", "RSET", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA")
	for range 5 {
		c.expect("250")
	}
	c.expect("354")
	c.send("x", ".", "MAIL FROM:<a@example.org>", "EHLO y", "MAIL FROM:<a@example.org>", "QUIT")
	for range 3 {
		c.expect("250")
	}
	c.expect("250")
	c.expect("221")
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.closed == 4 })
}

// TestBdatAbandoned: RSET in the middle of a BDAT transfer stops the
// consumer and closes the transaction; nothing is delivered.
func TestBdatAbandoned(t *testing.T) {
	_, b, nc := testServer(t, LMTP, "pipe", nil)
	c := newClient(t, nc)
	c.expect("220")
	c.send("LHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>")
	for range 3 {
		c.expect("250")
	}
	c.send("BDAT 5\r\nabc") // send adds CRLF: 5 octets
	c.expect("250 2.0.0 5 octets received")
	c.send("RSET")
	c.expect("250 2.0.0 Reset OK")
	c.send("BDAT 5 LAST\r\nabc")
	c.expect("503 5.5.1")
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.closed == 1 })
	if len(b.messages()) != 0 {
		t.Fatal("abandoned BDAT message delivered")
	}
}

// TestLargeMessageConstantMemory streams a big message through DATA and
// checks the heap does not grow with it.
func TestLargeMessageConstantMemory(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	var got int64
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		n, err := io.Copy(io.Discard, m.Body)
		got = n
		return err
	})
	s := &Server{Hostname: "mx.test", Backend: &HandlerBackend{Handler: h}, MaxMessageBytes: -1, Protocol: LMTP}
	c1, c2 := net.Pipe()
	s.ServeConn(c1)
	defer s.Close()
	c := newClient(t, c2)
	c.expect("220")
	c.startLMTPData("", "b@example.test")

	var before, peak runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	line := []byte(strings.Repeat("x", 78) + "\r\n")
	chunk := make([]byte, 0, 64<<10)
	for len(chunk)+len(line) <= cap(chunk) {
		chunk = append(chunk, line...)
	}
	var sent int64
	c2.SetWriteDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.WriteString(c2, "Subject: big\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for sent < size {
		if _, err := c2.Write(chunk); err != nil {
			t.Fatal(err)
		}
		sent += int64(len(chunk))
		if sent%(16<<20) < int64(len(chunk)) {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.HeapInuse {
				peak = m
			}
		}
	}
	io.WriteString(c2, ".\r\n")
	c.expect("250 2.0.0")
	if got != sent {
		t.Errorf("backend read %d bytes, sent %d", got, sent)
	}
	growth := int64(peak.HeapInuse) - int64(before.HeapInuse)
	t.Logf("streamed %d MiB; heap in use grew by %d KiB", sent>>20, growth>>10)
	if growth > 8<<20 {
		t.Errorf("heap grew by %d MiB while streaming: the message is being buffered", growth>>20)
	}
}

func TestHandlerAPI(t *testing.T) {
	var mu sync.Mutex
	var subjects []string
	b := &HandlerBackend{
		Handler: HandlerFunc(func(ctx context.Context, m *Message) error {
			mu.Lock()
			subjects = append(subjects, m.Header().Get("Subject"))
			mu.Unlock()
			_, err := io.Copy(io.Discard, m.Body)
			return err
		}),
		CheckRecipient: func(ctx context.Context, conn *ConnState, from Address, rcpt *Recipient) error {
			if rcpt.Address.Domain != "example.test" {
				return NewError(550, EnhancedCode{5, 7, 1}, "Relay access denied")
			}
			return nil
		},
	}
	s := &Server{Hostname: "mx.test", Backend: b}
	c1, c2 := net.Pipe()
	s.ServeConn(c1)
	defer s.Close()
	c := newClient(t, c2)
	c.expect("220")
	c.send("EHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<x@elsewhere.example>", "RCPT TO:<b@example.test>", "DATA")
	c.expect("250")
	c.expect("250 2.1.0")
	c.expect("550 5.7.1 Relay access denied")
	c.expect("250 2.1.5")
	c.expect("354")
	c.send("Subject: hello handler", "", "x", ".")
	c.expect("250 2.0.0")
	mu.Lock()
	defer mu.Unlock()
	if len(subjects) != 1 || subjects[0] != "hello handler" {
		t.Errorf("subjects %q", subjects)
	}
}

// TestLogsCarrySessionID checks every log line of a session carries the
// session id and that AUTH payloads and message text never reach the log,
// even at trace level.
func TestLogsCarrySessionID(t *testing.T) {
	var buf wiretest.LogBuffer
	log := zerolog.New(&buf).Level(zerolog.TraceLevel)
	b := newFakeBackend()
	s := &Server{Hostname: "mx.test", Backend: b, Logger: &log, Auth: testAuthenticator(), AuthFailureDelay: -1}
	c1, c2 := net.Pipe()
	s.ServeConn(c1)
	c := newClient(t, c2)
	c.expect("220")
	c.send("EHLO x", "AUTH PLAIN")
	c.expect("250")
	c.expect("334")
	c.send("AGFsaWNlAHNlY3JldA==")
	c.expect("235")
	c.send("MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "DATA")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("Subject: topsecretsubject", "", "topsecretbody", ".", "QUIT")
	c.expect("250")
	c.expect("221")
	s.Close()
	out := buf.String()
	for _, secret := range []string{"AGFsaWNlAHNlY3JldA", "secret\"", "topsecretbody", "topsecretsubject"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 5 {
		t.Fatalf("too few log lines: %q", out)
	}
	for _, l := range lines {
		if !strings.Contains(l, `"session":"`) {
			t.Errorf("log line without session id: %s", l)
		}
	}
	if !strings.Contains(out, `"status":"delivered"`) {
		t.Errorf("no delivery outcome line:\n%s", out)
	}
}

// serveTCP serves s on a loopback port until the test ends.
func serveTCP(t testing.TB, s *Server) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFoldStatuses(t *testing.T) {
	temp := NewError(452, EnhancedCode{4, 2, 2}, "full")
	temp2 := NewError(451, EnhancedCode{4, 3, 0}, "later")
	perm := NewError(550, EnhancedCode{5, 1, 1}, "unknown")
	perm2 := NewError(554, EnhancedCode{5, 3, 0}, "failed")
	plain := errors.New("plain")
	tests := []struct {
		name string
		in   []error
		want error
	}{
		{"all delivered", []error{nil, nil}, nil},
		{"one temporary", []error{nil, temp}, temp},
		{"temporary beats earlier permanent", []error{perm, nil, temp}, temp},
		{"first temporary wins", []error{temp2, temp}, temp2},
		{"permanent only", []error{nil, perm, perm2}, perm},
		{"plain error is temporary", []error{perm, plain}, plain},
		{"all permanent", []error{perm2, perm}, perm2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FoldStatuses(tt.in); got != tt.want {
				t.Errorf("FoldStatuses = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProtocolKeyword(t *testing.T) {
	tlsState := &tls.ConnectionState{}
	tests := []struct {
		st   ConnState
		utf8 bool
		want string
	}{
		{ConnState{Protocol: SMTP}, false, "SMTP"},
		{ConnState{Protocol: SMTP, ESMTP: true}, false, "ESMTP"},
		{ConnState{Protocol: SMTP, ESMTP: true, TLS: tlsState}, false, "ESMTPS"},
		{ConnState{Protocol: SMTP, ESMTP: true, AuthIdentity: "a"}, false, "ESMTPA"},
		{ConnState{Protocol: SMTP, ESMTP: true, TLS: tlsState, AuthIdentity: "a"}, false, "ESMTPSA"},
		{ConnState{Protocol: SMTP, ESMTP: true, TLS: tlsState, AuthIdentity: "a"}, true, "UTF8SMTPSA"},
		{ConnState{Protocol: SMTP, ESMTP: true}, true, "UTF8SMTP"},
		{ConnState{Protocol: LMTP, ESMTP: true}, false, "LMTP"},
		{ConnState{Protocol: LMTP, ESMTP: true, TLS: tlsState}, false, "LMTPS"},
		{ConnState{Protocol: LMTP, ESMTP: true, AuthIdentity: "a"}, true, "UTF8LMTPA"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := protocolKeyword(&tt.st, tt.utf8); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorType(t *testing.T) {
	cause := errors.New("ENOSPC on /var/mail")
	e := WrapError(452, EnhancedCode{4, 3, 1}, "Insufficient system storage", cause)
	wrapped := fmt.Errorf("delivering: %w", e)
	if got := AsError(wrapped); got != e {
		t.Fatalf("AsError through wrapping = %v", got)
	}
	if !errors.Is(wrapped, cause) {
		t.Error("errors.Is does not reach the cause")
	}
	if !e.Temporary() || NewError(550, EnhancedCode{}, "x").Temporary() {
		t.Error("Temporary wrong")
	}
	if got := NewError(550, EnhancedCode{}, "x").Enhanced(); got != (EnhancedCode{5, 0, 0}) {
		t.Errorf("derived enhanced code %v", got)
	}
	for _, tt := range []struct {
		in   string
		ok   bool
		want EnhancedCode
	}{
		{"4.2.2", true, EnhancedCode{4, 2, 2}},
		{"5.1.10", true, EnhancedCode{5, 1, 10}},
		{"2.0.0", true, EnhancedCode{2, 0, 0}},
		{"3.0.0", false, EnhancedCode{}},
		{"4.2", false, EnhancedCode{}},
		{"4.2.2.2", false, EnhancedCode{}},
		{"4..2", false, EnhancedCode{}},
		{"44.2.2", false, EnhancedCode{}},
		{"4.1000.2", false, EnhancedCode{}},
		{"", false, EnhancedCode{}},
		{"a.b.c", false, EnhancedCode{}},
	} {
		got, err := ParseEnhancedCode(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseEnhancedCode(%q) = %v, %v", tt.in, got, err)
		}
	}
}

// TestFinalReplyBudget: a delivery that outlives FinalReplyTimeout has its
// context cancelled; the recipient gets a temporary failure and the
// session goes on with a fresh context.
func TestFinalReplyBudget(t *testing.T) {
	b := newFakeBackend()
	s := &Server{Hostname: "mx.test", Backend: b, Protocol: LMTP, FinalReplyTimeout: 100 * time.Millisecond}
	c1, c2 := net.Pipe()
	s.ServeConn(c1)
	defer s.Close()
	c := newClient(t, c2)
	c.expect("220")
	c.startLMTPData("", "slow@example.test")
	c.send("x", ".")
	c.expect("451 4.4.7 <slow@example.test> Delivery took too long")
	c.send("MAIL FROM:<>", "RCPT TO:<b@example.test>", "DATA")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("y", ".")
	c.expect("250 2.0.0 <b@example.test>")
}

// TestBdatConnectionLost: the client vanishes inside a chunk; nothing is
// delivered and the transaction is closed.
func TestBdatConnectionLost(t *testing.T) {
	_, b, nc := testServer(t, LMTP, "tcp", nil)
	c := newClient(t, nc)
	c.expect("220")
	c.send("LHLO x", "MAIL FROM:<>", "RCPT TO:<b@example.test>")
	for range 3 {
		c.expect("250")
	}
	io.WriteString(nc, "BDAT 1000 LAST\r\nSubject: cut\r\n\r\npartial")
	time.Sleep(50 * time.Millisecond)
	nc.Close()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.closed == 1 })
	if n := len(b.messages()); n != 0 {
		t.Fatalf("%d messages delivered from a cut BDAT", n)
	}
}

func TestListenAndServeUnix(t *testing.T) {
	sock := t.TempDir() + "/l.sock"
	got := make(chan string, 1)
	s := &Server{Addr: "unix:" + sock, Protocol: LMTP, Hostname: "mx.test", Backend: &HandlerBackend{
		Handler: HandlerFunc(func(ctx context.Context, m *Message) error {
			got <- m.Header().Get("Subject")
			_, err := io.Copy(io.Discard, m.Body)
			return err
		})}}
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe() }()
	var nc net.Conn
	waitFor(t, func() bool {
		var err error
		nc, err = net.Dial("unix", sock)
		return err == nil
	})
	c := newClient(t, nc)
	c.expect("220 mx.test LMTP")
	c.startLMTPData("", "b@example.test")
	c.send("Subject: via unix", "", ".")
	c.expect("250 2.0.0")
	if s := <-got; s != "via unix" {
		t.Errorf("subject %q", s)
	}
	s.Close()
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Errorf("ListenAndServe returned %v", err)
	}
}

// TestBackendLogsOutcomes: with an OnOutcome hook (the backend or the
// hook writes the administrator's line), the server's outcome line is
// logged at debug level, not info.
func TestBackendLogsOutcomes(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		var buf wiretest.LogBuffer
		log := zerolog.New(&buf).Level(zerolog.DebugLevel)
		s := &Server{Hostname: "mx.test", Backend: newFakeBackend(), Logger: &log}
		if quiet {
			s.OnOutcome = func(context.Context, *Outcome) {}
		}
		c1, c2 := net.Pipe()
		s.ServeConn(c1)
		c := newClient(t, c2)
		c.expect("220")
		c.send("EHLO x", "MAIL FROM:<>", "RCPT TO:<b@example.test>", "DATA")
		for range 3 {
			c.expect("250")
		}
		c.expect("354")
		c.send("x", ".", "QUIT")
		c.expect("250")
		c.expect("221")
		s.Close()
		want := `"level":"info"`
		if quiet {
			want = `"level":"debug"`
		}
		found := false
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.Contains(l, `"message":"delivery"`) {
				found = true
				if !strings.Contains(l, want) {
					t.Errorf("quiet=%v: outcome line %s lacks %s", quiet, l, want)
				}
			}
		}
		if !found {
			t.Errorf("quiet=%v: no outcome line", quiet)
		}
	}
}

// TestDataTotalTimeout: a client that trickles message text, each byte
// within DataTimeout, is still cut off after DataTotalTimeout.
func TestDataTotalTimeout(t *testing.T) {
	for _, verb := range []string{"DATA", "BDAT"} {
		t.Run(verb, func(t *testing.T) {
			b := newFakeBackend()
			s := &Server{Hostname: "mx.test", Backend: b, Protocol: LMTP,
				DataTimeout: 2 * time.Second, DataTotalTimeout: 300 * time.Millisecond}
			c1, c2 := net.Pipe()
			s.ServeConn(c1)
			defer s.Close()
			c := newClient(t, c2)
			c.expect("220")
			c.send("LHLO x", "MAIL FROM:<>", "RCPT TO:<b@example.test>")
			for range 3 {
				c.expect("250")
			}
			if verb == "DATA" {
				c.send("DATA")
				c.expect("354")
			} else {
				io.WriteString(c2, "BDAT 1000 LAST\r\n")
			}
			start := time.Now()
			stop := make(chan struct{})
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
						c2.SetWriteDeadline(time.Now().Add(time.Second))
						if _, err := io.WriteString(c2, "x"); err != nil {
							return
						}
					}
				}
			}()
			defer close(stop)
			c.expect("421 4.4.2")
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("cut off after %v, want about 300ms", d)
			}
			if len(b.messages()) != 0 {
				t.Error("a trickled message was delivered")
			}
		})
	}
}

// TestOnOutcome: the hook gets one outcome per accepted recipient, in RCPT
// order, duplicates included, with the reply each got, in both dialects.
func TestOnOutcome(t *testing.T) {
	for _, proto := range []Protocol{LMTP, SMTP} {
		t.Run(proto.String(), func(t *testing.T) {
			type rec struct {
				to, reply, id string
				temp          bool
			}
			var mu sync.Mutex
			var got []rec
			s := &Server{Hostname: "mx.test", Protocol: proto, Backend: newFakeBackend(),
				OnOutcome: func(_ context.Context, o *Outcome) {
					r := rec{to: o.To.Address.String(), id: o.MessageID, temp: o.Temporary()}
					if o.Reply != nil {
						r.reply = strconv.Itoa(o.Reply.Code) + " " + o.Reply.Enhanced().String()
					}
					if (o.Err == nil) != (o.Reply == nil) || o.Conn == nil || o.From.String() != "s@example.test" {
						t.Errorf("outcome %+v", o)
					}
					mu.Lock()
					got = append(got, r)
					mu.Unlock()
				}}
			c1, c2 := net.Pipe()
			s.ServeConn(c1)
			defer s.Close()
			c := newClient(t, c2)
			c.expect("220")
			hello := "EHLO x"
			if proto == LMTP {
				hello = "LHLO x"
			}
			c.send(hello, "MAIL FROM:<s@example.test>", "RCPT TO:<a@example.test>", "RCPT TO:<perm@example.test>",
				"RCPT TO:<unknown@example.test>", "RCPT TO:<temp@example.test>", "RCPT TO:<a@example.test>", "DATA")
			c.expect("250")
			c.expect("250")
			c.expect("250")
			c.expect("250")
			c.expect("550")
			c.expect("250")
			c.expect("250")
			c.expect("354")
			c.send("Subject: x", "", "body", ".")
			if proto == LMTP {
				c.expect("250")
				c.expect("554")
				c.expect("452")
				c.expect("250")
			} else {
				c.expect("452")
			}
			c.send("QUIT")
			c.expect("221")
			mu.Lock()
			defer mu.Unlock()
			want := []rec{
				{to: "a@example.test"},
				{to: "perm@example.test", reply: "554 5.3.0"},
				{to: "temp@example.test", reply: "452 4.2.2", temp: true},
				{to: "a@example.test"},
			}
			if len(got) != len(want) {
				t.Fatalf("%d outcomes, want %d: %+v", len(got), len(want), got)
			}
			for i := range want {
				want[i].id = got[0].id
				if got[i] != want[i] {
					t.Errorf("outcome %d = %+v, want %+v", i, got[i], want[i])
				}
			}
			if got[0].id == "" {
				t.Error("no message id")
			}
		})
	}
}

// TestSoftware: the software's name appears in the greeting and the
// Received field only when set, made safe for both; the default names no
// product.
func TestSoftware(t *testing.T) {
	tests := []struct {
		software, greeting, by string
	}{
		{"", "220 mx.test LMTP ready", "\tby mx.test with LMTP\r\n"},
		{"lmtpd", "220 mx.test LMTP lmtpd ready", "\tby mx.test (lmtpd) with LMTP\r\n"},
		{"x(y)\\z\r\n", "220 mx.test LMTP x_y__z__ ready", "\tby mx.test (x_y__z__) with LMTP\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.software, func(t *testing.T) {
			b := newFakeBackend()
			s := &Server{Hostname: "mx.test", Protocol: LMTP, Software: tt.software, Backend: b}
			c1, c2 := net.Pipe()
			s.ServeConn(c1)
			defer s.Close()
			c := newClient(t, c2)
			if got := c.expect("220"); got != tt.greeting {
				t.Errorf("greeting %q, want %q", got, tt.greeting)
			}
			c.startLMTPData("", "b@example.test")
			c.send("Subject: x", "", ".")
			c.expect("250 2.0.0")
			msgs := b.messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages", len(msgs))
			}
			if got := msgs[0].Text(); !strings.Contains(got, tt.by) {
				t.Errorf("Received field lacks %q:\n%s", tt.by, got)
			}
		})
	}
}
