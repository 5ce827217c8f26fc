package main

import (
	dbsql "database/sql"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/protocol"
)

// TestDomainAliasesFromDirectory delivers over LMTP through aliases held
// in a SQLite directory in Postfix Admin's shape: a self-alias (alice →
// alice) is the mailbox, a comma-separated goto and several rows fan out,
// a loop is 554 5.4.6, and the directory broken is 451 4.3.0.
func TestDomainAliasesFromDirectory(t *testing.T) {
	dir := t.TempDir()
	db := writeSQLiteUsers(t, dir)
	sq, err := dbsql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	if _, err := sq.Exec(`CREATE TABLE alias (address TEXT NOT NULL, goto TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1)`); err != nil {
		t.Fatal(err)
	}
	for _, row := range [][2]string{
		{"alice@example.test", "alice@example.test"},
		{"team@example.test", "alice@example.test,bob@example.test"},
		{"rows@example.test", "bob@example.test"},
		{"rows@example.test", "team@example.test"},
		{"loop1@example.test", "loop2@example.test"},
		{"loop2@example.test", "loop1@example.test"},
	} {
		if _, err := sq.Exec(`INSERT INTO alias (address, goto) VALUES (?, ?)`, row[0], row[1]); err != nil {
			t.Fatal(err)
		}
	}
	cfg := dirTestConfig(t, dir, `driver = "sql"
sql_driver = "sqlite"
dsn = "mail.db"
user_query = "SELECT maildir AS mailbox FROM mailbox WHERE username = {address} AND active"
alias_query = "SELECT goto FROM alias WHERE address = {address} AND active"
password_query = "SELECT password FROM mailbox WHERE username = {address} AND active"
cache_ttl = "0s"
negative_cache_ttl = "0s"
`)
	gen, err := openDirectories(cfg, zerolog.New(zerolog.NewTestWriter(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := &dirRegistry{}
	reg.replace(gen)
	t.Cleanup(reg.close)
	if err := prepareDelivery(&cfg.dcfg); err != nil {
		t.Fatal(err)
	}
	router, err := delivery.New(cfg.plan.WithOptions(delivery.PlanOptions{Lookup: &domainLookup{reg: reg}}), delivery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { router.Close() })
	log := zerolog.New(zerolog.NewTestWriter(t))
	srv := &protocol.Server{Protocol: protocol.LMTP, Hostname: "mx.test", Backend: router, Logger: &log}
	t.Cleanup(func() { srv.Close() })
	c1, c2 := net.Pipe()
	srv.ServeConn(c1)
	t.Cleanup(func() { c2.Close() })
	conv := newConversation(t, c2)
	conv.expect("220")
	conv.send("LHLO client.test")
	conv.expect("250")

	conv.send("MAIL FROM:<sender@elsewhere.test>")
	conv.expect("250")
	conv.send("RCPT TO:<alice@example.test>") // self-alias: alice's mailbox
	conv.expect("250")
	conv.send("RCPT TO:<team@example.test>") // comma value: alice, bob
	conv.expect("250")
	conv.send("RCPT TO:<rows@example.test>") // rows: bob, team (alice, bob)
	conv.expect("250")
	conv.send("RCPT TO:<loop1@example.test>")
	conv.expect("554 5.4.6")
	conv.send("DATA")
	conv.expect("354")
	conv.send("Subject: hello\r\n\r\nHi.\r\n.")
	for range 3 {
		conv.expect("250")
	}
	// One copy per mailbox, however many recipients reach it.
	for user, want := range map[string]int{"alice": 1, "bob": 1} {
		entries, err := os.ReadDir(filepath.Join(dir, "mail", "example.test", user, "new"))
		if err != nil || len(entries) != want {
			t.Errorf("maildir of %s: %d messages (%v), want %d", user, len(entries), err, want)
		}
	}

	if _, err := sq.Exec(`ALTER TABLE alias RENAME TO gone`); err != nil {
		t.Fatal(err)
	}
	conv.send("MAIL FROM:<sender@elsewhere.test>")
	conv.expect("250")
	conv.send("RCPT TO:<team@example.test>")
	conv.expect("451 4.3.0")
	conv.send("RSET")
	conv.expect("250")
}
