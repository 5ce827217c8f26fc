package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/sasl"
)

func newTestStore(t *testing.T, users map[string]string, withScram bool) *sasl.Store {
	t.Helper()
	m := make(map[string]sasl.User)
	for name, pw := range users {
		hash, scram, err := sasl.MakeSecrets(pw)
		if err != nil {
			t.Fatal(err)
		}
		u := sasl.User{PasswordHash: hash}
		if withScram {
			sc, err := sasl.ParseScramCredentials(scram)
			if err != nil {
				t.Fatal(err)
			}
			u.Scram = &sc
		}
		m[name] = u
	}
	s, err := sasl.NewStore(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuthenticatorMechanisms(t *testing.T) {
	both := newTestStore(t, map[string]string{"alice": "pw"}, true)
	plainOnly := newTestStore(t, map[string]string{"alice": "pw"}, false)
	plain := &protocol.ConnState{}
	secure := &protocol.ConnState{TLS: &tls.ConnectionState{}}
	tests := []struct {
		name     string
		a        *authenticator
		conn     *protocol.ConnState
		expected []string
	}{
		{"no TLS: SCRAM only", &authenticator{store: both}, plain, []string{"SCRAM-SHA-256"}},
		{"TLS: all", &authenticator{store: both}, secure, []string{"SCRAM-SHA-256", "PLAIN", "LOGIN"}},
		{"insecure_auth", &authenticator{store: both, insecure: true}, plain, []string{"SCRAM-SHA-256", "PLAIN", "LOGIN"}},
		{"hash only, no TLS: nothing", &authenticator{store: plainOnly}, plain, nil},
		{"hash only, TLS", &authenticator{store: plainOnly}, secure, []string{"PLAIN", "LOGIN"}},
		{"require_tls_for_auth, no TLS: nothing", &authenticator{store: both, tlsOnly: true}, plain, nil},
		{"require_tls_for_auth, TLS: all", &authenticator{store: both, tlsOnly: true}, secure, []string{"SCRAM-SHA-256", "PLAIN", "LOGIN"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Mechanisms(tc.conn); !reflect.DeepEqual(got, tc.expected) {
				t.Errorf("Mechanisms = %q, want %q", got, tc.expected)
			}
		})
	}
}

func TestAuthenticatorExchange(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "pw"}, true)
	var outcomes []string
	a := &authenticator{store: store, insecure: true, outcome: func(mech, result string) { outcomes = append(outcomes, mech+" "+result) }}
	ctx := context.Background()
	conn := &protocol.ConnState{}
	if _, err := a.NewServer(ctx, conn, "CRAM-MD5"); err != protocol.ErrAuthUnknownMechanism {
		t.Errorf("unsupported mechanism: %v, want 504 5.5.4", err)
	}
	tests := []struct {
		name     string
		mech     string
		resp     string
		wantCode int
		wantEC   protocol.EnhancedCode
		wantUser string
		outcome  string
	}{
		{"ok", "PLAIN", "\x00alice\x00pw", 0, protocol.EnhancedCode{}, "alice", "PLAIN ok"},
		{"wrong password", "plain", "\x00alice\x00nope", 535, protocol.EnhancedCode{5, 7, 8}, "", "PLAIN failed"},
		{"unknown user", "PLAIN", "\x00bob\x00pw", 535, protocol.EnhancedCode{5, 7, 8}, "", "PLAIN failed"},
		{"malformed", "PLAIN", "no separators", 501, protocol.EnhancedCode{5, 5, 2}, "", "PLAIN malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outcomes = nil
			s, err := a.NewServer(ctx, conn, tc.mech)
			if err != nil {
				t.Fatal(err)
			}
			_, done, err := s.Next([]byte(tc.resp))
			if tc.wantCode == 0 {
				if err != nil || !done || s.Username() != tc.wantUser {
					t.Fatalf("Next: done %v, err %v, user %q", done, err, s.Username())
				}
			} else {
				e := protocol.AsError(err)
				if e == nil || e.Code != tc.wantCode || e.EnhancedCode != tc.wantEC {
					t.Fatalf("Next: %v, want %d %v", err, tc.wantCode, tc.wantEC)
				}
				if !errors.Is(err, sasl.ErrAuthFailed) && !errors.Is(err, sasl.ErrMalformed) {
					t.Errorf("the cause is lost: %v", err)
				}
			}
			if len(outcomes) != 1 || outcomes[0] != tc.outcome {
				t.Errorf("outcomes %q, want %q", outcomes, tc.outcome)
			}
		})
	}
}

