//go:build linux

package peers

import (
	"fmt"
	"net/textproto"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/pgtest"
	"github.com/lmtpd/lmtpd/internal/readmetest"
)

// TestPostfixPostgres runs the README's Postfix Admin style schema and
// [[directory]] table against a private PostgreSQL, lmtpd on them, and a
// private Postfix in front with virtual_transport = lmtp:unix:...: mail
// to a user that exists only in PostgreSQL lands in the maildir its
// maildir column names; an inactive one is unknown; mail to an unknown user is refused by lmtpd at
// RCPT with 550 5.1.1 and Postfix bounces it (dsn=5.1.1) to the sender,
// a user the README's table still lists in the config file. With
// lmtpd's socketmap listener as Postfix's virtual tables, Postfix's
// smtpd refuses the unknown user at RCPT (550 5.1.1) itself.
func TestPostfixPostgres(t *testing.T) {
	requireRoot(t, "a private Postfix instance")
	const heading = "### PostgreSQL, in the style of Postfix Admin"
	pg := pgtest.Start(t)
	sock := pg.Dir
	mail := pg.CreateDB("mail")
	if _, err := mail.Exec(readmetest.Block(t, heading, "sql")); err != nil {
		t.Fatalf("the README's schema: %v", err)
	}
	// The maildir column names a path of its own (not the default
	// DOMAIN/USER): the message must land there. dora is inactive.
	for _, u := range []struct {
		name, maildir string
		active        bool
	}{
		{"alice@example.test", "vmail/example.test/alice.pg/", true},
		{"dora@example.test", "vmail/example.test/dora.pg/", false},
	} {
		local, domain, _ := strings.Cut(u.name, "@")
		if _, err := mail.Exec(`INSERT INTO mailbox (username, password, maildir, local_part, domain, active) VALUES ($1, $2, $3, $4, $5, $6)`,
			u.name, "{PLAIN}unused", u.maildir, local, domain, u.active); err != nil {
			t.Fatal(err)
		}
		if _, err := mail.Exec(`INSERT INTO alias (address, goto, domain) VALUES ($1, $2, $3)`, u.name, u.name, domain); err != nil {
			t.Fatal(err)
		}
	}

	// The README's table, pointed at the private server and at the
	// domain the private Postfix routes to lmtpd.
	table := readmetest.Block(t, heading, "toml")
	table = strings.Replace(table, "host=/run/postgresql", "host="+sock, 1)
	table = strings.ReplaceAll(table, `"example.org"`, `"example.test"`)
	if !strings.Contains(table, sock) || !strings.Contains(table, `"example.test"`) {
		t.Fatalf("the README's directory table changed; the test's edits did not apply:\n%s", table)
	}
	// lmtpd's socketmap listener, for Postfix's RCPT checks below.
	mapDir := shortTempDir(t)
	mapSock := filepath.Join(mapDir, "map.sock")
	d := newDaemon(t, daemonOptions{Domains: table, Extra: fmt.Sprintf(`
[[listener]]
name = "map"
protocol = "socketmap"
address = "unix:%s"
socket_mode = "0666"
`, mapSock)})
	if err := makeTraversable(mapDir); err != nil {
		t.Fatal(err)
	}
	p := startPostfix(t, d, 50)

	const sender = "postmaster@example.test" // listed in the README's [[domain]] users
	known := newMessage("pfpg-known", sender, "alice@example.test", 3000)
	p.Sendmail(sender, []string{"alice@example.test"}, known.Stored)
	qid := p.QueueID(known.ID + "@client.example.test")
	l := p.WaitStatus(qid, "alice@example.test", "sent", postfixWait)
	if l.DSN != "2.0.0" || !strings.HasSuffix(l.Relay, "["+d.Socket+"]") {
		t.Errorf("maillog: %v, want dsn=2.0.0 over %s", l, d.Socket)
	}
	// The message is in the maildir the maildir column names, byte for
	// byte below the fields Postfix and lmtpd prepend.
	box := filepath.Join(d.Maildir, "vmail", "example.test", "alice.pg")
	checkRelayed(t, findMessage(t, box, known.ID), known)
	if fs := newFiles(t, d.mailbox("alice@example.test")); len(fs) != 0 {
		t.Errorf("the default mailbox %s holds %d messages; the maildir column was ignored", d.mailbox("alice@example.test"), len(fs))
	}

	unknown := newMessage("pfpg-unknown", sender, "nobody-here@example.test", 500)
	p.Sendmail(sender, []string{"nobody-here@example.test", "dora@example.test"}, unknown.Stored)
	qid = p.QueueID(unknown.ID + "@client.example.test")
	for _, rc := range []string{"nobody-here@example.test", "dora@example.test"} {
		l := p.WaitStatus(qid, rc, "bounced", postfixWait)
		if l.DSN != "5.1.1" || !regexp.MustCompile(`^host \S+ said: 550 5\.1\.1 `).MatchString(l.Reply) {
			t.Errorf("maillog: %v, want lmtpd's 550 5.1.1 (dsn=5.1.1)", l)
		}
	}
	// The bounce reaches the sender, a user listed beside the directory.
	pm := d.mailbox(sender)
	bounces := waitFiles(t, pm, 1, postfixWait)
	b := readFile(t, bounces[0])
	if !strings.Contains(string(b), "nobody-here@example.test") || !strings.Contains(string(b), "Status: 5.1.1") {
		t.Errorf("the bounce in %s does not name the recipient with Status: 5.1.1:\n%s", bounces[0], b)
	}
	if fs := newFiles(t, filepath.Join(d.Maildir, "vmail", "example.test", "dora.pg")); len(fs) != 0 {
		t.Errorf("inactive dora got %d messages", len(fs))
	}

	// With lmtpd's socketmap as Postfix's virtual tables (README
	// "Lookups in Postfix"), smtpd refuses the unknown user at RCPT from
	// what PostgreSQL holds, and accepts the PostgreSQL-only one.
	if out, err := p.run(requirePeer(t, "postconf"), "-c", p.Etc, "-e",
		"virtual_mailbox_domains = socketmap:unix:"+mapSock+":domain",
		"virtual_mailbox_maps = socketmap:unix:"+mapSock+":mailbox"); err != nil {
		t.Fatalf("postconf: %v\n%s", err, out)
	}
	if out, err := p.run(p.postfixCmd, "-c", p.Etc, "reload"); err != nil {
		t.Fatalf("postfix reload: %v\n%s", err, out)
	}
	// The reload is asynchronous: retry until an smtpd started after it
	// refuses the unknown user.
	var c *textproto.Conn
	deadline := time.Now().Add(postfixWait)
	for {
		c = smtpDial(t, p.SMTPAddr)
		smtpCmd(t, c, "EHLO client.example.test", 250)
		smtpCmd(t, c, "MAIL FROM:<"+sender+">", 250)
		if err := c.PrintfLine("RCPT TO:<nobody-here@example.test>"); err != nil {
			t.Fatal(err)
		}
		code, msg, err := c.ReadResponse(0)
		if err != nil && code == 0 {
			t.Fatal(err)
		}
		if code == 550 {
			if want := "5.1.1 <nobody-here@example.test>: Recipient address rejected: User unknown in virtual mailbox table"; msg != want {
				t.Errorf("RCPT nobody-here: 550 %s, want 550 %s", msg, want)
			}
			break
		}
		smtpCmd(t, c, "QUIT", 221)
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("smtpd still answers %d %s for an unknown user after the reload; maillog:\n%s", code, msg, p.logTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.Close()
	smtpCmd(t, c, "RCPT TO:<dora@example.test>", 550)
	smtpCmd(t, c, "RCPT TO:<alice@example.test>", 250)
	viaMap := newMessage("pfpg-socketmap", sender, "alice@example.test", 1000)
	smtpCmd(t, c, "DATA", 354)
	dw := c.DotWriter()
	dw.Write(viaMap.Stored)
	dw.Close()
	if _, _, err := c.ReadResponse(250); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	smtpCmd(t, c, "QUIT", 221)
	qid = p.QueueID(viaMap.ID + "@client.example.test")
	p.WaitStatus(qid, "alice@example.test", "sent", postfixWait)
	findMessage(t, box, viaMap.ID)
}
