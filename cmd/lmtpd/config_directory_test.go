package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// TestRedactDSN: check-config hides the password of every DSN form the
// SQL drivers take and leaves the rest readable.
func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"host=/run/postgresql dbname=mail user=lmtpd", "host=/run/postgresql dbname=mail user=lmtpd"},
		{"host=db dbname=mail user=lmtpd password=s3cret sslmode=require", "host=db dbname=mail user=lmtpd password=(hidden) sslmode=require"},
		{`host=db password='it\'s secret' user=x`, "host=db password=(hidden) user=x"},
		{"lmtpd:p@ss@tcp(db:3306)/mail", "lmtpd:(hidden)@tcp(db:3306)/mail"},
		{"lmtpd:pw@/mail", "lmtpd:(hidden)@/mail"},
		{"postgres://lmtpd:s3cret@db.example.org/mail?sslmode=require", "postgres://lmtpd:(hidden)@db.example.org/mail?sslmode=require"},
		{"postgres://lmtpd@db.example.org/mail", "postgres://lmtpd@db.example.org/mail"},
		{"lmtpd:s3cret@unix(/run/mysqld/mysqld.sock)/mail", "lmtpd:(hidden)@unix(/run/mysqld/mysqld.sock)/mail"},
		{"lmtpd@tcp(127.0.0.1:3306)/mail", "lmtpd@tcp(127.0.0.1:3306)/mail"},
		{"/var/lib/lmtpd/users.db", "/var/lib/lmtpd/users.db"},
		{"file:/var/lib/lmtpd/users.db?mode=ro", "file:/var/lib/lmtpd/users.db?mode=ro"},
	} {
		if got := redactDSN(tc.in); got != tc.want {
			t.Errorf("redactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestCheckConfigDirectories: check-config connects to each directory
// once; a reachable one passes, one that does not answer is reported
// with its name, key and line, and the status is 75 (EX_TEMPFAIL); with
// -offline nothing is connected. Secrets of directories are hidden.
func TestCheckConfigDirectories(t *testing.T) {
	dir := t.TempDir()
	writeSQLiteUsers(t, dir)
	writePasswdFile(t, dir)
	// A loopback port nobody listens on: take one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	base := `[[listener]]
address = "127.0.0.1:2424"
[delivery.maildir]
root = "mail"
[[domain]]
name = "example.test"
users = ["postmaster"]
directory = "db"
[[directory]]
name = "db"
driver = "sql"
sql_driver = "sqlite"
dsn = "mail.db"
user_query = "SELECT maildir AS mailbox FROM mailbox WHERE username = {address}"
[[directory]]
name = "files"
driver = "passwd-file"
path = "users"
`
	ldapTable := `[[directory]]
name = "people"
driver = "ldap"
url = "ldap://` + deadAddr + `"
bind_dn = "cn=lmtpd,dc=example,dc=org"
bind_password = "ldap-secret"
base_dn = "ou=people,dc=example,dc=org"
user_filter = "(mail={address})"
timeout = "2s"
`
	write := func(text string) string {
		file := filepath.Join(dir, "lmtpd.toml")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	var stdout, stderr bytes.Buffer
	if st := cmdCheckConfig([]string{"-config", write(base)}, &stdout, &stderr); st != exOK {
		t.Fatalf("reachable directories: exit %d: %s", st, stderr.String())
	}
	if !strings.Contains(stdout.String(), `driver = "passwd-file"`) {
		t.Errorf("effective configuration lacks the directories:\n%s", stdout.String())
	}

	file := write(base + ldapTable)
	stdout.Reset()
	stderr.Reset()
	if st := cmdCheckConfig([]string{"-config", file}, &stdout, &stderr); st != exTempFail {
		t.Fatalf("unreachable LDAP: exit %d, want %d: %s", st, exTempFail, stderr.String())
	}
	want := file + `:19: directory[2]: directory "people" does not answer: `
	if !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr = %q, want one line starting %q", stderr.String(), want)
	}
	if strings.Contains(stdout.String(), "ldap-secret") || !strings.Contains(stdout.String(), `bind_password = "(hidden)"`) {
		t.Errorf("bind_password not hidden:\n%s", stdout.String())
	}
	stderr.Reset()
	if st := cmdCheckConfig([]string{"-config", file, "-offline", "-q"}, &stdout, &stderr); st != exOK || stderr.Len() > 0 {
		t.Errorf("-offline: exit %d, stderr %q", st, stderr.String())
	}
}

// FuzzRedactDSN: whatever the DSN, redactDSN does not panic and is
// idempotent; a password written in any of the three forms (libpq
// keyword, URL, go-sql-driver) is gone from the output.
func FuzzRedactDSN(f *testing.F) {
	f.Add("host=/run/postgresql dbname=mail", "lmtpd", "s3cret")
	f.Add("", "u", "p@ss:w/rd")
	f.Add("password=", "", "x")
	f.Fuzz(func(t *testing.T, dsn, user, pw string) {
		once := redactDSN(dsn)
		if twice := redactDSN(once); twice != once {
			t.Errorf("not idempotent: %q -> %q -> %q", dsn, once, twice)
		}
		// Passwords the forms can carry unquoted: no white space (a DSN
		// separator), quote, backslash, '@' or '/'.
		if len(pw) < 4 || strings.IndexFunc(pw, unicode.IsSpace) >= 0 || strings.ContainsAny(pw, "'\\@/") ||
			strings.IndexFunc(user, unicode.IsSpace) >= 0 || strings.ContainsAny(user, ":@/(") || strings.Contains(hiddenSecret, pw) {
			return
		}
		for _, form := range []string{
			"host=db user=" + user + " password=" + pw + " dbname=mail",
			"postgres://" + user + ":" + pw + "@db/mail",
			user + ":" + pw + "@tcp(db:3306)/mail",
		} {
			if got := redactDSN(form); strings.Contains(got, pw) && !strings.Contains(strings.Replace(form, pw, "", 1), pw) {
				t.Errorf("redactDSN(%q) = %q: the password is still there", form, got)
			}
		}
	})
}

// TestDirectoryUnknownAttribute: an LDAP attributes key that is no result
// field lmtpd uses is warned about once, at load, at its key.
func TestDirectoryUnknownAttribute(t *testing.T) {
	cfg, err := testConfig(t, `[[listener]]
address = "127.0.0.1:2424"
[delivery.maildir]
root = "mail"
[[domain]]
name = "example.test"
directory = "people"
[[directory]]
name = "people"
driver = "ldap"
url = "ldap://127.0.0.1:1"
base_dn = "ou=people,dc=example,dc=org"
user_filter = "(mail={address})"
attributes = { mailbox = "mailMessageStore", mialbox = "x" }
`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.warnings {
		got = append(got, w.Key)
	}
	if len(got) != 1 || got[0] != "directory[0].attributes.mialbox" {
		t.Fatalf("warnings at %q, want one at directory[0].attributes.mialbox", got)
	}
}
