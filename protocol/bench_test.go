package protocol

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-message/textproto"
	gosmtp "github.com/emersion/go-smtp"
)

// The core benchmark of issue 2: one full pipelined LMTP transaction (MAIL,
// RCPT, DATA in one write; then a 1 KiB message) to a backend that
// discards the body, over an in-memory connection (net.Pipe), for this
// package and for github.com/emersion/go-smtp side by side in one run.
// scripts/bench.sh turns the figures into the README's table.

// benchMessage is a 1 KiB message with a realistic header.
var benchMessage = func() string {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.org>\r\nTo: Bob <bob@example.test>\r\n")
	b.WriteString("Subject: benchmark message\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n")
	b.WriteString("Message-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
	for b.Len()+len(line) <= 1024-3 {
		b.WriteString(line)
	}
	for b.Len() < 1024-5 {
		b.WriteString("x")
	}
	b.WriteString("\r\n.\r\n")
	return b.String()
}()

// pipeListener hands out pre-made connections: the server under test
// accepts the server end of a net.Pipe.
type pipeListener struct {
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn, 1), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// runBenchClient drives b.N pipelined transactions over c.
func runBenchClient(b *testing.B, c net.Conn) {
	br := bufio.NewReader(c)
	readReply := func() {
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatalf("read: %v", err)
			}
			if len(l) < 4 || l[3] != '-' {
				if l[0] != '2' && l[0] != '3' {
					b.Fatalf("unexpected reply %q", l)
				}
				return
			}
		}
	}
	readReply() // greeting
	io.WriteString(c, "LHLO client.test\r\n")
	readReply()
	cmds := []byte("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
	msg := []byte(benchMessage)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.Write(cmds)
		readReply()
		readReply()
		readReply()
		c.Write(msg)
		readReply()
	}
	b.StopTimer()
	io.WriteString(c, "QUIT\r\n")
	readReply()
}

// discardBackend accepts everything and discards the body; with parse set
// it first asks for the parsed header, as a delivery agent does.
type discardBackend struct{ parse bool }

func (b discardBackend) Mail(context.Context, *ConnState, Address, *MailParams) (Transaction, error) {
	return discardTx(b), nil
}

type discardTx struct{ parse bool }

func (discardTx) Rcpt(context.Context, *Recipient) error { return nil }
func (t discardTx) Data(_ context.Context, m *Message, _ StatusSetter) error {
	if t.parse && m.Header().Get("Message-Id") == "" {
		return errors.New("no Message-Id in the parsed header")
	}
	_, err := io.Copy(io.Discard, m.Body)
	return err
}
func (discardTx) Close() error { return nil }

func BenchmarkTransaction(b *testing.B) {
	for _, parse := range []bool{false, true} {
		// lmtpd parses the header when the backend asks for it (the
		// discarding backend does not); +header-parse is a backend that
		// does, to compare with go-smtp plus the same parse.
		name := "impl=lmtpd"
		if parse {
			name = "impl=lmtpd+header-parse"
		}
		b.Run(name, func(b *testing.B) {
			s := &Server{Protocol: LMTP, Hostname: "mx.test", Backend: discardBackend{parse: parse}}
			c1, c2 := net.Pipe()
			s.ServeConn(c1)
			defer s.Close()
			runBenchClient(b, c2)
		})
	}
	for _, parse := range []bool{false, true} {
		name := "impl=go-smtp"
		if parse {
			// What a real go-smtp delivery agent has to add: the header
			// parsed with go-message, as lmtpd does before its backend.
			name = "impl=go-smtp+header-parse"
		}
		b.Run(name, func(b *testing.B) { benchGoSMTP(b, parse) })
	}
}

func benchGoSMTP(b *testing.B, parse bool) {
	{
		s := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) {
			return &goSMTPDiscard{parse: parse}, nil
		}))
		s.LMTP = true
		s.Domain = "mx.test"
		// Its "error handling pipe" line at the end would break the
		// benchmark output line.
		s.ErrorLog = log.New(io.Discard, "", 0)
		l := newPipeListener()
		c1, c2 := net.Pipe()
		l.ch <- c1
		go s.Serve(l)
		defer s.Close()
		runBenchClient(b, c2)
	}
}

type goSMTPDiscard struct{ parse bool }

func (*goSMTPDiscard) Reset()                                 {}
func (*goSMTPDiscard) Logout() error                          { return nil }
func (*goSMTPDiscard) Mail(string, *gosmtp.MailOptions) error { return nil }
func (*goSMTPDiscard) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (*goSMTPDiscard) Data(r io.Reader) error                 { _, err := io.Copy(io.Discard, r); return err }
func (d *goSMTPDiscard) LMTPData(r io.Reader, s gosmtp.StatusCollector) error {
	if d.parse {
		br := bufio.NewReader(r)
		if _, err := textproto.ReadHeader(br); err != nil {
			return err
		}
		r = br
	}
	_, err := io.Copy(io.Discard, r)
	return err
}

// BenchmarkBDAT sends a 1 MiB message in 64 KiB chunks, and the same
// message by DATA, to a discarding backend over net.Pipe: the cost of the
// checking reader and the hand-off between goroutines for BDAT next to
// DATA.
func BenchmarkBDAT(b *testing.B) {
	var text strings.Builder
	text.WriteString("Subject: bdat benchmark\r\n\r\n")
	line := "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
	for text.Len()+len(line) <= 1<<20 {
		text.WriteString(line)
	}
	msg := []byte(text.String())
	const chunk = 64 << 10
	// The client's writes, made once: commands and chunk boundaries.
	type piece struct{ cmd, data []byte }
	var pieces []piece
	for off := 0; off < len(msg); off += chunk {
		end := min(off+chunk, len(msg))
		last := ""
		if end == len(msg) {
			last = " LAST"
		}
		pieces = append(pieces, piece{[]byte("BDAT " + strconv.Itoa(end-off) + last + "\r\n"), msg[off:end]})
	}
	dotted := append(append([]byte(nil), msg...), ".\r\n"...)
	for _, cmd := range []string{"BDAT", "DATA"} {
		b.Run("cmd="+cmd, func(b *testing.B) {
			s := &Server{Protocol: LMTP, Hostname: "mx.test", Backend: discardBackend{}}
			c1, c2 := net.Pipe()
			s.ServeConn(c1)
			defer s.Close()
			br := bufio.NewReader(c2)
			readReply := func() {
				for {
					l, err := br.ReadSlice('\n')
					if err != nil {
						b.Fatalf("read: %v", err)
					}
					if len(l) < 4 || l[3] != '-' {
						if l[0] != '2' && l[0] != '3' {
							b.Fatalf("unexpected reply %q", l)
						}
						return
					}
				}
			}
			readReply()
			io.WriteString(c2, "LHLO client.test\r\n")
			readReply()
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				io.WriteString(c2, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n")
				readReply()
				readReply()
				if cmd == "DATA" {
					io.WriteString(c2, "DATA\r\n")
					readReply()
					c2.Write(dotted)
					readReply()
					continue
				}
				for _, p := range pieces {
					c2.Write(p.cmd)
					c2.Write(p.data)
					readReply()
				}
			}
		})
	}
}
