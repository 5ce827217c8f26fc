package protocol

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// lineCounter is a log writer that counts lines containing each pattern.
type lineCounter struct {
	mu     sync.Mutex
	counts map[string]int
	last   map[string]string
}

func newLineCounter() *lineCounter {
	return &lineCounter{counts: map[string]int{}, last: map[string]string{}}
}

func (w *lineCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range []string{`"recipient rejected"`, `"recipients rejected in this transaction"`, `"too many errors"`} {
		if bytes.Contains(p, []byte(k)) {
			w.counts[k]++
			w.last[k] = string(p)
		}
	}
	return len(p), nil
}

func (w *lineCounter) get(k string) (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts[k], w.last[k]
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestRefusedRecipientsLoad (issue 19, defect 2): 50,000 RCPTs to a
// refused address after MAIL, over a loopback TCP connection, with the
// error budget set to 50,000 and no per-transaction cap so that every one
// reaches the backend. The heap must not grow with the count (nothing is
// kept per refused recipient), the 50,000th refusal is followed by 421
// 4.7.0 and the close, and the log holds a bounded number of lines.
func TestRefusedRecipientsLoad(t *testing.T) {
	const total = 50000
	const checkpoint = 10000
	logs := newLineCounter()
	log := zerolog.New(logs).Level(zerolog.InfoLevel)
	s := &Server{
		Hostname:             "mx.test",
		Backend:              newFakeBackend(),
		Logger:               &log,
		MaxErrors:            total,
		MaxRefusedRecipients: -1,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	readReply := func() string {
		t.Helper()
		var last string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading reply: %v (last %q)", err, last)
			}
			last = l
			if len(l) < 4 || l[3] != '-' {
				return strings.TrimRight(l, "\r\n")
			}
		}
	}
	readReply() // greeting
	fmt.Fprintf(bw, "EHLO client.test\r\nMAIL FROM:<a@example.org>\r\n")
	bw.Flush()
	readReply()
	if r := readReply(); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("MAIL: %q", r)
	}

	// send writes RCPTs from..to-1 in batches and reads their replies.
	send := func(from, to int) {
		t.Helper()
		const batch = 500
		for i := from; i < to; i += batch {
			n := min(batch, to-i)
			for j := range n {
				fmt.Fprintf(bw, "RCPT TO:<unknown%d@nodomain.test>\r\n", i+j)
			}
			if err := bw.Flush(); err != nil {
				t.Fatal(err)
			}
			for range n {
				if r := readReply(); r != "550 5.1.1 No such user" {
					t.Fatalf("RCPT %d: %q", i, r)
				}
			}
		}
	}
	send(0, checkpoint)
	before := heapAlloc()
	send(checkpoint, total)
	after := heapAlloc()

	// Keeping a Recipient per refusal (as before the fix: about 120 bytes
	// each, 5 MB for these 40,000) exceeds this by far.
	const slack = 1 << 20
	t.Logf("heap after %d refusals: %d bytes; after %d: %d bytes", checkpoint, before, total, after)
	if after > before+slack {
		t.Errorf("heap grew by %d bytes over %d refused RCPTs", after-before, total-checkpoint)
	}

	// The budget is spent with the last refusal: 421, then the close.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if r := readReply(); !strings.HasPrefix(r, "421 4.7.0 ") {
		t.Fatalf("after %d refusals: %q, want 421 4.7.0", total, r)
	}
	if b, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after 421: %q, %v", b, err)
	}
	// The session ends (summary line) once the server has closed it.
	s.Close()
	if n, _ := logs.get(`"recipient rejected"`); n != refusalLogLines {
		t.Errorf("%d refusals logged one by one, want %d", n, refusalLogLines)
	}
	n, line := logs.get(`"recipients rejected in this transaction"`)
	if n != 1 || !strings.Contains(line, fmt.Sprintf(`"refused":%d`, total)) {
		t.Errorf("summary lines: %d, last %q", n, line)
	}
}

// slowServer starts a server on loopback TCP with the given settings and
// returns a connected client past the greeting and EHLO.
func slowServer(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	s.Hostname, s.Backend, s.Logger = "mx.test", newFakeBackend(), &log
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	expectReply(t, br, "220 ")
	io.WriteString(c, "EHLO client.test\r\n")
	expectReply(t, br, "250 ")
	return c, br
}

// expectReply reads one (possibly multi-line) reply and checks that its
// last line starts with prefix.
func expectReply(t *testing.T, br *bufio.Reader, prefix string) string {
	t.Helper()
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("want %q, read: %v", prefix, err)
		}
		if len(l) >= 4 && l[3] == '-' {
			continue
		}
		if !strings.HasPrefix(l, prefix) {
			t.Fatalf("want %q, got %q", prefix, l)
		}
		return l
	}
}

