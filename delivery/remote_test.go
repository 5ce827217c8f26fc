package delivery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
)

// fakeLMTP is a scripted LMTP server on a unix socket: it accepts every
// RCPT, answers each accepted recipient after the message from refuse (or
// 250), and records the commands and messages it got.
type fakeLMTP struct {
	t    testing.TB
	Addr string // "unix:/path"
	ln   net.Listener

	xclient    bool          // offer XCLIENT
	xclientTTL bool          // and list Dovecot's TTL attribute
	xforward   bool          // offer XFORWARD
	no8bit     bool          // do not offer 8BITMIME
	dropData   bool          // close the connection after the message, before any reply
	hangFinal  time.Duration // wait this long before the final replies

	mu     sync.Mutex
	refuse map[string]string // recipient -> final reply line
	conns  int
	ended  int // connections closed by the client (or by Close)
	open   []net.Conn
	cmds   []string
	msgs   []string // DATA contents, CRLF kept, dot-unstuffed
	wg     sync.WaitGroup
}

func newFakeLMTP(t testing.TB, name string) *fakeLMTP {
	f := &fakeLMTP{t: t, refuse: map[string]string{}}
	f.listen(filepath.Join(t.TempDir(), name))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeLMTP) listen(path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		f.t.Fatal(err)
	}
	f.ln, f.Addr = ln, "unix:"+path
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.open = append(f.open, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.serve(c)
				f.mu.Lock()
				f.ended++
				f.mu.Unlock()
			}()
		}
	}()
}

// Close stops the server as a crash would: the listener and every
// connection closed.
func (f *fakeLMTP) Close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.open {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakeLMTP) record(cmd string) {
	f.mu.Lock()
	f.cmds = append(f.cmds, cmd)
	f.mu.Unlock()
}

func (f *fakeLMTP) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	w := func(s string) { c.Write([]byte(s + "\r\n")) }
	w("220 fake LMTP")
	var rcpts []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.record(line)
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "LHLO":
			w("250-fake.example.test")
			switch {
			case f.xclient && f.xclientTTL:
				w("250-XCLIENT ADDR NAME PORT HELO PROTO LOGIN TTL")
			case f.xclient:
				w("250-XCLIENT ADDR NAME PORT HELO PROTO LOGIN")
			}
			if f.xforward {
				w("250-XFORWARD NAME ADDR PORT PROTO HELO SOURCE IDENT")
			}
			if f.no8bit {
				w("250-PIPELINING\r\n250 ENHANCEDSTATUSCODES")
			} else {
				w("250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250 8BITMIME")
			}
		case "XCLIENT":
			w("220 fake LMTP")
		case "XFORWARD":
			w("250 2.0.0 Ok")
		case "MAIL":
			rcpts = nil
			w("250 2.1.0 Ok")
		case "RCPT":
			a := strings.TrimSuffix(strings.TrimPrefix(arg, "TO:<"), ">")
			a, _, _ = strings.Cut(a, ">")
			rcpts = append(rcpts, a)
			w("250 2.1.5 Ok")
		case "DATA":
			w("354 go ahead")
			var b strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			f.mu.Lock()
			f.msgs = append(f.msgs, b.String())
			drop, hang := f.dropData, f.hangFinal
			f.mu.Unlock()
			if drop {
				return
			}
			time.Sleep(hang)
			for _, r := range rcpts {
				f.mu.Lock()
				rep, ok := f.refuse[r]
				f.mu.Unlock()
				if !ok {
					rep = "250 2.0.0 <" + r + "> Saved"
				}
				w(rep)
			}
		case "RSET":
			w("250 2.0.0 Ok")
		case "QUIT":
			w("221 2.0.0 Bye")
			return
		default:
			w("502 5.5.2 What?")
		}
	}
}

func (f *fakeLMTP) snapshot() (conns int, cmds, msgs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, append([]string(nil), f.cmds...), append([]string(nil), f.msgs...)
}

func countPrefix(cmds []string, p string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(c, p) {
			n++
		}
	}
	return n
}

