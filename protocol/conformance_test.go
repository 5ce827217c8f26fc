package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/wiretest"
	"github.com/rs/zerolog"
)

// wireCase is one conformance check over a real connection: after the
// greeting, the commands in pre are sent one at a time and each must get a
// positive reply (2xx or 3xx); then send goes out as raw bytes and the
// server's next lines must be exactly want (a line of want ending in "*"
// only has to start with the rest); closed says the server then
// closes the connection.
type wireCase struct {
	name   string
	proto  Protocol
	opts   []string
	pre    []string
	send   string
	want   []string
	closed bool
}

func runWireCases(t *testing.T, cases []wireCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, nc := testServer(t, tc.proto, "tcp", tc.opts)
			cl := newClient(t, nc)
			cl.expect("220")
			for _, p := range tc.pre {
				cl.send(p)
				if r := cl.reply(); r[0] != '2' && r[0] != '3' {
					t.Fatalf("%q: want a positive reply, got %q", p, r)
				}
			}
			nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(nc, tc.send); err != nil {
				t.Fatal(err)
			}
			for i, w := range tc.want {
				nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				l, err := cl.br.ReadString('\n')
				if err != nil {
					t.Fatalf("line %d: want %q, got error %v", i, w, err)
				}
				got := strings.TrimSuffix(l, "\r\n")
				if p, ok := strings.CutSuffix(w, "*"); ok && strings.HasPrefix(got, p) {
					continue
				}
				if got != w {
					t.Fatalf("line %d: want %q, got %q", i, w, l)
				}
			}
			if tc.closed {
				cl.expectClosed()
				return
			}
			// The session goes on: the next command is answered.
			cl.send("NOOP")
			cl.expect("250 2.0.0")
		})
	}
}

