package protocol

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzConn is a net.Conn whose input is a fixed byte string and whose
// output is recorded.
type fuzzConn struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return pipeAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "@", Net: "unix"} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzSession runs a whole session on arbitrary client input, in both
// dialects and both bare-line-ending policies, and checks that the server
// neither panics nor hangs, that every reply line is well formed, and that
// no delivered message text contains a bare CR or LF.
func FuzzSession(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/dialogues/*.txt")
	for _, path := range seeds {
		data, _ := os.ReadFile(path)
		var in strings.Builder
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "C: ") || l == "C:" {
				in.WriteString(strings.TrimPrefix(strings.TrimPrefix(l, "C:"), " ") + "\r\n")
			}
			if raw, err := strconv.Unquote(strings.TrimPrefix(l, "C! ")); strings.HasPrefix(l, "C! ") && err == nil {
				in.WriteString(raw)
			}
		}
		f.Add([]byte(in.String()), uint8(0))
		f.Add([]byte(in.String()), uint8(3))
		f.Add([]byte(in.String()), uint8(5))
	}
	f.Add([]byte("LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nBDAT 3 LAST\r\nabc"), uint8(1))
	f.Fuzz(func(t *testing.T, input []byte, mode uint8) {
		b := newFakeBackend()
		s := &Server{Hostname: "mx.test", Backend: b, AuthFailureDelay: -1, Auth: testAuthenticator(),
			MaxErrors: 1000, TrustedNetworks: nil}
		if mode&1 != 0 {
			s.Protocol = LMTP
		}
		if mode&2 != 0 {
			s.BareLineEndings = NormalizeBareLineEndings
		}
		if mode&4 != 0 {
			s.MaxMessageBytes = 64 // BDAT chunks past the limit and the drain bound
		}
		s.init()
		fc := &fuzzConn{r: bytes.NewReader(input)}
		c := newConn(s, fc)
		if s.admit(c) != "" {
			t.Fatal("not admitted")
		}
		done := make(chan struct{})
		go func() { c.serve(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end on input %q", input)
		}
		out := fc.out.String()
		if strings.Contains(out, "Internal error, closing connection") {
			t.Fatalf("session panicked on input %q:\n%s", input, out)
		}
		for _, l := range strings.SplitAfter(out, "\r\n") {
			if l == "" {
				continue
			}
			if !strings.HasSuffix(l, "\r\n") || len(l) < 6 || l[0] < '2' || l[0] > '5' ||
				l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' || (l[3] != ' ' && l[3] != '-') {
				t.Fatalf("malformed reply line %q for input %q", l, input)
			}
			if strings.ContainsAny(l[:len(l)-2], "\r\n") {
				t.Fatalf("reply line with embedded CR/LF %q", l)
			}
		}
		for _, m := range b.messages() {
			text := string(m.Body)
			text = strings.ReplaceAll(text, "\r\n", "")
			// DATA and BDAT text alike; only BINARYMIME is exempt.
			if strings.ContainsAny(text, "\r\n") && m.Params.Body != BodyBinaryMIME {
				t.Fatalf("delivered text with a bare CR or LF: %q", m.Body)
			}
			if s.MaxMessageBytes > 0 && int64(len(m.Body)) > s.MaxMessageBytes {
				t.Fatalf("delivered %d bytes over the limit %d", len(m.Body), s.MaxMessageBytes)
			}
		}
	})
}

var _ io.Reader = (*fuzzConn)(nil)
