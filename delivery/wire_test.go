package delivery

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// wireClient is the client end of an LMTP dialogue with a real
// protocol.Server in front of a Router, over a unix socket.
type wireClient struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// startWire serves r on a unix socket in a temporary directory and
// returns a connected client that has sent LHLO.
func startWire(t testing.TB, r *Router) *wireClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: tWriter{t}, NoColor: true})
	srv := &protocol.Server{Protocol: protocol.LMTP, Hostname: "lda.example.test", Backend: r, Logger: &log}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := &wireClient{t: t, c: c, br: bufio.NewReader(c)}
	w.expect("220")
	w.send("LHLO client.example.test")
	w.expect("250")
	return w
}

func (w *wireClient) send(s string) {
	w.t.Helper()
	w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.c.Write([]byte(s + "\r\n")); err != nil {
		w.t.Fatalf("C: %q: %v", s, err)
	}
}

// expect reads one (possibly multi-line) reply and checks that its last
// line starts with prefix.
func (w *wireClient) expect(prefix string) string {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := w.br.ReadString('\n')
		if err != nil {
			w.t.Fatalf("S: %q: %v (want %s)", line, err, prefix)
		}
		if len(line) >= 4 && line[3] == '-' {
			continue
		}
		if !strings.HasPrefix(line, prefix) {
			w.t.Fatalf("S: %q, want %s", line, prefix)
		}
		return line
	}
}

// deliver sends one message for the recipients; text is the DATA content
// before dot-stuffing, with CRLF line ends. It checks a 250 per recipient.
func (w *wireClient) deliver(from string, rcpts []string, text string) {
	w.t.Helper()
	w.send("MAIL FROM:<" + from + ">")
	w.expect("250")
	for _, r := range rcpts {
		w.send("RCPT TO:<" + r + ">")
		w.expect("250")
	}
	w.send("DATA")
	w.expect("354")
	var b strings.Builder
	for _, l := range strings.SplitAfter(text, "\r\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
	}
	w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.c.Write([]byte(b.String() + ".\r\n")); err != nil {
		w.t.Fatal(err)
	}
	for range rcpts {
		w.expect("250")
	}
}

// stripTrace removes the fields lmtpd adds on top of a stored message
// (Return-Path, Delivered-To, the server's Received), failing if they are
// not there, and returns the rest: what the client sent.
func stripTrace(t testing.TB, stored string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(stored, "Return-Path: <")
	if !ok {
		t.Fatalf("no Return-Path on top:\n%q", stored)
	}
	_, rest, _ = strings.Cut(rest, "\n")
	if strings.HasPrefix(rest, "Delivered-To: ") {
		_, rest, _ = strings.Cut(rest, "\n")
	}
	if !strings.HasPrefix(rest, "Received: from client.example.test") {
		t.Fatalf("no Received field of ours:\n%q", stored)
	}
	_, rest, _ = strings.Cut(rest, "\n")
	for strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "\t") {
		_, rest, _ = strings.Cut(rest, "\n")
	}
	return rest
}

// TestWireByteExact: whatever shape the message has, the stored copy is
// what the client sent after dot-unstuffing and CRLF to LF, below the
// fields lmtpd adds. A header-only message once got an empty line added.
func TestWireByteExact(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"header only", "Subject: a\r\nFrom: b@example.test\r\n", "Subject: a\nFrom: b@example.test\n"},
		{"header only, folded last field", "Subject: a\r\n  continued\r\n", "Subject: a\n  continued\n"},
		{"header and empty body", "Subject: a\r\n\r\n", "Subject: a\n\n"},
		{"header, empty body of empty lines", "Subject: a\r\n\r\n\r\n\r\n", "Subject: a\n\n\n\n"},
		{"header and body", "Subject: a\r\n\r\nbody\r\n", "Subject: a\n\nbody\n"},
		{"dot-stuffed body", "Subject: a\r\n\r\n.x\r\n..\r\n", "Subject: a\n\n.x\n..\n"},
		{"body line right after the fields", "Subject: a\r\nnot a field\r\n", "Subject: a\nnot a field\n"},
		{"no header", "\r\nbody\r\n", "\nbody\n"},
		{"body only", "just text\r\n", "just text\n"},
		{"empty message", "", ""},
	}
	root := t.TempDir()
	r := newRouter(t, testConfig(root), Options{})
	w := startWire(t, r)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(maildirFiles(t, root, "example.org/bob"))
			w.deliver("s@example.test", []string{"bob@example.org"}, tt.text)
			files := maildirFiles(t, root, "example.org/bob")
			if len(files) != before+1 {
				t.Fatalf("%d files, want %d", len(files), before+1)
			}
			var got string
			for _, f := range files {
				// The newest is the one whose rest matches; compare all to
				// stay independent of file name order.
				if rest := stripTrace(t, f); rest == tt.want {
					got = rest
				}
			}
			if got != tt.want {
				t.Errorf("no stored copy is %q; stored:\n%q", tt.want, files)
			}
			os.RemoveAll(filepath.Join(root, "example.org/bob/new"))
			os.Mkdir(filepath.Join(root, "example.org/bob/new"), 0o700)
		})
	}
}

