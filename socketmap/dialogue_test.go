package socketmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Dialogue files (testdata/dialogues/*.txt) script a connection:
//
//	# comment
//	@opt maxrequest=64        server settings (see applyOpt)
//	@transports pipe,unix     where to run (default pipe, unix and a
//	                          byte-at-a-time pipe)
//	C: mailbox bob@x          the client sends the text as a netstring
//	C! "go quoted"            the client sends raw bytes
//	S: OK value               the next reply's payload is exactly this
//	S~ regexp                 the next reply's payload matches entirely
//	CLOSED                    the server closes the connection, sending
//	                          nothing more
//	N: n                      the handler was called n times so far
//
// Consecutive C lines go out in one write. On failure the transcript is
// printed.

type step struct {
	kind, arg string
	line      int
}

type dialogue struct {
	opts       []string
	transports []string
	steps      []step
}

func parseDialogue(t *testing.T, path string) *dialogue {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := &dialogue{transports: []string{"pipe", "unix", "bytewise"}}
	for i, l := range strings.Split(string(data), "\n") {
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "@opt "):
			d.opts = append(d.opts, strings.Fields(l[5:])...)
		case strings.HasPrefix(l, "@transports "):
			d.transports = strings.Split(strings.TrimSpace(l[12:]), ",")
		case l == "CLOSED":
			d.steps = append(d.steps, step{l, "", i + 1})
		case len(l) >= 3 && l[2] == ' ':
			kind, arg := l[:2], l[3:]
			switch kind {
			case "C:", "S:", "S~", "N:":
			case "C!":
				u, err := strconv.Unquote(arg)
				if err != nil {
					t.Fatalf("%s:%d: %v", path, i+1, err)
				}
				arg = u
			default:
				t.Fatalf("%s:%d: unknown step %q", path, i+1, l)
			}
			d.steps = append(d.steps, step{kind, arg, i + 1})
		default:
			t.Fatalf("%s:%d: cannot parse %q", path, i+1, l)
		}
	}
	return d
}

func applyOpt(t *testing.T, s *Server, opt string) {
	k, v, _ := strings.Cut(opt, "=")
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("@opt %q: %v", opt, err)
	}
	switch k {
	case "maxrequest":
		s.MaxRequestBytes = n
	case "maxreply":
		s.MaxReplyBytes = n
	case "idletimeout":
		s.IdleTimeout = time.Duration(n) * time.Millisecond
	case "readtimeout":
		s.ReadTimeout = time.Duration(n) * time.Millisecond
	case "handlertimeout":
		s.HandlerTimeout = time.Duration(n) * time.Millisecond
	default:
		t.Fatalf("unknown @opt %q", opt)
	}
}

func TestDialogues(t *testing.T) {
	files, err := filepath.Glob("testdata/dialogues/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dialogues: %v", err)
	}
	for _, f := range files {
		d := parseDialogue(t, f)
		for _, tr := range d.transports {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".txt")+"/"+tr, func(t *testing.T) {
				t.Parallel()
				runDialogue(t, d, tr)
			})
		}
	}
}

// startServer serves s on the transport and returns a connected client.
func startServer(t *testing.T, s *Server, transport string) net.Conn {
	t.Helper()
	var client net.Conn
	switch transport {
	case "pipe", "bytewise":
		c1, c2 := net.Pipe()
		s.ServeConn(c1)
		client = c2
	case "unix", "tcp":
		network, addr := "tcp", "127.0.0.1:0"
		if transport == "unix" {
			network, addr = "unix", filepath.Join(t.TempDir(), "socketmap.sock")
		}
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(l)
		client, err = net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown transport %q", transport)
	}
	t.Cleanup(func() {
		client.Close()
		s.Close()
	})
	return client
}

func runDialogue(t *testing.T, d *dialogue, transport string) {
	h := newFakeHandler()
	log, _ := testLogger(t)
	s := &Server{Handler: h, Logger: log}
	for _, o := range d.opts {
		applyOpt(t, s, o)
	}
	client := startServer(t, s, transport)
	br := bufio.NewReader(client)
	var transcript strings.Builder
	fail := func(st step, format string, args ...any) {
		t.Helper()
		t.Fatalf("line %d: %s\ntranscript:\n%s", st.line, fmt.Sprintf(format, args...), transcript.String())
	}
	writeDone := make(chan struct{})
	close(writeDone)
	var batch []byte
	flush := func() {
		if len(batch) == 0 {
			return
		}
		data, prev, done := batch, writeDone, make(chan struct{})
		batch, writeDone = nil, done
		go func() {
			defer close(done)
			<-prev
			client.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if transport == "bytewise" {
				for i := range data {
					if _, err := client.Write(data[i : i+1]); err != nil {
						return
					}
				}
				return
			}
			client.Write(data)
		}()
	}
	readReply := func(st step) (string, bool) {
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := ReadNetstring(br, -1)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", false
			}
			fail(st, "reading the reply: %v", err)
		}
		transcript.WriteString("S: " + strconv.Quote(string(b)) + "\n")
		return string(b), true
	}
	for _, st := range d.steps {
		switch st.kind {
		case "C:":
			batch = AppendNetstring(batch, []byte(st.arg))
			transcript.WriteString("C: " + st.arg + "\n")
			continue
		case "C!":
			batch = append(batch, st.arg...)
			transcript.WriteString("C! " + strconv.Quote(st.arg) + "\n")
			continue
		}
		flush()
		switch st.kind {
		case "S:":
			if r, ok := readReply(st); !ok || r != st.arg {
				fail(st, "want %q, got %q (open=%v)", st.arg, r, ok)
			}
		case "S~":
			re := regexp.MustCompile("^(?s:" + st.arg + ")$")
			if r, ok := readReply(st); !ok || !re.MatchString(r) {
				fail(st, "want /%s/, got %.200q (open=%v)", st.arg, r, ok)
			}
		case "CLOSED":
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			rest, err := io.ReadAll(br)
			if len(rest) != 0 || (err != nil && !isClosedErr(err)) {
				fail(st, "want the connection closed, got %q, %v", rest, err)
			}
			transcript.WriteString("CLOSED\n")
		case "N:":
			n, _ := strconv.Atoi(st.arg)
			if got := h.count(); got != n {
				fail(st, "handler called %d times, want %d", got, n)
			}
		}
	}
	flush()
}

// isClosedErr: reading from a connection the server closed ends with EOF,
// or with ECONNRESET when it closed with our bytes unread.
func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}