// trickle writes data one byte at a time, every gap, until it is written
// or the connection fails. It returns at once; stop ends it early and
// returns how many bytes were written.
func trickle(c net.Conn, data string, gap time.Duration) (stop func() int) {
	var written atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for i := range len(data) {
			select {
			case <-done:
				return
			case <-time.After(gap):
			}
			if _, err := io.WriteString(c, data[i:i+1]); err != nil {
				return
			}
			written.Add(1)
		}
	}()
	return func() int { close(done); <-finished; return int(written.Load()) }
}

// A command line trickled a byte at a time, each byte well within the
// command timeout, is cut off when the whole line has taken the command
// timeout (issue 19, slowloris): 421 4.4.2 and the close.
func TestCommandLineTotalDeadline(t *testing.T) {
	c, br := slowServer(t, &Server{CommandTimeout: 300 * time.Millisecond})
	io.WriteString(c, "NOOP\r\n")
	expectReply(t, br, "250 ")
	// 200 bytes at one per 20 ms would take 4 s; each read is 20 ms apart.
	line := "NOOP " + strings.Repeat("x", 200) + "\r\n"
	stop := trickle(c, line, 20*time.Millisecond)
	expectReply(t, br, "421 4.4.2 mx.test Timeout waiting for command")
	expectClosed(t, br)
	if n := stop(); n >= len(line) {
		t.Fatalf("the whole line (%d bytes) was sent before the timeout", n)
	}
}

// Message text below MinDataRate is cut off once its grace (DataTimeout of
// credit) is spent, though no single read waits the data timeout; text
// well above the rate goes through.
func TestMinDataRate(t *testing.T) {
	settings := func() *Server {
		return &Server{DataTimeout: 300 * time.Millisecond, MinDataRate: 100}
	}
	start := func(t *testing.T) (net.Conn, *bufio.Reader) {
		c, br := slowServer(t, settings())
		io.WriteString(c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
		expectReply(t, br, "250 ")
		expectReply(t, br, "250 ")
		expectReply(t, br, "354 ")
		return c, br
	}
	t.Run("trickle", func(t *testing.T) {
		c, br := start(t)
		// 33 octets/s against a minimum of 100: each octet costs 30 ms and
		// buys 10, so the 300 ms of credit run out after about 15 octets;
		// the 200 would take 6 s.
		text := "Subject: x\r\n\r\n" + strings.Repeat("y", 200)
		stop := trickle(c, text, 30*time.Millisecond)
		expectReply(t, br, "421 4.4.2 ")
		expectClosed(t, br)
		// Cut off during the trickle, not by the data timeout after it.
		if n := stop(); n >= len(text) {
			t.Fatalf("all %d bytes were sent before the cut-off", n)
		}
	})
	t.Run("fast enough", func(t *testing.T) {
		c, br := start(t)
		// 100 octets every 10 ms: 100 times the minimum, for 400 ms, longer
		// than the grace.
		io.WriteString(c, "Subject: x\r\n\r\n")
		for range 40 {
			time.Sleep(10 * time.Millisecond)
			io.WriteString(c, strings.Repeat("z", 98)+"\r\n")
		}
		io.WriteString(c, ".\r\n")
		expectReply(t, br, "250 2.0.0 ")
	})
}

// expectClosed checks that the server closed the connection: EOF, or a
// reset when the client was still writing.
func expectClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("connection still open: %q, %v", b, err)
	}
}

// dialN opens n connections to l (network "tcp" or "unix") and returns
// each one's first reply.
func dialN(t *testing.T, network, addr string, n int) ([]*client, []string) {
	t.Helper()
	var clients []*client
	var replies []string
	for range n {
		nc, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		c := newClient(t, nc)
		clients = append(clients, c)
		replies = append(replies, c.reply())
	}
	return clients, replies
}

