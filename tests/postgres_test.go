//go:build linux

package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lmtpd/lmtpd/internal/pgtest"
	"github.com/lmtpd/lmtpd/internal/readmetest"
)

// TestPostgresDirectoryDaemon runs the README's PostgreSQL schema (in
// the style of Postfix Admin) and its [[directory]] table against a
// private PostgreSQL: AUTH PLAIN against a {SHA512-CRYPT} and a
// {BLF-CRYPT} hash, delivery to a user who exists only in the database;
// PostgreSQL stopped (SIGSTOP: connections hang): 451 4.3.0 at RCPT and
// 454 4.7.0 at AUTH within the timeout; PostgreSQL continuing: lmtpd
// recovers by itself.
func TestPostgresDirectoryDaemon(t *testing.T) {
	pg := pgtest.Start(t)
	sock := pg.Dir
	mail := pg.CreateDB("mail")
	if _, err := mail.Exec(readmetest.Block(t, "### PostgreSQL, in the style of Postfix Admin", "sql")); err != nil {
		t.Fatalf("the README's schema: %v", err)
	}
	for _, u := range []struct{ name, scheme, pw string }{
		{"alice@example.org", "SHA512-CRYPT", "alice-pw"},
		{"bob@example.org", "BLF-CRYPT", "bob-pw"},
	} {
		local, domain, _ := strings.Cut(u.name, "@")
		if _, err := mail.Exec(`INSERT INTO mailbox (username, password, maildir, local_part, domain) VALUES ($1, $2, $3, $4, $5)`,
			u.name, hashed(t, u.scheme, u.pw), domain+"/"+local+"/", local, domain); err != nil {
			t.Fatal(err)
		}
		if _, err := mail.Exec(`INSERT INTO alias (address, goto, domain) VALUES ($1, $2, $3)`, u.name, u.name, domain); err != nil {
			t.Fatal(err)
		}
	}

	dir := tempDir(t)
	smtpAddr := freePort(t)
	// The README's directory table, pointed at the private server, with
	// the cache off and a short timeout so the outage shows at once.
	table := strings.Replace(readmetest.Block(t, "### PostgreSQL, in the style of Postfix Admin", "toml"),
		"host=/run/postgresql", "host="+sock, 1)
	table = strings.Replace(table, "[[domain]]", `cache_ttl = "0s"
negative_cache_ttl = "0s"
timeout = "1s"

[[domain]]`, 1)
	cfgFile := writeFile(t, dir, "lmtpd.toml", fmt.Sprintf(`[log]
format = "json"

[[listener]]
name = "smtp"
protocol = "smtp"
address = "%s"
auth = "optional"
insecure_auth = true
auth_failure_delay = "0s"

[delivery.maildir]
root = "%s/mail"

%s`, smtpAddr, dir, table))
	if st, _, stderr := run(t, dir, "", "check-config", "-q", "-config", cfgFile); st != 0 {
		t.Fatalf("check-config: status %d\n%s", st, stderr)
	}
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")

	for _, u := range []struct{ name, pw string }{{"alice@example.org", "alice-pw"}, {"bob@example.org", "bob-pw"}} {
		c := dial(t, "tcp", smtpAddr)
		c.cmd("EHLO client.test", "250 ")
		c.cmd(authPlain(u.name, "wrong"), "535 5.7.8")
		c.cmd(authPlain(u.name, u.pw), "235 ")
		c.cmd("QUIT", "221 ")
	}
	c := dial(t, "tcp", smtpAddr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	// A hostile local part (quoted, as RFC 5321 allows) is a bind
	// parameter, not SQL: no such user.
	c.cmd(`RCPT TO:<"x' OR '1'='1"@example.org>`, "550 5.1.1")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.write(testMessage + ".\r\n")
	c.expect("250 ")
	if got := len(mailFiles(t, filepath.Join(dir, "mail", "example.org", "alice"))); got != 1 {
		t.Errorf("alice has %d messages, want 1", got)
	}

	// The backends serving lmtpd's pooled connections are children of the
	// postmaster: stop them all.
	pg.Signal(syscall.SIGSTOP)
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "451 4.3.0")
	c.cmd("RSET", "250 ")
	c.cmd(authPlain("bob@example.org", "bob-pw"), "454 4.7.0")
	pg.Signal(syscall.SIGCONT)
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd(authPlain("bob@example.org", "bob-pw"), "235 ")
	c.cmd("QUIT", "221 ")
}