func TestAuthReply(t *testing.T) {
	tests := []struct {
		err    error
		code   int
		result string
	}{
		{sasl.ErrMalformed, 501, "malformed"},
		{fmt.Errorf("x: %w", sasl.ErrAuthFailed), 535, "failed"},
		{errors.New("store broken"), 454, "error"},
	}
	for _, tc := range tests {
		r := protocol.AuthError(tc.err)
		if e := protocol.AsError(r); e == nil || e.Code != tc.code || !errors.Is(r, tc.err) {
			t.Errorf("AuthError(%v) = %v, want %d wrapping the cause", tc.err, r, tc.code)
		}
		if got := authResult(r); got != tc.result {
			t.Errorf("authResult(%v) = %q, want %q", tc.err, got, tc.result)
		}
	}
}

// fakeBackend records the senders it was given.
type fakeBackend struct {
	froms   []string
	checked bool
}

func (b *fakeBackend) Mail(ctx context.Context, c *protocol.ConnState, from protocol.Address, p *protocol.MailParams) (protocol.Transaction, error) {
	b.froms = append(b.froms, from.String())
	return nil, nil
}

func (b *fakeBackend) CheckConn(ctx context.Context, c *protocol.ConnState) error {
	b.checked = true
	return errors.New("refused")
}

func TestRestrictSender(t *testing.T) {
	fb := &fakeBackend{}
	r := &restrictSender{next: fb}
	r.policy.Store(&senderPolicy{on: true, byUser: map[string][]string{
		"alice": {"alice@example.test", "@example.org"},
		"bob":   {},
	}})
	addr := func(local, domain string) protocol.Address { return protocol.Address{LocalPart: local, Domain: domain} }
	tests := []struct {
		name string
		user string
		from protocol.Address
		ok   bool
	}{
		{"own address", "alice", addr("alice", "example.test"), true},
		{"domain case", "alice", addr("alice", "EXAMPLE.test"), true},
		{"local part case", "alice", addr("Alice", "example.test"), false},
		{"whole domain", "alice", addr("anyone", "example.org"), true},
		{"quoted local part", "alice", addr(`"alice"`, "example.test"), true},
		{"other address", "alice", addr("bob", "example.test"), false},
		{"null sender", "alice", protocol.Address{}, true},
		{"user without addresses", "bob", addr("bob", "example.test"), false},
		{"not authenticated", "", addr("mallory", "example.net"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Mail(context.Background(), &protocol.ConnState{AuthIdentity: tc.user}, tc.from, &protocol.MailParams{})
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && err != errSenderNotOwned {
				t.Errorf("error %v, want 553 5.7.1", err)
			}
		})
	}
	r.policy.Store(&senderPolicy{on: false})
	if _, err := r.Mail(context.Background(), &protocol.ConnState{AuthIdentity: "bob"}, addr("x", "y.test"), &protocol.MailParams{}); err != nil {
		t.Errorf("policy off: %v", err)
	}
	if err := r.CheckConn(context.Background(), &protocol.ConnState{}); err == nil || !fb.checked {
		t.Errorf("CheckConn not passed on: %v", err)
	}
	if err := (&restrictSender{next: &meteredBackend{}}).CheckConn(context.Background(), &protocol.ConnState{}); err != nil {
		t.Errorf("CheckConn without a checker: %v", err)
	}
}

