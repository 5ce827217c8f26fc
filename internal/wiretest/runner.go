package wiretest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Framing is how a protocol puts a C step's text and the server's replies
// on the wire.
type Framing struct {
	// Request appends text, a C step's argument, as one request unit.
	Request func(dst []byte, text string) []byte
	// Reply reads one reply unit. It returns io.EOF itself, not wrapped,
	// only when the connection ends before the first byte of a reply;
	// any other error fails the test.
	Reply func(br *bufio.Reader) (string, error)
	// QuoteReplies shows replies Go-quoted in the transcript (for
	// replies that may hold line breaks).
	QuoteReplies bool
}

// LFLines frames requests and replies as lines ending in LF, as Postfix's
// policy delegation protocol does; a reply line ending in CRLF is an
// error.
var LFLines = Framing{
	Request: func(dst []byte, text string) []byte { return append(append(dst, text...), '\n') },
	Reply: func(br *bufio.Reader) (string, error) {
		l, err := readLine(br)
		if err == nil && strings.HasSuffix(l, "\r\n") {
			err = fmt.Errorf("reply line ends in CRLF, Postfix expects LF: %q", l)
		}
		return strings.TrimSuffix(l, "\n"), err
	},
}

// CRLFLines frames requests and replies as lines ending in CRLF, as SMTP
// and LMTP do; a reply line without CR before its LF is an error.
var CRLFLines = Framing{
	Request: func(dst []byte, text string) []byte { return append(append(dst, text...), "\r\n"...) },
	Reply: func(br *bufio.Reader) (string, error) {
		l, err := readLine(br)
		if err == nil && !strings.HasSuffix(l, "\r\n") {
			err = fmt.Errorf("reply line without CRLF: %q", l)
		}
		return strings.TrimSuffix(l, "\r\n"), err
	},
}

// readLine reads a line with its LF; io.EOF alone means no byte came.
func readLine(br *bufio.Reader) (string, error) {
	l, err := br.ReadString('\n')
	if err == io.EOF && l == "" {
		return "", io.EOF
	}
	if err != nil {
		return "", fmt.Errorf("%w (got %q)", err, l)
	}
	return l, nil
}

// Hook runs a step of a test's own kind, or replaces the common meaning
// of S:, S~ or CLOSED.
type Hook func(r *Runner, st Step)

// Runner plays a Script over one client connection. Its methods are for
// Hooks; they belong to the test's goroutine.
type Runner struct {
	t          testing.TB
	conn       net.Conn
	br         *bufio.Reader
	framing    Framing
	bytewise   bool
	transcript strings.Builder
	batch      []byte
	writeDone  chan struct{}
	pushback   *string
	last       string
}

// Play runs s's steps over conn, the client end of a connection made for
// transport (see Connect), with the framing f; hooks run the steps of the
// test's own kinds and may replace S:, S~ and CLOSED.
func (s *Script) Play(t testing.TB, conn net.Conn, transport string, f Framing, hooks map[string]Hook) {
	t.Helper()
	r := &Runner{t: t, conn: conn, br: bufio.NewReader(conn), framing: f, bytewise: transport == "bytewise", writeDone: make(chan struct{})}
	close(r.writeDone)
	for _, st := range s.Steps {
		switch st.Kind {
		case "C:":
			r.batch = f.Request(r.batch, st.Arg)
			r.transcript.WriteString("C: " + st.Arg + "\n")
			continue
		case "C!":
			r.batch = append(r.batch, st.Arg...)
			r.transcript.WriteString("C! " + strconv.Quote(st.Arg) + "\n")
			continue
		}
		r.flush()
		if h, ok := hooks[st.Kind]; ok {
			h(r, st)
			continue
		}
		switch st.Kind {
		case "S:":
			if got, ok := r.Read(st); !ok || got != st.Arg {
				r.Fail(st, "want %q, got %q (open=%v)", st.Arg, got, ok)
			}
		case "S~":
			re := regexp.MustCompile("^(?s:" + st.Arg + ")$")
			if got, ok := r.Read(st); !ok || !re.MatchString(got) {
				r.Fail(st, "want /%s/, got %.200q (open=%v)", st.Arg, got, ok)
			}
		case "CLOSED":
			r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			rest, err := io.ReadAll(r.br)
			if len(rest) != 0 || (err != nil && !IsClosed(err)) {
				r.Fail(st, "want the connection closed, got %q, %v", rest, err)
			}
			r.transcript.WriteString("CLOSED\n")
		default:
			r.Fail(st, "no hook runs %s steps", st.Kind)
		}
	}
	r.flush()
}

// flush sends the C steps gathered so far in one write (a byte at a time
// over "bytewise"), in a goroutine after the writes before it, so that a
// server that stops reading, or net.Pipe's synchronous writes, cannot
// block the script.
func (r *Runner) flush() {
	if len(r.batch) == 0 {
		return
	}
	data, prev, done := r.batch, r.writeDone, make(chan struct{})
	r.batch, r.writeDone = nil, done
	go func() {
		defer close(done)
		<-prev
		r.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if r.bytewise {
			for i := range data {
				if _, err := r.conn.Write(data[i : i+1]); err != nil {
					return
				}
			}
			return
		}
		r.conn.Write(data)
	}()
}

// Read returns the next reply unit (one given back by Unread first), or
// false when the connection ended before it; a broken reply fails the
// test.
func (r *Runner) Read(st Step) (string, bool) {
	r.t.Helper()
	if r.pushback != nil {
		l := *r.pushback
		r.pushback = nil
		return l, true
	}
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.framing.Reply(r.br)
	if err == io.EOF {
		return "", false
	}
	if err != nil {
		r.Fail(st, "reading the reply: %v", err)
	}
	r.last = l
	if r.framing.QuoteReplies {
		r.transcript.WriteString("S: " + strconv.Quote(l) + "\n")
	} else {
		r.transcript.WriteString("S: " + l + "\n")
	}
	return l, true
}

// Unread gives a reply back for the next Read.
func (r *Runner) Unread(reply string) { r.pushback = &reply }

// Last returns the reply the last Read took from the connection.
func (r *Runner) Last() string { return r.last }

// Fail stops the test with st's line, the message and the transcript.
func (r *Runner) Fail(st Step, format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("line %d: %s\ntranscript:\n%s", st.Line, fmt.Sprintf(format, args...), r.transcript.String())
}

// IsClosed reports whether err is how reading from a connection the
// server closed ends: io.EOF, or ECONNRESET when it closed with the
// client's bytes unread. (net.ErrClosed is not: it means the client's own
// end was closed.)
func IsClosed(err error) bool {
	return errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset")
}