// proxyRouter returns a Router serving example.org whose users alice and
// dave go to a, carol to b, and whose Lookup gives erin a forward to b.
func proxyRouter(t testing.TB, a, b string, fwd LMTP, mods ...func(*Config)) *Router {
	t.Helper()
	cfg := DefaultConfig()

	cfg.Maildir.Root = t.TempDir() // users not listed would go to maildir
	cfg.Forward = fwd
	la := &LMTP{Address: a}
	cfg.Domains = []Domain{{
		Name: "example.org",
		Users: []User{
			{Name: "alice", Route: Route{LMTP: la}},
			{Name: "dave", Route: Route{LMTP: la}},
			{Name: "carol", Route: Route{LMTP: &LMTP{Address: b}}},
		},
		Aliases: map[string][]string{"team": {"alice", "carol"}},
	}}
	lookup := lookupFunc(func(ctx context.Context, k directory.Key) (directory.Record, error) {
		if k.LocalPart == "erin" {
			return directory.Record{Forward: b}, nil
		}
		return directory.Record{}, directory.ErrNotFound
	})
	for _, m := range mods {
		m(&cfg)
	}
	plan, err := Compile(cfg, PlanOptions{Lookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(plan, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

type lookupFunc func(ctx context.Context, k directory.Key) (directory.Record, error)

func (f lookupFunc) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	return f(ctx, k)
}

// lmtpTx sends one transaction over w and returns the reply lines: one
// per RCPT, then one per accepted recipient after the message.
func lmtpTx(w *wireClient, rcpts []string, text string) (rcptReplies, final []string) {
	w.t.Helper()
	w.send("MAIL FROM:<sender@example.net>")
	w.expect("250")
	accepted := 0
	for _, r := range rcpts {
		w.send("RCPT TO:<" + r + ">")
		l := w.expect("")
		rcptReplies = append(rcptReplies, strings.TrimRight(l, "\r\n"))
		if strings.HasPrefix(l, "250") {
			accepted++
		}
	}
	w.send("DATA")
	w.expect("354")
	w.send(text + "\r\n.")
	for range accepted {
		final = append(final, strings.TrimRight(w.expect(""), "\r\n"))
	}
	return rcptReplies, final
}

// TestRemoteRelay: one LMTP transaction to users on two backends and an
// unknown one: each backend gets its recipients in one transaction, each
// recipient gets its backend's reply (code, enhanced code, text), the
// unknown user 550 at RCPT; the backends got the message with the
// front's Received field and CRLF line endings.
func TestRemoteRelay(t *testing.T) {
	a, b := newFakeLMTP(t, "a"), newFakeLMTP(t, "b")
	a.refuse["dave@example.org"] = "552 5.2.2 <dave@example.org> Mailbox is full"
	r := proxyRouter(t, a.Addr, b.Addr, LMTP{})
	w := startWire(t, r)
	rr, final := lmtpTx(w, []string{"alice@example.org", "carol@example.org", "nobody@example.org", "dave@example.org"},
		"Subject: proxied\r\n\r\nline one\r\n..dot line\r\nlast")
	if !strings.HasPrefix(rr[2], "550 5.1.1") {
		t.Errorf("unknown user: %q, want 550 5.1.1", rr[2])
	}
	// A 250 is the front's own (the backend's is its 250); a refusal is
	// the backend's, code, enhanced code and text.
	want := []string{"250 2.0.0 <alice@example.org> ", "250 2.0.0 <carol@example.org> ", "552 5.2.2 <dave@example.org> Mailbox is full"}
	if len(final) != 3 || !strings.HasPrefix(final[0], want[0]) || !strings.HasPrefix(final[1], want[1]) || final[2] != want[2] {
		t.Errorf("final replies:\n%s\nwant\n%s", strings.Join(final, "\n"), strings.Join(want, "\n"))
	}
	_, ca, ma := a.snapshot()
	_, cb, mb := b.snapshot()
	if countPrefix(ca, "MAIL") != 1 || countPrefix(ca, "RCPT") != 2 || countPrefix(cb, "MAIL") != 1 || countPrefix(cb, "RCPT") != 1 {
		t.Errorf("backend commands: a %q, b %q", ca, cb)
	}
	if !strings.Contains(strings.Join(ca, "\n"), "MAIL FROM:<sender@example.net>") {
		t.Errorf("a: sender not passed on: %q", ca)
	}
	for name, ms := range map[string][]string{"a": ma, "b": mb} {
		if len(ms) != 1 {
			t.Fatalf("%s got %d messages", name, len(ms))
		}
		m := ms[0]
		if !strings.HasPrefix(m, "Received: from client.example.test") || !strings.Contains(m, "by lda.example.test") {
			t.Errorf("%s: no Received field of the front on top:\n%q", name, m)
		}
		if !strings.HasSuffix(m, "Subject: proxied\r\n\r\nline one\r\n.dot line\r\nlast\r\n") {
			t.Errorf("%s: message not as sent, with CRLF:\n%q", name, m)
		}
		if strings.Contains(m, "Return-Path") || strings.Contains(m, "Delivered-To") {
			t.Errorf("%s: the front added fields that belong to the final delivery:\n%q", name, m)
		}
	}
}

// TestRemoteSpooledConcurrent: a message the spool holds in a file goes
// to two backends at once, each reading its own copy of the whole of it.
func TestRemoteSpooledConcurrent(t *testing.T) {
	a, b := newFakeLMTP(t, "a"), newFakeLMTP(t, "b")
	r := proxyRouter(t, a.Addr, b.Addr, LMTP{}, func(c *Config) { c.Spool.Threshold = -1 })
	w := startWire(t, r)
	var body strings.Builder
	for i := 0; body.Len() < 600<<10; i++ {
		body.WriteString(strings.Repeat(string(rune('a'+i%26)), 70) + "\r\n")
	}
	text := "Subject: big\r\n\r\n" + body.String() + "end"
	_, final := lmtpTx(w, []string{"alice@example.org", "carol@example.org"}, text)
	if len(final) != 2 || !strings.HasPrefix(final[0], "250") || !strings.HasPrefix(final[1], "250") {
		t.Fatalf("replies %q", final)
	}
	_, _, ma := a.snapshot()
	_, _, mb := b.snapshot()
	if len(ma) != 1 || len(mb) != 1 || ma[0] != mb[0] || !strings.HasSuffix(ma[0], text+"\r\n") {
		t.Fatalf("backends got different or incomplete copies (%d and %d messages)", len(ma), len(mb))
	}
}

// TestRemoteFailures: a backend that cannot be reached, drops the
// connection after the message or does not answer in time defers its
// own recipients only, with 451 4.4.1 or 4.4.2.
func TestRemoteFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(b *fakeLMTP) string // returns b's address to use
		want  string
	}{
		{"unreachable", func(b *fakeLMTP) string { return "unix:" + filepath.Join(t.TempDir(), "none.sock") }, "451 4.4.1 "},
		{"refused TCP", func(b *fakeLMTP) string {
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			a := l.Addr().String()
			l.Close()
			return a
		}, "451 4.4.1 "},
		{"dropped", func(b *fakeLMTP) string { b.dropData = true; return b.Addr }, "451 4.4.2 "},
		{"timeout", func(b *fakeLMTP) string { b.hangFinal = 3 * time.Second; return b.Addr }, "451 4.4.1 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newFakeLMTP(t, "a"), newFakeLMTP(t, "b")
			baddr := tc.setup(b)
			w := startWire(t, proxyRouterTimeouts(t, a.Addr, baddr))
			_, final := lmtpTx(w, []string{"alice@example.org", "carol@example.org"}, "Subject: x\r\n\r\nbody")
			if len(final) != 2 || !strings.HasPrefix(final[0], "250 2.0.0") || !strings.HasPrefix(final[1], tc.want) {
				t.Fatalf("replies %q, want alice 250 and carol %q", final, tc.want)
			}
			if strings.Contains(final[1], "none.sock") || strings.Contains(final[1], "127.0.0.1") {
				t.Errorf("the backend's address reached the wire: %q", final[1])
			}
		})
	}
}

