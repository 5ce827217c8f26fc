//go:build linux

package peers

import (
	"context"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/policy"
	"github.com/lmtpd/lmtpd/socketmap"
	"github.com/rs/zerolog"
)

// recordingPolicy refuses full@ (552 5.2.2) and busy@ (452 4.2.2), fails
// for down@ (the server then answers DEFER_IF_PERMIT), and answers DUNNO
// otherwise; it records every request.
type recordingPolicy struct {
	mu   sync.Mutex
	reqs []*policy.Request
}

func (h *recordingPolicy) Policy(ctx context.Context, r *policy.Request) (policy.Action, error) {
	h.mu.Lock()
	h.reqs = append(h.reqs, r)
	h.mu.Unlock()
	if r.ProtocolState != "RCPT" {
		return policy.Dunno, nil
	}
	switch local, _, _ := strings.Cut(r.Recipient, "@"); local {
	case "full":
		return policy.MailboxFull(false), nil
	case "busy":
		return policy.MailboxFull(true), nil
	case "down":
		return "", os.ErrDeadlineExceeded
	}
	return policy.Dunno, nil
}

func (h *recordingPolicy) requests() []*policy.Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*policy.Request(nil), h.reqs...)
}

// TestPostfixPolicy points a private Postfix's smtpd at a policy.Server
// with check_policy_service and shows the refusals in Postfix's own SMTP
// dialogue: an over-quota recipient gets 552 5.2.2 at RCPT, a "defer"
// one 452 4.2.2, a failing lookup 450 4.7.1, while the other recipient of
// the same transaction is accepted and delivered to lmtpd; nothing is
// bounced.
func TestPostfixPolicy(t *testing.T) {
	d := newDaemon(t, daemonOptions{Domains: testDomains("")})
	p := startPostfix(t, d, 50)

	// The policy server, on a unix socket Postfix's smtpd (user postfix)
	// can reach.
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "policy.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := makeTraversable(dir); err != nil {
		t.Fatal(err)
	}
	h := &recordingPolicy{}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	var sessions sync.Map
	srv := &policy.Server{Handler: h, Logger: &log}
	go srv.Serve(countingListener{l, &sessions})
	t.Cleanup(func() { srv.Close() })

	// Hand the restriction to smtpd and reload; smtpd processes started
	// after the reload use it.
	if out, err := p.run(requirePeer(t, "postconf"), "-c", p.Etc, "-e",
		"smtpd_recipient_restrictions = check_policy_service unix:"+sock); err != nil {
		t.Fatalf("postconf: %v\n%s", err, out)
	}
	if out, err := p.run(p.postfixCmd, "-c", p.Etc, "reload"); err != nil {
		t.Fatalf("postfix reload: %v\n%s", err, out)
	}

	// The reload is asynchronous: retry until a session's RCPT reaches
	// the policy server.
	var c *textproto.Conn
	deadline := time.Now().Add(postfixWait)
	for {
		c = smtpDial(t, p.SMTPAddr)
		smtpCmd(t, c, "EHLO client.example.test", 250)
		smtpCmd(t, c, "MAIL FROM:<sender@example.test> SIZE=2345", 250)
		before := len(h.requests())
		smtpCmd(t, c, "RCPT TO:<bob@example.test>", 250)
		if len(h.requests()) > before {
			break
		}
		smtpCmd(t, c, "QUIT", 221)
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("smtpd does not ask the policy server; maillog:\n%s", p.logTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.Close()

	// The refusals, in Postfix's words (smtpd_check.c: "<%s>: %s
	// rejected: %s").
	for _, tc := range []struct {
		rcpt string
		code int
		text string
	}{
		{"full@example.test", 552, "5.2.2 <full@example.test>: Recipient address rejected: Mailbox full"},
		{"busy@example.test", 452, "4.2.2 <busy@example.test>: Recipient address rejected: Mailbox full"},
		{"down@example.test", 450, "4.7.1 <down@example.test>: Recipient address rejected: Service temporarily unavailable"},
	} {
		if got := smtpCmd(t, c, "RCPT TO:<"+tc.rcpt+">", tc.code); got != tc.text {
			t.Errorf("RCPT %s: %d %s, want %d %s", tc.rcpt, tc.code, got, tc.code, tc.text)
		}
	}
	smtpCmd(t, c, "RCPT TO:<alice@example.test>", 250)
	m := newMessage("policy-1", "sender@example.test", "bob@example.test", 2000)
	smtpCmd(t, c, "DATA", 354)
	dw := c.DotWriter()
	dw.Write(m.Stored)
	dw.Close()
	if _, _, err := c.ReadResponse(250); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	smtpCmd(t, c, "QUIT", 221)

	// The accepted recipients are delivered to lmtpd; nothing bounces.
	qid := p.QueueID(m.ID + "@client.example.test")
	for _, rc := range []string{"bob@example.test", "alice@example.test"} {
		p.WaitStatus(qid, rc, "sent", postfixWait)
		findMessage(t, d.mailbox(rc), m.ID)
	}
	for _, l := range p.Statuses(qid) {
		if l.Status != "sent" {
			t.Errorf("maillog: %v", l)
		}
	}
	for _, line := range p.logLines() {
		if strings.Contains(line, "status=bounced") || strings.Contains(line, "warning: problem talking to server") {
			t.Errorf("maillog: %s", line)
		}
	}

	// What Postfix sent: the attributes of the last transaction's RCPT
	// requests, all over one connection.
	var rcpts []*policy.Request
	for _, r := range h.requests() {
		if r.ProtocolState == "RCPT" {
			rcpts = append(rcpts, r)
		}
	}
	last := rcpts[len(rcpts)-5:]
	t.Logf("Postfix's request for %s: %q", last[1].Recipient, last[1].Attrs)
	for i, r := range last {
		want := []string{"bob", "full", "busy", "down", "alice"}[i] + "@example.test"
		if r.Request != "smtpd_access_policy" || r.Recipient != want || r.Sender != "sender@example.test" ||
			r.Size != 2345 || r.ClientAddress != "127.0.0.1" || r.HeloName != "client.example.test" ||
			r.ProtocolName != "ESMTP" || r.Instance == "" || r.Instance != last[0].Instance ||
			!regexp.MustCompile(`^\d+$`).MatchString(r.Attrs["client_port"]) {
			t.Errorf("request %d: %+v", i, r)
		}
	}
	n := 0
	sessions.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("smtpd opened %d policy connections, want 1 (the connection stays open between requests)", n)
	}
}

