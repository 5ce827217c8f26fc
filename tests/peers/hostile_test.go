//go:build linux

package peers

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// prober is a well-behaved client delivering one small message after
// another in the background while hostile clients do their worst, and a
// sampler of lmtpd's resident set size.
type prober struct {
	d        *daemon
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	sent     int
	failures []string
	slowest  time.Duration
	maxRSS   int64 // KiB
}

func startProber(d *daemon) *prober {
	p := &prober{d: d, stop: make(chan struct{})}
	pid := d.Pid()
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			start := time.Now()
			err := p.deliver(fmt.Sprintf("probe-%05d", i))
			el := time.Since(start)
			p.mu.Lock()
			if err != nil {
				p.failures = append(p.failures, fmt.Sprintf("probe %d at %s: %v", i, start.Format("15:04:05.000"), err))
			} else {
				p.sent++
			}
			p.slowest = max(p.slowest, el)
			p.mu.Unlock()
		}
	}()
	go func() {
		defer p.wg.Done()
		for {
			if rss, err := readRSS(pid); err == nil {
				p.mu.Lock()
				p.maxRSS = max(p.maxRSS, rss)
				p.mu.Unlock()
			}
			select {
			case <-p.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return p
}

// deliver sends one message over LMTP on TCP and checks the 250.
func (p *prober) deliver(id string) error {
	c, err := tryDialWire("tcp", p.d.LMTPAddr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	m := newMessage(id, "sender@example.test", "probe@example.test", 2000)
	_, dr, err := c.lmtpSend("sender@example.test", []string{"probe@example.test"}, m.Wire)
	if err != nil {
		return err
	}
	if len(dr) != 1 || dr[0].Code != 250 {
		return fmt.Errorf("replies %v", dr)
	}
	return nil
}

// check fails the test if a probe failed since the last call.
func (p *prober) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.failures {
		t.Errorf("well-behaved client failed: %s", f)
	}
	p.failures = nil
}

func (p *prober) halt() {
	close(p.stop)
	p.wg.Wait()
}

// readRSS reads VmRSS of pid in KiB.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// readUntilClosed reads and returns everything the server sends until it
// closes the connection or the timeout passes (then err is the timeout).
func readUntilClosed(conn net.Conn, timeout time.Duration) (string, error) {
	conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(conn)
	return string(b), err
}

// raiseNoFile makes sure this process may open n more descriptors.
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("RLIMIT_NOFILE hard limit %d is below the %d this test needs", lim.Max, n)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// processNoFile reads the soft "Max open files" of pid.
func processNoFile(t *testing.T, pid int) uint64 {
	t.Helper()
	b := readFile(t, fmt.Sprintf("/proc/%d/limits", pid))
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			n, err := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Max open files in /proc/PID/limits")
	return 0
}

// TestHostileClients attacks one lmtpd with broken and hostile clients
// while a well-behaved client delivers every 100 ms; each must succeed,
// lmtpd's memory must stay bounded and its descriptors must come back.
func TestHostileClients(t *testing.T) {
	const idle = 2000
	raiseNoFile(t, idle+1000)
	d := newDaemon(t, daemonOptions{
		LMTP: "data_timeout = \"2s\"\ncommand_timeout = \"60s\"\n",
		SMTP: "data_timeout = \"2s\"\ncommand_timeout = \"60s\"\n",
	})
	baseFDs := d.openFiles()
	_, baseHWM := d.memory()
	p := startProber(d)
	start := time.Now()
	noDelivery := func(t *testing.T, id string) {
		t.Helper()
		if n := countMessages(t, d.mailbox("victim@example.test"), id); n != 0 {
			t.Errorf("%s was delivered %d times", id, n)
		}
	}
	// begin opens an LMTP session up to the start of message text.
	begin := func(t *testing.T, network, addr string) *wireClient {
		t.Helper()
		c := dialWire(t, network, addr)
		c.Expect("LHLO hostile.example.test", 250)
		c.Expect("MAIL FROM:<sender@example.test>", 250)
		c.Expect("RCPT TO:<victim@example.test>", 250)
		c.Expect("DATA", 354)
		return c
	}

	t.Run("disconnect-mid-data", func(t *testing.T) {
		for i := range 20 {
			network, addr := "unix", d.Socket
			if i%2 == 1 {
				network, addr = "tcp", d.LMTPAddr
			}
			c := begin(t, network, addr)
			// Half of a message, some beyond the in-memory spool threshold.
			m := newMessage(fmt.Sprintf("cut-%02d", i), "sender@example.test", "victim@example.test", 1000+i*40_000)
			c.Send(string(m.Wire[:len(m.Wire)/2]))
			c.Close()
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		for i := range 20 {
			noDelivery(t, fmt.Sprintf("cut-%02d", i))
		}
		if tmp := listFiles(t, d.mailbox("victim@example.test")+"/tmp"); len(tmp) > 0 {
			t.Errorf("tmp/ files left by cut connections: %v", tmp)
		}
		p.check(t)
	})

	t.Run("10MiB-without-newline", func(t *testing.T) {
		line := bytes.Repeat([]byte("x"), 10<<20)
		t.Run("in-data", func(t *testing.T) {
			c := begin(t, "tcp", d.LMTPAddr)
			c.Send("Subject: long\r\nX-Test-ID: longline\r\n\r\n")
			// The server may stop reading and answer before all of it is
			// written; a write error then is fine.
			werr := c.write(string(line) + "\r\n.\r\n")
			r, err := c.readReply()
			switch {
			case err == nil && r.Code/100 == 5:
				t.Logf("reply: %v (write: %v)", r, werr)
			case err != nil && werr != nil:
				t.Logf("connection closed: write %v, read %v", werr, err)
			default:
				t.Errorf("after a 10 MiB line in DATA: reply %v, error %v; want a 5xx or a closed connection", r, err)
			}
			noDelivery(t, "longline")
		})
		t.Run("as-command", func(t *testing.T) {
			c := dialWire(t, "tcp", d.LMTPAddr)
			werr := c.write("LHLO " + string(line) + "\r\n")
			r, err := c.readReply()
			if err == nil && r.Code/100 != 5 {
				t.Errorf("after a 10 MiB command line: %v, want a 5xx", r)
			}
			t.Logf("reply: %v %v (write: %v)", r, err, werr)
		})
		p.check(t)
	})

	t.Run("one-byte-per-second", func(t *testing.T) {
		// data_timeout is 2s per read, so a byte every second never trips
		// it; the default min_data_rate (500 octets/s, after a grace of one
		// data timeout) ends such a trickle with 421 4.4.2 while the client
		// is still sending (issue 19: it used to last until
		// data_total_timeout), and the well-behaved client goes on.
		c := begin(t, "tcp", d.LMTPAddr)
		const planned = 10
		sent := 0
		for range planned {
			time.Sleep(time.Second)
			if err := c.write("S"); err != nil {
				break
			}
			sent++
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			if b, _ := c.r.Peek(1); len(b) > 0 {
				break // the server answered
			}
		}
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c.r)
		out := string(b)
		if !strings.HasPrefix(out, "421 4.4.2 ") {
			t.Errorf("after a 1 octet/s trickle: %q %v, want 421 4.4.2 and close", out, err)
		}
		if sent >= planned {
			t.Errorf("all %d bytes were accepted at 1 octet/s; want the session cut off during the trickle", sent)
		}
		t.Logf("cut off after %d octets at 1 octet/s", sent)
		p.check(t)
	})

	t.Run("idle-connections", func(t *testing.T) {
		// Go raises the soft RLIMIT_NOFILE to the hard limit at start.
		nofile := processNoFile(t, d.Pid())
		if nofile < idle+100 {
			t.Fatalf("lmtpd may open only %d files; it should raise its soft RLIMIT_NOFILE", nofile)
		}
		conns := make([]net.Conn, 0, idle)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := range idle {
			network, addr := "tcp", d.LMTPAddr
			if i%4 == 0 {
				network, addr = "unix", d.Socket
			}
			c, err := net.DialTimeout(network, addr, 10*time.Second)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			conns = append(conns, c)
		}
		// Every one of them is greeted, and they stay open.
		for i, c := range conns {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "220 ") {
				t.Fatalf("connection %d: greeting %q %v", i, line, err)
			}
		}
		rss, _ := d.memory()
		fds := d.openFiles()
		time.Sleep(time.Second)
		if err := p.deliver("idle-probe"); err != nil {
			t.Errorf("well-behaved client with %d idle connections open: %v", idle, err)
		}
		t.Logf("%d idle connections: lmtpd has %d descriptors (limit %d), RSS %d KiB (%d KiB before)", idle, fds, nofile, rss, baseHWM)
		if fds < idle {
			t.Errorf("lmtpd has %d descriptors with %d connections open", fds, idle)
		}
		p.check(t)
	})

	t.Run("pipelined-10000-commands", func(t *testing.T) {
		c := dialWire(t, "tcp", d.LMTPAddr)
		m := newMessage("pipelined", "sender@example.test", "victim@example.test", 3000)
		var b strings.Builder
		var want []int
		add := func(cmd string, code int) {
			b.WriteString(cmd)
			want = append(want, code)
		}
		add("LHLO pipeliner.example.test\r\n", 250)
		for len(want) < 9990 {
			add("MAIL FROM:<sender@example.test>\r\n", 250)
			add("RCPT TO:<victim@example.test>\r\n", 250)
			add("NOOP\r\n", 250)
			add("RSET\r\n", 250)
		}
		add("MAIL FROM:<sender@example.test>\r\n", 250)
		add("RCPT TO:<victim@example.test>\r\n", 250)
		add("DATA\r\n", 354)
		b.Write(dotStuff(m.Wire))
		want = append(want, 250)
		add("QUIT\r\n", 221)
		t.Logf("%d commands in one write of %d bytes", len(want), b.Len())
		errc := make(chan error, 1)
		go func() { errc <- c.write(b.String()) }()
		for i, code := range want {
			r, err := c.readReply()
			if err != nil {
				t.Fatalf("reply %d of %d: %v", i+1, len(want), err)
			}
			if r.Code != code {
				t.Fatalf("reply %d of %d: %v, want %d", i+1, len(want), r, code)
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		checkDelivered(t, findMessage(t, d.mailbox("victim@example.test"), m.ID), m)
		p.check(t)
	})

	t.Run("binary-garbage", func(t *testing.T) {
		garbage := make([]byte, 1<<20)
		rand.Read(garbage)
		t.Run("as-commands", func(t *testing.T) {
			c := dialWire(t, "tcp", d.LMTPAddr)
			// Write in the background and read at the same time, so that
			// the replies are taken before lmtpd closes on unread input
			// (which makes the kernel reset the connection).
			go func() {
				for off := 0; off < len(garbage); off += 4096 {
					if c.write(string(garbage[off:off+4096])) != nil {
						return
					}
				}
			}()
			out, err := readUntilClosed(c.conn, 10*time.Second)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("lmtpd kept the connection open after 1 MiB of garbage")
			}
			if !strings.Contains(out, "421 4.7.0 ") {
				t.Errorf("want 421 4.7.0 before the close, got %q (%v)", clip([]byte(out), 500), err)
			}
			t.Logf("%d reply lines, then closed (%v)", strings.Count(out, "\r\n"), err)
		})
		t.Run("as-message", func(t *testing.T) {
			c := begin(t, "unix", d.Socket)
			body := bytes.ReplaceAll(garbage, []byte("\r\n.\r\n"), []byte("\r\n..\r\n"))
			c.Send("X-Test-ID: garbage\r\n\r\n")
			c.Send(string(body) + "\r\n.\r\n")
			r := c.Reply()
			if r.Code != 550 || !strings.HasPrefix(r.Text(), "5.6.0 ") {
				t.Errorf("binary message: %v, want 550 5.6.0 (bare CR or LF)", r)
			}
			// The session goes on.
			c.Expect("RSET", 250)
			c.Expect("QUIT", 221)
			noDelivery(t, "garbage")
		})
		p.check(t)
	})

	p.halt()
	p.check(t)
	// Descriptors come back once the hostile connections are gone.
	var fds int
	for deadline := time.Now().Add(10 * time.Second); ; {
		if fds = d.openFiles(); fds <= baseFDs+5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if fds > baseFDs+5 {
		t.Errorf("lmtpd has %d descriptors after the clients left, %d at start", fds, baseFDs)
	}
	rss, hwm := d.memory()
	t.Logf("%v: %d probe deliveries, slowest %v; lmtpd RSS now %d KiB, max sampled %d KiB, VmHWM %d KiB (%d KiB at start)",
		time.Since(start).Round(time.Millisecond), p.sent, p.slowest.Round(time.Millisecond), rss, p.maxRSS, hwm, baseHWM)
	if limit := rssLimitKiB(); hwm > limit {
		t.Errorf("lmtpd's peak RSS %d KiB is above %d KiB", hwm, limit)
	}
	// A probe starts every 100 ms; a fifth of that rate is the floor.
	if want := int(time.Since(start) / (500 * time.Millisecond)); p.sent < want {
		t.Errorf("only %d probe deliveries, want at least %d", p.sent, want)
	}
}

// rssLimitKiB is a generous bound on lmtpd's peak RSS under the hostile
// and load tests: ten times what it needs, more under the race detector
// (which multiplies memory use).
func rssLimitKiB() int64 {
	if raceEnabled {
		return 1 << 20 // 1 GiB
	}
	return 256 << 10 // 256 MiB
}
