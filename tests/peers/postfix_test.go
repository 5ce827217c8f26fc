//go:build linux

package peers

import (
	"bytes"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// postfixWait bounds every wait for Postfix to act on a message.
const postfixWait = 60 * time.Second

// TestPostfix runs a private Postfix in front of lmtpd, handing mail over
// LMTP on the unix socket (example.test) and over TCP (tcp.example.test),
// with lmtp_destination_recipient_limit 50 (one transaction for several
// recipients) and 1 (one transaction each), and XFORWARD on.
func TestPostfix(t *testing.T) {
	for _, limit := range []int{50, 1} {
		t.Run(fmt.Sprintf("recipient_limit=%d", limit), func(t *testing.T) { testPostfix(t, limit) })
	}
}

func testPostfix(t *testing.T, limit int) {
	work := shortTempDir(t)
	flaky, err := filepath.Abs(filepath.Join("testdata", "flaky.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// "flaky" is a pipe command that exits 75 until WORK/DOMAIN.ready exists.
	d := newDaemon(t, daemonOptions{Domains: testDomains(fmt.Sprintf(`
[[domain.user]]
name = "flaky"
[domain.user.route.pipe]
argv = ["/bin/sh", %q, %q, %q]
`, flaky, work+"/{domain}.ready", work+"/{domain}"))})
	p := startPostfix(t, d, limit)
	_, port, _ := net.SplitHostPort(d.LMTPAddr)

	for _, tr := range []struct{ name, domain, relay string }{
		{"unix", "example.test", "[" + d.Socket + "]"},
		{"tcp", "tcp.example.test", "[127.0.0.1]:" + port},
	} {
		t.Run(tr.name, func(t *testing.T) {
			at := "@" + tr.domain
			sender := "sender" + at
			prefix := fmt.Sprintf("pf%d-%s-", limit, tr.name)

			// sent waits for status=sent for each recipient and checks that
			// the reply Postfix logged is lmtpd's, naming the recipient and
			// the id in lmtpd's Received field. It returns those ids.
			sent := func(t *testing.T, qid string, m testMessage, rcpts ...string) []string {
				t.Helper()
				var ids []string
				for _, rc := range rcpts {
					l := p.WaitStatus(qid, rc, "sent", postfixWait)
					if !strings.HasSuffix(l.Relay, tr.relay) || l.DSN != "2.0.0" {
						t.Errorf("maillog: %v, want relay ...%s and dsn=2.0.0", l, tr.relay)
					}
					re := regexp.MustCompile(`^250 2\.0\.0 <` + loggedPattern(rc) + `> Delivered as (\S+)$`)
					mm := re.FindStringSubmatch(l.Reply)
					if mm == nil {
						t.Fatalf("maillog reply %q is not lmtpd's 250 for <%s>", l.Reply, rc)
					}
					rcv := checkRelayed(t, findMessage(t, d.mailbox(rc), m.ID), m)
					if !regexp.MustCompile(`\n\tid ` + regexp.QuoteMeta(mm[1]) + `[;\n]`).MatchString(rcv) {
						t.Errorf("lmtpd replied %q but its Received field says:\n%s", l.Reply, rcv)
					}
					ids = append(ids, mm[1])
				}
				return ids
			}

			t.Run("byte-exact", func(t *testing.T) {
				m := newMessage(prefix+"exact", sender, "alice"+at, 20000)
				rcpts := []string{"alice" + at, "bob" + at, "carol" + at}
				p.Sendmail(sender, rcpts, m.Stored)
				qid := p.QueueID(m.ID + "@client.example.test")
				ids := sent(t, qid, m, rcpts...)
				// One LMTP transaction for all three with limit 50 (lmtpd
				// names no single recipient in its Received field then),
				// one each with limit 1.
				distinct := map[string]bool{}
				for _, id := range ids {
					distinct[id] = true
				}
				want := len(rcpts)
				if limit >= len(rcpts) {
					want = 1
				}
				if len(distinct) != want {
					t.Errorf("lmtpd message ids %v: %d transactions, want %d", ids, len(distinct), want)
				}
				for _, rc := range rcpts {
					rcv := checkRelayed(t, findMessage(t, d.mailbox(rc), m.ID), m)
					if hasFor := strings.Contains(rcv, "\tfor <"); hasFor != (want > 1) {
						t.Errorf("Received field for %s (for clause %v, want %v):\n%s", rc, hasFor, want > 1, rcv)
					}
				}
			})

			t.Run("unknown-user-bounced", func(t *testing.T) {
				m := newMessage(prefix+"unknown", sender, "alice"+at, 1000)
				p.Sendmail(sender, []string{"alice" + at, "nobody" + at, "bob" + at}, m.Stored)
				qid := p.QueueID(m.ID + "@client.example.test")
				l := p.WaitStatus(qid, "nobody"+at, "bounced", postfixWait)
				if l.DSN != "5.1.1" || !strings.Contains(l.Reply, "550 5.1.1") {
					t.Errorf("maillog: %v, want dsn=5.1.1 and lmtpd's 550 5.1.1", l)
				}
				sent(t, qid, m, "alice"+at, "bob"+at)
				// The bounce goes back to the sender, through lmtpd.
				bqid := p.WaitLog(regexp.MustCompile(qid+`: sender non-delivery notification: ([0-9A-Za-z]+)`), 1, postfixWait)[0][1]
				p.WaitStatus(bqid, sender, "sent", postfixWait)
				bounce := readFile(t, findFile(t, d.mailbox(sender), "X-Test-ID: "+m.ID))
				for _, want := range []string{"Undelivered Mail Returned to Sender", "<nobody" + at + ">", "550 5.1.1 No such user here", "Return-Path: <>\n"} {
					if !bytes.Contains(bounce, []byte(want)) {
						t.Errorf("bounce message lacks %q:\n%s", want, clip(bounce, 3000))
					}
				}
			})

			t.Run("pipe-tempfail-retried", func(t *testing.T) {
				m := newMessage(prefix+"tempfail", sender, "flaky"+at, 3000)
				p.Sendmail(sender, []string{"flaky" + at, "carol" + at}, m.Stored)
				qid := p.QueueID(m.ID + "@client.example.test")
				l := p.WaitStatus(qid, "flaky"+at, "deferred", postfixWait)
				if l.DSN != "4.3.0" || !strings.Contains(l.Reply, "451 4.3.0") {
					t.Errorf("maillog: %v, want dsn=4.3.0 and lmtpd's 451 4.3.0", l)
				}
				sent(t, qid, m, "carol"+at)
				if err := os.WriteFile(filepath.Join(work, tr.domain+".ready"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				p.Flush()
				l = p.WaitStatus(qid, "flaky"+at, "sent", postfixWait)
				if !strings.HasPrefix(l.Reply, "250 2.0.0 <flaky"+at+">") {
					t.Errorf("maillog reply after the retry: %q", l.Reply)
				}
				out := listFiles(t, filepath.Join(work, tr.domain))
				if len(out) != 1 {
					t.Fatalf("the command stored %d messages, want 1: %v", len(out), out)
				}
				if b := readFile(t, out[0]); !bytes.HasSuffix(b, m.Stored) {
					t.Errorf("the command received a different message: %s", suffixDiff(b, m.Stored))
				}
				if n := countMessages(t, d.mailbox("carol"+at), m.ID); n != 1 {
					t.Errorf("carol has %d copies, want 1 (none more on the retry)", n)
				}
			})

			t.Run("8bit", func(t *testing.T) {
				body := []byte("UTF-8: Grüße aus Köln, 日本語, ½ €\nLatin-1: caf\xe9 na\xefve \xa3\n.dot line\n\xff\xfe binary-ish but no NUL\n")
				m := buildMessage(prefix+"8bit", sender, "alice"+at, "8bit", body,
					[]string{"MIME-Version: 1.0\n", "Content-Type: text/plain; charset=utf-8\n", "Content-Transfer-Encoding: 8bit\n"})
				p.Sendmail(sender, []string{"alice" + at}, m.Stored, "-B", "8BITMIME")
				qid := p.QueueID(m.ID + "@client.example.test")
				sent(t, qid, m, "alice"+at)
			})

			t.Run("smtputf8", func(t *testing.T) {
				body := []byte("Hallo Jörg,\nschöne Grüße.\n")
				m := buildMessage(prefix+"utf8", sender, "jörg"+at, "Grüße für Jörg", body,
					[]string{"MIME-Version: 1.0\n", "Content-Type: text/plain; charset=utf-8\n", "Content-Transfer-Encoding: 8bit\n"})
				// Postfix's sendmail detects the UTF-8 address and header
				// (smtputf8_autodetect_classes) and asks for SMTPUTF8.
				p.Sendmail(sender, []string{"jörg" + at}, m.Stored)
				qid := p.QueueID(m.ID + "@client.example.test")
				sent(t, qid, m, "jörg"+at)
				f := findMessage(t, d.mailbox("jörg"+at), m.ID)
				if got := receivedWith(t, f); got != "UTF8LMTP" {
					t.Errorf("Received ... with %s, want UTF8LMTP", got)
				}
			})

			t.Run("xforward", func(t *testing.T) {
				// A client submits to Postfix's smtpd; XFORWARD carries its
				// HELO and address to lmtpd, whose Received field names them.
				m := newMessage(prefix+"xforward", sender, "carol"+at, 1000)
				c, err := smtp.Dial(p.SMTPAddr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := c.Hello("client.example.test"); err != nil {
					t.Fatal(err)
				}
				if err := c.Mail(sender); err != nil {
					t.Fatal(err)
				}
				if err := c.Rcpt("carol" + at); err != nil {
					t.Fatal(err)
				}
				w, err := c.Data()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(m.Wire); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if err := c.Quit(); err != nil {
					t.Fatal(err)
				}
				qid := p.QueueID(m.ID + "@client.example.test")
				sent(t, qid, m, "carol"+at)
				rcv := checkRelayed(t, findMessage(t, d.mailbox("carol"+at), m.ID), m)
				if !regexp.MustCompile(`^Received: from client\.example\.test \((\S+ )?\[127\.0\.0\.1\]\)\n`).MatchString(rcv) {
					t.Errorf("lmtpd's Received field does not show the XFORWARD client:\n%s", rcv)
				}
			})
		})
	}
}

// loggedPattern matches s as Postfix logs it in reply text: every byte
// outside printable ASCII replaced by '?'.
func loggedPattern(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			b.WriteString(`\?`)
			continue
		}
		b.WriteString(regexp.QuoteMeta(s[i : i+1]))
	}
	return b.String()
}

// checkRelayed verifies a file that came through Postfix: it ends with
// the message as submitted (LF line endings), and above it are exactly the
// fields lmtpd prepends and the one Received field Postfix adds. It
// returns lmtpd's Received field.
func checkRelayed(t testing.TB, file string, m testMessage) string {
	t.Helper()
	b := readFile(t, file)
	if !bytes.HasSuffix(b, m.Stored) {
		t.Fatalf("%s does not end with the message as submitted: %s", file, suffixDiff(b, m.Stored))
	}
	fields := headerFields(b[:len(b)-len(m.Stored)])
	if len(fields) < 2 || fieldName(fields[len(fields)-1]) != "received" || !strings.Contains(fields[len(fields)-1], "(Postfix") {
		t.Fatalf("%s: no Postfix Received field above the message:\n%s", file, strings.Join(fields, ""))
	}
	checkPrepended(t, file, fields[:len(fields)-1])
	return fields[len(fields)-2]
}

// countMessages counts the files in dir/new whose X-Test-ID is id.
func countMessages(t testing.TB, dir, id string) int {
	t.Helper()
	n := 0
	for _, f := range newFiles(t, dir) {
		if bytes.Contains(readFile(t, f), []byte("\nX-Test-ID: "+id+"\n")) {
			n++
		}
	}
	return n
}

// findFile waits for a file in dir/new that contains s.
func findFile(t testing.TB, dir, s string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, f := range newFiles(t, dir) {
			if bytes.Contains(readFile(t, f), []byte(s)) {
				return f
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no file containing %q in %s/new", s, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