// countingListener records each accepted connection.
type countingListener struct {
	net.Listener
	seen *sync.Map
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.seen.Store(c, true)
	}
	return c, err
}

func smtpDial(t *testing.T, addr string) *textproto.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(postfixWait))
	c := textproto.NewConn(nc)
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return c
}

// smtpCmd sends a command and expects a reply with the code; it returns the
// reply's text.
func smtpCmd(t *testing.T, c *textproto.Conn, line string, code int) string {
	t.Helper()
	if err := c.PrintfLine("%s", line); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	_, msg, err := c.ReadResponse(code)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return msg
}

// mapHandler answers Postfix's virtual_mailbox_domains and
// virtual_mailbox_maps lookups from a fixed table and records them.
type mapHandler struct {
	mu   sync.Mutex
	keys []string
}

func (h *mapHandler) Lookup(ctx context.Context, name, key string) (string, error) {
	h.mu.Lock()
	h.keys = append(h.keys, name+" "+key)
	h.mu.Unlock()
	switch name {
	case "domain":
		if key == "example.test" {
			return "example.test", nil
		}
	case "mailbox":
		switch key {
		case "bob@example.test", "alice@example.test":
			local, _, _ := strings.Cut(key, "@")
			return "example.test/" + local + "/", nil
		case "down@example.test":
			return "", socketmap.Temporary("directory unavailable", nil)
		}
	default:
		return "", socketmap.ErrBadRequest
	}
	return "", socketmap.ErrNotFound
}