// proxyRouterTimeouts is proxyRouter with short timeouts on carol's route.
func proxyRouterTimeouts(t testing.TB, a, b string) *Router {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Maildir.Root = t.TempDir()
	cfg.Domains = []Domain{{
		Name: "example.org",
		Users: []User{
			{Name: "alice", Route: Route{LMTP: &LMTP{Address: a}}},
			{Name: "carol", Route: Route{LMTP: &LMTP{Address: b, Timeout: 500 * time.Millisecond, ConnectTimeout: 500 * time.Millisecond}}},
		},
	}}
	plan, err := Compile(cfg, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(plan, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestRemotePool: connections are reused with RSET between transactions,
// a connection the backend closed is replaced, and a backend that comes
// back is used again.
func TestRemotePool(t *testing.T) {
	a, b := newFakeLMTP(t, "a"), newFakeLMTP(t, "b")
	r := proxyRouter(t, a.Addr, b.Addr, LMTP{})
	w := startWire(t, r)
	for range 3 {
		_, final := lmtpTx(w, []string{"alice@example.org"}, "Subject: x\r\n\r\nbody")
		if len(final) != 1 || !strings.HasPrefix(final[0], "250") {
			t.Fatalf("replies %q", final)
		}
	}
	conns, cmds, msgs := a.snapshot()
	if conns != 1 || len(msgs) != 3 || countPrefix(cmds, "RSET") != 2 || countPrefix(cmds, "LHLO") != 1 {
		t.Fatalf("a: %d connections, %d messages, commands %q; want 1 connection, 3 messages, 2 RSET", conns, len(msgs), cmds)
	}

	// The backend restarts: its old connection is gone.
	path := strings.TrimPrefix(a.Addr, "unix:")
	a.Close()
	_, final := lmtpTx(w, []string{"alice@example.org"}, "Subject: x\r\n\r\nbody")
	if len(final) != 1 || !strings.HasPrefix(final[0], "451 4.4.1") {
		t.Fatalf("backend down: %q, want 451 4.4.1", final)
	}
	a2 := &fakeLMTP{t: t, refuse: map[string]string{}}
	a2.listen(path)
	t.Cleanup(a2.Close)
	_, final = lmtpTx(w, []string{"alice@example.org"}, "Subject: x\r\n\r\nbody")
	if len(final) != 1 || !strings.HasPrefix(final[0], "250") {
		t.Fatalf("backend back: %q, want 250", final)
	}
}

// TestRemoteIdleTimeout: an idle connection is closed after IdleTimeout
// without waiting for the next delivery.
func TestRemoteIdleTimeout(t *testing.T) {
	a, b := newFakeLMTP(t, "a"), newFakeLMTP(t, "b")
	r := proxyRouter(t, a.Addr, b.Addr, LMTP{}, func(c *Config) {
		c.Domains[0].Users[0].Route.LMTP.IdleTimeout = 50 * time.Millisecond
	})
	w := startWire(t, r)
	lmtpTx(w, []string{"alice@example.org"}, "Subject: x\r\n\r\nbody")
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.mu.Lock()
		ended := a.ended
		a.mu.Unlock()
		if ended == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle connection was not closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRemoteLimit: at most MaxConnections connections to one backend;
// deliveries beyond wait, and are deferred with 451 4.4.5 past MaxWait.
func TestRemoteLimit(t *testing.T) {
	b := newFakeLMTP(t, "b")
	b.hangFinal = 400 * time.Millisecond
	cfg := DefaultConfig()
	cfg.Domains = []Domain{{Name: "example.org", AnyUser: true,
		Route: Route{LMTP: &LMTP{Address: b.Addr, MaxConnections: 2, MaxWait: 100 * time.Millisecond}}}}
	plan, err := Compile(cfg, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(plan, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const n = 5
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := testCtx(t, nil)
			tx, _ := r.Mail(ctx, conn(protocol.LMTP), addr("s@example.net"), &protocol.MailParams{})
			defer tx.Close()
			m := message(t, "s@example.net", []string{"u@example.org"}, "Subject: x\r\n\r\nbody\r\n")
			if err := tx.Rcpt(ctx, m.Recipients[0]); err != nil {
				errs[i] = err
				return
			}
			var st statuses
			if err := tx.Data(ctx, m, &st); err != nil {
				errs[i] = err
				return
			}
			errs[i], _ = st.get(0)
		}()
	}
	wg.Wait()
	ok, busy := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case protocol.AsError(err) != nil && protocol.AsError(err).Enhanced() == (protocol.EnhancedCode{4, 4, 5}):
			checkCode(t, err, 451, protocol.EnhancedCode{4, 4, 5})
			busy++
		default:
			t.Errorf("unexpected outcome %v", err)
		}
	}
	conns, _, _ := b.snapshot()
	if conns > 2 || ok < 2 || busy == 0 || ok+busy != n {
		t.Errorf("%d connections, %d delivered, %d busy; want at most 2 connections, some deferred", conns, ok, busy)
	}
}

// TestRemoteClientAttributes: the original client's address and HELO go
// to a backend that offers XCLIENT (once per connection while they stay
// the same) or XFORWARD; what lmtpd does not know is not sent.
func TestRemoteClientAttributes(t *testing.T) {
	t.Run("XCLIENT over TCP", func(t *testing.T) {
		a := newFakeLMTP(t, "a")
		a.xclient = true
		r := proxyRouter(t, a.Addr, a.Addr, LMTP{})
		for range 2 {
			ctx := testCtx(t, nil)
			tx, _ := r.Mail(ctx, conn(protocol.LMTP), addr("s@example.net"), &protocol.MailParams{})
			m := message(t, "s@example.net", []string{"alice@example.org"}, "Subject: x\r\n\r\nbody\r\n")
			if err := tx.Rcpt(ctx, m.Recipients[0]); err != nil {
				t.Fatal(err)
			}
			var st statuses
			if err := tx.Data(ctx, m, &st); err != nil {
				t.Fatal(err)
			}
			if err, _ := st.get(0); err != nil {
				t.Fatal(err)
			}
			tx.Close()
		}
		_, cmds, _ := a.snapshot()
		x := ""
		for _, c := range cmds {
			if strings.HasPrefix(c, "XCLIENT") {
				x += c + "\n"
			}
		}
		if x != "XCLIENT ADDR=192.0.2.7 PORT=4711 PROTO=SMTP HELO=mx.example.org\n" {
			t.Errorf("XCLIENT sent:\n%s", x)
		}
	})
	t.Run("XFORWARD over a unix socket", func(t *testing.T) {
		a := newFakeLMTP(t, "a")
		a.xforward = true
		r := proxyRouter(t, a.Addr, a.Addr, LMTP{})
		w := startWire(t, r)
		lmtpTx(w, []string{"alice@example.org"}, "Subject: x\r\n\r\nbody")
		_, cmds, _ := a.snapshot()
		var got []string
		for _, c := range cmds {
			if strings.HasPrefix(c, "XFORWARD") {
				got = append(got, c)
			}
		}
		// A unix-socket client has no address: only its HELO is known.
		if len(got) != 1 || strings.Contains(got[0], "ADDR=") || !strings.Contains(got[0], "HELO=client.example.test") {
			t.Errorf("XFORWARD sent: %q", got)
		}
	})
}

// TestRemoteLoopGuard: the hop count goes on with XCLIENT TTL (one less
// than this server was given, to a server that lists TTL), and a message
// whose proxy gave TTL=0 is refused 554 5.4.6 rather than handed on; the
// server never sees it.
func TestRemoteLoopGuard(t *testing.T) {
	a := newFakeLMTP(t, "a")
	a.xclient, a.xclientTTL = true, true
	r := proxyRouter(t, a.Addr, a.Addr, LMTP{})
	send := func(ttl int) error {
		ctx := testCtx(t, nil)
		c := conn(protocol.LMTP)
		c.XClient.Sent, c.XClient.TTL = protocol.XClientTTL, ttl
		tx, _ := r.Mail(ctx, c, addr("s@example.net"), &protocol.MailParams{})
		defer tx.Close()
		m := message(t, "s@example.net", []string{"alice@example.org"}, "Subject: x\r\n\r\nbody\r\n")
		if err := tx.Rcpt(ctx, m.Recipients[0]); err != nil {
			t.Fatal(err)
		}
		var st statuses
		if err := tx.Data(ctx, m, &st); err != nil {
			t.Fatal(err)
		}
		err, _ := st.get(0)
		return err
	}
	if err := send(3); err != nil {
		t.Fatalf("TTL=3: %v", err)
	}
	err := send(0)
	if pe := protocol.AsError(err); pe == nil || pe.Code != 554 || pe.Enhanced() != (protocol.EnhancedCode{5, 4, 6}) {
		t.Fatalf("TTL=0: %v, want 554 5.4.6", err)
	}
	_, cmds, msgs := a.snapshot()
	var x []string
	for _, c := range cmds {
		if strings.HasPrefix(c, "XCLIENT") {
			x = append(x, c)
		}
	}
	if len(x) != 1 || !strings.HasSuffix(x[0], " TTL=2") {
		t.Errorf("XCLIENT sent: %q, want one ending in TTL=2", x)
	}
	if len(msgs) != 1 {
		t.Errorf("the server got %d messages, want 1 (the looping one refused)", len(msgs))
	}
}

// TestRemoteMailParams: the sender's MAIL parameters go on (BODY,
// RET, ENVID where offered), SIZE does not (the copy differs), and
// 8-bit text goes to a server without 8BITMIME as it is.
func TestRemoteMailParams(t *testing.T) {
	for _, no8bit := range []bool{false, true} {
		a := newFakeLMTP(t, "a")
		a.no8bit = no8bit
		r := proxyRouter(t, a.Addr, a.Addr, LMTP{})
		ctx := testCtx(t, nil)
		tx, _ := r.Mail(ctx, conn(protocol.LMTP), addr("s@example.net"), &protocol.MailParams{Body: protocol.Body8BitMIME, Size: 12345})
		m := message(t, "s@example.net", []string{"alice@example.org"}, "Subject: caf\xc3\xa9\r\n\r\nbody\r\n")
		m.Params = &protocol.MailParams{Body: protocol.Body8BitMIME, Size: 12345}
		if err := tx.Rcpt(ctx, m.Recipients[0]); err != nil {
			t.Fatal(err)
		}
		var st statuses
		if err := tx.Data(ctx, m, &st); err != nil {
			t.Fatal(err)
		}
		if err, _ := st.get(0); err != nil {
			t.Fatalf("8BITMIME offered %v: %v", !no8bit, err)
		}
		tx.Close()
		_, cmds, _ := a.snapshot()
		want := "MAIL FROM:<s@example.net> BODY=8BITMIME"
		if no8bit {
			want = "MAIL FROM:<s@example.net>"
		}
		if !slices.Contains(cmds, want) {
			t.Errorf("8BITMIME offered %v: commands %q, want %q", !no8bit, cmds, want)
		}
	}
}

// TestRemoteForward: a directory record's forward field sends the user
// to that server; one that is not an address defers.
func TestRemoteForward(t *testing.T) {
	a, b := newFakeLMTP(t, "a"), newFakeLMTP(t, "b")
	r := proxyRouter(t, a.Addr, b.Addr, LMTP{})
	w := startWire(t, r)
	_, final := lmtpTx(w, []string{"erin@example.org", "team@example.org"}, "Subject: x\r\n\r\nbody")
	if len(final) != 2 || !strings.HasPrefix(final[0], "250") || !strings.HasPrefix(final[1], "250") {
		t.Fatalf("replies %q", final)
	}
	_, cb, _ := b.snapshot()
	_, ca, _ := a.snapshot()
	// team@ is an alias expanded by the front: its address goes on as
	// ORCPT.
	if !slices.Contains(cb, "RCPT TO:<erin@example.org>") || !slices.Contains(cb, "RCPT TO:<carol@example.org> ORCPT=rfc822;team@example.org") ||
		!strings.Contains(strings.Join(ca, "\n"), "RCPT TO:<alice@example.org>") {
		t.Errorf("a got %q, b got %q", ca, cb)
	}

	ds, err := r.Resolve(context.Background(), addr("erin@example.org"))
	if err != nil || len(ds) != 1 || ds[0].Forward != b.Addr || ds[0].Target.Kind() != "lmtp" {
		t.Errorf("Resolve(erin) = %+v, %v", ds, err)
	}

	res := relay(protocol.RcptStatus{Err: errors.New("x")}, "x@example.org", false)
	checkCode(t, res, 451, protocol.ECTempSystem)
	res = relay(protocol.RcptStatus{Err: &protocol.Error{Code: 550, Message: "<X@example.org> no"}}, "x@example.org", false)
	checkCode(t, res, 550, protocol.EnhancedCode{5, 0, 0})
	if pe := protocol.AsError(res); pe.Message != "no" {
		t.Errorf("relayed text %q, want the backend's without the address the front adds itself", pe.Message)
	}
	res = relay(protocol.RcptStatus{Err: &protocol.Error{Code: 421, EnhancedCode: protocol.EnhancedCode{4, 3, 0}, Message: "bye"}}, "x@example.org", true)
	checkCode(t, res, 451, protocol.ECTempBadConnection)

	res = relay(protocol.RcptStatus{Err: fmt.Errorf("%w: SMTPUTF8", protocol.ErrNotOffered)}, "x@example.org", false)
	checkCode(t, res, 553, protocol.ECPermNeedsUTF8)
	res = relay(protocol.RcptStatus{Err: fmt.Errorf("%w: BINARYMIME", protocol.ErrNotOffered)}, "x@example.org", false)
	checkCode(t, res, 554, protocol.ECPermMedia)

	var rt remoteTarget
	st := &Destination{Address: "x@example.org", Resolution: Resolution{Record: directory.Record{Forward: "not an address"}}}
	results := make([]Result, 1)
	rt.Stage(context.Background(), &Message{}, []*Destination{st}, results)
	checkCode(t, results[0].Err, 451, protocol.ECTempMisconfigured)
}

// TestRemoteConfigErrors: every bad lmtp setting is reported at its key.
func TestRemoteConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		route Route
		fwd   LMTP
		want  string
	}{
		{"no address", Route{LMTP: &LMTP{}}, LMTP{}, "domains.0.route.lmtp.address: required"},
		{"bad address", Route{LMTP: &LMTP{Address: "10.0.0.5"}}, LMTP{}, "domains.0.route.lmtp.address: address \"10.0.0.5\": want host:port or unix:/path"},
		{"relative unix", Route{LMTP: &LMTP{Address: "unix:lmtp.sock"}}, LMTP{}, "domains.0.route.lmtp.address: address \"unix:lmtp.sock\": want unix:/absolute/path"},
		{"bad port", Route{LMTP: &LMTP{Address: "h:99999"}}, LMTP{}, "bad port"},
		{"negative", Route{LMTP: &LMTP{Address: "h:24", MaxConnections: -1}}, LMTP{}, "domains.0.route.lmtp.max_connections: -1 is negative"},
		{"negative timeout", Route{LMTP: &LMTP{Address: "h:24", Timeout: -1}}, LMTP{}, "domains.0.route.lmtp.timeout: -1ns is negative"},
		{"with maildir", Route{LMTP: &LMTP{Address: "h:24"}, Maildir: "x"}, LMTP{}, "domains.0.route: a route with lmtp has neither maildir, pipe nor a target"},
		{"forward address", Route{}, LMTP{Address: "h:24"}, "forward.address: not used here"},
		{"forward negative", Route{}, LMTP{MaxWait: -1}, "forward.max_wait: -1ns is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Maildir.Root = "/srv/mail"
			cfg.Forward = tc.fwd
			cfg.Domains = []Domain{{Name: "example.org", Users: []User{{Name: "u"}}, Route: tc.route}}
			_, err := Compile(cfg, PlanOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("%v is not a *ConfigError", err)
			}
		})
	}
}

