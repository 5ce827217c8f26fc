package protocol

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/wiretest"
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
// On failure the transcript is printed. internal/wiretest parses and
// plays the files; the S?, S*, M:, B: and H~ steps and CLOSED (the next
// line is the end of the connection) are this package's.

// dialogueSyntax is what protocol's dialogue files add to wiretest's.
var dialogueSyntax = wiretest.Syntax{
	Kinds:      []string{"S?", "S*", "M:", "B:", "H~"},
	Quoted:     []string{"B:"},
	Directives: []string{"protocol"},
	Transports: []string{"pipe", "tcp", "unix", "bytewise"},
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
	wiretest.RunFiles(t, "testdata/dialogues/*.txt", dialogueSyntax, runDialogue)
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
	return s, b, wiretest.Connect(t, s, transport)
}

func runDialogue(t *testing.T, d *wiretest.Script, transport string) {
	proto := SMTP
	if strings.TrimSpace(d.Directives["protocol"]) == "lmtp" {
		proto = LMTP
	}
	_, b, client := testServer(t, proto, transport, d.Opts)
	d.Play(t, client, transport, wiretest.CRLFLines, map[string]wiretest.Hook{
		"S?": func(r *wiretest.Runner, st wiretest.Step) {
			if last := r.Last(); len(last) < 4 || last[3] != '-' {
				return // the previous line ended the reply
			}
			l, ok := r.Read(st)
			re := regexp.MustCompile("^(?:" + st.Arg + ")$")
			if ok && !re.MatchString(l) {
				r.Unread(l)
			}
		},
		"S*": func(r *wiretest.Runner, st wiretest.Step) {
			for {
				l, ok := r.Read(st)
				if !ok || !strings.HasPrefix(l, st.Arg) || len(l) < 4 {
					r.Fail(st, "want a %s reply, got %q (open=%v)", st.Arg, l, ok)
				}
				if l[3] == ' ' {
					return
				}
			}
		},
		"CLOSED": func(r *wiretest.Runner, st wiretest.Step) {
			if l, ok := r.Read(st); ok {
				r.Fail(st, "want the connection closed, got %q", l)
			}
		},
		"M:": func(r *wiretest.Runner, st wiretest.Step) {
			want, _ := strconv.Atoi(st.Arg)
			if got := len(waitMessages(b, want)); got != want {
				r.Fail(st, "want %d messages delivered, got %d", want, got)
			}
		},
		"B:": func(r *wiretest.Runner, st wiretest.Step) {
			if m := lastMessage(r, st, b); string(m.Body) != st.Arg {
				r.Fail(st, "body: want %q, got %q", st.Arg, m.Body)
			}
		},
		"H~": func(r *wiretest.Runner, st wiretest.Step) {
			m := lastMessage(r, st, b)
			var hb strings.Builder
			for f := m.Header.Fields(); f.Next(); {
				hb.WriteString(f.Key() + ": " + f.Value() + "\n")
			}
			re := regexp.MustCompile("(?s)" + st.Arg)
			if !re.MatchString(hb.String()) {
				r.Fail(st, "header does not match /%s/:\n%s", st.Arg, hb.String())
			}
		},
	})
}

// lastMessage returns the last message delivered, failing st without one.
func lastMessage(r *wiretest.Runner, st wiretest.Step, b *fakeBackend) *fakeMessage {
	msgs := b.messages()
	if len(msgs) == 0 {
		r.Fail(st, "no message delivered")
	}
	return msgs[len(msgs)-1]
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
