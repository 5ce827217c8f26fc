//go:build linux

package peers

import (
	"fmt"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPostfixQuotaPolicy: lmtpd's policy listener, in Postfix's
// private/ directory as check_policy_service unix:private/lmtpd-quota
// names it, answers from lmtpd's quota. An over-quota recipient, and one
// whose SIZE= would take it past the limit, are refused by Postfix's smtpd
// at RCPT with Postfix's reply text; the other recipient of the same
// transaction is accepted and delivered through LMTP; nothing is bounced.
func TestPostfixQuotaPolicy(t *testing.T) {
	opts := daemonOptions{
		Extra: "[quota]\nenabled = true\nstorage = 10000\ngrace = \"0\"\n",
	}
	d := prepareDaemon(t, opts)
	p := startPostfix(t, d, 50)

	// The policy listener goes where Postfix's relative "private/NAME"
	// points: the queue directory's private/, owned by postfix.
	private := filepath.Join(p.Root, "spool", "private")
	if err := os.MkdirAll(private, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "postfix", private).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix: %v\n%s", err, out)
	}
	sock := filepath.Join(private, "lmtpd-quota")
	opts.Extra += fmt.Sprintf("\n[[listener]]\nname = \"quota-status\"\nprotocol = \"policy\"\naddress = %q\nsocket_owner = \"postfix\"\nsocket_mode = \"0660\"\n\n", "unix:"+sock)
	if err := os.WriteFile(d.Config, []byte(d.configText(opts)), 0o644); err != nil {
		t.Fatal(err)
	}
	// full is over quota, near has 9000 of 10000 bytes.
	for _, u := range []struct {
		user string
		size int
	}{{"full", 12000}, {"near", 9000}} {
		dir := filepath.Join(d.mailbox(u.user+"@example.test"), "new")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("1700000000.M1P1Q1.host,S=%d", u.size)
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, u.size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no policy socket %s:\n%s", sock, d.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}

	if out, err := p.run(requirePeer(t, "postconf"), "-c", p.Etc, "-e",
		"smtpd_recipient_restrictions = check_policy_service unix:private/lmtpd-quota"); err != nil {
		t.Fatalf("postconf: %v\n%s", err, out)
	}
	if out, err := p.run(p.postfixCmd, "-c", p.Etc, "reload"); err != nil {
		t.Fatalf("postfix reload: %v\n%s", err, out)
	}

	// The reload is asynchronous: retry until smtpd refuses full@.
	var c *textproto.Conn
	for deadline := time.Now().Add(postfixWait); ; {
		c = smtpDial(t, p.SMTPAddr)
		smtpCmd(t, c, "EHLO client.example.test", 250)
		smtpCmd(t, c, "MAIL FROM:<sender@example.test> SIZE=2000", 250)
		if err := c.PrintfLine("RCPT TO:<full@example.test>"); err != nil {
			t.Fatal(err)
		}
		code, msg, err := c.ReadResponse(0)
		if code == 552 {
			if want := "5.2.2 <full@example.test>: Recipient address rejected: Mailbox full"; msg != want {
				t.Errorf("RCPT full: %d %s, want 552 %s", code, msg, want)
			}
			break
		}
		if code != 250 || err != nil && code == 0 {
			t.Fatalf("RCPT full: %d %s %v", code, msg, err)
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("smtpd does not refuse the over-quota recipient; maillog:\n%s\nlmtpd:\n%s", p.logTail(30), d.logTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.Close()
	// SIZE=2000 would take near past 10000.
	if got := smtpCmd(t, c, "RCPT TO:<near@example.test>", 552); got != "5.2.2 <near@example.test>: Recipient address rejected: Mailbox full" {
		t.Errorf("RCPT near: 552 %s", got)
	}
	smtpCmd(t, c, "RCPT TO:<bob@example.test>", 250)
	m := newMessage("quota-1", "sender@example.test", "bob@example.test", 1500)
	smtpCmd(t, c, "DATA", 354)
	dw := c.DotWriter()
	dw.Write(m.Stored)
	dw.Close()
	if _, _, err := c.ReadResponse(250); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	smtpCmd(t, c, "QUIT", 221)

	qid := p.QueueID(m.ID + "@client.example.test")
	p.WaitStatus(qid, "bob@example.test", "sent", postfixWait)
	findMessage(t, d.mailbox("bob@example.test"), m.ID)
	for _, l := range p.Statuses(qid) {
		if l.Status != "sent" {
			t.Errorf("maillog: %v", l)
		}
	}
	for _, line := range p.logLines() {
		if strings.Contains(line, "status=bounced") || strings.Contains(line, "warning: problem talking to server") {
			t.Errorf("maillog: %s", line)
		}
	}
	for _, u := range []string{"full", "near"} {
		if n := len(newFiles(t, d.mailbox(u+"@example.test"))); n != 1 {
			t.Errorf("%s@ has %d messages, want the 1 it had", u, n)
		}
	}
	if log := d.logTail(200); strings.Count(log, `"action":"552 5.2.2 Mailbox full"`) != 2 {
		t.Errorf("lmtpd did not log the refusals:\n%s", log)
	}
}
