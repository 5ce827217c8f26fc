//go:build linux

package peers

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// reply is one SMTP/LMTP reply: its code and the text of each line.
type reply struct {
	Code  int
	Lines []string
}

func (r reply) String() string {
	return fmt.Sprintf("%d %s", r.Code, strings.Join(r.Lines, " / "))
}

// Text is the reply's text, lines joined by a space.
func (r reply) Text() string { return strings.Join(r.Lines, " ") }

// wireClient is a minimal SMTP/LMTP client that writes exactly what it is
// told, for dialogues no library client would have, with a deadline on
// every read.
type wireClient struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// dialWire connects and reads the 220 greeting.
func dialWire(t testing.TB, network, addr string) *wireClient {
	t.Helper()
	c, err := tryDialWire(network, addr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(func() { c.conn.Close() })
	return c
}

// tryDialWire connects and reads the 220 greeting, returning errors
// instead of failing (for loops that expect failures, such as crashes).
func tryDialWire(network, addr string, timeout time.Duration) (*wireClient, error) {
	conn, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	c := &wireClient{conn: conn, r: bufio.NewReaderSize(conn, 4096), timeout: timeout}
	r, err := c.readReply()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if r.Code != 220 {
		conn.Close()
		return nil, fmt.Errorf("greeting: %v", r)
	}
	return c, nil
}

// readReply reads one reply, multi-line or not.
func (c *wireClient) readReply() (reply, error) {
	var r reply
	c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return r, fmt.Errorf("reading reply (after %v): %w", r.Lines, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return r, fmt.Errorf("short reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return r, fmt.Errorf("bad reply line %q", line)
		}
		r.Code = code
		more := len(line) > 3 && line[3] == '-'
		if len(line) > 4 {
			r.Lines = append(r.Lines, line[4:])
		} else {
			r.Lines = append(r.Lines, "")
		}
		if !more {
			return r, nil
		}
	}
}

// write sends raw bytes.
func (c *wireClient) write(s string) error {
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	_, err := io.WriteString(c.conn, s)
	return err
}

// Send writes raw bytes, failing the test on error.
func (c *wireClient) Send(s string) {
	c.t.Helper()
	if err := c.write(s); err != nil {
		c.t.Fatal(err)
	}
}

// Reply reads one reply, failing the test on error.
func (c *wireClient) Reply() reply {
	c.t.Helper()
	r, err := c.readReply()
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// Cmd sends one command line and returns the reply.
func (c *wireClient) Cmd(line string) reply {
	c.t.Helper()
	c.Send(line + "\r\n")
	return c.Reply()
}

// Expect sends one command line and requires the reply code.
func (c *wireClient) Expect(line string, code int) reply {
	c.t.Helper()
	r := c.Cmd(line)
	if r.Code != code {
		c.t.Fatalf("%s: got %v, want %d", line, r, code)
	}
	return r
}

// Close closes the connection.
func (c *wireClient) Close() { c.conn.Close() }

// lmtpSend runs one LMTP transaction (LHLO included) and returns the
// reply to each RCPT and, for each accepted one, the reply after DATA.
// Errors are returned, not fatal, so loops under faults can use it.
func (c *wireClient) lmtpSend(from string, rcpts []string, msg []byte) (rcptReplies, dataReplies []reply, err error) {
	if err := c.write("LHLO client.example.test\r\n"); err != nil {
		return nil, nil, err
	}
	if r, err := c.readReply(); err != nil || r.Code != 250 {
		return nil, nil, fmt.Errorf("LHLO: %v %v", r, err)
	}
	return c.transaction(from, rcpts, msg, true)
}

// transaction runs MAIL, RCPT, DATA on a greeted session. In LMTP mode it
// reads one reply per accepted recipient after the message.
func (c *wireClient) transaction(from string, rcpts []string, msg []byte, lmtp bool) (rcptReplies, dataReplies []reply, err error) {
	if err := c.write("MAIL FROM:<" + from + ">\r\n"); err != nil {
		return nil, nil, err
	}
	if r, err := c.readReply(); err != nil || r.Code != 250 {
		return nil, nil, fmt.Errorf("MAIL: %v %v", r, err)
	}
	accepted := 0
	for _, rc := range rcpts {
		if err := c.write("RCPT TO:<" + rc + ">\r\n"); err != nil {
			return rcptReplies, nil, err
		}
		r, err := c.readReply()
		if err != nil {
			return rcptReplies, nil, fmt.Errorf("RCPT: %w", err)
		}
		rcptReplies = append(rcptReplies, r)
		if r.Code/100 == 2 {
			accepted++
		}
	}
	if accepted == 0 {
		return rcptReplies, nil, nil
	}
	if err := c.write("DATA\r\n"); err != nil {
		return rcptReplies, nil, err
	}
	if r, err := c.readReply(); err != nil || r.Code != 354 {
		return rcptReplies, nil, fmt.Errorf("DATA: %v %v", r, err)
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := c.conn.Write(dotStuff(msg)); err != nil {
		return rcptReplies, nil, err
	}
	n := 1
	if lmtp {
		n = accepted
	}
	for range n {
		r, err := c.readReply()
		if err != nil {
			return rcptReplies, dataReplies, fmt.Errorf("after DATA: %w", err)
		}
		dataReplies = append(dataReplies, r)
	}
	return rcptReplies, dataReplies, nil
}

// dotStuff returns msg (CRLF lines) with leading dots doubled and the
// terminating CRLF.CRLF appended (RFC 5321 section 4.5.2).
func dotStuff(msg []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(msg) + 64)
	atStart := true
	for _, ch := range msg {
		if atStart && ch == '.' {
			b.WriteByte('.')
		}
		b.WriteByte(ch)
		atStart = ch == '\n'
	}
	if len(msg) > 0 && !bytes.HasSuffix(msg, []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// testMessage is a generated message: its wire form (CRLF) and what the
// maildir file must end with (LF), plus a digest header that makes every
// file self-checking.
type testMessage struct {
	ID     string // unique, in Message-ID and X-Test-ID
	Wire   []byte // CRLF, as sent
	Stored []byte // LF, as lmtpd writes it below the fields it prepends
}

// digestHeader carries the SHA-256 of the stored (LF) body.
const digestHeader = "X-Body-SHA256"

// newMessage builds a message of about bodySize bytes of body text in
// lines of at most 76 characters, some starting with a dot.
func newMessage(id, from, to string, bodySize int) testMessage {
	var body bytes.Buffer
	line := make([]byte, 0, 80)
	rnd := make([]byte, 57)
	for body.Len() < bodySize {
		rand.Read(rnd)
		line = line[:0]
		if body.Len()%7 == 0 {
			line = append(line, '.')
		}
		line = hex.AppendEncode(line, rnd[:37])
		body.Write(line)
		body.WriteByte('\n')
	}
	return buildMessage(id, from, to, "test "+id, body.Bytes(), nil)
}

// buildMessage assembles header and LF body into a testMessage. extra
// header fields are written as given (LF-terminated).
func buildMessage(id, from, to, subject string, body []byte, extra []string) testMessage {
	sum := sha256.Sum256(body)
	var h bytes.Buffer
	fmt.Fprintf(&h, "From: <%s>\n", from)
	fmt.Fprintf(&h, "To: <%s>\n", to)
	fmt.Fprintf(&h, "Subject: %s\n", subject)
	fmt.Fprintf(&h, "Date: %s\n", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC1123Z))
	fmt.Fprintf(&h, "Message-ID: <%s@client.example.test>\n", id)
	fmt.Fprintf(&h, "X-Test-ID: %s\n", id)
	fmt.Fprintf(&h, "%s: %s\n", digestHeader, hex.EncodeToString(sum[:]))
	for _, f := range extra {
		h.WriteString(f)
	}
	h.WriteString("\n")
	stored := append(h.Bytes(), body...)
	return testMessage{ID: id, Wire: toCRLF(stored), Stored: stored}
}

// toCRLF turns LF line endings into CRLF.
func toCRLF(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// splitMessage splits a stored (LF) message at the first empty line.
func splitMessage(b []byte) (header, body []byte, ok bool) {
	i := bytes.Index(b, []byte("\n\n"))
	if i < 0 {
		return b, nil, false
	}
	return b[:i+1], b[i+2:], true
}

// headerFields splits an LF header into fields, continuation lines
// joined to their field (each field keeps its own LF line endings).
func headerFields(h []byte) []string {
	var fields []string
	for line := range strings.SplitAfterSeq(string(h), "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += line
			continue
		}
		fields = append(fields, line)
	}
	return fields
}

// fieldName returns the name of a header field, lower-cased.
func fieldName(f string) string {
	name, _, _ := strings.Cut(f, ":")
	return strings.ToLower(strings.TrimSpace(name))
}

// checkDelivered verifies a maildir file against the message sent: the
// file is the fields lmtpd prepends (Return-Path, Delivered-To, Received,
// in that order and nothing else) followed by the message exactly as sent
// with CRLF turned into LF. It returns the prepended fields.
func checkDelivered(t testing.TB, file string, m testMessage) []string {
	t.Helper()
	b := readFile(t, file)
	if !bytes.HasSuffix(b, m.Stored) {
		t.Fatalf("%s does not end with the message as sent: %s", file, suffixDiff(b, m.Stored))
	}
	prefix := headerFields(b[:len(b)-len(m.Stored)])
	checkPrepended(t, file, prefix)
	return prefix
}

// checkPrepended requires fields to be exactly Return-Path, optionally
// Delivered-To, and one Received by lmtpd.
func checkPrepended(t testing.TB, file string, fields []string) {
	t.Helper()
	var names []string
	for _, f := range fields {
		names = append(names, fieldName(f))
	}
	got := strings.Join(names, ",")
	if got != "return-path,delivered-to,received" && got != "return-path,received" {
		t.Fatalf("%s: lmtpd prepended %q, want Return-Path, Delivered-To, Received:\n%s", file, got, strings.Join(fields, ""))
	}
	if rcv := fields[len(fields)-1]; !strings.Contains(rcv, "by lmtpd.example.test (lmtpd)") {
		t.Fatalf("%s: Received field is not lmtpd's: %q", file, rcv)
	}
}

// verifyDigest checks that a maildir file's body matches its digest header
// and returns the file's X-Test-ID.
func verifyDigest(b []byte) (id string, err error) {
	header, body, ok := splitMessage(b)
	if !ok {
		return "", fmt.Errorf("no end of header (%d bytes)", len(b))
	}
	var want string
	for _, f := range headerFields(header) {
		_, v, _ := strings.Cut(f, ":")
		switch fieldName(f) {
		case "x-test-id":
			id = strings.TrimSpace(v)
		case strings.ToLower(digestHeader):
			want = strings.TrimSpace(v)
		}
	}
	if id == "" || want == "" {
		return id, fmt.Errorf("missing X-Test-ID or %s", digestHeader)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != want {
		return id, fmt.Errorf("message %s: body digest %s, header says %s (%d body bytes)", id, got, want, len(body))
	}
	return id, nil
}

// suffixDiff describes where got stops ending with want: the first
// difference seen from the end, with context.
func suffixDiff(got, want []byte) string {
	i, j := len(got), len(want)
	for i > 0 && j > 0 && got[i-1] == want[j-1] {
		i--
		j--
	}
	ctx := func(b []byte, at int) string {
		lo, hi := max(at-80, 0), min(at+80, len(b))
		return fmt.Sprintf("%q", b[lo:hi])
	}
	return fmt.Sprintf("the last %d bytes agree; before that, at byte %d of the message sent:\n  sent:   %s\n  stored: %s\nstored file:\n%s",
		len(want)-j, j, ctx(want, j), ctx(got, i), clip(got, 1500))
}

// clip shortens b for a failure message.
func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + fmt.Sprintf("... (%d bytes more)", len(b)-n)
}
