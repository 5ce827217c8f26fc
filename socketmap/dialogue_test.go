package socketmap

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/wiretest"
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
// printed. internal/wiretest parses and plays the files; the N step is
// this package's.

// dialogueSyntax is what socketmap's dialogue files add to wiretest's.
var dialogueSyntax = wiretest.Syntax{
	Kinds:      []string{"N:"},
	Transports: []string{"pipe", "unix", "bytewise"},
}

// netstrings frames requests and replies as netstrings; a reply's text
// is its payload.
var netstrings = wiretest.Framing{
	Request: func(dst []byte, text string) []byte { return AppendNetstring(dst, []byte(text)) },
	Reply: func(br *bufio.Reader) (string, error) {
		b, err := ReadNetstring(br, -1)
		if errors.Is(err, io.EOF) {
			return "", io.EOF
		}
		return string(b), err
	},
	QuoteReplies: true,
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
	wiretest.RunFiles(t, "testdata/dialogues/*.txt", dialogueSyntax, runDialogue)
}

func runDialogue(t *testing.T, d *wiretest.Script, transport string) {
	h := newFakeHandler()
	log, _ := wiretest.Logger(t)
	s := &Server{Handler: h, Logger: log}
	for _, o := range d.Opts {
		applyOpt(t, s, o)
	}
	client := wiretest.Connect(t, s, transport)
	d.Play(t, client, transport, netstrings, map[string]wiretest.Hook{
		"N:": func(r *wiretest.Runner, st wiretest.Step) {
			n, _ := strconv.Atoi(st.Arg)
			if got := h.count(); got != n {
				r.Fail(st, "handler called %d times, want %d", got, n)
			}
		},
	})
}
