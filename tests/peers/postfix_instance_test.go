//go:build linux

package peers

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// postfix is a private Postfix instance: configuration, queue, data and
// log all under one temporary directory, nothing listening on the network
// (see testdata/postfix/main.cf, after the recipe in
// shared/recipes/postfix). It hands example.test to lmtpd's LMTP unix
// socket and tcp.example.test to its LMTP loopback port.
type postfix struct {
	t       testing.TB
	Root    string
	Etc     string // config_directory, for -c / -C
	Maillog string
	// SMTPAddr is Postfix's own SMTP server (smtpd) on a loopback port.
	SMTPAddr string

	postfixCmd, sendmailCmd, postqueueCmd string
}

// startPostfix starts a private Postfix that delivers to d with the given
// lmtp_destination_recipient_limit and accepts mail from clients on
// SMTPAddr. It is stopped when the test ends.
func startPostfix(t testing.TB, d *daemon, recipientLimit int) *postfix {
	t.Helper()
	requireRoot(t, "a private Postfix instance")
	p := &postfix{
		t:            t,
		postfixCmd:   requirePeer(t, "postfix"),
		sendmailCmd:  requirePeer(t, "sendmail"),
		postqueueCmd: requirePeer(t, "postqueue"),
	}
	if _, err := user.Lookup("postfix"); err != nil {
		missingPeer(t, "the postfix user does not exist: %v", err)
	}
	p.Root = shortTempDir(t)
	p.Etc = filepath.Join(p.Root, "etc")
	p.Maillog = filepath.Join(p.Root, "maillog")
	for _, dir := range []string{p.Etc, filepath.Join(p.Root, "spool"), filepath.Join(p.Root, "data")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(p.Root, "data")).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix: %v\n%s", err, out)
	}
	// The lmtp client runs as user postfix: every directory on the way to
	// the socket must be traversable.
	if err := makeTraversable(filepath.Dir(d.Socket)); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(d.LMTPAddr, ":")
	p.SMTPAddr = freePort(t)
	repl := strings.NewReplacer("@ROOT@", p.Root, "@SOCKET@", d.Socket, "@PORT@", port,
		"@LIMIT@", strconv.Itoa(recipientLimit), "@SMTPD@", p.SMTPAddr)
	for _, name := range []string{"main.cf", "master.cf"} {
		b, err := os.ReadFile(filepath.Join("testdata", "postfix", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.Etc, name), []byte(repl.Replace(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// postfix start reports fatal errors only to syslog when stderr is not
	// a terminal; postfix check prints them.
	if out, err := p.run(p.postfixCmd, "-c", p.Etc, "check"); err != nil {
		t.Fatalf("postfix check: %v\n%s", err, out)
	}
	if out, err := p.run(p.postfixCmd, "-c", p.Etc, "start"); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, p.logTail(30))
	}
	t.Cleanup(p.stop)
	return p
}

// makeTraversable adds o+x (and o+r for directories we own under the
// temporary directory) to dir and its parents up to the root.
func makeTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o005); err != nil {
				return err
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func (p *postfix) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(cleanEnv(), "MAIL_CONFIG="+p.Etc)
	return cmd.CombinedOutput()
}

func (p *postfix) stop() {
	if out, err := p.run(p.postfixCmd, "-c", p.Etc, "stop"); err != nil {
		p.t.Errorf("postfix stop: %v\n%s", err, out)
		p.run(p.postfixCmd, "-c", p.Etc, "abort")
	}
	if p.t.Failed() {
		p.t.Logf("postfix maillog (%s), last lines:\n%s", p.Maillog, p.logTail(60))
	}
}

// Sendmail injects msg (LF or CRLF lines) with Postfix's sendmail -C,
// as the envelope sender from, to the recipients; args come before "--".
func (p *postfix) Sendmail(from string, to []string, msg []byte, args ...string) {
	p.t.Helper()
	argv := append([]string{"-C", p.Etc, "-f", from, "-i"}, args...)
	argv = append(argv, "--")
	argv = append(argv, to...)
	cmd := exec.Command(p.sendmailCmd, argv...)
	cmd.Env = cleanEnv()
	cmd.Stdin = bytes.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("sendmail %v: %v\n%s", argv, err, out)
	}
}

// Flush asks Postfix to retry deferred mail now (postqueue -f).
func (p *postfix) Flush() {
	p.t.Helper()
	if out, err := p.run(p.postqueueCmd, "-c", p.Etc, "-f"); err != nil {
		p.t.Fatalf("postqueue -f: %v\n%s", err, out)
	}
}

// logLines returns the maillog's lines.
func (p *postfix) logLines() []string {
	b, err := os.ReadFile(p.Maillog)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func (p *postfix) logTail(n int) string {
	lines := p.logLines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitLog waits until the maillog has at least n lines matching re and
// returns the submatches of each.
func (p *postfix) WaitLog(re *regexp.Regexp, n int, timeout time.Duration) [][]string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var got [][]string
		for _, line := range p.logLines() {
			if m := re.FindStringSubmatch(line); m != nil {
				got = append(got, m)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("maillog has %d lines matching %s after %v, want %d; last lines:\n%s", len(got), re, timeout, n, p.logTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// QueueID waits for cleanup's line about the message with this Message-ID
// (without angle brackets) and returns its queue id.
func (p *postfix) QueueID(messageID string) string {
	p.t.Helper()
	re := regexp.MustCompile(`postfix/cleanup\[\d+\]: ([0-9A-Za-z]+): message-id=<` + regexp.QuoteMeta(messageID) + `>`)
	return p.WaitLog(re, 1, 60*time.Second)[0][1]
}

// deliveryLine is one per-recipient line of Postfix's lmtp client.
type deliveryLine struct {
	QueueID, To, Relay, DSN, Status, Reply string
}

var deliveryLineRE = regexp.MustCompile(`postfix/lmtp\[\d+\]: ([0-9A-Za-z]+): to=<([^>]*)>,(?: orig_to=<[^>]*>,)? relay=([^,]*), .*dsn=([0-9.]+), status=(\w+) \((.*)\)$`)

// WaitStatus waits for the lmtp client's line for rcpt of queue id qid
// with the given status (sent, deferred, bounced) and returns it.
func (p *postfix) WaitStatus(qid, rcpt, status string, timeout time.Duration) deliveryLine {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range p.logLines() {
			m := deliveryLineRE.FindStringSubmatch(line)
			if m == nil || m[1] != qid || !strings.EqualFold(m[2], rcpt) {
				continue
			}
			if m[5] == status {
				return deliveryLine{QueueID: m[1], To: m[2], Relay: m[3], DSN: m[4], Status: m[5], Reply: m[6]}
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no status=%s line for %s to <%s> after %v; last maillog lines:\n%s", status, qid, rcpt, timeout, p.logTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Statuses returns every lmtp delivery line for the queue id so far.
func (p *postfix) Statuses(qid string) []deliveryLine {
	var out []deliveryLine
	for _, line := range p.logLines() {
		if m := deliveryLineRE.FindStringSubmatch(line); m != nil && m[1] == qid {
			out = append(out, deliveryLine{QueueID: m[1], To: m[2], Relay: m[3], DSN: m[4], Status: m[5], Reply: m[6]})
		}
	}
	return out
}

func (l deliveryLine) String() string {
	return fmt.Sprintf("%s to=<%s> relay=%s dsn=%s status=%s (%s)", l.QueueID, l.To, l.Relay, l.DSN, l.Status, l.Reply)
}
