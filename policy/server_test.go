package policy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/wiretest"
)

const rcptRequest = "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=%s\n\n"

func request(rcpt string) string { return strings.Replace(rcptRequest, "%s", rcpt, 1) }

// ask sends one request and reads the reply's action.
func ask(t *testing.T, c net.Conn, br *bufio.Reader, rcpt string) (string, error) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, request(rcpt)); err != nil {
		return "", err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	empty, err := br.ReadString('\n')
	if err != nil || empty != "\n" {
		t.Fatalf("reply %q not followed by an empty line: %q, %v", line, empty, err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

func listenUnix(t *testing.T) (net.Listener, string) {
	path := filepath.Join(t.TempDir(), "policy.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return l, path
}

// gateHandler blocks every request for "gate@..." until released.
type gateHandler struct {
	entered  chan struct{}
	release  chan struct{}
	ctxEnded chan error
}

func newGate() *gateHandler {
	return &gateHandler{entered: make(chan struct{}, 4), release: make(chan struct{}), ctxEnded: make(chan error, 4)}
}

func (g *gateHandler) Policy(ctx context.Context, r *Request) (Action, error) {
	if !strings.HasPrefix(r.Recipient, "gate@") {
		return Dunno, nil
	}
	g.entered <- struct{}{}
	select {
	case <-g.release:
		return MailboxFull(false), nil
	case <-ctx.Done():
		g.ctxEnded <- ctx.Err()
		return "", ctx.Err()
	}
}

func TestShutdownGraceful(t *testing.T) {
	g := newGate()
	log, _ := wiretest.Logger(t)
	s := &Server{Handler: g, Logger: log}
	l, path := listenUnix(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	idle, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleBR := bufio.NewReader(idle)
	if a, err := ask(t, idle, idleBR, "bob@example.org"); err != nil || a != "action=DUNNO" {
		t.Fatalf("idle connection: %q, %v", a, err)
	}
	busy, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyBR := bufio.NewReader(busy)
	reply := make(chan string, 1)
	go func() {
		a, err := ask(t, busy, busyBR, "gate@example.org")
		if err != nil {
			a = err.Error()
		}
		reply <- a
	}()
	<-g.entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// The idle connection is closed, the listener too; Serve returns.
	wiretest.ExpectClosed(t, idle, idleBR)
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	// The request in flight is answered, then its connection closed.
	close(g.release)
	if a := <-reply; a != "action=552 5.2.2 Mailbox full" {
		t.Fatalf("request in flight got %q", a)
	}
	wiretest.ExpectClosed(t, busy, busyBR)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	g := newGate()
	log, _ := wiretest.Logger(t)
	s := &Server{Handler: g, Logger: log, HandlerTimeout: time.Hour}
	c1, c2 := net.Pipe()
	defer c2.Close()
	s.ServeConn(c1)
	go io.WriteString(c2, request("gate@example.org"))
	<-g.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	// Shutdown returned only after the handler saw its context end.
	select {
	case err := <-g.ctxEnded:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler context ended with %v, want Canceled", err)
		}
	default:
		t.Fatal("the handler's context did not end")
	}
	wiretest.ExpectClosed(t, c2, bufio.NewReader(c2))
}

func TestClose(t *testing.T) {
	g := newGate()
	s := &Server{Handler: g}
	l, path := listenUnix(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go io.WriteString(c, request("gate@example.org"))
	<-g.entered
	s.Close()
	if err := <-g.ctxEnded; !errors.Is(err, context.Canceled) {
		t.Errorf("handler context: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v", err)
	}
	wiretest.ExpectClosed(t, c, bufio.NewReader(c))
}

func TestMaxConnections(t *testing.T) {
	log, buf := wiretest.Logger(t)
	s := &Server{Handler: newFakeHandler(), Logger: log, MaxConnections: 1}
	defer s.Close()
	a1, a2 := net.Pipe()
	defer a2.Close()
	s.ServeConn(a1)
	b1, b2 := net.Pipe()
	defer b2.Close()
	s.ServeConn(b1)
	wiretest.ExpectClosed(t, b2, bufio.NewReader(b2))
	// The first connection still works; once it is gone there is room.
	br := bufio.NewReader(a2)
	if a, err := ask(t, a2, br, "full@example.org"); err != nil || a != "action=552 5.2.2 Mailbox full" {
		t.Fatalf("first connection: %q, %v", a, err)
	}
	a2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := s.srv.Conns()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the closed connection is still counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	s.ServeConn(c1)
	if a, err := ask(t, c2, bufio.NewReader(c2), "bob@example.org"); err != nil || a != "action=DUNNO" {
		t.Fatalf("third connection: %q, %v", a, err)
	}
	if !strings.Contains(buf.String(), "too many connections") {
		t.Error("the refused connection was not logged")
	}
}

func TestServeWithoutHandler(t *testing.T) {
	l, _ := listenUnix(t)
	defer l.Close()
	if err := (&Server{}).Serve(l); err == nil {
		t.Fatal("Serve without a Handler did not fail")
	}
}

// TestLogs checks that every log line carries the session id, the peer
// and the protocol, and that outcomes are logged at the documented levels.
func TestLogs(t *testing.T) {
	log, buf := wiretest.Logger(t)
	s := &Server{Handler: newFakeHandler(), Logger: log}
	c := wiretest.Connect(t, s, "unix")
	br := bufio.NewReader(c)
	for _, rc := range []string{"bob@example.org", "full@example.org", "down@example.org"} {
		if _, err := ask(t, c, br, rc); err != nil {
			t.Fatal(err)
		}
	}
	io.WriteString(c, "request=smtpd_access_policy\nnonsense\n\n")
	wiretest.ExpectClosed(t, c, br)
	s.Close()

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	session := lines[0]["session"]
	find := func(level, recipient string) map[string]any {
		for _, m := range lines {
			if m["level"] == level && (recipient == "" || m["recipient"] == recipient) {
				return m
			}
		}
		t.Errorf("no %s line for %q", level, recipient)
		return nil
	}
	for _, m := range lines {
		if m["session"] != session || session == "" || m["proto"] != "policy" || m["peer"] == nil {
			t.Errorf("log line without the session's fields: %v", m)
		}
	}
	if m := find("info", "full@example.org"); m != nil && m["action"] != "552 5.2.2 Mailbox full" {
		t.Errorf("info line: %v", m)
	}
	if m := find("debug", "bob@example.org"); m != nil && m["action"] != "DUNNO" {
		t.Errorf("debug line: %v", m)
	}
	if m := find("error", "down@example.org"); m != nil && (m["action"] != string(Unavailable) || !strings.Contains(m["error"].(string), "directory down")) {
		t.Errorf("error line: %v", m)
	}
	if m := find("warn", ""); m != nil && !strings.Contains(m["error"].(string), "no '='") {
		t.Errorf("warn line: %v", m)
	}
}
