package main

import (
	"context"
	dbsql "database/sql"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
)

// TestDomainUsersFromDirectory delivers over LMTP to a user that exists
// only in a SQLite directory ([[domain]] directory): 250 and the message
// in the maildir template's place; an unknown user 550 5.1.1; a user
// configured in the file still delivered; and, the directory broken,
// 451 4.3.0 for its users only.
func TestDomainUsersFromDirectory(t *testing.T) {
	dir := t.TempDir()
	db := writeSQLiteUsers(t, dir)
	cfg := dirTestConfig(t, dir, `driver = "sql"
sql_driver = "sqlite"
dsn = "mail.db"
user_query = "SELECT maildir AS mailbox FROM mailbox WHERE username = {address} AND active"
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
	dial := func() *conversation {
		c1, c2 := net.Pipe()
		srv.ServeConn(c1)
		t.Cleanup(func() { c2.Close() })
		conv := newConversation(t, c2)
		conv.expect("220")
		conv.send("LHLO client.test")
		conv.expect("250")
		return conv
	}
	t.Cleanup(func() { srv.Close() })

	conv := dial()
	conv.send("MAIL FROM:<sender@elsewhere.test>")
	conv.expect("250")
	conv.send("RCPT TO:<Alice+news@example.test>")
	conv.expect("250")
	conv.send("RCPT TO:<nobody@example.test>")
	conv.expect("550 5.1.1")
	conv.send("RCPT TO:<postmaster@example.test>")
	conv.expect("250")
	conv.send("DATA")
	conv.expect("354")
	conv.send("Subject: hello\r\n\r\nHi.\r\n.")
	conv.expect("250")
	conv.expect("250")
	for _, user := range []string{"alice", "postmaster"} {
		entries, err := os.ReadDir(filepath.Join(dir, "mail", "example.test", user, "new"))
		if err != nil || len(entries) != 1 {
			t.Errorf("maildir of %s: %d messages (%v), want 1", user, len(entries), err)
		}
	}

	sq, err := dbsql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	if _, err := sq.Exec(`ALTER TABLE mailbox RENAME TO gone`); err != nil {
		t.Fatal(err)
	}
	conv.send("MAIL FROM:<sender@elsewhere.test>")
	conv.expect("250")
	conv.send("RCPT TO:<bob@example.test>")
	conv.expect("451 4.3.0")
	conv.send("RCPT TO:<postmaster@example.test>")
	conv.expect("250")
	conv.send("RSET")
	conv.expect("250")
	// The directory back: no restart, no reload.
	if _, err := sq.Exec(`ALTER TABLE gone RENAME TO mailbox`); err != nil {
		t.Fatal(err)
	}
	conv.send("MAIL FROM:<sender@elsewhere.test>")
	conv.expect("250")
	conv.send("RCPT TO:<bob@example.test>")
	conv.expect("250")
}

// fakeDir is a directory that records Close and can hold a lookup.
type fakeDir struct {
	name    string
	mu      sync.Mutex
	closed  bool
	entered chan struct{} // a lookup started
	proceed chan struct{} // let it finish
}

func (f *fakeDir) Name() string { return f.name }
func (f *fakeDir) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
		<-f.proceed
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return directory.Record{}, errors.New("closed")
	}
	if k.LocalPart == "known" {
		return directory.Record{}, nil
	}
	return directory.Record{}, directory.ErrNotFound
}
func (f *fakeDir) LookupAlias(context.Context, directory.Key) ([]string, error) {
	return nil, directory.ErrNotFound
}
func (f *fakeDir) LookupPassword(context.Context, directory.Key) (string, error) {
	return "", directory.ErrNotFound
}
func (f *fakeDir) Check(context.Context) error { return nil }
func (f *fakeDir) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}
func (f *fakeDir) isClosed() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.closed }

func fakeGeneration(d *fakeDir, domain string) *dirGeneration {
	return &dirGeneration{
		byName: map[string]directory.Directory{d.name: d}, order: []string{d.name},
		domains: map[string]directory.Directory{domain: d}, log: zerolog.Nop(), closed: make(chan struct{}),
	}
}

// TestDirectoryReloadInFlight: a reload retires the old directories, but
// a lookup already running on them finishes there and succeeds; they
// close when it ends, and the next lookup uses the new ones.
func TestDirectoryReloadInFlight(t *testing.T) {
	oldDir := &fakeDir{name: "old", entered: make(chan struct{}), proceed: make(chan struct{})}
	newDir := &fakeDir{name: "new"}
	reg := &dirRegistry{}
	oldGen := fakeGeneration(oldDir, "example.test")
	reg.replace(oldGen)
	l := &domainLookup{reg: reg}
	result := make(chan error, 1)
	go func() {
		ok, err := lookupOK(l, "Example.Test", "Known")
		if err == nil && !ok {
			err = errors.New("known user not found")
		}
		result <- err
	}()
	<-oldDir.entered
	newGen := fakeGeneration(newDir, "example.test")
	reg.replace(newGen)
	if oldDir.isClosed() {
		t.Fatal("old directory closed under a lookup in flight")
	}
	close(oldDir.proceed)
	if err := <-result; err != nil {
		t.Fatalf("lookup in flight across the reload: %v", err)
	}
	select {
	case <-oldGen.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("old directory not closed after its last lookup")
	}
	if !oldDir.isClosed() {
		t.Error("old directory not closed")
	}
	if ok, err := lookupOK(l, "example.test", "known"); !ok || err != nil {
		t.Errorf("after the reload: %v %v", ok, err)
	}
	if ok, err := lookupOK(l, "other.test", "known"); ok || err != nil {
		t.Errorf("a domain without a directory: %v %v, want false, nil", ok, err)
	}
	reg.close()
	select {
	case <-newGen.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not close the current directories")
	}
	if ok, err := lookupOK(l, "example.test", "known"); ok || err != nil {
		t.Errorf("after close: %v %v, want false, nil", ok, err)
	}
}

// TestDirectoryMetrics: lookups through a directory's cache reach the
// Prometheus registry by directory, kind, result and source (a cache hit
// is source "cache"), the latency histogram counts the queries only, and
// the pool gauge shows the SQL pool of the current generation.
func TestDirectoryMetrics(t *testing.T) {
	dir := t.TempDir()
	writeSQLiteUsers(t, dir)
	cfg := dirTestConfig(t, dir, `driver = "sql"
sql_driver = "sqlite"
dsn = "mail.db"
user_query = "SELECT maildir AS mailbox FROM mailbox WHERE username = {address}"
password_query = "SELECT password FROM mailbox WHERE username = {address}"
`)
	m := newMetrics()
	gen, err := openDirectories(cfg, zerolog.Nop(), m)
	if err != nil {
		t.Fatal(err)
	}
	reg := &dirRegistry{}
	reg.replace(gen)
	t.Cleanup(reg.close)
	m.watchDirectories(reg)
	l := &domainLookup{reg: reg}
	for _, u := range []string{"alice", "alice", "nobody", "nobody", "nobody"} {
		if _, err := lookupOK(l, "example.test", u); err != nil {
			t.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`lmtpd_directory_lookups_total{directory="users",kind="user",result="found",source="directory"} 1`,
		`lmtpd_directory_lookups_total{directory="users",kind="user",result="found",source="cache"} 1`,
		`lmtpd_directory_lookups_total{directory="users",kind="user",result="not_found",source="directory"} 1`,
		`lmtpd_directory_lookups_total{directory="users",kind="user",result="not_found",source="cache"} 2`,
		`lmtpd_directory_lookup_duration_seconds_count{directory="users",kind="user"} 2`,
		`lmtpd_directory_pool_connections{directory="users"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// TestDeliverCommandDirectory: lmtpd deliver (a Postfix mailbox_command)
// knows the users of a [[domain]] directory as the daemon does: a user of
// the passwd-file is delivered (exit 0), an unknown one is 67
// (EX_NOUSER), and with the file gone 75 (EX_TEMPFAIL), never 67.
func TestDeliverCommandDirectory(t *testing.T) {
	dir := t.TempDir()
	writePasswdFile(t, dir)
	file := filepath.Join(dir, "lmtpd.toml")
	text := `[[listener]]
address = "127.0.0.1:2424"
[delivery.maildir]
root = "mail"
[[domain]]
name = "example.test"
users = ["postmaster"]
directory = "files"
[[directory]]
name = "files"
driver = "passwd-file"
path = "users"
`
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	deliver := func(rcpt string) (int, string) {
		stderr, err := os.CreateTemp(dir, "stderr")
		if err != nil {
			t.Fatal(err)
		}
		defer stderr.Close()
		st := cmdDeliver([]string{"-config", file, "-f", "sender@elsewhere.test", "--", rcpt}, strings.NewReader("Subject: hi\r\n\r\nHello.\r\n"), stderr)
		b, _ := os.ReadFile(stderr.Name())
		return st, string(b)
	}
	if st, out := deliver("alice@example.test"); st != exOK {
		t.Fatalf("directory user: exit %d\n%s", st, out)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "mail", "example.test", "alice", "new")); err != nil || len(entries) != 1 {
		t.Errorf("alice's maildir: %d messages (%v)", len(entries), err)
	}
	if st, out := deliver("nobody@example.test"); st != exNoUser {
		t.Errorf("unknown user: exit %d, want %d\n%s", st, exNoUser, out)
	}
	if err := os.Remove(filepath.Join(dir, "users")); err != nil {
		t.Fatal(err)
	}
	// The file is read at load, so a missing one is a state of the system.
	if st, out := deliver("alice@example.test"); st != exTempFail {
		t.Errorf("file gone: exit %d, want %d\n%s", st, exTempFail, out)
	}
}

// lookupOK asks l about user@domain as delivery does (the key folded to
// lower case) and reports whether the user exists: ErrNotFound is false.
func lookupOK(l *domainLookup, domain, user string) (bool, error) {
	d, u := strings.ToLower(domain), strings.ToLower(user)
	_, err := l.LookupUser(context.Background(), directory.Key{Address: u + "@" + d, LocalPart: u, Domain: d})
	if errors.Is(err, directory.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
