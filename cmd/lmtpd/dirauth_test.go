package main

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	dbsql "database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/sasl"
)

// dirTestUsers are the users of the test directories: one password
// hashed with each scheme the issue names for AUTH.
var dirTestUsers = []struct{ name, scheme, password string }{
	{"alice@example.test", "SHA512-CRYPT", "alice-pw"},
	{"bob@example.test", "BLF-CRYPT", "bob-pw"},
}

// hashWith hashes password with scheme, as lmtpd hash-password -scheme
// does.
func hashWith(t *testing.T, scheme, password string) string {
	t.Helper()
	h, err := sasl.HashWithScheme(scheme, password)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// writeSQLiteUsers creates a SQLite database in the style of Postfix
// Admin (mailbox with username, password, maildir, active) holding
// dirTestUsers, and returns its file.
func writeSQLiteUsers(t *testing.T, dir string) string {
	t.Helper()
	file := filepath.Join(dir, "mail.db")
	db, err := dbsql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE mailbox (username TEXT PRIMARY KEY, password TEXT NOT NULL, maildir TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1)`); err != nil {
		t.Fatal(err)
	}
	for _, u := range dirTestUsers {
		if _, err := db.Exec(`INSERT INTO mailbox (username, password, maildir) VALUES (?, ?, ?)`,
			u.name, hashWith(t, u.scheme, u.password), maildirOf(u.name)); err != nil {
			t.Fatal(err)
		}
	}
	return file
}

// maildirOf is Postfix Admin's maildir column for an address:
// "domain/localpart/", relative to the maildir root.
func maildirOf(addr string) string {
	local, domain, _ := strings.Cut(addr, "@")
	return domain + "/" + local + "/"
}

// writePasswdFile writes dirTestUsers as a Dovecot passwd-file.
func writePasswdFile(t *testing.T, dir string) string {
	t.Helper()
	file := filepath.Join(dir, "users")
	var b strings.Builder
	b.WriteString("# copied from a Dovecot setup\n")
	for _, u := range dirTestUsers {
		// No home: the maildir is the template's place under the root (a
		// home outside it needs trusted_paths).
		b.WriteString(u.name + ":" + hashWith(t, u.scheme, u.password) + ":5000:5000::::\n")
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// dirTestConfig returns a configuration with one directory (the TOML
// lines of a [[directory]] table) serving example.test and AUTH.
func dirTestConfig(t *testing.T, dir, directoryTable string) *config {
	t.Helper()
	text := `[[listener]]
address = "127.0.0.1:0"
protocol = "smtp"
auth = "optional"
insecure_auth = true

[delivery.maildir]
root = "mail"

[[domain]]
name = "example.test"
users = ["postmaster"]
directory = "users"

[auth]
directory = "users"

[[directory]]
name = "users"
` + directoryTable
	cfg, err := parseConfig("test.toml", text, dir, false)
	if err != nil {
		t.Fatalf("configuration:\n%s\n%v", text, err)
	}
	return cfg
}

// countingObserver counts directory events by kind and result.
type countingObserver struct{ errors, found, notFound atomic.Int64 }

func (o *countingObserver) Observe(e directory.Event) {
	switch e.Result {
	case directory.ResultFound:
		o.found.Add(1)
	case directory.ResultNotFound:
		o.notFound.Add(1)
	case directory.ResultError:
		o.errors.Add(1)
	}
}

// authServer serves AUTH from cfg's directories (and no configured
// users) on one end of a pipe, and returns the other end's dialogue.
func authServer(t *testing.T, reg *dirRegistry) *conversation {
	t.Helper()
	store, err := sasl.NewStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	srv := &protocol.Server{
		Hostname: "mx.test", Backend: nopBackend{}, AuthFailureDelay: -1, Logger: &log,
		Auth:        &authenticator{store: store, insecure: true, dirs: newDirAuth(reg)},
		AuthLimiter: protocol.NewAuthLimiter(2, 0),
	}
	c1, c2 := net.Pipe()
	srv.ServeConn(c1)
	t.Cleanup(func() { c2.Close(); srv.Close() })
	conv := newConversation(t, c2)
	conv.expect("220")
	conv.send("EHLO client.test")
	if got := authLine(conv.expect("250")); got != "AUTH PLAIN LOGIN" {
		t.Errorf("EHLO offers %q, want AUTH PLAIN LOGIN", got)
	}
	return conv
}

func plainLine(user, password string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password))
}

// TestAuthFromDirectory runs AUTH PLAIN and LOGIN over the wire against
// a SQLite directory and a Dovecot passwd-file holding a {SHA512-CRYPT}
// and a {BLF-CRYPT} hash: right passwords 235, wrong ones and unknown
// users 535 5.7.8, and once the directory fails (the database's table
// gone, the file removed) 454 4.7.0, which is not a failed attempt.
func TestAuthFromDirectory(t *testing.T) {
	for _, tc := range []struct {
		name  string
		table func(t *testing.T, dir string) string
		// breakIt makes the directory fail.
		breakIt func(t *testing.T, dir string)
	}{
		{
			name: "sqlite",
			table: func(t *testing.T, dir string) string {
				writeSQLiteUsers(t, dir)
				return `driver = "sql"
sql_driver = "sqlite"
dsn = "mail.db"
user_query = "SELECT maildir AS mailbox FROM mailbox WHERE username = {address} AND active"
password_query = "SELECT password FROM mailbox WHERE username = {address} AND active"
cache_ttl = "0s"
negative_cache_ttl = "0s"
`
			},
			breakIt: func(t *testing.T, dir string) {
				db, err := dbsql.Open("sqlite", filepath.Join(dir, "mail.db"))
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if _, err := db.Exec(`DROP TABLE mailbox`); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "passwd-file",
			table: func(t *testing.T, dir string) string {
				writePasswdFile(t, dir)
				return "driver = \"passwd-file\"\npath = \"users\"\ncache_ttl = \"0s\"\nnegative_cache_ttl = \"0s\"\n"
			},
			breakIt: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "users")); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := dirTestConfig(t, dir, tc.table(t, dir))
			obs := &countingObserver{}
			gen, err := openDirectories(cfg, zerolog.New(zerolog.NewTestWriter(t)), obs)
			if err != nil {
				t.Fatal(err)
			}
			reg := &dirRegistry{}
			reg.replace(gen)
			t.Cleanup(reg.close)
			conv := authServer(t, reg)
			for _, u := range dirTestUsers {
				conv.send(plainLine(u.name, "wrong"))
				conv.expect("535 5.7.8")
				conv.send(plainLine(strings.ToUpper(u.name), u.password)) // logins compare lower-cased
				conv.expect("235 2.7.0")
				conv.send("RSET")
				conv.expect("250")
				// One AUTH per session: a new one for the next user.
				conv = authServer(t, reg)
			}
			conv.send(plainLine("nobody@example.test", "alice-pw"))
			conv.expect("535 5.7.8")
			// LOGIN takes the same path.
			conv.send("AUTH LOGIN")
			conv.expect("334 VXNlcm5hbWU6")
			conv.send(base64.StdEncoding.EncodeToString([]byte("bob@example.test")))
			conv.expect("334 UGFzc3dvcmQ6")
			conv.send(base64.StdEncoding.EncodeToString([]byte("bob-pw")))
			conv.expect("235 2.7.0")

			tc.breakIt(t, dir)
			conv = authServer(t, reg)
			before := obs.errors.Load()
			// More than max_auth_failures (3): 454 is not a failed
			// attempt, so the connection stays open.
			for range 4 {
				conv.send(plainLine("alice@example.test", "alice-pw"))
				conv.expect("454 4.7.0")
			}
			if obs.errors.Load() == before {
				t.Error("the directory's failure was not observed as an error")
			}
			conv.send("NOOP")
			conv.expect("250")
		})
	}
}

// TestAuthDirectoryWithConfiguredUsers: a user configured in the file is
// checked there; a directory user still logs in beside it.
func TestAuthDirectoryWithConfiguredUsers(t *testing.T) {
	dir := t.TempDir()
	writePasswdFile(t, dir)
	cfg := dirTestConfig(t, dir, "driver = \"passwd-file\"\npath = \"users\"\n")
	gen, err := openDirectories(cfg, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := &dirRegistry{}
	reg.replace(gen)
	t.Cleanup(reg.close)
	store := newTestStore(t, map[string]string{"relay": "relay-pw"}, false)
	a := &authenticator{store: store, insecure: true, dirs: newDirAuth(reg)}
	if got := a.Mechanisms(&protocol.ConnState{}); strings.Join(got, " ") != "PLAIN LOGIN" {
		t.Errorf("Mechanisms = %q", got)
	}
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"relay", "relay-pw", true},
		{"relay", "alice-pw", false},
		{"alice@example.test", "alice-pw", true},
		{"alice@example.test", "relay-pw", false},
	} {
		s, err := a.NewServer(context.Background(), &protocol.ConnState{}, "PLAIN")
		if err != nil {
			t.Fatal(err)
		}
		_, done, err := s.Next([]byte("\x00" + tc.user + "\x00" + tc.pw))
		if got := err == nil && done; got != tc.ok {
			t.Errorf("%s/%s: ok %v (%v), want %v", tc.user, tc.pw, got, err, tc.ok)
		}
	}
}

// bindDir is a directory that checks passwords itself, as LDAP with
// auth = "bind" does; it records the keys it was asked about.
type bindDir struct {
	fakeDir
	down bool
	keys []directory.Key
}

func (b *bindDir) Authenticate(ctx context.Context, k directory.Key, password string) error {
	b.keys = append(b.keys, k)
	switch {
	case b.down:
		return errors.New("ldap: connection refused")
	case k.Address != "dave@example.test":
		return directory.ErrNotFound
	case password != "dave-pw":
		return directory.ErrBadPassword
	}
	return nil
}

// TestAuthBindDirectory: a directory.Authenticator (LDAP bind) decides
// itself, through the Cache; its ErrNotFound and ErrBadPassword are 535,
// any other error 454; the login reaches it lower-cased, split at the
// last '@'; it is never asked for a password hash.
func TestAuthBindDirectory(t *testing.T) {
	b := &bindDir{fakeDir: fakeDir{name: "ldap"}}
	gen := fakeGeneration(&b.fakeDir, "example.test")
	gen.auth = directory.NewCache(b, directory.CacheOptions{})
	gen.authBind = true
	reg := &dirRegistry{}
	reg.replace(gen)
	store, err := sasl.NewStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &authenticator{store: store, insecure: true, dirs: newDirAuth(reg)}
	try := func(user, pw string) error {
		s, err := a.NewServer(context.Background(), &protocol.ConnState{}, "PLAIN")
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Next([]byte("\x00" + user + "\x00" + pw))
		return err
	}
	if err := try("Dave@Example.Test", "dave-pw"); err != nil {
		t.Errorf("right password: %v", err)
	}
	if want := (directory.Key{Address: "dave@example.test", LocalPart: "dave", Domain: "example.test"}); b.keys[0] != want {
		t.Errorf("key %+v, want %+v", b.keys[0], want)
	}
	for _, tc := range []struct{ user, pw string }{{"dave@example.test", "nope"}, {"eve@example.test", "dave-pw"}} {
		if err := try(tc.user, tc.pw); protocol.AsError(err) == nil || protocol.AsError(err).Code != 535 {
			t.Errorf("%s/%s: %v, want 535", tc.user, tc.pw, err)
		}
	}
	b.down = true
	err = try("dave@example.test", "dave-pw")
	if e := protocol.AsError(err); e == nil || e.Code != 454 || e.EnhancedCode != (protocol.EnhancedCode{4, 7, 0}) {
		t.Errorf("directory down: %v, want 454 4.7.0", err)
	}
	if !strings.Contains(err.Error(), "directory ldap") {
		t.Errorf("the error does not name the directory: %v", err)
	}
}

// TestAuthCRAMFromDirectory: with [auth] directory_cram_md5 the
// directory's {CRAM-MD5} and {PLAIN} users log in with CRAM-MD5 over the
// wire; a user with a one-way hash, an unknown one and a wrong digest get
// 535 5.7.8; without the key CRAM-MD5 is not offered.
func TestAuthCRAMFromDirectory(t *testing.T) {
	dir := t.TempDir()
	cram, err := sasl.NewCRAMSecret("carol-pw")
	if err != nil {
		t.Fatal(err)
	}
	users := "carol@example.test:" + cram.Encode() + "::::::\n" +
		"dan@example.test:{PLAIN}dan-pw::::::\n" +
		"alice@example.test:" + hashWith(t, "SHA512-CRYPT", "alice-pw") + "::::::\n"
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(cramOn bool) *dirRegistry {
		cfg := dirTestConfig(t, dir, "driver = \"passwd-file\"\npath = \"users\"\n")
		cfg.Auth.DirectoryCRAMMD5 = cramOn
		gen, err := openDirectories(cfg, zerolog.Nop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		reg := &dirRegistry{}
		reg.replace(gen)
		t.Cleanup(reg.close)
		return reg
	}
	store, err := sasl.NewStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	off := &authenticator{store: store, dirs: newDirAuth(open(false))}
	if got := off.Mechanisms(&protocol.ConnState{}); len(got) != 0 {
		t.Errorf("without TLS, insecure_auth or directory_cram_md5: %q offered", got)
	}
	reg := open(true)
	a := &authenticator{store: store, dirs: newDirAuth(reg)}
	if got := strings.Join(a.Mechanisms(&protocol.ConnState{}), " "); got != "CRAM-MD5" {
		t.Errorf("without TLS: %q offered, want CRAM-MD5 only", got)
	}
	srv := &protocol.Server{Hostname: "mx.test", Backend: nopBackend{}, AuthFailureDelay: -1, Auth: a}
	t.Cleanup(func() { srv.Close() })
	for _, tc := range []struct {
		user, pw, want string
	}{
		{"carol@example.test", "carol-pw", "235 2.7.0"},
		{"Dan@Example.Test", "dan-pw", "235 2.7.0"},
		{"carol@example.test", "wrong", "535 5.7.8"},
		{"alice@example.test", "alice-pw", "535 5.7.8"},
		{"nobody@example.test", "x", "535 5.7.8"},
	} {
		c1, c2 := net.Pipe()
		srv.ServeConn(c1)
		conv := newConversation(t, c2)
		conv.expect("220")
		conv.send("EHLO client.test")
		conv.expect("250")
		conv.send("AUTH CRAM-MD5")
		ch := conv.expect("334 ")
		challenge, err := base64.StdEncoding.DecodeString(ch[4:])
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(md5.New, []byte(tc.pw))
		mac.Write(challenge)
		conv.send(base64.StdEncoding.EncodeToString([]byte(tc.user + " " + hex.EncodeToString(mac.Sum(nil)))))
		conv.expect(tc.want)
		c2.Close()
	}
}
