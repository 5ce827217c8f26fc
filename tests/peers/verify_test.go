//go:build linux

package peers

import (
	"errors"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readmeMainCf returns the main.cf lines of the README's indented block
// that begins with the line starting with first (issue 17: the README's
// recipes are tested as printed, read from the README itself).
func readmeMainCf(t *testing.T, first string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "    "+first) {
			continue
		}
		var out []string
		for _, l := range lines[i:] {
			if !strings.HasPrefix(l, "    ") {
				break
			}
			out = append(out, strings.TrimSpace(l))
		}
		return out
	}
	t.Fatalf("README.md has no indented line starting with %q", first)
	return nil
}

// TestReadmeRejectUnverifiedRecipient: with the README's
// reject_unverified_recipient lines in main.cf, Postfix refuses an
// address lmtpd does not serve at RCPT time, 550 with lmtpd's 5.1.1,
// instead of accepting and bouncing it later; a known user is accepted,
// and the probe that found out delivered nothing.
func TestReadmeRejectUnverifiedRecipient(t *testing.T) {
	d := newDaemon(t, daemonOptions{Domains: `
[[domain]]
name = "example.test"
users = ["alice"]
aliases = { postmaster = ["alice"] }

[[domain]]
name = "tcp.example.test"
users = ["alice"]
aliases = { postmaster = ["alice"] }
`})
	p := startPostfix(t, d, 50)
	postconf := requirePeer(t, "postconf")
	recipe := readmeMainCf(t, "smtpd_recipient_restrictions = ")
	if !strings.Contains(strings.Join(recipe, "\n"), "reject_unverified_recipient") {
		t.Fatalf("README's recipe lacks reject_unverified_recipient: %q", recipe)
	}
	// The test's client is 127.0.0.1, inside the instance's mynetworks,
	// which the recipe's permit_mynetworks lets through unverified; on a
	// real MX the senders are outside it, as this makes the test client.
	args := append([]string{"-c", p.Etc, "-e"}, recipe...)
	args = append(args, "mynetworks = 127.0.0.2/32")
	if out, err := p.run(postconf, args...); err != nil {
		t.Fatalf("postconf -e %q: %v\n%s", args, err, out)
	}
	if out, err := p.run(p.postfixCmd, "-c", p.Etc, "reload"); err != nil {
		t.Fatalf("postfix reload: %v\n%s", err, out)
	}
	time.Sleep(time.Second) // reload is asynchronous: let smtpd restart

	// rcpt answers RCPT for addr in a fresh transaction, waiting out the
	// 450 Postfix gives while its probe is still under way.
	rcpt := func(addr string) error {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			c, err := smtp.Dial(p.SMTPAddr)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Hello("client.example.org"); err != nil {
				t.Fatal(err)
			}
			if err := c.Mail("sender@example.org"); err != nil {
				t.Fatal(err)
			}
			err = c.Rcpt(addr)
			c.Quit()
			var te *textproto.Error
			if errors.As(err, &te) && te.Code == 450 && time.Now().Before(deadline) {
				t.Logf("RCPT %s: %v (probe under way)", addr, err)
				time.Sleep(time.Second)
				continue
			}
			return err
		}
	}

	err := rcpt("nobody@example.test")
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 550 || !strings.Contains(te.Msg, "5.1.1") {
		t.Errorf("RCPT of an unknown user: %v, want 550 with lmtpd's 5.1.1", err)
	} else {
		t.Logf("RCPT of an unknown user: %v", err)
	}
	if err := rcpt("alice@example.test"); err != nil {
		t.Errorf("RCPT of a known user: %v", err)
	}
	// The probes asked lmtpd (MAIL and RCPT) without sending a message.
	if files := newFiles(t, d.mailbox("alice@example.test")); len(files) != 0 {
		t.Errorf("probes delivered: %q", files)
	}
	if !d.logEventually(5*time.Second, "nobody@example.test") {
		t.Errorf("lmtpd never saw the probe for nobody@example.test; log:\n%s", d.logTail(20))
	}
}
