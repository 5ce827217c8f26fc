//go:build linux

package tests

import (
	dbsql "database/sql"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	_ "modernc.org/sqlite" // the SQLite files the directories read

	"github.com/lmtpd/lmtpd/internal/wiretest"
	"github.com/lmtpd/lmtpd/sasl"
)

// writeUsersDB creates a SQLite database in the style of Postfix Admin
// with the given users (address -> Dovecot-style password hash).
func writeUsersDB(t *testing.T, file string, users map[string]string) {
	t.Helper()
	db, err := dbsql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE mailbox (username TEXT PRIMARY KEY, password TEXT NOT NULL, maildir TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1)`); err != nil {
		t.Fatal(err)
	}
	for u, h := range users {
		if _, err := db.Exec(`INSERT INTO mailbox (username, password, maildir) VALUES (?, ?, ?)`, u, h, postfixAdminMaildir(u)); err != nil {
			t.Fatal(err)
		}
	}
}

func hashed(t *testing.T, scheme, password string) string {
	t.Helper()
	h, err := sasl.HashWithScheme(scheme, password)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// directoryConfig is an SMTP listener with AUTH (insecure_auth: the test
// speaks plaintext on loopback), metrics, and example.test's users and
// AUTH from the SQLite directory in dbFile.
func directoryConfig(dir, smtpAddr, metricsAddr, dbFile string) string {
	return fmt.Sprintf(`[log]
format = "json"

[[listener]]
name = "smtp"
protocol = "smtp"
address = "%s"
auth = "optional"
insecure_auth = true
auth_failure_delay = "0s"

[metrics]
address = "%s"

[delivery.maildir]
root = "%s/mail"

[[domain]]
name = "example.test"
users = ["postmaster"]
directory = "db"

[auth]
directory = "db"

[[directory]]
name = "db"
driver = "sql"
sql_driver = "sqlite"
dsn = "%s"
user_query = "SELECT maildir AS mailbox FROM mailbox WHERE username = {address} AND active"
password_query = "SELECT password FROM mailbox WHERE username = {address} AND active"
`, smtpAddr, metricsAddr, dir, dbFile)
}

func authPlain(user, password string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password))
}

// TestDirectoryDaemon runs the binary with example.test's users and AUTH
// in a SQLite directory: AUTH PLAIN against a {SHA512-CRYPT} and a
// {BLF-CRYPT} hash (535 for a wrong password), mail to a user who exists
// only in the database delivered into the maildir template, an unknown
// one refused 550 5.1.1 at RCPT; then SIGHUP points the directory at
// another database: its users are served at once, the old ones are gone,
// and the metrics count the lookups by directory and result.
func TestDirectoryDaemon(t *testing.T) {
	dir := tempDir(t)
	db1, db2 := filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")
	writeUsersDB(t, db1, map[string]string{
		"alice@example.test": hashed(t, "SHA512-CRYPT", "alice-pw"),
		"bob@example.test":   hashed(t, "BLF-CRYPT", "bob-pw"),
	})
	writeUsersDB(t, db2, map[string]string{"carol@example.test": hashed(t, "ARGON2ID", "carol-pw")})
	ports := wiretest.FreePorts(t, 2)
	smtpAddr, metricsAddr := ports[0], ports[1]
	cfgFile := writeFile(t, dir, "lmtpd.toml", directoryConfig(dir, smtpAddr, metricsAddr, db1))
	if st, _, stderr := run(t, dir, "", "check-config", "-q", "-config", cfgFile); st != 0 {
		t.Fatalf("check-config: status %d\n%s", st, stderr)
	}
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")

	for _, u := range []struct{ name, pw string }{{"alice@example.test", "alice-pw"}, {"bob@example.test", "bob-pw"}} {
		c := dial(t, "tcp", smtpAddr)
		c.cmd("EHLO client.test", "250 ")
		c.cmd(authPlain(u.name, "wrong"), "535 5.7.8")
		c.cmd(authPlain(u.name, u.pw), "235 ")
		c.cmd("QUIT", "221 ")
	}
	c := dial(t, "tcp", smtpAddr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1")
	c.cmd("RCPT TO:<bob@example.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.write(testMessage + ".\r\n")
	c.expect("250 ")
	if got := len(mailFiles(t, filepath.Join(dir, "mail", "example.test", "bob"))); got != 1 {
		t.Errorf("bob has %d messages, want 1", got)
	}

	writeFile(t, dir, "lmtpd.toml", directoryConfig(dir, smtpAddr, metricsAddr, db2))
	n := p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, "configuration reloaded")
	// The session opened before the reload sees the new directory at its
	// next MAIL.
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.test>", "550 5.1.1")
	c.cmd("RCPT TO:<carol@example.test>", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd(authPlain("carol@example.test", "carol-pw"), "235 ")

	m := scrape(t, metricsAddr)
	for _, k := range []string{
		`lmtpd_directory_lookups_total{directory="db",kind="user",result="found",source="directory"}`,
		`lmtpd_directory_lookups_total{directory="db",kind="user",result="not_found",source="directory"}`,
		`lmtpd_directory_lookups_total{directory="db",kind="password",result="found",source="directory"}`,
		`lmtpd_directory_lookup_duration_seconds_count{directory="db",kind="user"}`,
	} {
		if m[k] < 1 {
			t.Errorf("metric %s = %v, want at least 1", k, m[k])
		}
	}
	if _, ok := m[`lmtpd_directory_pool_connections{directory="db"}`]; !ok {
		t.Error("no pool gauge for directory db")
	}
	c.cmd("QUIT", "221 ")
}

// postfixAdminMaildir is Postfix Admin's maildir column for an address:
// "domain/localpart/", relative to the maildir root.
func postfixAdminMaildir(addr string) string {
	local, domain, _ := strings.Cut(addr, "@")
	return domain + "/" + local + "/"
}
