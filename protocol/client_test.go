package protocol

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/lmtpd/lmtpd/internal/wiretest"
	"github.com/rs/zerolog"
)

// recConn records every Write, so tests can see what went in one write.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes []string
}

func (r *recConn) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.writes = append(r.writes, string(b))
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func (r *recConn) written() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

// startServer serves s on loopback and returns a Client connected to it
// over a recording connection.
func startServer(t *testing.T, s *Server, o ClientOptions) (*Client, *recConn) {
	t.Helper()
	l := serveTCP(t, s)
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rc := &recConn{Conn: nc}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := NewClient(ctx, rc, &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, rc
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAddr(t testing.TB, s string) Address {
	t.Helper()
	a, err := ParseAddress(s)
	if err != nil {
		t.Fatalf("ParseAddress(%q): %v", s, err)
	}
	return a
}

func rcptList(t testing.TB, addrs ...string) []*Recipient {
	var rs []*Recipient
	for _, a := range addrs {
		rs = append(rs, &Recipient{Address: mustAddr(t, a)})
	}
	return rs
}

// statusCode returns "250", "550 5.1.1" and so on, or "err: ..." for an
// error that is not a server reply.
func statusCode(s RcptStatus) string {
	if s.Err == nil {
		if s.Reply == nil {
			return "no reply"
		}
		return s.Reply.String()[:3]
	}
	if e := AsError(s.Err); e != nil {
		return strings.TrimSpace(strings.SplitN(e.Error(), " ", 3)[0] + " " + e.Enhanced().String())
	}
	return "err: " + s.Err.Error()
}

func checkStatuses(t *testing.T, st []RcptStatus, want ...string) {
	t.Helper()
	if len(st) != len(want) {
		t.Fatalf("%d statuses, want %d", len(st), len(want))
	}
	for i := range st {
		if got := statusCode(st[i]); got != want[i] {
			t.Errorf("recipient %d: status %q (%v), want %q", i, got, st[i].Reply, want[i])
		}
	}
}

const testBody = "Subject: test\n\n.a line with a leading dot\nline two\r\n..two dots\nno final newline"
const testBodyCRLF = ".a line with a leading dot\r\nline two\r\n..two dots\r\nno final newline\r\n"

// TestClientLMTPPerRecipient is RFC 2033's point: after the message, one
// status per accepted recipient, in order, a failure in the middle.
func TestClientLMTPPerRecipient(t *testing.T) {
	for _, chunking := range []bool{false, true} {
		name := "DATA"
		if chunking {
			name = "BDAT"
		}
		t.Run(name, func(t *testing.T) {
			b := newFakeBackend()
			c, rc := startServer(t, &Server{Protocol: LMTP, Backend: b, Hostname: "mx.test"},
				ClientOptions{Protocol: LMTP, LocalName: "front.test", Chunking: chunking, ChunkSize: 16})
			ctx := testCtx(t)
			rcpts := rcptList(t, "alice@example.org", "unknown1@example.org", "temp1@example.org", "bob@example.org", "perm1@example.org")
			st, err := c.Send(ctx, mustAddr(t, "sender@example.net"), nil, rcpts, strings.NewReader(testBody))
			if err != nil {
				t.Fatal(err)
			}
			checkStatuses(t, st, "250", "550 5.1.1", "452 4.2.2", "250", "554 5.3.0")
			if st[2].Reply.Text() != "<temp1@example.org> Mailbox full" {
				t.Errorf("reply text %q not kept", st[2].Reply.Text())
			}
			e := AsError(st[4].Err)
			if e.Code != 554 || e.EnhancedCode != (EnhancedCode{5, 3, 0}) || e.Message != "<perm1@example.org> Delivery failed" {
				t.Errorf("status as *Error: %+v", e)
			}
			msgs := b.messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages delivered", len(msgs))
			}
			if got := string(msgs[0].Body); got != testBodyCRLF {
				t.Errorf("body %q, want %q", got, testBodyCRLF)
			}
			if got := msgs[0].Header.Get("Subject"); got != "test" {
				t.Errorf("Subject %q", got)
			}
			if want := []string{"alice@example.org", "temp1@example.org", "bob@example.org", "perm1@example.org"}; strings.Join(msgs[0].Rcpts, ",") != strings.Join(want, ",") {
				t.Errorf("recipients %v", msgs[0].Rcpts)
			}
			all := strings.Join(rc.written(), "")
			if chunking != strings.Contains(all, "BDAT ") {
				t.Errorf("BDAT used: %v, want %v", !chunking, chunking)
			}
			if chunking && strings.Count(all, "BDAT ") < 3 {
				t.Errorf("message not sent in several chunks:\n%s", all)
			}
			// The connection carries a next transaction.
			st, err = c.Send(ctx, mustAddr(t, "sender@example.net"), nil, rcptList(t, "carol@example.org"), strings.NewReader("x\n"))
			if err != nil || st[0].Err != nil {
				t.Fatalf("second transaction: %v %v", err, st[0].Err)
			}
			if err := c.Quit(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestClientSMTP: one reply for the message, given to every recipient.
func TestClientSMTP(t *testing.T) {
	b := newFakeBackend()
	c, _ := startServer(t, &Server{Backend: b, Hostname: "mx.test"}, ClientOptions{})
	ctx := testCtx(t)
	if !c.ESMTP() {
		t.Fatal("EHLO not accepted")
	}
	st, err := c.Send(ctx, mustAddr(t, "s@example.net"), nil, rcptList(t, "alice@example.org", "unknown@example.org", "bob@example.org"), strings.NewReader(testBody))
	if err != nil {
		t.Fatal(err)
	}
	checkStatuses(t, st, "250", "550 5.1.1", "250")
	if st[0].Reply != st[2].Reply {
		t.Error("SMTP recipients should share the one reply")
	}
	st, err = c.Send(ctx, mustAddr(t, "s@example.net"), nil, rcptList(t, "alice@example.org", "perm@example.org"), strings.NewReader(testBody))
	if err != nil {
		t.Fatal(err)
	}
	checkStatuses(t, st, "554 5.3.0", "554 5.3.0")
	// The fake records every message it read, failed recipients or not.
	if len(b.messages()) != 2 {
		t.Errorf("%d messages", len(b.messages()))
	}
}

// TestClientPipelining: MAIL, every RCPT and DATA in one write when the
// server offers PIPELINING, one per write when disabled; replies are
// matched to their commands in both cases.
func TestClientPipelining(t *testing.T) {
	for _, disable := range []bool{false, true} {
		t.Run(map[bool]string{false: "on", true: "off"}[disable], func(t *testing.T) {
			b := newFakeBackend()
			c, rc := startServer(t, &Server{Protocol: LMTP, Backend: b}, ClientOptions{Protocol: LMTP, DisablePipelining: disable})
			ctx := testCtx(t)
			before := len(rc.written())
			st, err := c.Send(ctx, mustAddr(t, "s@example.net"), nil,
				rcptList(t, "a@example.org", "rcpttemp@example.org", "b@example.org", "unknown@example.org"), strings.NewReader("hi\n"))
			if err != nil {
				t.Fatal(err)
			}
			checkStatuses(t, st, "250", "451 4.3.0", "250", "550 5.1.1")
			w := rc.written()[before:]
			if disable {
				if !strings.HasPrefix(w[0], "MAIL FROM") || strings.Contains(w[0], "RCPT") {
					t.Errorf("first write %q", w[0])
				}
				return
			}
			if !regexp.MustCompile(`^MAIL FROM:<s@example.net>[^\r]*\r\n(RCPT TO:<[^>]+>\r\n){4}DATA\r\n$`).MatchString(w[0]) {
				t.Errorf("first write is not MAIL+RCPTs+DATA: %q", w[0])
			}
		})
	}
}

// TestClientPipelineBatches: more recipients than one pipelined write
// holds still get their own replies.
func TestClientPipelineBatches(t *testing.T) {
	b := newFakeBackend()
	c, _ := startServer(t, &Server{Protocol: LMTP, Backend: b}, ClientOptions{Protocol: LMTP})
	var addrs, want []string
	for i := 0; i < 250; i++ {
		if i%7 == 3 {
			addrs = append(addrs, "unknown"+strings.Repeat("x", i%5)+"@example.org")
			want = append(want, "550 5.1.1")
		} else {
			addrs = append(addrs, "u@example.org")
			want = append(want, "250")
		}
	}
	st, err := c.Send(testCtx(t), mustAddr(t, "s@example.net"), nil, rcptList(t, addrs...), strings.NewReader("hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	checkStatuses(t, st, want...)
}

// TestClientMailRefused: MAIL refused while pipelining: every status and
// the error are the MAIL reply; the client stays usable.
func TestClientMailRefused(t *testing.T) {
	for _, disable := range []bool{false, true} {
		b := newFakeBackend()
		c, _ := startServer(t, &Server{Protocol: LMTP, Backend: b}, ClientOptions{Protocol: LMTP, DisablePipelining: disable})
		ctx := testCtx(t)
		st, err := c.Send(ctx, mustAddr(t, "badsender@example.net"), nil, rcptList(t, "a@example.org", "b@example.org"), strings.NewReader("hi\n"))
		if e := AsError(err); e == nil || e.Code != 553 || e.EnhancedCode != (EnhancedCode{5, 7, 1}) {
			t.Fatalf("err %v, want 553 5.7.1", err)
		}
		checkStatuses(t, st, "553 5.7.1", "553 5.7.1")
		// No recipient accepted: no message, and the next one works.
		st, err = c.Send(ctx, mustAddr(t, "s@example.net"), nil, rcptList(t, "unknown@example.org"), strings.NewReader("hi\n"))
		if err != nil {
			t.Fatal(err)
		}
		checkStatuses(t, st, "550 5.1.1")
		st, err = c.Send(ctx, mustAddr(t, "s@example.net"), nil, rcptList(t, "a@example.org"), strings.NewReader("hi\n"))
		if err != nil || st[0].Err != nil {
			t.Fatalf("after refusals: %v %v", err, st[0].Err)
		}
		if n := len(b.messages()); n != 1 {
			t.Errorf("%d messages, want 1", n)
		}
	}
}

// TestClientStepByStep uses Mail, Rcpt and Data instead of Send.
func TestClientStepByStep(t *testing.T) {
	b := newFakeBackend()
	c, _ := startServer(t, &Server{Protocol: LMTP, Backend: b}, ClientOptions{Protocol: LMTP})
	ctx := testCtx(t)
	if _, err := c.Data(ctx, strings.NewReader("x")); err == nil {
		t.Fatal("DATA outside a transaction was sent")
	}
	if err := c.Mail(ctx, Address{}, &MailParams{Body: Body8BitMIME, Size: 100}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(ctx, mustAddr(t, "a@example.org"), nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt(ctx, mustAddr(t, "unknown@example.org"), nil)
	if e := AsError(err); e == nil || e.Code != 550 {
		t.Fatalf("RCPT unknown: %v", err)
	}
	if err := c.Rcpt(ctx, mustAddr(t, "temp@example.org"), nil); err != nil {
		t.Fatal(err)
	}
	st, err := c.Data(ctx, iotest.OneByteReader(strings.NewReader("Subject: x\n\nbody\n")))
	if err != nil {
		t.Fatal(err)
	}
	checkStatuses(t, st, "250", "452 4.2.2")
	m := b.messages()[0]
	if m.From != "" || m.Params.Body != Body8BitMIME || m.Params.Size != 100 {
		t.Errorf("envelope %q %+v", m.From, m.Params)
	}
	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClientParamsOnTheWire checks MAIL and RCPT parameters against what
// lmtpd's server parsed.
func TestClientParamsOnTheWire(t *testing.T) {
	b := newFakeBackend()
	var seen []*Recipient
	var mu sync.Mutex
	s := &Server{Protocol: LMTP, Backend: recordRcpts{b, &mu, &seen}}
	c, rc := startServer(t, s, ClientOptions{Protocol: LMTP})
	mp := &MailParams{Size: 1234, Body: Body8BitMIME, Return: DSNReturnHeaders, EnvelopeID: "id+1=2 x"}
	rcpts := []*Recipient{
		{Address: mustAddr(t, "a@example.org"), Params: RcptParams{Notify: []DSNNotify{DSNNotifySuccess, DSNNotifyFailure}, OriginalRecipient: "orig+x@example.org"}},
		{Address: mustAddr(t, "ü@exämple.org")},
	}
	st, err := c.Send(testCtx(t), mustAddr(t, "s@example.net"), mp, rcpts, strings.NewReader("hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	checkStatuses(t, st, "250", "250")
	all := strings.Join(rc.written(), "")
	for _, want := range []string{
		"MAIL FROM:<s@example.net> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+3D2+20x\r\n",
		"RCPT TO:<a@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bx@example.org\r\n",
		"RCPT TO:<ü@exämple.org>\r\n",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in\n%s", want, all)
		}
	}
	m := b.messages()[0]
	if m.Params.EnvelopeID != "id+1=2 x" || !m.Params.SMTPUTF8 || m.Params.Return != DSNReturnHeaders {
		t.Errorf("server parsed %+v", m.Params)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[0].Params.OriginalRecipient != "orig+x@example.org" || len(seen[0].Params.Notify) != 2 {
		t.Errorf("server parsed RCPT params %+v", seen[0].Params)
	}
}

// recordRcpts wraps a Backend to record the Recipients it is given.
type recordRcpts struct {
	Backend
	mu   *sync.Mutex
	seen *[]*Recipient
}

func (r recordRcpts) Mail(ctx context.Context, c *ConnState, from Address, p *MailParams) (Transaction, error) {
	tx, err := r.Backend.Mail(ctx, c, from, p)
	if err != nil {
		return nil, err
	}
	return recordTx{tx, r}, nil
}

type recordTx struct {
	Transaction
	r recordRcpts
}

func (t recordTx) Rcpt(ctx context.Context, rcpt *Recipient) error {
	t.r.mu.Lock()
	*t.r.seen = append(*t.r.seen, rcpt)
	t.r.mu.Unlock()
	return t.Transaction.Rcpt(ctx, rcpt)
}

// TestClientMailLine is the table of what MAIL and RCPT carry for what
// the server offered.
func TestClientMailLine(t *testing.T) {
	full := map[string]string{"SIZE": "1000", "8BITMIME": "", "SMTPUTF8": "", "DSN": "", "CHUNKING": "", "BINARYMIME": "", "AUTH": "PLAIN"}
	none := map[string]string{}
	from := Address{LocalPart: "s", Domain: "example.net"}
	tests := []struct {
		name string
		ext  map[string]string
		from Address
		p    MailParams
		want string // "" with wantErr
		err  error
	}{
		{"no params", full, from, MailParams{}, "MAIL FROM:<s@example.net>", nil},
		{"null sender", full, Address{}, MailParams{}, "MAIL FROM:<>", nil},
		{"all", full, from, MailParams{Size: 5, Body: BodyBinaryMIME, SMTPUTF8: true, Return: DSNReturnFull, EnvelopeID: "a=b", Auth: "<>"},
			"MAIL FROM:<s@example.net> SIZE=5 BODY=BINARYMIME SMTPUTF8 RET=FULL ENVID=a+3Db AUTH=<>", nil},
		{"auth xtext", full, from, MailParams{Auth: "u+1@x"}, "MAIL FROM:<s@example.net> AUTH=u+2B1@x", nil},
		{"7bit", full, from, MailParams{Body: Body7Bit}, "MAIL FROM:<s@example.net> BODY=7BIT", nil},
		{"advisory left out", none, from, MailParams{Size: 5, Body: Body7Bit, Return: DSNReturnFull, EnvelopeID: "x", Auth: "u"}, "MAIL FROM:<s@example.net>", nil},
		{"8bitmime not offered", none, from, MailParams{Body: Body8BitMIME}, "", ErrNotOffered},
		{"binarymime not offered", map[string]string{"BINARYMIME": ""}, from, MailParams{Body: BodyBinaryMIME}, "", ErrNotOffered},
		{"smtputf8 not offered", none, from, MailParams{SMTPUTF8: true}, "", ErrNotOffered},
		{"utf8 sender implies smtputf8", full, Address{LocalPart: "ü", Domain: "example.net"}, MailParams{}, "MAIL FROM:<ü@example.net> SMTPUTF8", nil},
		{"utf8 sender not offered", none, Address{LocalPart: "ü", Domain: "example.net"}, MailParams{}, "", ErrNotOffered},
		{"bad body", full, from, MailParams{Body: "QUOTED"}, "", errAny},
		{"bad ret", full, from, MailParams{Return: "ALL"}, "", errAny},
		{"injection", full, Address{LocalPart: "a>\r\nRSET", Domain: "x"}, MailParams{}, "", errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{ext: tc.ext}
			got, _, err := c.mailLine(tc.from, &tc.p, false)
			if tc.err != nil {
				if err == nil || tc.err != errAny && !errors.Is(err, tc.err) {
					t.Fatalf("got %q, %v; want error %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	rtests := []struct {
		name string
		ext  map[string]string
		to   Address
		p    RcptParams
		utf8 bool
		want string
	}{
		{"plain", full, Address{LocalPart: "a", Domain: "x"}, RcptParams{}, false, "RCPT TO:<a@x>"},
		{"dsn", full, Address{LocalPart: "a", Domain: "x"}, RcptParams{Notify: []DSNNotify{DSNNotifyNever}, OriginalRecipientType: "utf-8", OriginalRecipient: "a b"}, false, "RCPT TO:<a@x> NOTIFY=NEVER ORCPT=utf-8;a+20b"},
		{"dsn not offered", none, Address{LocalPart: "a", Domain: "x"}, RcptParams{Notify: []DSNNotify{DSNNotifyDelay}, OriginalRecipient: "a"}, false, "RCPT TO:<a@x>"},
		{"quoted", full, Address{LocalPart: `"a b"`, Domain: "x"}, RcptParams{}, false, `RCPT TO:<"a b"@x>`},
		{"postmaster", full, Address{LocalPart: "Postmaster"}, RcptParams{}, false, "RCPT TO:<Postmaster>"},
		{"utf8 without smtputf8", full, Address{LocalPart: "ü", Domain: "x"}, RcptParams{}, false, ""},
		{"utf8", full, Address{LocalPart: "ü", Domain: "x"}, RcptParams{}, true, "RCPT TO:<ü@x>"},
		{"null", full, Address{}, RcptParams{}, false, ""},
		{"bad notify", full, Address{LocalPart: "a", Domain: "x"}, RcptParams{Notify: []DSNNotify{"SOMETIMES"}}, false, ""},
		{"space", full, Address{LocalPart: "a b", Domain: "x"}, RcptParams{}, false, ""},
	}
	for _, tc := range rtests {
		t.Run("rcpt "+tc.name, func(t *testing.T) {
			c := &Client{ext: tc.ext}
			got, err := c.rcptLine(tc.to, &tc.p, tc.utf8)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

var errAny = errors.New("any error")

// TestCRLFNormalizer: LF and CR become CRLF, dots are stuffed at line
// starts, whatever the split of the input.
func TestCRLFNormalizer(t *testing.T) {
	tests := []struct{ in, data, bdat string }{
		{"", "", ""},
		{"a", "a\r\n", "a\r\n"},
		{"a\n", "a\r\n", "a\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\rb", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\r", "a\r\n", "a\r\n"},
		{"a\r\r\nb", "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n"},
		{".\n", "..\r\n", ".\r\n"},
		{"x\n.\n..y\r\n.", "x\r\n..\r\n...y\r\n..\r\n", "x\r\n.\r\n..y\r\n.\r\n"},
		{"a.b\n", "a.b\r\n", "a.b\r\n"},
		{"\n\n", "\r\n\r\n", "\r\n\r\n"},
	}
	for _, tc := range tests {
		for split := 0; split <= len(tc.in); split++ {
			for _, dot := range []bool{true, false} {
				n := crlfNormalizer{bol: true, dotStuff: dot}
				out := n.append(nil, []byte(tc.in[:split]))
				out = n.append(out, []byte(tc.in[split:]))
				out = n.finish(out)
				want := tc.bdat
				if dot {
					want = tc.data
				}
				if string(out) != want {
					t.Errorf("%q split at %d, dot %v: got %q, want %q", tc.in, split, dot, out, want)
				}
			}
		}
	}
}

// TestClientStartTLS upgrades, says EHLO again, and the server sees TLS.
func TestClientStartTLS(t *testing.T) {
	b := newFakeBackend()
	srvCfg := testTLSConfig(t)
	pool := x509.NewCertPool()
	cert, err := x509.ParseCertificate(srvCfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(cert)
	s := &Server{Backend: b, TLSConfig: srvCfg, RequireTLS: true, Auth: testAuthenticator(), AuthFailureDelay: -1}
	l := serveTCP(t, s)
	ctx := testCtx(t)
	// Without TLSConfig: plain, STARTTLS offered.
	c, err := Dial(ctx, l.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Extension("starttls"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if _, ok := c.TLSConnectionState(); ok {
		t.Fatal("TLS state on a plain connection")
	}
	err = c.Mail(ctx, mustAddr(t, "s@example.net"), nil)
	if e := AsError(err); e == nil || e.Code != 530 {
		t.Fatalf("MAIL before STARTTLS: %v", err)
	}
	if err := c.StartTLS(ctx, &tls.Config{RootCAs: pool, ServerName: "mx.test"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("no TLS state after StartTLS")
	}
	if _, ok := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS still offered after the upgrade: EHLO not repeated")
	}
	if err := c.StartTLS(ctx, &tls.Config{RootCAs: pool}); !errors.Is(err, ErrNotOffered) {
		t.Errorf("second StartTLS: %v", err)
	}
	if err := c.Auth(ctx, sasl.NewPlainClient("", "alice", "secret")); err != nil {
		t.Fatal(err)
	}
	st, err := c.Send(ctx, mustAddr(t, "s@example.net"), nil, rcptList(t, "a@example.org"), strings.NewReader("hi\n"))
	if err != nil || st[0].Err != nil {
		t.Fatal(err, st[0].Err)
	}
	m := b.messages()[0]
	if m.Conn.TLS == nil || m.Conn.AuthIdentity != "alice" {
		t.Errorf("server saw TLS %v, identity %q", m.Conn.TLS != nil, m.Conn.AuthIdentity)
	}
	c.Quit(ctx)

	// Through ClientOptions, with a certificate check that fails: the
	// client is broken and closed.
	_, err = Dial(ctx, l.Addr().String(), &ClientOptions{TLSConfig: &tls.Config{ServerName: "other.test", RootCAs: pool}})
	if err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("bad certificate: %v", err)
	}
	c, err = Dial(ctx, l.Addr().String(), &ClientOptions{TLSConfig: &tls.Config{ServerName: "mx.test", RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("Dial with TLSConfig did not upgrade")
	}
	c.Close()
}

// TestClientAuth: AUTH PLAIN and LOGIN through go-sasl, a refusal as an
// *Error, mechanisms not offered refused before sending.
func TestClientAuth(t *testing.T) {
	s := &Server{Backend: newFakeBackend(), Auth: testAuthenticator(), AuthFailureDelay: -1}
	l := serveTCP(t, s)
	ctx := testCtx(t)
	var trace wiretest.LogBuffer
	logger := zerolog.New(&trace).Level(zerolog.TraceLevel)
	c, err := Dial(ctx, l.Addr().String(), &ClientOptions{LocalName: "client.test", Logger: &logger})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() {
		// The wire trace has the commands, never the credentials.
		log := trace.String()
		for _, secret := range []string{"AGFsaWNlAHdyb25n", "YWxpY2U=", "c2VjcmV0", "wrong", "secret"} {
			if strings.Contains(log, secret) {
				t.Errorf("trace holds %q:\n%s", secret, log)
			}
		}
		if !strings.Contains(log, "AUTH PLAIN [redacted]") || !strings.Contains(log, "EHLO client.test") {
			t.Errorf("trace lacks the commands:\n%s", log)
		}
	}()
	if got := strings.Join(c.AuthMechanisms(), " "); !strings.Contains(got, "PLAIN") {
		t.Fatalf("mechanisms %q", got)
	}
	err = c.Auth(ctx, sasl.NewPlainClient("", "alice", "wrong"))
	if e := AsError(err); e == nil || e.Code != 535 {
		t.Fatalf("wrong password: %v", err)
	}
	if err := c.Auth(ctx, sasl.NewAnonymousClient("x")); !errors.Is(err, ErrNotOffered) {
		t.Fatalf("ANONYMOUS: %v", err)
	}
	if err := c.Auth(ctx, sasl.NewLoginClient("alice", "secret")); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
}

// TestClientHeloFallback: EHLO refused, HELO accepted: no extensions, no
// parameters sent, and what needs one is refused locally.
func TestClientHeloFallback(t *testing.T) {
	conn := runPeer(t, func(p *fakePeer) {
		p.send("220 old.test ready")
		p.expect("EHLO localhost")
		p.send("502 5.5.1 what?")
		p.expect("HELO localhost")
		p.send("250 old.test")
		p.expect("MAIL FROM:<s@example.net>")
		p.send("250 ok")
		p.expect("RCPT TO:<a@example.org>")
		p.send("250 ok")
		p.expect("DATA")
		p.send("354 go")
		p.expect("hi")
		p.expect(".")
		p.send("250 queued")
		p.expect("QUIT")
		p.send("221 bye")
	})
	ctx := testCtx(t)
	c, err := NewClient(ctx, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ESMTP() {
		t.Fatal("ESMTP after HELO")
	}
	if _, err := c.Send(ctx, mustAddr(t, "s@example.net"), &MailParams{Body: Body8BitMIME}, rcptList(t, "a@example.org"), strings.NewReader("hi")); !errors.Is(err, ErrNotOffered) {
		t.Fatalf("8BITMIME to a HELO server: %v", err)
	}
	st, err := c.Send(ctx, mustAddr(t, "s@example.net"), &MailParams{Size: 10, Return: DSNReturnFull}, rcptList(t, "a@example.org"), strings.NewReader("hi"))
	if err != nil || st[0].Err != nil || st[0].Reply.Text() != "queued" {
		t.Fatal(err, st)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClientXClientXForward against a fake that records them: only the
// offered attributes, xtext, IPV6: prefix, EHLO again after XCLIENT's 220.
func TestClientXClientXForward(t *testing.T) {
	conn := runPeer(t, func(p *fakePeer) {
		p.send("220 proxy.test ESMTP")
		p.expect("LHLO front.test")
		p.send("250-backend.test", "250-XCLIENT ADDR NAME PORT HELO PROTO LOGIN", "250-XFORWARD NAME ADDR PROTO HELO", "250 PIPELINING")
		p.expect(`XCLIENT NAME=client\.example ADDR=IPV6:2001:db8::1 PORT=4711 PROTO=ESMTP HELO=\[bad\+2Bhelo\+20name\] LOGIN=alice`)
		p.send("220 backend.test again")
		p.expect("LHLO front.test")
		p.send("250-backend.test", "250 XFORWARD NAME ADDR PROTO HELO")
		p.expect(`XFORWARD NAME=client\.example ADDR=192\.0\.2\.1 PROTO=SMTP`)
		p.send("250 2.0.0 Ok")
		p.expect("QUIT")
		p.send("221 2.0.0 bye")
	})
	ctx := testCtx(t)
	c, err := NewClient(ctx, conn, &ClientOptions{Protocol: LMTP, LocalName: "front.test"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.XClientAttributes(), ","); got != "ADDR,NAME,PORT,HELO,PROTO,LOGIN" {
		t.Errorf("XCLIENT attributes %q", got)
	}
	err = c.XClient(ctx, &XClientAttrs{Addr: "2001:db8::1", Name: "client.example", Port: "4711", Helo: "[bad+helo name]", Proto: "ESMTP", Login: "alice", DestAddr: "192.0.2.9"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Greeting().Text() != "backend.test again" {
		t.Errorf("greeting after XCLIENT %q", c.Greeting().Text())
	}
	if c.XClientAttributes() != nil {
		t.Error("XCLIENT still offered: the second LHLO reply was not used")
	}
	if err := c.XClient(ctx, &XClientAttrs{Addr: "192.0.2.1"}); !errors.Is(err, ErrNotOffered) {
		t.Errorf("XCLIENT not offered: %v", err)
	}
	if err := c.XForward(ctx, &XForward{Name: "client.example", Addr: "192.0.2.1", Proto: "SMTP", Ident: "Q123", Port: "25"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClientXForwardServer: lmtpd's server takes the XFORWARD the client
// sends (over loopback, trusted).
func TestClientXForwardServer(t *testing.T) {
	b := newFakeBackend()
	s := &Server{Protocol: LMTP, Backend: b, TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	c, _ := startServer(t, s, ClientOptions{Protocol: LMTP})
	ctx := testCtx(t)
	if err := c.XForward(ctx, &XForward{Addr: "2001:db8::7", Helo: "orig.example", Proto: "ESMTP", Name: "[UNAVAILABLE]"}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Send(ctx, mustAddr(t, "s@example.net"), nil, rcptList(t, "a@example.org"), strings.NewReader("hi\n"))
	if err != nil || st[0].Err != nil {
		t.Fatal(err, st)
	}
	x := b.messages()[0].Conn.XForward
	if x.Addr != "2001:db8::7" || x.Helo != "orig.example" || x.Proto != "ESMTP" || x.Name != "" {
		t.Errorf("server got %+v", x)
	}
}

// TestClientXLines: long attribute sets are split at 512 octets.
func TestClientXLines(t *testing.T) {
	long := strings.Repeat("a", 300)
	lines, err := xLines("XFORWARD", []string{"NAME", "HELO", "ADDR"}, [][2]string{{"NAME", long}, {"ADDR", "1.2.3.4"}, {"HELO", long}, {"IDENT", "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0] != "XFORWARD NAME="+long+" ADDR=1.2.3.4" || lines[1] != "XFORWARD HELO="+long {
		t.Errorf("lines %q", lines)
	}
	if _, err := xLines("XFORWARD", []string{"NAME"}, [][2]string{{"NAME", strings.Repeat("a", 600)}}); err == nil {
		t.Error("an attribute longer than a command line was accepted")
	}
}

// TestClientBrokenConnections: a 421 mid-transaction, a drop after some
// LMTP replies, a malformed reply: statuses say what is known, the client
// is broken afterwards.
func TestClientBrokenConnections(t *testing.T) {
	ctx := testCtx(t)
	t.Run("drop after one LMTP reply", func(t *testing.T) {
		conn := runPeer(t, func(p *fakePeer) {
			p.send("220 x")
			p.expect("LHLO localhost")
			p.send("250-x", "250 PIPELINING")
			p.expect("MAIL FROM:<>")
			p.expect("RCPT TO:<a@x>")
			p.expect("RCPT TO:<b@x>")
			p.expect("RCPT TO:<c@x>")
			p.expect("DATA")
			p.send("250 2.1.0 ok", "250 2.1.5 ok", "550 5.1.1 <b@x> no", "250 2.1.5 ok", "354 go")
			p.expect("hi")
			p.expect(".")
			p.send("250 2.0.0 <a@x> saved")
			p.c.Close()
		})
		c, err := NewClient(ctx, conn, &ClientOptions{Protocol: LMTP})
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Send(ctx, Address{}, nil, rcptList(t, "a@x", "b@x", "c@x"), strings.NewReader("hi"))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err %v", err)
		}
		if statusCode(st[0]) != "250" || statusCode(st[1]) != "550 5.1.1" || !errors.Is(st[2].Err, io.ErrUnexpectedEOF) {
			t.Errorf("statuses %v %v %v", statusCode(st[0]), statusCode(st[1]), st[2].Err)
		}
		if c.Err() == nil || c.Noop(ctx) == nil {
			t.Error("client usable after the drop")
		}
	})
	t.Run("421 at RCPT", func(t *testing.T) {
		conn := runPeer(t, func(p *fakePeer) {
			p.send("220 x")
			p.expect("EHLO localhost")
			p.send("250 x")
			p.expect("MAIL FROM:<>")
			p.send("250 ok")
			p.expect("RCPT TO:<a@x>")
			p.send("421 4.3.2 shutting down")
			p.c.Close()
		})
		c, err := NewClient(ctx, conn, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Send(ctx, Address{}, nil, rcptList(t, "a@x"), strings.NewReader("hi"))
		if e := AsError(err); e == nil || e.Code != 421 {
			t.Fatalf("err %v", err)
		}
		checkStatuses(t, st, "421 4.3.2")
		if c.Err() == nil {
			t.Error("client usable after 421")
		}
	})
	t.Run("malformed", func(t *testing.T) {
		conn := runPeer(t, func(p *fakePeer) {
			p.send("220 x")
			p.expect("EHLO localhost")
			p.send("250-x", "251 y")
		})
		_, err := NewClient(ctx, conn, nil)
		if !errors.Is(err, ErrMalformedReply) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("bad greeting", func(t *testing.T) {
		conn := runPeer(t, func(p *fakePeer) {
			p.send("554 5.3.2 go away")
		})
		_, err := NewClient(ctx, conn, nil)
		if e := AsError(err); e == nil || e.Code != 554 || e.Message != "go away" {
			t.Fatalf("err %v", err)
		}
	})
}

// TestClientTimeouts: a phase timeout and a cancelled context stop a
// blocked call and break the client.
func TestClientTimeouts(t *testing.T) {
	hang := func(p *fakePeer) { p.c.SetReadDeadline(time.Now().Add(5 * time.Second)); io.Copy(io.Discard, p.c) }
	_, err := NewClient(context.Background(), runPeer(t, hang), &ClientOptions{GreetingTimeout: 20 * time.Millisecond})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("greeting timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err = NewClient(ctx, runPeer(t, hang), nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = NewClient(ctx, runPeer(t, hang), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("context deadline: %v", err)
	}

	// The final reply timeout in the data phase.
	conn := runPeer(t, func(p *fakePeer) {
		p.send("220 x")
		p.expect("EHLO localhost")
		p.send("250 x")
		p.expect("MAIL FROM:<>")
		p.send("250 ok")
		p.expect("RCPT TO:<a@x>")
		p.send("250 ok")
		p.expect("DATA")
		p.send("354 go")
		p.expect("hi")
		p.expect(".")
		hang(p)
	})
	c, err := NewClient(context.Background(), conn, &ClientOptions{FinalReplyTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Send(context.Background(), Address{}, nil, rcptList(t, "a@x"), strings.NewReader("hi"))
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(st[0].Err, os.ErrDeadlineExceeded) {
		t.Fatalf("final reply timeout: %v, %v", err, st[0].Err)
	}
}

// TestClientBodyError: a failing body never ends in a delivered message.
func TestClientBodyError(t *testing.T) {
	boom := errors.New("spool read failed")
	for _, chunking := range []bool{false, true} {
		b := newFakeBackend()
		c, _ := startServer(t, &Server{Protocol: LMTP, Backend: b}, ClientOptions{Protocol: LMTP, Chunking: chunking, ChunkSize: 4})
		ctx := testCtx(t)
		body := io.MultiReader(strings.NewReader("Subject: x\n\npart of it\n"), iotest.ErrReader(boom))
		st, err := c.Send(ctx, Address{}, nil, rcptList(t, "a@x.org"), body)
		if !errors.Is(err, boom) || !errors.Is(st[0].Err, boom) {
			t.Fatalf("chunking %v: %v %v", chunking, err, st[0].Err)
		}
		if chunking {
			// BDAT: the transaction was reset; the connection goes on.
			st, err = c.Send(ctx, Address{}, nil, rcptList(t, "a@x.org"), strings.NewReader("ok\n"))
			if err != nil || st[0].Err != nil {
				t.Fatalf("after a reset BDAT: %v %v", err, st[0].Err)
			}
			if n := len(b.messages()); n != 1 {
				t.Errorf("%d messages", n)
			}
		} else if c.Err() == nil {
			t.Error("DATA not aborted by closing the connection")
		}
		waitFor(t, func() bool {
			for _, m := range b.messages() {
				if strings.Contains(string(m.Body), "part of it") {
					return false
				}
			}
			return true
		})
	}
}

// TestClientUnixAndPipe: "unix:/path" and a net.Pipe the caller made.
func TestClientUnixAndPipe(t *testing.T) {
	b := newFakeBackend()
	s := &Server{Protocol: LMTP, Backend: b}
	path := t.TempDir() + "/lmtp.sock"
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	ctx := testCtx(t)
	c, err := Dial(ctx, "unix:"+path, &ClientOptions{Protocol: LMTP})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Send(ctx, Address{}, nil, rcptList(t, "a@x.org", "perm@x.org"), strings.NewReader("hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	checkStatuses(t, st, "250", "554 5.3.0")
	c.Quit(ctx)

	c1, c2 := net.Pipe()
	go s.ServeConn(c2)
	c, err = NewClient(ctx, c1, &ClientOptions{Protocol: LMTP})
	if err != nil {
		t.Fatal(err)
	}
	st, err = c.Send(ctx, Address{}, nil, rcptList(t, "a@x.org", "temp@x.org"), strings.NewReader("hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	checkStatuses(t, st, "250", "452 4.2.2")
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(ctx); !errors.Is(err, ErrClientClosed) {
		t.Errorf("after Quit: %v", err)
	}
}

// fakePeer is a scripted server on one end of a net.Pipe.
type fakePeer struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// runPeer runs script as the server and returns the client's end. The
// script's failures are reported when the test ends.
func runPeer(t *testing.T, script func(p *fakePeer)) net.Conn {
	c1, c2 := net.Pipe()
	p := &fakePeer{t: t, c: c2, br: bufio.NewReader(c2)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c2.Close()
		script(p)
	}()
	t.Cleanup(func() {
		c1.Close()
		<-done
	})
	return c1
}

func (p *fakePeer) send(lines ...string) {
	p.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(p.c, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		p.t.Errorf("peer: send %q: %v", lines, err)
	}
}

// expect reads a line and checks it against the regular expression re
// (anchored).
func (p *fakePeer) expect(re string) {
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := p.br.ReadString('\n')
	if err != nil {
		p.t.Errorf("peer: want %q, read error %v", re, err)
		return
	}
	l = strings.TrimSuffix(l, "\r\n")
	if !regexp.MustCompile("^" + re + "$").MatchString(l) {
		p.t.Errorf("peer: got %q, want %q", l, re)
	}
}

// lineSource yields n octets of 100-octet LF-terminated lines, some
// starting with a dot, without holding them.
type lineSource struct{ n, off int }

func (s *lineSource) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && s.n > 0 {
		var c byte = 'x'
		switch {
		case s.off == 99:
			c = '\n'
		case s.off == 0 && s.n%7 == 0:
			c = '.'
		}
		p[k] = c
		k++
		s.n--
		s.off = (s.off + 1) % 100
	}
	return k, nil
}

// TestClientStreamsMessage: a 10 MB message goes through DATA and BDAT
// with the client allocating a small fraction of it: nothing holds the
// whole message. The peer counts the octets and the stuffed dots.
func TestClientStreamsMessage(t *testing.T) {
	const size = 100000 * 100 // whole lines: the client adds no line ending
	for _, chunking := range []bool{false, true} {
		var got, dots int
		conn := runPeer(t, func(p *fakePeer) {
			p.send("220 x")
			p.expect("EHLO localhost")
			p.send("250-x", "250-PIPELINING", "250 CHUNKING")
			p.expect("MAIL FROM:<>")
			p.expect("RCPT TO:<a@x>")
			if !chunking {
				p.expect("DATA")
				p.send("250 ok", "250 ok", "354 go")
				p.c.SetReadDeadline(time.Now().Add(30 * time.Second))
				for {
					l, err := p.br.ReadSlice('\n')
					if err != nil {
						p.t.Errorf("peer: %v", err)
						return
					}
					if string(l) == ".\r\n" {
						break
					}
					if l[0] == '.' {
						dots++
						l = l[1:]
					}
					got += len(l) - 1 // count LF as one octet, as sent
				}
			} else {
				p.send("250 ok", "250 ok")
				var buf []byte
				for {
					var n int
					var last string
					p.c.SetReadDeadline(time.Now().Add(30 * time.Second))
					l, err := p.br.ReadString('\n')
					if err != nil {
						p.t.Errorf("peer: %v", err)
						return
					}
					if _, err := fmt.Sscanf(l, "BDAT %d%s", &n, &last); err != nil && !strings.HasPrefix(l, "BDAT ") {
						p.t.Errorf("peer: %q", l)
						return
					}
					if n > len(buf) {
						buf = make([]byte, n)
					}
					chunk := buf[:n]
					if _, err := io.ReadFull(p.br, chunk); err != nil {
						p.t.Errorf("peer: %v", err)
						return
					}
					got += n - bytes.Count(chunk, []byte{'\r'})
					if strings.Contains(l, "LAST") {
						break
					}
					p.send("250 ok")
				}
			}
			p.send("250 2.0.0 done")
		})
		c, err := NewClient(testCtx(t), conn, &ClientOptions{Chunking: chunking})
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		st, err := c.Send(testCtx(t), Address{}, nil, rcptList(t, "a@x"), &lineSource{n: size})
		runtime.ReadMemStats(&after)
		if err != nil || st[0].Err != nil {
			t.Fatal(err, st)
		}
		c.Close()
		if got != size {
			t.Errorf("chunking=%v: peer got %d octets, want %d (dots stuffed: %d)", chunking, got, size, dots)
		}
		if !chunking && dots == 0 {
			t.Error("no dot was stuffed")
		}
		const limit = 2 << 20
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit {
			t.Errorf("chunking=%v: %d octets allocated for a %d-octet message", chunking, alloc, size)
		} else {
			t.Logf("chunking=%v: %d octets allocated while sending %d", chunking, alloc, size)
		}
	}
}

// TestClientOddServers: servers that take DATA without a transaction
// (RFC 2920 section 3.1: send the lone dot), refuse DATA, or refuse a BDAT
// chunk in the middle: the statuses carry the reply, the transaction is
// reset, the client stays usable.
func TestClientOddServers(t *testing.T) {
	ctx := testCtx(t)
	t.Run("354 after MAIL refused", func(t *testing.T) {
		conn := runPeer(t, func(p *fakePeer) {
			p.send("220 x")
			p.expect("EHLO localhost")
			p.send("250-x", "250 PIPELINING")
			p.expect("MAIL FROM:<>")
			p.expect("RCPT TO:<a@x>")
			p.expect("DATA")
			p.send("550 5.7.1 no", "503 5.5.1 need MAIL", "354 go")
			p.expect(`\.`)
			p.send("503 5.5.1 nothing to deliver")
			p.expect("NOOP")
			p.send("250 ok")
		})
		c, err := NewClient(ctx, conn, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Send(ctx, Address{}, nil, rcptList(t, "a@x"), strings.NewReader("never sent\n"))
		if e := AsError(err); e == nil || e.Code != 550 {
			t.Fatalf("err %v", err)
		}
		checkStatuses(t, st, "550 5.7.1")
		if err := c.Noop(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("354 without recipients", func(t *testing.T) {
		conn := runPeer(t, func(p *fakePeer) {
			p.send("220 x")
			p.expect("LHLO localhost")
			p.send("250-x", "250 PIPELINING")
			p.expect("MAIL FROM:<>")
			p.expect("RCPT TO:<a@x>")
			p.expect("DATA")
			p.send("250 ok", "550 5.1.1 unknown", "354 go")
			p.expect(`\.`)
			p.send("554 5.5.1 no valid recipients")
			p.expect("RSET")
			p.send("250 ok")
		})
		c, err := NewClient(ctx, conn, &ClientOptions{Protocol: LMTP})
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Send(ctx, Address{}, nil, rcptList(t, "a@x"), strings.NewReader("never sent\n"))
		if err != nil {
			t.Fatal(err)
		}
		checkStatuses(t, st, "550 5.1.1")
	})
	t.Run("DATA refused", func(t *testing.T) {
		conn := runPeer(t, func(p *fakePeer) {
			p.send("220 x")
			p.expect("EHLO localhost")
			p.send("250 x")
			p.expect("MAIL FROM:<>")
			p.send("250 ok")
			p.expect("RCPT TO:<a@x>")
			p.send("250 ok")
			p.expect("RCPT TO:<b@x>")
			p.send("250 ok")
			p.expect("DATA")
			p.send("451 4.3.0 try later")
			p.expect("RSET")
			p.send("250 ok")
		})
		c, err := NewClient(ctx, conn, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Mail(ctx, Address{}, nil); err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"a@x", "b@x"} {
			if err := c.Rcpt(ctx, mustAddr(t, a), nil); err != nil {
				t.Fatal(err)
			}
		}
		st, err := c.Data(ctx, strings.NewReader("x"))
		if e := AsError(err); e == nil || e.Code != 451 {
			t.Fatalf("err %v", err)
		}
		checkStatuses(t, st, "451 4.3.0", "451 4.3.0")
	})
	t.Run("BDAT chunk refused", func(t *testing.T) {
		conn := runPeer(t, func(p *fakePeer) {
			p.send("220 x")
			p.expect("LHLO localhost")
			p.send("250-x", "250-PIPELINING", "250 CHUNKING")
			p.expect("MAIL FROM:<>")
			p.expect("RCPT TO:<a@x>")
			p.send("250 ok", "250 ok")
			p.expect("BDAT 5")
			p.expect("abc")
			p.send("552 5.3.4 too big")
			p.expect("RSET")
			p.send("250 ok")
			p.expect("MAIL FROM:<>")
			p.expect("RCPT TO:<a@x>")
			p.send("250 ok", "250 ok")
			p.expect("BDAT 0 LAST")
			p.send("250 2.0.0 <a@x> empty but fine")
		})
		c, err := NewClient(ctx, conn, &ClientOptions{Protocol: LMTP, Chunking: true, ChunkSize: 4})
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.Send(ctx, Address{}, nil, rcptList(t, "a@x"), strings.NewReader("abc\ndef\n"))
		if err != nil {
			t.Fatal(err)
		}
		checkStatuses(t, st, "552 5.3.4")
		st, err = c.Send(ctx, Address{}, nil, rcptList(t, "a@x"), strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		checkStatuses(t, st, "250")
	})
}
