package socketmap

import (
	"bufio"
	"bytes"
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

// lookup sends one request and returns the reply's payload.
func lookup(t *testing.T, c net.Conn, br *bufio.Reader, req string) (string, error) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(AppendNetstring(nil, []byte(req))); err != nil {
		return "", err
	}
	b, err := ReadNetstring(br, -1)
	return string(b), err
}

// gate blocks lookups of the key "gate" until released.
type gate struct {
	entered  chan struct{}
	release  chan struct{}
	ctxEnded chan error
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}, 4), release: make(chan struct{}), ctxEnded: make(chan error, 4)}
}

func (g *gate) Lookup(ctx context.Context, name, key string) (string, error) {
	if key != "gate" {
		return "", ErrNotFound
	}
	g.entered <- struct{}{}
	select {
	case <-g.release:
		return "opened", nil
	case <-ctx.Done():
		g.ctxEnded <- ctx.Err()
		return "", ctx.Err()
	}
}

func TestShutdownGraceful(t *testing.T) {
	g := newGate()
	log, _ := wiretest.Logger(t)
	s := &Server{Handler: g, Logger: log}
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	idle, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleBR := bufio.NewReader(idle)
	if r, err := lookup(t, idle, idleBR, "m x"); err != nil || r != "NOTFOUND " {
		t.Fatalf("idle connection: %q, %v", r, err)
	}
	busy, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyBR := bufio.NewReader(busy)
	reply := make(chan string, 1)
	go func() {
		r, err := lookup(t, busy, busyBR, "m gate")
		if err != nil {
			r = err.Error()
		}
		reply <- r
	}()
	<-g.entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	wiretest.ExpectClosed(t, idle, idleBR)
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	close(g.release)
	if r := <-reply; r != "OK opened" {
		t.Fatalf("lookup in flight got %q", r)
	}
	wiretest.ExpectClosed(t, busy, busyBR)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	g := newGate()
	s := &Server{Handler: g, HandlerTimeout: time.Hour}
	c1, c2 := net.Pipe()
	defer c2.Close()
	s.ServeConn(c1)
	go c2.Write(AppendNetstring(nil, []byte("m gate")))
	<-g.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	select {
	case err := <-g.ctxEnded:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler context: %v", err)
		}
	default:
		t.Fatal("the handler's context did not end")
	}
}

func TestMaxConnections(t *testing.T) {
	s := &Server{Handler: newFakeHandler(), MaxConnections: 1}
	defer s.Close()
	a1, a2 := net.Pipe()
	defer a2.Close()
	s.ServeConn(a1)
	b1, b2 := net.Pipe()
	defer b2.Close()
	s.ServeConn(b1)
	wiretest.ExpectClosed(t, b2, bufio.NewReader(b2))
	if r, err := lookup(t, a2, bufio.NewReader(a2), "domain example.org"); err != nil || r != "OK example.org" {
		t.Fatalf("first connection: %q, %v", r, err)
	}
}

func TestLogs(t *testing.T) {
	log, buf := wiretest.Logger(t)
	s := &Server{Handler: newFakeHandler(), Logger: log}
	c := wiretest.Connect(t, s, "unix")
	br := bufio.NewReader(c)
	for _, req := range []string{"mailbox bob@example.org", "mailbox down@example.org", "mailbox temp@example.org"} {
		if _, err := lookup(t, c, br, req); err != nil {
			t.Fatal(err)
		}
	}
	c.Write([]byte("3:ab"))
	c.(*net.UnixConn).CloseWrite()
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
	levels := map[string]string{}
	for _, m := range lines {
		if m["session"] != session || session == "" || m["proto"] != "socketmap" || m["peer"] == nil {
			t.Errorf("log line without the session's fields: %v", m)
		}
		if k, ok := m["key"].(string); ok && m["message"] == "socketmap lookup" {
			levels[k] = m["level"].(string) + " " + m["status"].(string)
			if k == "down@example.org" && !strings.Contains(m["error"].(string), "connection refused") {
				t.Errorf("the cause of a TEMP is not logged: %v", m)
			}
		}
	}
	for k, want := range map[string]string{
		"bob@example.org":  "debug OK",
		"down@example.org": "error TEMP",
		"temp@example.org": "warn TEMP",
	} {
		if levels[k] != want {
			t.Errorf("lookup of %s logged as %q, want %q", k, levels[k], want)
		}
	}
	if !strings.Contains(buf.String(), `"level":"warn"`) || !strings.Contains(buf.String(), "end of input inside a netstring") {
		t.Error("the truncated request was not logged as a warning")
	}
}

// FuzzSession feeds arbitrary bytes to a server: it never panics, every
// reply is a netstring with a known status, at most one per request.
func FuzzSession(f *testing.F) {
	f.Add([]byte("23:mailbox bob@example.org,18:domain example.org,"))
	f.Add([]byte("24:mailbox down@example.org,7:mailbox,"))
	f.Add([]byte("023:x"))
	f.Add([]byte("0:,0:,"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newFakeHandler()
		s := &Server{Handler: HandlerFunc(func(ctx context.Context, name, key string) (string, error) {
			if strings.HasPrefix(key, "slow@") || strings.HasPrefix(key, "panic@") {
				return "", ErrNotFound
			}
			return h.Lookup(ctx, name, key)
		}), MaxRequestBytes: 64}
		defer s.Close()
		out := wiretest.Feed(t, s.ServeConn, data)
		br := bufio.NewReader(bytes.NewReader(out))
		replies := 0
		for {
			b, err := ReadNetstring(br, DefaultMaxReplyBytes)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("reply stream %q: %v", out, err)
			}
			status, _, ok := strings.Cut(string(b), " ")
			switch Status(status) {
			case StatusOK, StatusNotFound, StatusTemp, StatusTimeout, StatusPerm:
			default:
				ok = false
			}
			if !ok {
				t.Fatalf("reply %q", b)
			}
			replies++
			if replies > len(data)/3+1 {
				t.Fatalf("%d replies to %d bytes", replies, len(data))
			}
		}
	})
}