// BenchmarkRemoteDeliver: one 1 KiB message for one recipient through the
// remote target to a scripted backend on a unix socket, the connection
// reused (RSET each time).
func BenchmarkRemoteDeliver(b *testing.B) {
	a := newFakeLMTP(b, "a")
	r := proxyRouter(b, a.Addr, a.Addr, LMTP{})
	ctx := context.Background()
	text := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 16)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tx, _ := r.Mail(ctx, conn(protocol.LMTP), addr("s@example.net"), &protocol.MailParams{})
		m := message(b, "s@example.net", []string{"alice@example.org"}, text)
		if err := tx.Rcpt(ctx, m.Recipients[0]); err != nil {
			b.Fatal(err)
		}
		var st statuses
		if err := tx.Data(ctx, m, &st); err != nil {
			b.Fatal(err)
		}
		if err, _ := st.get(0); err != nil {
			b.Fatal(err)
		}
		tx.Close()
	}
	b.StopTimer()
	a.mu.Lock()
	a.cmds, a.msgs = nil, nil
	a.mu.Unlock()
}

// TestRemoteSMTPStage: in an SMTP transaction (protocol.Stager), the
// remote target runs with the final targets; a backend that is down makes
// Stage return 451 4.4.1, the fold of the recipients' outcomes, while the
// other backend has its copy (a Final target's 250 cannot be undone, as
// a pipe command's).
func TestRemoteSMTPStage(t *testing.T) {
	a := newFakeLMTP(t, "a")
	r := proxyRouter(t, a.Addr, "unix:"+filepath.Join(t.TempDir(), "down.sock"), LMTP{})
	ctx := testCtx(t, nil)
	tx, _ := r.Mail(ctx, conn(protocol.SMTP), addr("s@example.net"), &protocol.MailParams{})
	defer tx.Close()
	m := message(t, "s@example.net", []string{"alice@example.org", "carol@example.org"}, "Subject: x\r\n\r\nbody\r\n")
	for _, rc := range m.Recipients {
		if err := tx.Rcpt(ctx, rc); err != nil {
			t.Fatal(err)
		}
	}
	err := tx.(protocol.Stager).Stage(ctx, m)
	checkCode(t, err, 451, protocol.EnhancedCode{4, 4, 1})
	if _, _, msgs := a.snapshot(); len(msgs) != 1 {
		t.Errorf("backend a got %d messages, want 1", len(msgs))
	}
}