// An SMTP listener takes at most DefaultMaxConnectionsPerIP connections
// from one address by default (issue 19: one client took all 10,000
// slots); the next gets 421 4.7.0, and a slot freed is taken again.
// Loopback (without the test seam), unix-socket clients and LMTP
// listeners are not limited by default.
func TestDefaultMaxConnectionsPerIP(t *testing.T) {
	t.Run("smtp", func(t *testing.T) {
		s := &Server{Hostname: "mx.test", Backend: newFakeBackend(), limitLoopback: true}
		l := serveTCP(t, s)
		clients, replies := dialN(t, "tcp", l.Addr().String(), DefaultMaxConnectionsPerIP+1)
		for i, r := range replies[:DefaultMaxConnectionsPerIP] {
			if !strings.HasPrefix(r, "220 ") {
				t.Fatalf("connection %d: %q", i+1, r)
			}
		}
		if r := replies[DefaultMaxConnectionsPerIP]; !strings.HasPrefix(r, "421 4.7.0 ") {
			t.Fatalf("connection %d: %q, want 421 4.7.0", DefaultMaxConnectionsPerIP+1, r)
		}
		clients[DefaultMaxConnectionsPerIP].expectClosed()
		// One leaves; its slot is free again.
		clients[0].send("QUIT")
		clients[0].expect("221 ")
		clients[0].expectClosed()
		waitFor(t, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.conns) == DefaultMaxConnectionsPerIP-1
		})
		if _, r := dialN(t, "tcp", l.Addr().String(), 1); !strings.HasPrefix(r[0], "220 ") {
			t.Fatalf("after a slot was freed: %q", r[0])
		}
	})
	exempt := func(t *testing.T, s *Server, network, addr string) {
		t.Helper()
		_, replies := dialN(t, network, addr, DefaultMaxConnectionsPerIP+5)
		for i, r := range replies {
			if !strings.HasPrefix(r, "220 ") {
				t.Fatalf("connection %d: %q", i+1, r)
			}
		}
	}
	t.Run("loopback exempt", func(t *testing.T) {
		s := &Server{Hostname: "mx.test", Backend: newFakeBackend()}
		exempt(t, s, "tcp", serveTCP(t, s).Addr().String())
	})
	t.Run("lmtp no default", func(t *testing.T) {
		s := &Server{Hostname: "mx.test", Backend: newFakeBackend(), Protocol: LMTP, limitLoopback: true}
		exempt(t, s, "tcp", serveTCP(t, s).Addr().String())
	})
	t.Run("unix exempt", func(t *testing.T) {
		s := &Server{Hostname: "mx.test", Backend: newFakeBackend(), MaxConnectionsPerIP: 1, limitLoopback: true}
		path := t.TempDir() + "/s.sock"
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(l)
		t.Cleanup(func() { s.Close() })
		exempt(t, s, "unix", path)
	})
	t.Run("negative no limit", func(t *testing.T) {
		s := &Server{Hostname: "mx.test", Backend: newFakeBackend(), MaxConnectionsPerIP: -1, limitLoopback: true}
		exempt(t, s, "tcp", serveTCP(t, s).Addr().String())
	})
}

// slowReader is a backend that reads the first octets of the body, then
// stops reading for longer than the data timeout, then reads the rest.
type slowReader struct {
	pause time.Duration
	got   atomic.Int64
}

func (b *slowReader) Mail(ctx context.Context, conn *ConnState, from Address, params *MailParams) (Transaction, error) {
	return b, nil
}
func (b *slowReader) Rcpt(ctx context.Context, r *Recipient) error { return nil }
func (b *slowReader) Close() error                                 { return nil }
func (b *slowReader) Data(ctx context.Context, msg *Message, status StatusSetter) error {
	buf := make([]byte, 1000)
	n, err := io.ReadFull(msg.Body, buf)
	if err != nil {
		return err
	}
	time.Sleep(b.pause)
	rest, err := io.ReadAll(msg.Body)
	b.got.Store(int64(n + len(rest)))
	return err
}

// Only time spent waiting for the client uses up its MinDataRate credit:
// a backend that stops reading for longer than the data timeout while the
// client has already sent everything does not get the client cut off.
func TestMinDataRateSlowBackend(t *testing.T) {
	b := &slowReader{pause: 600 * time.Millisecond}
	log := zerolog.New(zerolog.NewTestWriter(t))
	s := &Server{Hostname: "mx.test", Backend: b, Logger: &log, DataTimeout: 300 * time.Millisecond, MinDataRate: 100}
	l := serveTCP(t, s)
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	expectReply(t, br, "220 ")
	io.WriteString(nc, "EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
	expectReply(t, br, "250 ")
	expectReply(t, br, "250 ")
	expectReply(t, br, "250 ")
	expectReply(t, br, "354 ")
	// More than the connection's read buffer, so that the backend's last
	// reads go to the network after its pause.
	body := strings.Repeat(strings.Repeat("w", 98)+"\r\n", 400) // 40,000 octets
	io.WriteString(nc, "Subject: x\r\n\r\n"+body+".\r\n")
	expectReply(t, br, "250 2.0.0 ")
	if got := b.got.Load(); got != int64(len(body)) {
		t.Fatalf("backend read %d octets of the body, want %d", got, len(body))
	}
}
