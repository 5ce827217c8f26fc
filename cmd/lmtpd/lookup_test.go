package main

import (
	"bytes"
	dbsql "database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLookupCommand runs lmtpd lookup against a SQLite directory with
// users and aliases: a directory user, an alias fanning out, an unknown
// address (67), a loop (67), and the directory broken (75), in text and
// JSON.
func TestLookupCommand(t *testing.T) {
	dir := t.TempDir()
	db := writeSQLiteUsers(t, dir)
	sq, err := dbsql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	for _, q := range []string{
		`CREATE TABLE alias (address TEXT NOT NULL, goto TEXT NOT NULL)`,
		`INSERT INTO alias VALUES ('alice@example.test', 'alice@example.test')`,
		`INSERT INTO alias VALUES ('team@example.test', 'alice@example.test, bob@example.test')`,
		`INSERT INTO alias VALUES ('loop@example.test', 'loop@example.test, pool@example.test')`,
		`INSERT INTO alias VALUES ('pool@example.test', 'loop@example.test')`,
		`ALTER TABLE mailbox ADD COLUMN quota_bytes INTEGER`,
		`UPDATE mailbox SET quota_bytes = 1000 WHERE username = 'bob@example.test'`,
	} {
		if _, err := sq.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "lmtpd.toml")
	text := `[[listener]]
address = "127.0.0.1:2424"
[delivery.maildir]
root = "mail"
detail_folders = true
[[domain]]
name = "example.test"
users = ["postmaster"]
directory = "users"
[[directory]]
name = "users"
driver = "sql"
sql_driver = "sqlite"
dsn = "mail.db"
user_query = "SELECT maildir AS mailbox, quota_bytes FROM mailbox WHERE username = {address}"
alias_query = "SELECT goto FROM alias WHERE address = {address}"
cache_ttl = "0s"
negative_cache_ttl = "0s"
`
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	lookup := func(args ...string) (int, string) {
		t.Helper()
		stderr, err := os.CreateTemp(dir, "stderr")
		if err != nil {
			t.Fatal(err)
		}
		defer stderr.Close()
		var out bytes.Buffer
		st := cmdLookup(append([]string{"-config", file}, args...), &out, stderr)
		b, _ := os.ReadFile(stderr.Name())
		t.Logf("lookup %v: exit %d\n%s%s", args, st, out.String(), b)
		return st, out.String()
	}
	mail := filepath.Join(dir, "mail", "example.test")

	st, out := lookup("-json", "Alice+news@example.test", "team@example.test", "postmaster@example.test")
	if st != exOK {
		t.Fatalf("exit %d, want 0", st)
	}
	var got []lookupResult
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r lookupResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		got = append(got, r)
	}
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3", len(got))
	}
	if r := got[0]; r.Status != "deliver" || r.Directory != "users" || len(r.Recipients) != 1 ||
		r.Recipients[0].Mailbox != filepath.Join(mail, "alice") || r.Recipients[0].Folder != ".news" {
		t.Errorf("alice+news: %+v", r)
	}
	if r := got[1]; r.Status != "deliver" || len(r.Recipients) != 2 || r.Recipients[1].Mailbox != filepath.Join(mail, "bob") ||
		r.Recipients[1].QuotaBytes == nil || *r.Recipients[1].QuotaBytes != 1000 {
		t.Errorf("team: %+v", r)
	}
	if r := got[2]; r.Status != "deliver" || r.Directory != "" || len(r.Recipients) != 1 {
		t.Errorf("postmaster (configured): %+v", r)
	}

	st, out = lookup("team@example.test", "nobody@example.test")
	if st != exNoUser || !strings.Contains(out, "team@example.test status=deliver directory=users\n  alice@example.test target=maildir mailbox="+filepath.Join(mail, "alice")) ||
		!strings.Contains(out, `nobody@example.test status=unknown reply="550 5.1.1`) {
		t.Errorf("text: exit %d\n%s", st, out)
	}
	if st, out = lookup("loop@example.test"); st != exNoUser || !strings.Contains(out, "5.4.6") {
		t.Errorf("loop: exit %d\n%s", st, out)
	}
	if _, err := sq.Exec(`ALTER TABLE alias RENAME TO gone`); err != nil {
		t.Fatal(err)
	}
	if st, out = lookup("nobody@example.test", "team@example.test"); st != exTempFail || !strings.Contains(out, "team@example.test status=tempfail") {
		t.Errorf("directory down: exit %d, want %d\n%s", st, exTempFail, out)
	}
}
