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

// TestWireConformance pins replies the RFCs fix, one case per rule, each
// over a real connection (the section is in the case's name).
func TestWireConformance(t *testing.T) {
	ehlo := []string{"EHLO c.test"}
	tx := []string{"EHLO c.test", "MAIL FROM:<a@example.org>"}
	rcpt := []string{"EHLO c.test", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>"}
	cases := []wireCase{
		// RFC 5321 4.1.4 and 4.3.2: sequencing; the state stays after 503.
		{name: "5321-4.3.2 MAIL before EHLO", send: "MAIL FROM:<a@example.org>\r\n", want: []string{"503 5.5.1 Send EHLO/HELO first"}},
		{name: "5321-4.3.2 RCPT before MAIL", pre: ehlo, send: "RCPT TO:<b@example.test>\r\n", want: []string{"503 5.5.1 Need MAIL before RCPT"}},
		{name: "5321-4.3.2 DATA before MAIL", pre: ehlo, send: "DATA\r\n", want: []string{"503 5.5.1 Need MAIL command"}},
		{name: "5321-4.3.2 MAIL in a transaction", pre: tx, send: "MAIL FROM:<a@example.org>\r\n", want: []string{"503 5.5.1 Nested MAIL command"}},
		{name: "5321-4.1.4 EHLO ends the transaction", pre: rcpt, send: "EHLO c.test\r\nRCPT TO:<b@example.test>\r\n", want: []string{"250-mx.test Hello c.test", "250-*", "250-*", "250-*", "250-*", "250-*", "250-*", "250-*", "250-*", "250 LIMITS RCPTMAX=1000", "503 5.5.1 Need MAIL before RCPT"}},
		{name: "5321-4.1.4 HELO ends the transaction", pre: rcpt, send: "HELO c.test\r\nRCPT TO:<b@example.test>\r\n", want: []string{"250 mx.test Hello c.test", "503 5.5.1 Need MAIL before RCPT"}},
		{name: "5321-4.1.1.5 RSET with an argument", send: "RSET x\r\n", want: []string{"501 5.5.4 Syntax: RSET"}},
		{name: "5321-4.1.1.9 NOOP ignores its argument", send: "NOOP x\r\n", want: []string{"250 2.0.0 OK"}},
		{name: "5321-3.5.3 VRFY", pre: ehlo, send: "VRFY bob\r\n", want: []string{"252 2.5.0 Cannot verify user, but will accept message and attempt delivery"}},
		{name: "5321-7.3 EXPN", pre: ehlo, send: "EXPN list\r\n", want: []string{"252 2.5.0 Cannot verify user, but will accept message and attempt delivery"}},
		{name: "5321-4.2.4 3463 unknown command", send: "XYZZY\r\n", want: []string{"500 5.5.2 Unrecognized command"}},
		{name: "2033 LHLO in SMTP", send: "LHLO c.test\r\n", want: []string{"500 5.5.2 Unrecognized command"}},
		{name: "2033 HELO in LMTP", proto: LMTP, send: "HELO c.test\r\n", want: []string{"500 5.5.2 This is an LMTP server: use LHLO"}},
		{name: "5321-4.1.1.10 QUIT in a transaction", pre: rcpt, send: "QUIT\r\n", want: []string{"221 2.0.0 mx.test Bye"}, closed: true},
		// RFC 5321 4.1.2 and 4.5.3.1: paths.
		{name: "5321-4.1.2 null reverse path", pre: ehlo, send: "MAIL FROM:<>\r\n", want: []string{"250 2.1.0 Sender OK"}},
		{name: "5321-4.1.1.3 source route ignored", pre: tx, send: "RCPT TO:<@a.example,@b.example:u@d.example>\r\n", want: []string{"250 2.1.5 Recipient OK"}},
		{name: "5321-4.1.2 quoted local part", pre: tx, send: "RCPT TO:<\"a b\"@example.test>\r\n", want: []string{"250 2.1.5 Recipient OK"}},
		{name: "5321-4.1.3 IPv4 literal", pre: tx, send: "RCPT TO:<u@[192.0.2.1]>\r\n", want: []string{"250 2.1.5 Recipient OK"}},
		{name: "5321-4.1.3 IPv6 literal", pre: tx, send: "RCPT TO:<u@[IPv6:2001:db8::1]>\r\n", want: []string{"250 2.1.5 Recipient OK"}},
		{name: "5321-4.1.3 bad literal", pre: tx, send: "RCPT TO:<u@[300.1.1.1]>\r\n", want: []string{"501 5.1.3 Bad address literal"}},
		{name: "5321-4.5.1 Postmaster without domain", pre: tx, send: "RCPT TO:<postmaster>\r\n", want: []string{"250 2.1.5 Recipient OK"}},
		{name: "5321-4.5.3.1.1 local part over 64", pre: tx, send: "RCPT TO:<" + strings.Repeat("a", 65) + "@example.test>\r\n", want: []string{"501 5.1.3 Local part too long (64 octets max)"}},
		{name: "5321-4.5.3.1.1 sender local part over 64", pre: ehlo, send: "MAIL FROM:<" + strings.Repeat("a", 65) + "@example.test>\r\n", want: []string{"501 5.1.7 Local part too long (64 octets max)"}},
		{name: "5321-4.5.3.1.4 command line over 512", send: "NOOP " + strings.Repeat("x", 506) + "\r\n", want: []string{"500 5.5.2 Line too long"}},
		{name: "5321-4.5.3.1.4 command line of 512", send: "NOOP " + strings.Repeat("x", 505) + "\r\n", want: []string{"250 2.0.0 OK"}},
		// Parameters: RFC 5321 4.1.1.11, RFC 1870, 3030, 6152, 6531, 3461.
		{name: "5321-4.1.1.11 unknown parameter", pre: ehlo, send: "MAIL FROM:<a@example.org> FOO=bar\r\n", want: []string{"555 5.5.4 Unsupported parameter FOO"}},
		{name: "5321-4.1.1.11 duplicate parameter", pre: ehlo, send: "MAIL FROM:<a@example.org> SIZE=1 SIZE=1\r\n", want: []string{"501 5.5.4 Duplicate parameter SIZE"}},
		{name: "5321 no parameters after HELO", pre: []string{"HELO c.test"}, send: "MAIL FROM:<a@example.org> BODY=8BITMIME\r\n", want: []string{"555 5.5.4 Unsupported parameter BODY"}},
		{name: "1870-6.1 SIZE over the limit", pre: ehlo, opts: []string{"maxsize=100"}, send: "MAIL FROM:<a@example.org> SIZE=101\r\n", want: []string{"552 5.3.4 Message size exceeds fixed maximum message size of 100 octets"}},
		{name: "1870 SIZE malformed", pre: ehlo, send: "MAIL FROM:<a@example.org> SIZE=1k\r\n", want: []string{"501 5.5.4 Bad SIZE value"}},
		{name: "1870 SIZE on RCPT", pre: tx, send: "RCPT TO:<b@example.test> SIZE=1\r\n", want: []string{"555 5.5.4 Unsupported parameter SIZE"}},
		{name: "6152 BODY bad value", pre: ehlo, send: "MAIL FROM:<a@example.org> BODY=9BIT\r\n", want: []string{"501 5.5.4 Bad BODY value"}},
		{name: "3030-3 BINARYMIME then DATA", pre: []string{"EHLO c.test", "MAIL FROM:<a@example.org> BODY=BINARYMIME", "RCPT TO:<b@example.test>"}, send: "DATA\r\n", want: []string{"503 5.5.1 BODY=BINARYMIME requires BDAT"}},
		{name: "6531-3.5 non-ASCII without SMTPUTF8", pre: tx, send: "RCPT TO:<\u00fc@example.test>\r\n", want: []string{"553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter"}},
		{name: "3461-4.1 NOTIFY=NEVER not alone", pre: tx, send: "RCPT TO:<b@example.test> NOTIFY=NEVER,SUCCESS\r\n", want: []string{"501 5.5.4 NOTIFY=NEVER must be alone"}},
		{name: "3461-4.3 RET on RCPT", pre: tx, send: "RCPT TO:<b@example.test> RET=HDRS\r\n", want: []string{"555 5.5.4 Unsupported parameter RET"}},
		// RFC 2920: a pipelined group answered in order; DATA with no
		// valid recipient gets 503 and no 354.
		{name: "2920-3.1 rejected RCPTs then DATA", pre: ehlo, send: "MAIL FROM:<a@example.org>\r\nRCPT TO:<unknown1@example.test>\r\nRCPT TO:<unknown2@example.test>\r\nDATA\r\n", want: []string{"250 2.1.0 Sender OK", "550 5.1.1 No such user", "550 5.1.1 No such user", "503 5.5.1 No valid recipients"}},
		// RFC 3030: DATA and BDAT do not mix; RSET ends a chunked message;
		// BDAT after LAST is 503.
		{name: "3030-2 DATA after BDAT", pre: rcpt, send: "BDAT 3\r\na\r\nDATA\r\n", want: []string{"250 2.0.0 3 octets received", "503 5.5.1 DATA not allowed after BDAT"}},
		{name: "3030-2 RSET between chunks", pre: rcpt, send: "BDAT 3\r\na\r\nRSET\r\nBDAT 3 LAST\r\na\r\n", want: []string{"250 2.0.0 3 octets received", "250 2.0.0 Reset OK", "503 5.5.1 Need MAIL command"}},
		{name: "3030-2 BDAT after LAST", pre: rcpt, send: "BDAT 3 LAST\r\na\r\nBDAT 3 LAST\r\na\r\n", want: []string{"250 2.0.0 Message accepted for delivery as *", "503 5.5.1 Need MAIL command"}},
		{name: "2033-4.3 LMTP BDAT LAST one reply per recipient", proto: LMTP, pre: []string{"LHLO c.test", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "RCPT TO:<temp@example.test>"}, send: "BDAT 3 LAST\r\na\r\n", want: []string{"250 2.0.0 <b@example.test> Delivered as *", "452 4.2.2 <temp@example.test> Mailbox full"}},
		// RFC 3207.
		{name: "3207-4 STARTTLS with a parameter", opts: []string{"tls"}, pre: ehlo, send: "STARTTLS now\r\n", want: []string{"501 5.5.4 Syntax: STARTTLS"}},
		{name: "3207 STARTTLS in a transaction", opts: []string{"tls"}, pre: tx, send: "STARTTLS\r\n", want: []string{"503 5.5.1 STARTTLS not allowed during a mail transaction"}},
		{name: "3207 STARTTLS not offered", pre: ehlo, send: "STARTTLS\r\n", want: []string{"502 5.5.1 STARTTLS not available"}},
		{name: "3207-4 required", opts: []string{"requiretls", "tls"}, pre: ehlo, send: "MAIL FROM:<a@example.org>\r\n", want: []string{"530 5.7.0 Must issue a STARTTLS command first"}},
		// RFC 4954.
		{name: "4954-4 unknown mechanism", opts: []string{"auth"}, pre: ehlo, send: "AUTH FOO\r\n", want: []string{"504 5.5.4 Unrecognized authentication type"}},
		{name: "4954-4 cancel", opts: []string{"auth"}, pre: ehlo, send: "AUTH PLAIN\r\n*\r\n", want: []string{"334 ", "501 5.7.0 Authentication cancelled"}},
		{name: "4954-4 bad base64", opts: []string{"auth"}, pre: ehlo, send: "AUTH PLAIN !!!\r\n", want: []string{"501 5.5.2 Invalid base64 data"}},
		{name: "4954-6 bad credentials", opts: []string{"auth"}, pre: ehlo, send: "AUTH PLAIN AGFsaWNlAHdyb25n\r\n", want: []string{"535 5.7.8 Authentication credentials invalid"}},
		{name: "4954-6 mechanism needs TLS", opts: []string{"authtls", "tls"}, pre: ehlo, send: "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", want: []string{"538 5.7.11 Encryption required for requested authentication mechanism"}},
		{name: "4954-4 AUTH after AUTH", opts: []string{"auth"}, pre: []string{"EHLO c.test", "AUTH PLAIN AGFsaWNlAHNlY3JldA=="}, send: "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", want: []string{"503 5.5.1 Already authenticated"}},
		{name: "4954-4 AUTH in a transaction", opts: []string{"auth"}, pre: tx, send: "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", want: []string{"503 5.5.1 AUTH not allowed during a mail transaction"}},
		{name: "4954-6 required", opts: []string{"auth", "requireauth"}, pre: ehlo, send: "MAIL FROM:<a@example.org>\r\n", want: []string{"530 5.7.0 Authentication required"}},
		// RFC 5321 4.5.3.2.7: an idle client is closed with 421.
		{name: "5321-4.5.3.2.7 idle timeout", opts: []string{"cmdtimeout=50"}, send: "", want: []string{"421 4.4.2 mx.test Timeout waiting for command, closing connection"}, closed: true},
		{name: "5321-4.5.3.2.7 timeout in an AUTH exchange", opts: []string{"auth", "cmdtimeout=50"}, pre: ehlo, send: "AUTH PLAIN\r\n", want: []string{"334 ", "421 4.4.2 mx.test Timeout waiting for AUTH response, closing connection"}, closed: true},
	}
	runWireCases(t, cases)
}
