package reqserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/wiretest"
	"github.com/rs/zerolog"
)

var errClosed = errors.New("toy: server closed")

// lineSession is a toy protocol: a request is a line, the reply is the
// line in upper case. "panic" panics, "wait" signals entered and blocks
// until it can receive from gate, a line over 16 bytes is a bad read
// answered "BAD".
type lineSession struct {
	c       *Conn
	entered chan<- struct{}
	gate    <-chan struct{}
	req     string
}

var errLong = errors.New("toy: line too long")

func (l *lineSession) ReadRequest() error {
	line, err := l.c.Reader().ReadString('\n')
	if err != nil {
		return err
	}
	if len(line) > 16 {
		return errLong
	}
	l.req = strings.TrimSuffix(line, "\n")
	return nil
}

func (l *lineSession) Answer(int) error {
	switch l.req {
	case "panic":
		panic("toy panic")
	case "wait":
		l.entered <- struct{}{}
		<-l.gate
	}
	return l.c.Write([]byte(strings.ToUpper(l.req) + "\n"))
}

func (l *lineSession) ReadFailed(err error) {
	l.c.Log().Warn().Err(err).Msg("bad toy request")
	l.c.Write([]byte("BAD\n"))
}

func (l *lineSession) Abort() { l.c.Write([]byte("ABORTED\n")) }

// toyConfig logs to t.Log and to the returned buffer, one line at a time
// (connections log concurrently). The tests read the buffer once Close or
// Shutdown has returned, when every connection has logged its last line.
func toyConfig(t *testing.T, entered, gate chan struct{}) (Config, *bytes.Buffer) {
	buf := &bytes.Buffer{}
	log := zerolog.New(zerolog.SyncWriter(io.MultiWriter(buf, zerolog.NewTestWriter(t)))).Level(zerolog.TraceLevel)
	return Config{
		Proto:          "toy",
		Logger:         &log,
		MaxConnections: 10,
		IdleTimeout:    time.Minute,
		ReadTimeout:    time.Minute,
		Closed:         errClosed,
		NewSession:     func(c *Conn) Session { return &lineSession{c: c, entered: entered, gate: gate} },
	}, buf
}

// ask sends a line and returns the reply line, bounded in time.
func ask(t *testing.T, c net.Conn, br *bufio.Reader, line string) (string, error) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	s, err := br.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func TestDialogue(t *testing.T) {
	cfg, buf := toyConfig(t, nil, nil)
	var s Server
	defer s.Close()
	a, b := net.Pipe()
	defer b.Close()
	s.ServeConn(a, cfg)
	br := bufio.NewReader(b)
	for _, q := range []string{"one", "two"} {
		if r, err := ask(t, b, br, q); err != nil || r != strings.ToUpper(q) {
			t.Fatalf("%s: %q, %v", q, r, err)
		}
	}
	if r, err := ask(t, b, br, "a line far too long"); err != nil || r != "BAD" {
		t.Fatalf("long line: %q, %v", r, err)
	}
	wiretest.ExpectClosed(t, b, br)
	s.Close()
	for _, want := range []string{`"proto":"toy"`, `"session":`, "bad toy request", `"requests":2`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("logs lack %s", want)
		}
	}
}

func TestPanicAborts(t *testing.T) {
	cfg, buf := toyConfig(t, nil, nil)
	var s Server
	defer s.Close()
	a, b := net.Pipe()
	defer b.Close()
	s.ServeConn(a, cfg)
	br := bufio.NewReader(b)
	if r, err := ask(t, b, br, "panic"); err != nil || r != "ABORTED" {
		t.Fatalf("panic: %q, %v", r, err)
	}
	wiretest.ExpectClosed(t, b, br)
	s.Close()
	if !strings.Contains(buf.String(), "toy handler panicked") {
		t.Error("the panic was not logged")
	}
}

