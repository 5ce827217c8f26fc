package protocol

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Dialogue files (testdata/dialogues/*.txt) script a session line by line:
//
//	# comment
//	@protocol lmtp            dialect (default smtp)
//	@opt maxrcpt=2 normalize  server settings (see applyOpt)
//	@transports pipe,unix     where to run (default pipe,tcp,unix and a
//	                          byte-at-a-time pipe pass)
//	C: text                   the client sends text CRLF; consecutive C
//	                          lines are sent in one write (pipelining)
//	C! "go quoted"            the client sends raw bytes
//	S: text                   the next server line is exactly text
//	S~ regexp                 the next server line matches regexp entirely
//	S? regexp                 the next server line, if the reply goes on
//	                          and it matches (else it is left for the
//	                          next step)
//	S* 250                    a whole (multi-line) reply with code 250
//	CLOSED                    the server closes the connection
//	M: n                      n messages were delivered so far
//	B: "go quoted"            the last delivered message's body
//	H~ regexp                 the last delivered message's header matches
//
// On failure the transcript is printed.

type step struct {
	kind string
	arg  string
	line int
}

type dialogue struct {
	protocol   Protocol
	opts       []string
	transports []string
	steps      []step
}

func parseDialogue(t *testing.T, path string) *dialogue {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := &dialogue{transports: []string{"pipe", "tcp", "unix", "bytewise"}}
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "@protocol "):
			if strings.TrimSpace(l[10:]) == "lmtp" {
				d.protocol = LMTP
			}
		case strings.HasPrefix(l, "@opt "):
			d.opts = append(d.opts, strings.Fields(l[5:])...)
		case strings.HasPrefix(l, "@transports "):
			d.transports = strings.Split(strings.TrimSpace(l[12:]), ",")
		case l == "C:":
			d.steps = append(d.steps, step{"C:", "", i + 1})
		case l == "CLOSED":
			d.steps = append(d.steps, step{"CLOSED", "", i + 1})
		case len(l) >= 3 && (l[2] == ' ' || l[2] == '\t'):
			kind := l[:2]
			switch kind {
			case "C:", "C!", "S:", "S~", "S?", "S*", "M:", "B:", "H~":
			default:
				t.Fatalf("%s:%d: unknown step %q", path, i+1, l)
			}
			arg := l[3:]
			if kind == "C!" || kind == "B:" {
				u, err := strconv.Unquote(arg)
				if err != nil {
					t.Fatalf("%s:%d: %v", path, i+1, err)
				}
				arg = u
			}
			d.steps = append(d.steps, step{kind, arg, i + 1})
		default:
			t.Fatalf("%s:%d: cannot parse %q", path, i+1, l)
		}
	}
	return d
}

// applyOpt sets one server option from a dialogue's @opt line.
func applyOpt(t *testing.T, s *Server, b *fakeBackend, opt string) {
	k, v, _ := strings.Cut(opt, "=")
	n, _ := strconv.Atoi(v)
	switch k {
	case "maxsize":
		s.MaxMessageBytes = int64(n)
	case "maxrcpt":
		s.MaxRecipients = n
	case "maxerrors":
		s.MaxErrors = n
	case "maxrefused":
		s.MaxRefusedRecipients = n
	case "maxline":
		s.MaxLineLength = n
	case "maxtextline":
		s.MaxTextLineLength = n
	case "maxheader":
		s.MaxHeaderBytes = n
	case "maxhops":
		s.MaxReceivedHeaders = n
	case "normalize":
		s.BareLineEndings = NormalizeBareLineEndings
	case "requireauth":
		s.RequireAuth = true
	case "requiretls":
		s.RequireTLS = true
	case "trusted":
		s.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	case "noreceived":
		s.DisableReceived = true
	case "stage":
		b.stage = true
	case "noread":
		b.readBody = false
	case "rereader":
		b.rereader = true
	case "auth":
		s.Auth = testAuthenticator()
		s.AuthFailureDelay = -1
	case "authtls": // PLAIN and LOGIN offered only under TLS
		a := testAuthenticator().(*PasswordAuth)
		a.Insecure = false
		s.Auth = a
		s.AuthFailureDelay = -1
	case "maxauthfailures":
		s.MaxAuthFailures = n
	case "authbudget":
		s.MaxAuthFailuresPerIP = n
	case "authbusy": // every verification slot is taken, and no waiting
		l := NewAuthLimiter(1, -1)
		release, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(release)
		s.AuthLimiter = l
	case "tls":
		s.TLSConfig = testTLSConfig(t)
	case "cmdtimeout":
		s.CommandTimeout = time.Duration(n) * time.Millisecond
	case "datatimeout":
		s.DataTimeout = time.Duration(n) * time.Millisecond
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
			name := strings.TrimSuffix(filepath.Base(f), ".txt") + "/" + tr
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				runDialogue(t, d, tr)
			})
		}
	}
}

// testServer starts a server with a fake backend on the given transport
// and returns a connected client.
func testServer(t *testing.T, proto Protocol, transport string, opts []string) (*Server, *fakeBackend, net.Conn) {
	t.Helper()
	b := newFakeBackend()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	s := &Server{
		Protocol: proto,
		Hostname: "mx.test",
		Software: "lmtpd",
		Backend:  b,
		Logger:   &log,
	}
	for _, o := range opts {
		applyOpt(t, s, b, o)
	}
	var client net.Conn
	switch transport {
	case "pipe", "bytewise":
		c1, c2 := net.Pipe()
		s.ServeConn(c1)
		client = c2
	case "tcp", "unix":
		network, addr := "tcp", "127.0.0.1:0"
		if transport == "unix" {
			network, addr = "unix", filepath.Join(t.TempDir(), "s.sock")
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
	return s, b, client
}

func runDialogue(t *testing.T, d *dialogue, transport string) {
	_, b, client := testServer(t, d.protocol, transport, d.opts)
	var transcript strings.Builder
	fail := func(st step, format string, args ...any) {
		t.Helper()
		t.Fatalf("line %d: %s\ntranscript:\n%s", st.line, fmt.Sprintf(format, args...), transcript.String())
	}
	br := bufio.NewReader(client)
	var pushback *string
	var lastLine string
	readLine := func(st step) (string, bool) {
		if pushback != nil {
			l := *pushback
			pushback = nil
			return l, true
		}
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return "", false
			}
			fail(st, "reading reply: %v", err)
		}
		if !strings.HasSuffix(l, "\r\n") {
			fail(st, "reply line without CRLF: %q", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lastLine = l
		transcript.WriteString("S: " + l + "\n")
		return l, true
	}
	writeDone := make(chan struct{})
	close(writeDone)
	var batch []byte
	flush := func() {
		if len(batch) == 0 {
			return
		}
		data := batch
		batch = nil
		prev := writeDone
		done := make(chan struct{})
		writeDone = done
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
	for _, st := range d.steps {
		switch st.kind {
		case "C:":
			batch = append(batch, st.arg+"\r\n"...)
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
			l, ok := readLine(st)
			if !ok || l != st.arg {
				fail(st, "want %q, got %q (open=%v)", st.arg, l, ok)
			}
		case "S~":
			l, ok := readLine(st)
			re := regexp.MustCompile("^(?:" + st.arg + ")$")
			if !ok || !re.MatchString(l) {
				fail(st, "want /%s/, got %q (open=%v)", st.arg, l, ok)
			}
		case "S?":
			if len(lastLine) < 4 || lastLine[3] != '-' {
				break // the previous line ended the reply
			}
			l, ok := readLine(st)
			re := regexp.MustCompile("^(?:" + st.arg + ")$")
			if ok && !re.MatchString(l) {
				pushback = &l
			}
		case "S*":
			for {
				l, ok := readLine(st)
				if !ok || !strings.HasPrefix(l, st.arg) || len(l) < 4 {
					fail(st, "want a %s reply, got %q (open=%v)", st.arg, l, ok)
				}
				if l[3] == ' ' {
					break
				}
			}
		case "CLOSED":
			if l, ok := readLine(st); ok {
				fail(st, "want the connection closed, got %q", l)
			}
		case "M:":
			want, _ := strconv.Atoi(st.arg)
			if got := len(waitMessages(b, want)); got != want {
				fail(st, "want %d messages delivered, got %d", want, got)
			}
		case "B:", "H~":
			msgs := b.messages()
			if len(msgs) == 0 {
				fail(st, "no message delivered")
			}
			m := msgs[len(msgs)-1]
			if st.kind == "B:" && string(m.Body) != st.arg {
				fail(st, "body: want %q, got %q", st.arg, m.Body)
			}
			if st.kind == "H~" {
				var hb strings.Builder
				for f := m.Header.Fields(); f.Next(); {
					hb.WriteString(f.Key() + ": " + f.Value() + "\n")
				}
				re := regexp.MustCompile("(?s)" + st.arg)
				if !re.MatchString(hb.String()) {
					fail(st, "header does not match /%s/:\n%s", st.arg, hb.String())
				}
			}
		}
	}
	flush()
}

// waitMessages waits briefly for asynchronous deliveries to be recorded.
func waitMessages(b *fakeBackend, want int) []*fakeMessage {
	deadline := time.Now().Add(2 * time.Second)
	for {
		msgs := b.messages()
		if len(msgs) >= want || time.Now().After(deadline) {
			return msgs
		}
		time.Sleep(5 * time.Millisecond)
	}
}