// TestScramWithoutTLS runs both settings of require_tls_for_auth over the
// wire on a STARTTLS listener: by default SCRAM-SHA-256 is offered and
// accepted before STARTTLS (PLAIN is refused 538); with the switch on,
// nothing is offered before STARTTLS, SCRAM gets 538 5.7.11 too, and
// everything is offered after it.
func TestScramWithoutTLS(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "pw"}, true)
	cf, kf := writeCert(t, t.TempDir(), "mx.test", time.Now().Add(time.Hour))
	cert, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	scramFirst := "AUTH SCRAM-SHA-256 " + base64.StdEncoding.EncodeToString([]byte("n,,n=alice,r=abcdefghijklmnop"))
	for _, tc := range []struct {
		name      string
		tlsOnly   bool
		ehlo      string // the AUTH line of EHLO before STARTTLS, "" for none
		scramCode string // the reply to AUTH SCRAM-SHA-256 before STARTTLS
	}{
		{"default", false, "AUTH SCRAM-SHA-256", "334 "},
		{"require_tls_for_auth", true, "", "538 5.7.11 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &protocol.Server{
				Hostname: "mx.test", Backend: nopBackend{}, AuthFailureDelay: -1,
				TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
				Auth:      &authenticator{store: store, tlsOnly: tc.tlsOnly},
			}
			c1, c2 := net.Pipe()
			srv.ServeConn(c1)
			t.Cleanup(func() { c2.Close(); srv.Close() })
			conv := newConversation(t, c2)
			conv.expect("220")
			conv.send("EHLO client.test")
			ehlo := conv.expect("250")
			if got := authLine(ehlo); got != tc.ehlo {
				t.Errorf("EHLO before STARTTLS offers %q, want %q", got, tc.ehlo)
			}
			conv.send("AUTH PLAIN AGFsaWNlAHB3")
			conv.expect("538 5.7.11")
			conv.send(scramFirst)
			if r := conv.expect(tc.scramCode); strings.HasPrefix(r, "334") {
				conv.send("*")
				conv.expect("501 5.7.0")
			}
			conv.send("STARTTLS")
			conv.expect("220")
			tc := tls.Client(c2, &tls.Config{InsecureSkipVerify: true})
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			conv = newConversation(t, tc)
			conv.send("EHLO client.test")
			if got := authLine(conv.expect("250")); got != "AUTH SCRAM-SHA-256 PLAIN LOGIN" {
				t.Errorf("EHLO under TLS offers %q", got)
			}
			conv.send(scramFirst)
			conv.expect("334 ")
		})
	}
}

// authLine returns the AUTH keyword line of an EHLO reply, without the
// reply code, or "".
func authLine(reply string) string {
	for _, l := range strings.Split(reply, "\n") {
		if len(l) > 4 && strings.HasPrefix(l[4:], "AUTH") {
			return l[4:]
		}
	}
	return ""
}

// wireTimeout bounds each read and write of the wire tests' clients. It
// only guards against a hung server, so it is generous: a passing test
// never waits for it, and one AUTH against a real-cost hash (bcrypt cost
// 11, SHA512-CRYPT rounds=100000) takes seconds under -race on a loaded
// 2-core CI machine; 5 s made TestAuthFromDirectory fail with "read pipe:
// i/o timeout" whenever the load average was high.
const wireTimeout = 2 * time.Minute

// conversation is a line client for the wire tests of this package.
type conversation struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func newConversation(t *testing.T, c net.Conn) *conversation {
	return &conversation{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *conversation) send(line string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(wireTimeout))
	if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// expect reads a whole reply and checks that it starts with prefix.
func (c *conversation) expect(prefix string) string {
	c.t.Helper()
	var lines []string
	for {
		c.c.SetReadDeadline(time.Now().Add(wireTimeout))
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		lines = append(lines, strings.TrimRight(l, "\r\n"))
		if len(l) < 4 || l[3] != '-' {
			break
		}
	}
	r := strings.Join(lines, "\n")
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("reply %q, want %q...", r, prefix)
	}
	return r
}

// nopBackend refuses every transaction; the AUTH tests send none.
type nopBackend struct{}

func (nopBackend) Mail(context.Context, *protocol.ConnState, protocol.Address, *protocol.MailParams) (protocol.Transaction, error) {
	return nil, errors.New("no transactions in this test")
}
