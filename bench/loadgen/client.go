package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// ReplyError is a reply that was not what a successful step gets.
type ReplyError struct {
	Step  string // "greeting", "LHLO", "MAIL", "RCPT 2", "DATA", "final 1", ...
	Reply string // the reply's last line, without CRLF
}

func (e *ReplyError) Error() string { return fmt.Sprintf("%s: unexpected reply %q", e.Step, e.Reply) }

// errLongReply reports a reply line longer than the read buffer.
var errLongReply = errors.New("reply line too long")

// dial connects to addr: "host:port" for TCP, "unix:/path" for a unix
// socket.
func dial(addr string, timeout time.Duration) (net.Conn, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return net.DialTimeout("unix", path, timeout)
	}
	return net.DialTimeout("tcp", addr, timeout)
}

// client is one connection of the load generator, used by one goroutine.
type client struct {
	conn    net.Conn
	br      *bufio.Reader
	lmtp    bool
	rcpts   int
	timeout time.Duration
	env     []byte // MAIL, every RCPT and DATA, sent in one write
}

// session holds what every client of a run shares.
type session struct {
	addr    string
	lmtp    bool
	from    string
	rcpts   []string
	timeout time.Duration
}

// envelope returns the pipelined commands of one transaction: MAIL, the
// RCPTs and DATA in one write, as Postfix's smtp and lmtp clients send
// them when the server offers PIPELINING (mandatory in LMTP, RFC 2033
// section 4.1).
func (s *session) envelope() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "MAIL FROM:<%s>\r\n", s.from)
	for _, r := range s.rcpts {
		fmt.Fprintf(&b, "RCPT TO:<%s>\r\n", r)
	}
	b.WriteString("DATA\r\n")
	return b.Bytes()
}

// connect dials, reads the greeting and says LHLO or EHLO.
func (s *session) connect() (*client, error) {
	conn, err := dial(s.addr, s.timeout)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, br: bufio.NewReaderSize(conn, 4096), lmtp: s.lmtp,
		rcpts: len(s.rcpts), timeout: s.timeout, env: s.envelope()}
	if err := c.hello(); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// hello reads the greeting and sends LHLO (LMTP) or EHLO (SMTP).
func (c *client) hello() error {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	if err := c.reply("greeting", '2'); err != nil {
		return err
	}
	verb := "EHLO"
	if c.lmtp {
		verb = "LHLO"
	}
	if _, err := c.conn.Write([]byte(verb + " loadgen.example.org\r\n")); err != nil {
		return err
	}
	return c.reply(verb, '2')
}

// reply reads one reply, multi-line or not, and checks that its code
// starts with want. Continuation lines ("250-...") are skipped.
func (c *client) reply(step string, want byte) error {
	for {
		line, err := c.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("%s: %w", step, errLongReply)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
		if len(line) < 5 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) ||
			(line[3] != ' ' && line[3] != '-' && line[3] != '\r') {
			return &ReplyError{Step: step, Reply: string(bytes.TrimRight(line, "\r\n"))}
		}
		if line[3] == '-' {
			continue
		}
		if line[0] != want {
			return &ReplyError{Step: step, Reply: string(bytes.TrimRight(line, "\r\n"))}
		}
		return nil
	}
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// transaction sends one message and checks every reply: MAIL and each
// RCPT 2xx, DATA 354, then one 2xx per recipient (LMTP, RFC 2033 section
// 4.2) or one 2xx for the message (SMTP). On an error the connection is
// out of step with the server and must be closed.
func (c *client) transaction(msg *message, seq uint64) error {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.conn.Write(c.env); err != nil {
		return err
	}
	if err := c.reply("MAIL", '2'); err != nil {
		return err
	}
	for i := range c.rcpts {
		if err := c.reply(rcptStep("RCPT", i), '2'); err != nil {
			return err
		}
	}
	if err := c.reply("DATA", '3'); err != nil {
		return err
	}
	if err := msg.writeTo(c.conn, seq); err != nil {
		return err
	}
	finals := 1
	if c.lmtp {
		finals = c.rcpts
	}
	for i := range finals {
		if err := c.reply(rcptStep("final", i), '2'); err != nil {
			return err
		}
	}
	return nil
}

// rcptSteps are the precomputed step names for the first recipients, so
// that the success path does not format strings.
var rcptSteps = func() map[string][]string {
	m := map[string][]string{}
	for _, p := range []string{"RCPT", "final"} {
		for i := range 16 {
			m[p] = append(m[p], fmt.Sprintf("%s %d", p, i+1))
		}
	}
	return m
}()

func rcptStep(prefix string, i int) string {
	if s := rcptSteps[prefix]; i < len(s) {
		return s[i]
	}
	return fmt.Sprintf("%s %d", prefix, i+1)
}

// quit says QUIT, waits briefly for the 221 and closes the connection.
func (c *client) quit() {
	c.conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.conn.Write([]byte("QUIT\r\n")); err == nil {
		c.reply("QUIT", '2')
	}
	c.conn.Close()
}