func TestMaxConnections(t *testing.T) {
	cfg, buf := toyConfig(t, nil, nil)
	cfg.MaxConnections = 1
	var s Server
	defer s.Close()
	a1, a2 := net.Pipe()
	defer a2.Close()
	s.ServeConn(a1, cfg)
	b1, b2 := net.Pipe()
	defer b2.Close()
	s.ServeConn(b1, cfg)
	wiretest.ExpectClosed(t, b2, bufio.NewReader(b2))
	if n := s.Conns(); n != 1 {
		t.Fatalf("Conns = %d, want 1", n)
	}
	if r, err := ask(t, a2, bufio.NewReader(a2), "x"); err != nil || r != "X" {
		t.Fatalf("first connection: %q, %v", r, err)
	}
	a2.Close()
	for deadline := time.Now().Add(5 * time.Second); s.Conns() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection is still counted")
		}
	}
	s.Close()
	if !strings.Contains(buf.String(), "too many connections") {
		t.Error("the refused connection was not logged")
	}
}

// TestShutdown: the idle connection is closed at once, the busy one gets
// its reply and is closed after it, later connections are refused, and
// the handler context ends when Shutdown is done.
func TestShutdown(t *testing.T) {
	entered, gate := make(chan struct{}, 1), make(chan struct{})
	cfg, _ := toyConfig(t, entered, gate)
	var s Server
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l, cfg) }()

	idle, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleBR := bufio.NewReader(idle)
	if r, err := ask(t, idle, idleBR, "hi"); err != nil || r != "HI" {
		t.Fatalf("idle connection: %q, %v", r, err)
	}
	busy, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "wait\n")
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the busy request was not read")
	}

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	wiretest.ExpectClosed(t, idle, idleBR)
	if err := <-served; !errors.Is(err, errClosed) {
		t.Errorf("Serve returned %v, want %v", err, errClosed)
	}
	if s.Context().Err() != nil {
		t.Error("the handler context ended while a request was in flight")
	}
	close(gate)
	busyBR := bufio.NewReader(busy)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	if r, err := busyBR.ReadString('\n'); err != nil || r != "WAIT\n" {
		t.Fatalf("busy reply: %q, %v", r, err)
	}
	wiretest.ExpectClosed(t, busy, busyBR)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if s.Context().Err() == nil {
		t.Error("the handler context outlived Shutdown")
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	s.ServeConn(c1, cfg)
	wiretest.ExpectClosed(t, c2, bufio.NewReader(c2))
}

func TestShutdownDeadline(t *testing.T) {
	entered, gate := make(chan struct{}, 1), make(chan struct{})
	cfg, _ := toyConfig(t, entered, gate)
	var s Server
	a, b := net.Pipe()
	defer b.Close()
	s.ServeConn(a, cfg)
	b.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(b, "wait\n")
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the request was not read")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Shutdown must cancel the handler context, close the connection
	// and return ctx's error. The toy session ignores its context, so
	// the gate opens once the context is cancelled.
	go func() { <-s.Context().Done(); close(gate) }()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	cfg, buf := toyConfig(t, nil, nil)
	cfg.IdleTimeout = 50 * time.Millisecond
	var s Server
	defer s.Close()
	a, b := net.Pipe()
	defer b.Close()
	s.ServeConn(a, cfg)
	wiretest.ExpectClosed(t, b, bufio.NewReader(b))
	s.Close()
	if !strings.Contains(buf.String(), "idle timeout") {
		t.Error("the idle timeout was not logged")
	}
}

func TestUnusable(t *testing.T) {
	cfg, buf := toyConfig(t, nil, nil)
	cfg.Unusable = errors.New("toy: no handler")
	var s Server
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l, cfg); err != cfg.Unusable {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the listener is still open: %v", err)
	}
	a, b := net.Pipe()
	defer b.Close()
	s.ServeConn(a, cfg)
	wiretest.ExpectClosed(t, b, bufio.NewReader(b))
	if !strings.Contains(buf.String(), "toy: no handler") {
		t.Error("the refusal was not logged")
	}
}

func TestServeAfterClose(t *testing.T) {
	cfg, _ := toyConfig(t, nil, nil)
	var s Server
	s.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l, cfg); !errors.Is(err, errClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestOr(t *testing.T) {
	for _, tc := range []struct{ v, def, want int }{{0, 5, 5}, {-1, 5, 5}, {3, 5, 3}} {
		if got := Or(tc.v, tc.def); got != tc.want {
			t.Errorf("Or(%d, %d) = %d, want %d", tc.v, tc.def, got, tc.want)
		}
	}
	if got := Or(0, time.Second); got != time.Second {
		t.Errorf("Or(0, 1s) = %v", got)
	}
}