// TestWireClientAddressUnix: a client on a unix socket has no network
// address, so {client_address} and CLIENT_ADDRESS are empty (they were
// "@").
func TestWireClientAddressUnix(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(t.TempDir(), "out")
	cfg := testConfig(root)
	cfg.Domains = append(cfg.Domains, Domain{
		Name:  "cmd.example",
		Users: []User{{Name: "u", Route: sh(`printf 'arg=[%s] env=[%s]\n' "$2" "$CLIENT_ADDRESS" > "$1"`, false, out, "{client_address}")}},
	})
	r := newRouter(t, cfg, Options{})
	w := startWire(t, r)
	w.deliver("s@example.test", []string{"u@cmd.example"}, "Subject: x\r\n\r\nhi\r\n")
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "arg=[] env=[]\n" {
		t.Errorf("command saw %q, want empty client address", got)
	}
}

func TestClientIP(t *testing.T) {
	tests := []struct {
		a    net.Addr
		want string
	}{
		{nil, ""},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 25}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25}, "2001:db8::1"},
		{&net.TCPAddr{}, ""},
		{&net.UnixAddr{Name: "@", Net: "unix"}, ""},
		{&net.UnixAddr{Name: "", Net: "unix"}, ""},
		{&net.UnixAddr{Name: "/run/lmtp.sock", Net: "unix"}, ""},
		{fakeAddr("198.51.100.1:4711"), "198.51.100.1"},
		{fakeAddr("[2001:db8::2]:25"), "2001:db8::2"},
		{fakeAddr("pipe"), ""},
	}
	for _, tt := range tests {
		if got := clientIP(tt.a); got != tt.want {
			t.Errorf("clientIP(%v) = %q, want %q", tt.a, got, tt.want)
		}
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "fake" }
func (a fakeAddr) String() string  { return string(a) }

// TestWireDedup: with the journal on, a transaction resent on a new
// connection (another Received field of ours) is a resend and is not
// stored again; a message with the same Message-ID and sender but another
// text is stored. It used to be answered 250 and dropped.
func TestWireDedup(t *testing.T) {
	root := t.TempDir()
	cfg := dedupConfig(root, filepath.Join(t.TempDir(), "journal"))
	r := newRouter(t, cfg, Options{})
	msg := "Message-ID: <m1@example.test>\r\nSubject: first\r\n\r\nhello\r\n"
	other := "Message-ID: <m1@example.test>\r\nSubject: first\r\n\r\nhello, changed\r\n"
	startWire(t, r).deliver("s@example.test", []string{"bob@example.org"}, msg)
	startWire(t, r).deliver("s@example.test", []string{"bob@example.org"}, msg)
	if n := len(maildirFiles(t, root, "example.org/bob")); n != 1 {
		t.Fatalf("after a resend bob has %d copies, want 1", n)
	}
	startWire(t, r).deliver("s@example.test", []string{"bob@example.org"}, other)
	files := maildirFiles(t, root, "example.org/bob")
	if len(files) != 2 {
		t.Fatalf("a different message with the same Message-ID: bob has %d copies, want 2", len(files))
	}
	found := false
	for _, f := range files {
		found = found || strings.HasSuffix(f, "\n\nhello, changed\n")
	}
	if !found {
		t.Errorf("the changed message is not stored: %q", files)
	}
}

// TestWirePipeLimit: 30 LMTP sessions at once, each delivering to one pipe
// route limited to 4 processes: all are delivered, and no more than 4
// commands ever ran together (they count themselves in a directory).
// Bounded in count; it asserts counts, not time.
func TestWirePipeLimit(t *testing.T) {
	const sessions, limit = 30, 4
	root := t.TempDir()
	running := t.TempDir()
	peak := filepath.Join(t.TempDir(), "peak")
	cfg := testConfig(root)
	rt := sh(`touch "$1/$$"; ls "$1" | wc -l >> "$2"; sleep 0.1; rm -f "$1/$$"; cat > /dev/null`, false, running, peak)
	rt.Pipe.MaxProcesses = limit
	cfg.Domains = append(cfg.Domains, Domain{Name: "cmd.example", Route: rt, Users: []User{{Name: "u"}}})
	r := newRouter(t, cfg, Options{})
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	srv := &protocol.Server{Protocol: protocol.LMTP, Hostname: "lda.example.test", Backend: r, Logger: &log}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	errs := make(chan error, sessions)
	for range sessions {
		go func() { errs <- lmtpOnce(sock, "u@cmd.example") }()
	}
	for range sessions {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	b, err := os.ReadFile(peak)
	if err != nil {
		t.Fatal(err)
	}
	counts := strings.Fields(string(b))
	if len(counts) != sessions {
		t.Errorf("%d commands ran for %d sessions", len(counts), sessions)
	}
	for _, c := range counts {
		if n, err := strconv.Atoi(c); err != nil || n > limit {
			t.Errorf("%s commands ran at once, limit %d", c, limit)
		}
	}
}

// lmtpOnce delivers one small message to rcpt over a new connection and
// returns an error unless every reply is as expected. Safe to call from
// several goroutines.
func lmtpOnce(sock, rcpt string) error {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	expect := func(code string) error {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", code, err)
			}
			if len(line) >= 4 && line[3] == '-' {
				continue
			}
			if !strings.HasPrefix(line, code) {
				return fmt.Errorf("got %q, want %s", strings.TrimSpace(line), code)
			}
			return nil
		}
	}
	steps := []struct{ send, want string }{
		{"", "220"}, {"LHLO c.example.test", "250"}, {"MAIL FROM:<s@example.test>", "250"},
		{"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"}, {"Subject: x\r\n\r\nhi\r\n.", "250"}, {"QUIT", "221"},
	}
	for _, s := range steps {
		if s.send != "" {
			if _, err := c.Write([]byte(s.send + "\r\n")); err != nil {
				return err
			}
		}
		if err := expect(s.want); err != nil {
			return fmt.Errorf("after %q: %w", s.send, err)
		}
	}
	return nil
}