// TestWireBdatSyntax: BDAT's size is 1*DIGIT and its end marker LAST (RFC
// 3030 section 2, any case as every SMTP keyword). A size that cannot be
// read leaves the chunk's end unknown: the command gets 501 and, since the
// session cannot go on, a 421 before the close (RFC 5321 section 3.8).
func TestWireBdatSyntax(t *testing.T) {
	tx := []string{"EHLO c.test", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>"}
	closing := []string{"501 5.5.4 Syntax: BDAT size [LAST]", "421 4.5.0 mx.test BDAT chunk size unknown, closing connection"}
	cases := []wireCase{
		{name: "zero LAST", pre: tx, send: "BDAT 0 LAST\r\n", want: []string{"250 2.0.0 Message accepted for delivery as *"}},
		{name: "last lower case", pre: tx, send: "BDAT 3 last\r\na\r\n", want: []string{"250 2.0.0 Message accepted for delivery as *"}},
		{name: "leading zeros", pre: tx, send: "BDAT 003\r\na\r\nBDAT 0 LAST\r\n", want: []string{"250 2.0.0 3 octets received", "250 2.0.0 Message accepted for delivery as *"}},
		{name: "no size", pre: tx, send: "BDAT\r\n", want: closing, closed: true},
		{name: "letters", pre: tx, send: "BDAT x\r\n", want: closing, closed: true},
		{name: "negative", pre: tx, send: "BDAT -1\r\n", want: closing, closed: true},
		{name: "glued LAST", pre: tx, send: "BDAT 1LAST\r\n", want: closing, closed: true},
		{name: "bad marker", pre: tx, send: "BDAT 1 END\r\n", want: closing, closed: true},
		{name: "extra word", pre: tx, send: "BDAT 1 LAST x\r\n", want: closing, closed: true},
		{name: "outside a transaction", pre: []string{"EHLO c.test"}, send: "BDAT x\r\n", want: closing, closed: true},
	}
	runWireCases(t, cases)
}

// refusingBackend refuses every connection at the greeting with err.
type refusingBackend struct {
	*fakeBackend
	err error
}

func (b refusingBackend) CheckConn(context.Context, *ConnState) error { return b.err }

// TestWireRefusedGreeting: a session refused at the greeting with 554
// waits for QUIT and answers any other command 503 (RFC 5321 section
// 3.1); one refused with 421 is closed at once.
func TestWireRefusedGreeting(t *testing.T) {
	refused554 := NewError(CodeTransactionFailed, ECPermSecurity, "No SMTP service here")
	refused421 := NewError(CodeServiceUnavailable, ECTempSecurity, "mx.test Try again later")
	cases := []struct {
		name  string
		err   error
		send  string
		want  []string
		close bool
	}{
		{"554 then QUIT", refused554, "QUIT\r\n", []string{"554 5.7.0 No SMTP service here", "221 2.0.0 mx.test Bye"}, true},
		{"554 then EHLO", refused554, "EHLO c.test\r\nMAIL FROM:<a@example.org>\r\nNOOP\r\nQUIT\r\n", []string{
			"554 5.7.0 No SMTP service here",
			"503 5.5.1 No service here; send QUIT",
			"503 5.5.1 No service here; send QUIT",
			"503 5.5.1 No service here; send QUIT",
			"221 2.0.0 mx.test Bye",
		}, true},
		{"plain error is 554", errors.New("blocked"), "RSET\r\nQUIT\r\n", []string{"554 5.7.0 Connection refused", "503 5.5.1 No service here; send QUIT", "221 2.0.0 mx.test Bye"}, true},
		{"421 closes", refused421, "", []string{"421 4.7.0 mx.test Try again later"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := zerolog.New(zerolog.NewTestWriter(t))
			s := &Server{Hostname: "mx.test", Software: "lmtpd", Logger: &log,
				Backend: refusingBackend{newFakeBackend(), tc.err}}
			nc := wiretest.Connect(t, s, "tcp")
			cl := newClient(t, nc)
			if tc.send != "" {
				io.WriteString(nc, tc.send)
			}
			for _, w := range tc.want {
				if got := cl.reply(); got != w {
					t.Fatalf("want %q, got %q", w, got)
				}
			}
			cl.expectClosed()
		})
	}
}

// TestWireRefusedGreetingErrorBudget: a client that never sends QUIT
// after a 554 greeting is closed with 421 when its error budget is spent.
func TestWireRefusedGreetingErrorBudget(t *testing.T) {
	log := zerolog.New(zerolog.NewTestWriter(t))
	s := &Server{Hostname: "mx.test", Logger: &log, MaxErrors: 2,
		Backend: refusingBackend{newFakeBackend(), NewError(CodeTransactionFailed, ECPermSecurity, "No SMTP service here")}}
	cl := newClient(t, wiretest.Connect(t, s, "tcp"))
	cl.expect("554 5.7.0")
	cl.send("NOOP", "NOOP")
	cl.expect("503 5.5.1")
	cl.expect("503 5.5.1")
	cl.expect("421 4.7.0 mx.test Too many errors")
	cl.expectClosed()
}

// mailErrBackend refuses every sender with err.
type mailErrBackend struct{ err error }

func (b mailErrBackend) Mail(context.Context, *ConnState, Address, *MailParams) (Transaction, error) {
	return nil, b.err
}

// TestWireBackendReplyCodes: what a backend returns is sent as a
// well-formed failure reply: the enhanced code's class is the basic
// code's (RFC 3463 section 2), a code that is not 4xx or 5xx becomes the
// generic 451 4.3.0, and the session goes on.
func TestWireBackendReplyCodes(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"as it is", NewError(550, EnhancedCode{5, 7, 1}, "Refused"), "550 5.7.1 Refused"},
		{"no enhanced code", NewError(450, EnhancedCode{}, "Later"), "450 4.0.0 Later"},
		{"class mismatch permanent", NewError(550, EnhancedCode{4, 2, 2}, "Full"), "550 5.2.2 Full"},
		{"class mismatch temporary", NewError(451, EnhancedCode{5, 3, 0}, "Later"), "451 4.3.0 Later"},
		{"class 3", NewError(554, EnhancedCode{3, 1, 1}, "No"), "554 5.1.1 No"},
		{"detail out of range", NewError(550, EnhancedCode{5, 1, 1000}, "No"), "550 5.0.0 No"},
		{"negative subject", NewError(550, EnhancedCode{5, -1, 1}, "No"), "550 5.0.0 No"},
		{"success code", NewError(250, EnhancedCode{2, 0, 0}, "OK?"), "451 4.3.0 Internal error, try again later (session *"},
		{"intermediate code", NewError(354, EnhancedCode{}, "Go on"), "451 4.3.0 Internal error, try again later (session *"},
		{"no code", NewError(0, EnhancedCode{}, "?"), "451 4.3.0 Internal error, try again later (session *"},
		{"wrapped", fmt.Errorf("lookup: %w", NewError(553, EnhancedCode{4, 1, 7}, "Bad sender")), "553 5.1.7 Bad sender"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := zerolog.New(zerolog.NewTestWriter(t))
			s := &Server{Hostname: "mx.test", Logger: &log, Backend: mailErrBackend{tc.err}}
			cl := newClient(t, wiretest.Connect(t, s, "tcp"))
			cl.expect("220")
			cl.send("EHLO c.test")
			cl.expect("250")
			cl.send("MAIL FROM:<a@example.org>")
			got := cl.reply()
			if p, ok := strings.CutSuffix(tc.want, "*"); ok {
				if !strings.HasPrefix(got, p) {
					t.Fatalf("want %q, got %q", tc.want, got)
				}
			} else if got != tc.want {
				t.Fatalf("want %q, got %q", tc.want, got)
			}
			cl.send("QUIT")
			cl.expect("221 2.0.0")
		})
	}
}
