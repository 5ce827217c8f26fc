package protocol

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/lmtpd/lmtpd/internal/dovecottest"
)

// Tests of the Client against real servers: Postfix's smtp-sink and
// Dovecot's LMTP (internal/dovecottest), each started privately in a
// temporary directory.
// tests/install-deps.sh installs them. A missing server skips the test
// loudly, or fails it when CI=true.

// peerUnavailable skips or, under CI=true, fails the test.
func peerUnavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (tests/install-deps.sh installs it)"
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true: " + msg)
	}
	t.Skip("SKIPPED, real peer missing: " + msg)
}

// findPeer finds a program on PATH or in /usr/sbin.
func findPeer(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", name); fileExists(p) {
		return p
	}
	peerUnavailable(t, "%s not found", name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// peerDir makes a temporary directory that unprivileged server processes
// can enter and write (t.TempDir's parents are private to root).
func peerDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startProcess starts cmd, stops it with SIGTERM (SIGKILL after 5 s)
// when the test ends, and waits until dial succeeds.
func startProcess(t *testing.T, cmd *exec.Cmd, out *strings.Builder, network, addr string) {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		peerUnavailable(t, "%s does not start: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			peerUnavailable(t, "%s exited: %s", cmd.Path, out.String())
		default:
		}
		if time.Now().After(deadline) {
			peerUnavailable(t, "%s does not listen on %s: %v\n%s", cmd.Path, addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSMTPSink runs Postfix's smtp-sink on a unix socket, dumping each
// transaction into dir.
func startSMTPSink(t *testing.T, lmtp bool) (addr, dumps string) {
	bin := findPeer(t, "smtp-sink")
	dir := peerDir(t, "client-sink-")
	sock := filepath.Join(dir, "sink.sock")
	dumps = filepath.Join(dir, "dumps")
	if err := os.Mkdir(dumps, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dumps, 0o777)
	args := []string{"-h", "sink.test", "-d", dumps + "/%H%M%S."}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // required as root
	}
	if lmtp {
		args = append(args, "-L")
	}
	args = append(args, "unix:"+sock, "10")
	var out strings.Builder
	startProcess(t, exec.Command(bin, args...), &out, "unix", sock)
	return "unix:" + sock, dumps
}

// readDumps returns the text of every dump file in dir once n exist.
func readDumps(t *testing.T, dir string, n int) []string {
	t.Helper()
	var texts []string
	waitFor(t, func() bool {
		names, _ := filepath.Glob(filepath.Join(dir, "*"))
		if len(names) < n {
			return false
		}
		texts = texts[:0]
		for _, p := range names {
			b, err := os.ReadFile(p)
			if err != nil || !strings.HasSuffix(string(b), "\n\n") {
				return false // still being written
			}
			texts = append(texts, string(b))
		}
		return true
	})
	return texts
}

func TestClientSMTPSink(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		proto := SMTP
		if lmtp {
			proto = LMTP
		}
		t.Run(proto.String(), func(t *testing.T) {
			addr, dumps := startSMTPSink(t, lmtp)
			ctx := testCtx(t)
			c, err := Dial(ctx, addr, &ClientOptions{Protocol: proto, LocalName: "front.test"})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := c.Extension("PIPELINING"); !ok {
				t.Fatalf("smtp-sink offers no PIPELINING: %q", c.HelloReply().Lines)
			}
			// smtp-sink offers "XCLIENT NAME HELO": ADDR is left out.
			if err := c.XClient(ctx, &XClientAttrs{Name: "client.example", Helo: "orig.example", Addr: "192.0.2.7"}); err != nil {
				t.Fatal(err)
			}
			if err := c.XForward(ctx, &XForward{Name: "client.example", Addr: "192.0.2.7", Proto: "ESMTP", Helo: "orig.example", Port: "25"}); err != nil {
				t.Fatal(err)
			}
			// smtp-sink answers AUTH with 250, not RFC 4954's 235: the
			// client does not take that for success, and goes on.
			if err := c.Auth(ctx, sasl.NewPlainClient("", "alice", "secret")); err == nil || AsError(err) != nil || c.Err() != nil {
				t.Fatalf("AUTH answered 250: %v (client %v)", err, c.Err())
			}
			mp := &MailParams{Body: Body8BitMIME, Return: DSNReturnHeaders, EnvelopeID: "env 1", Size: 99}
			rcpts := rcptList(t, "a@example.org", "b@example.org", "c@example.org")
			rcpts[1].Params = RcptParams{Notify: []DSNNotify{DSNNotifyFailure, DSNNotifyDelay}, OriginalRecipient: "orig@example.org"}
			st, err := c.Send(ctx, mustAddr(t, "s@example.net"), mp, rcpts, strings.NewReader(testBody))
			if err != nil {
				t.Fatal(err)
			}
			checkStatuses(t, st, "250", "250", "250")
			if lmtp && (st[0].Reply == st[1].Reply) {
				t.Error("LMTP statuses share one reply")
			}
			// The connection is reused (smtp-sink answers RSET too).
			if err := c.Reset(ctx); err != nil {
				t.Fatal(err)
			}
			st, err = c.Send(ctx, Address{}, nil, rcptList(t, "d@example.org"), strings.NewReader("second\n"))
			if err != nil || st[0].Err != nil {
				t.Fatal(err, st)
			}
			if err := c.Quit(ctx); err != nil {
				t.Fatal(err)
			}

			texts := readDumps(t, dumps, 2)
			var first string
			for _, s := range texts {
				if strings.Contains(s, "<s@example.net>") {
					first = s
				}
			}
			for _, want := range []string{
				"X-Client-Proto: " + map[bool]string{false: "ESMTP", true: "LMTP"}[lmtp] + "\n",
				"X-Helo-Args: front.test\n",
				"X-Mail-Args: <s@example.net> BODY=8BITMIME RET=HDRS ENVID=env+201\n",
				"X-Rcpt-Args: <a@example.org>\n",
				"X-Rcpt-Args: <b@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;orig@example.org\n",
				"X-Rcpt-Args: <c@example.org>\n",
				"Subject: test\n\n.a line with a leading dot\nline two\n..two dots\nno final newline\n",
			} {
				if !strings.Contains(first, want) {
					t.Errorf("dump lacks %q:\n%s", want, first)
				}
			}
		})
	}
}

// TestClientDovecotLMTP: one status per recipient from Dovecot, failures
// in the middle at RCPT (unknown user) and after the message (quota);
// DATA and BDAT; XCLIENT as a proxy sends it.
func TestClientDovecotLMTP(t *testing.T) {
	dl := dovecottest.StartLMTP(t)
	tcpAddr, sock, mail := dl.Addr, dl.Socket, dl.Mail
	ctx := testCtx(t)
	for _, tc := range []struct {
		name     string
		addr     string
		chunking bool
	}{{"unix DATA", "unix:" + sock, false}, {"tcp BDAT", tcpAddr, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(ctx, tc.addr, &ClientOptions{Protocol: LMTP, LocalName: "front.test", Chunking: tc.chunking, ChunkSize: 20})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, ok := c.Extension("CHUNKING"); !ok && tc.chunking {
				t.Fatal("Dovecot offers no CHUNKING")
			}
			if !tc.chunking {
				st, err := c.Send(ctx, mustAddr(t, "s@example.net"), nil, rcptList(t, "alice@example.org", "nosuch@example.org", "full@example.org", "bob@example.org"), strings.NewReader(testBody))
				if err != nil {
					t.Fatal(err)
				}
				checkStatuses(t, st, "250", "550 5.1.1", "552 5.2.2", "250")
				if !strings.HasPrefix(st[2].Reply.Text(), "<full@example.org> Quota exceeded") {
					t.Errorf("text %q", st[2].Reply.Text())
				}
				c.Quit(ctx)
				return
			}
			// As a proxy: the original client with XCLIENT, which makes
			// Dovecot greet again.
			if c.XClientAttributes() == nil {
				t.Fatalf("Dovecot offers no XCLIENT to a trusted client: %q", c.HelloReply().Lines)
			}
			if err := c.XClient(ctx, &XClientAttrs{Addr: "192.0.2.7", Port: "4711", Helo: "orig.example", Proto: "ESMTP"}); err != nil {
				t.Fatal(err)
			}
			st, err := c.Send(ctx, mustAddr(t, "s@example.net"), &MailParams{Body: Body8BitMIME}, rcptList(t, "bob@example.org", "full@example.org"), strings.NewReader("Subject: bdat\n\n"+strings.Repeat("line of the chunked message\n", 10)))
			if err != nil {
				t.Fatal(err)
			}
			checkStatuses(t, st, "250", "552 5.2.2")
			if err := c.Quit(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}

	// What Dovecot stored: the unstuffed text, and the XCLIENT address
	// in its Received field.
	alice := maildirTexts(t, filepath.Join(mail, "example.org", "alice", "Maildir"))
	if len(alice) != 1 || !strings.Contains(alice[0], "Subject: test\n\n.a line with a leading dot\nline two\n..two dots\nno final newline\n") {
		t.Errorf("alice's maildir: %q", alice)
	}
	bob := maildirTexts(t, filepath.Join(mail, "example.org", "bob", "Maildir"))
	var bdat string
	for _, m := range bob {
		if strings.Contains(m, "Subject: bdat") {
			bdat = m
		}
	}
	if !strings.Contains(bdat, "[192.0.2.7]") || strings.Count(bdat, "line of the chunked message\n") != 10 {
		t.Errorf("bob's BDAT message: %q", bdat)
	}
}

// maildirTexts returns the messages in a maildir's new/.
func maildirTexts(t *testing.T, md string) []string {
	names, _ := filepath.Glob(filepath.Join(md, "new", "*"))
	var out []string
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		f.Close()
		out = append(out, b.String())
	}
	return out
}
