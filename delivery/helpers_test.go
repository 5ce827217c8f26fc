package delivery

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-message/textproto"
	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// statuses records StatusSetter calls; only the first per index counts.
type statuses struct {
	mu   sync.Mutex
	errs map[int]error
	seq  []int
}

func (s *statuses) Set(i int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errs == nil {
		s.errs = map[int]error{}
	}
	if _, ok := s.errs[i]; ok {
		return
	}
	s.errs[i] = err
	s.seq = append(s.seq, i)
}

func (s *statuses) get(i int) (error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	err, ok := s.errs[i]
	return err, ok
}

// testCtx returns a context whose zerolog logger writes to t.Log and to
// buf, if not nil.
func testCtx(t testing.TB, buf *bytes.Buffer) context.Context {
	var w io.Writer = zerolog.ConsoleWriter{Out: tWriter{t}, NoColor: true}
	if buf != nil {
		w = io.MultiWriter(w, &lockedBuffer{b: buf})
	}
	l := zerolog.New(w).Level(zerolog.DebugLevel)
	return l.WithContext(context.Background())
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func addr(s string) protocol.Address {
	if s == "" {
		return protocol.Address{}
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return protocol.Address{LocalPart: s}
	}
	return protocol.Address{LocalPart: s[:i], Domain: s[i+1:]}
}

func conn(p protocol.Protocol) *protocol.ConnState {
	return &protocol.ConnState{
		ID: "S1", Protocol: p, Hostname: "mx.example.org",
		RemoteAddr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4711},
	}
}

// message builds a protocol.Message from CRLF text (header and body).
func message(t testing.TB, from string, rcpts []string, text string) *protocol.Message {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(text))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	m := &protocol.Message{ID: "S1.1", Conn: conn(protocol.LMTP), From: addr(from), Params: &protocol.MailParams{}, Body: br}
	m.SetHeader(h)
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, &protocol.Recipient{Address: addr(r)})
	}
	return m
}

// maildirFiles returns the contents of the files in root/rel/new, and
// fails if rel/tmp has anything.
func maildirFiles(t testing.TB, root, rel string) []string {
	t.Helper()
	if ents, _ := os.ReadDir(filepath.Join(root, rel, "tmp")); len(ents) != 0 {
		t.Errorf("%s/tmp has litter: %d files", rel, len(ents))
	}
	ents, _ := os.ReadDir(filepath.Join(root, rel, "new"))
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(root, rel, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func checkCode(t testing.TB, err error, code int, ec protocol.EnhancedCode) {
	t.Helper()
	pe := protocol.AsError(err)
	if pe == nil {
		t.Errorf("error %v is not a *protocol.Error (want %d %v)", err, code, ec)
		return
	}
	if pe.Code != code || pe.EnhancedCode != ec {
		t.Errorf("reply %d %v, want %d %v (%v)", pe.Code, pe.EnhancedCode, code, ec, err)
	}
}