func (h *mapHandler) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.keys...)
}

// TestPostfixSocketmap gives a private Postfix its virtual domains and
// mailboxes from a socketmap.Server (virtual_mailbox_domains and
// virtual_mailbox_maps = socketmap:unix:PATH:NAME): an unknown recipient
// is refused at RCPT with 550 5.1.1, a lookup failing with TEMP gives
// 451 4.3.0, and a known one is delivered to lmtpd.
func TestPostfixSocketmap(t *testing.T) {
	d := newDaemon(t, daemonOptions{Domains: testDomains("")})
	p := startPostfix(t, d, 50)

	dir := shortTempDir(t)
	sock := filepath.Join(dir, "map.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := makeTraversable(dir); err != nil {
		t.Fatal(err)
	}
	h := &mapHandler{}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	srv := &socketmap.Server{Handler: h, Logger: &log}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	if out, err := p.run(requirePeer(t, "postconf"), "-c", p.Etc, "-e",
		"virtual_mailbox_domains = socketmap:unix:"+sock+":domain",
		"virtual_mailbox_maps = socketmap:unix:"+sock+":mailbox"); err != nil {
		t.Fatalf("postconf: %v\n%s", err, out)
	}
	if out, err := p.run(p.postfixCmd, "-c", p.Etc, "reload"); err != nil {
		t.Fatalf("postfix reload: %v\n%s", err, out)
	}

	// Retry until smtpd started after the reload asks the socketmap.
	var c *textproto.Conn
	deadline := time.Now().Add(postfixWait)
	for {
		c = smtpDial(t, p.SMTPAddr)
		smtpCmd(t, c, "EHLO client.example.test", 250)
		smtpCmd(t, c, "MAIL FROM:<sender@example.test>", 250)
		before := len(h.seen())
		smtpCmd(t, c, "RCPT TO:<bob@example.test>", 250)
		if len(h.seen()) > before {
			break
		}
		smtpCmd(t, c, "QUIT", 221)
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("smtpd does not ask the socketmap; maillog:\n%s", p.logTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.Close()

	for _, tc := range []struct {
		rcpt string
		code int
		text string
	}{
		{"nobody@example.test", 550, "5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table"},
		{"down@example.test", 451, "4.3.0 <down@example.test>: Temporary lookup failure"},
	} {
		if got := smtpCmd(t, c, "RCPT TO:<"+tc.rcpt+">", tc.code); got != tc.text {
			t.Errorf("RCPT %s: %d %s, want %d %s", tc.rcpt, tc.code, got, tc.code, tc.text)
		}
	}
	smtpCmd(t, c, "RCPT TO:<alice@example.test>", 250)
	m := newMessage("socketmap-1", "sender@example.test", "bob@example.test", 2000)
	smtpCmd(t, c, "DATA", 354)
	dw := c.DotWriter()
	dw.Write(m.Stored)
	dw.Close()
	if _, _, err := c.ReadResponse(250); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	smtpCmd(t, c, "QUIT", 221)

	qid := p.QueueID(m.ID + "@client.example.test")
	for _, rc := range []string{"bob@example.test", "alice@example.test"} {
		p.WaitStatus(qid, rc, "sent", postfixWait)
		findMessage(t, d.mailbox(rc), m.ID)
	}
	for _, line := range p.logLines() {
		if strings.Contains(line, "status=bounced") {
			t.Errorf("maillog: %s", line)
		}
	}
	keys := h.seen()
	t.Logf("lookups Postfix made: %q", keys)
	for _, want := range []string{"domain example.test", "mailbox bob@example.test", "mailbox nobody@example.test"} {
		if !slices.Contains(keys, want) {
			t.Errorf("Postfix never asked %q", want)
		}
	}
}
