package passwdfile

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/rs/zerolog"
)

// logBuf collects log lines for assertions; safe for concurrent use.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func open(t *testing.T, path string) (*Dir, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	d, err := New(Options{Name: "files", Path: path, Log: zerolog.New(lb)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, lb
}

func set(n int64) directory.Limit { return directory.Limit{Value: n, Set: true} }

func TestDovecotFile(t *testing.T) {
	d, logs := open(t, "testdata/dovecot-users")
	ctx := context.Background()
	tests := []struct {
		addr string
		want directory.Record
	}{
		{"user@example.org", directory.Record{Home: "/home/user", Mailbox: "/home/user/Maildir", UID: 1000, GID: 1000}},
		{"user@example.net", directory.Record{Home: "/home/user", Mailbox: "/home/user/Maildir", UID: 1000, GID: 1000}},
		{"alice@example.org", directory.Record{Home: "/var/vmail/example.org/alice", Mailbox: "/var/vmail/example.org/alice/Maildir",
			QuotaBytes: set(1 << 30), UID: 5000, GID: 5000}},
		{"bob@example.org", directory.Record{Home: "/var/vmail/example.org/bob", QuotaBytes: set(100 << 20), QuotaMessages: set(1000),
			Sieve: "/var/vmail/example.org/bob/.dovecot.sieve", UID: 5000, GID: 5000}},
		{"carol@example.org", directory.Record{Home: "/home/carol", UID: 0, GID: 0}},
		{"dave@example.org", directory.Record{Mailbox: "example.org/dave", QuotaBytes: set(2 << 30), Forward: "unix:/run/lmtp-backend.sock",
			UID: 5001, GID: 5001, Extra: map[string]string{"colour": "blue"}}},
		{"frank@example.com", directory.Record{Home: "/var/vmail/frank", Mailbox: "/var/vmail/example.com/frank", UID: 5000, GID: 5000}},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			got, err := d.LookupUser(ctx, directory.KeyFor(tc.addr))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LookupUser(%s) = %+v\nwant %+v", tc.addr, got, tc.want)
			}
		})
	}
	for _, addr := range []string{"nobody@example.org", "alice@example.net", "x' OR '1'='1@d", "alice@example.org\x00", "*",
		"", "@", ":", "#", strings.Repeat("a", 1000) + "@example.org", "alice@example.org:x"} {
		if _, err := d.LookupUser(ctx, directory.KeyFor(addr)); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("LookupUser(%q) error = %v, want ErrNotFound", addr, err)
		}
	}
	if _, err := d.LookupAlias(ctx, directory.KeyFor("alice@example.org")); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("LookupAlias: %v, want ErrNotFound", err)
	}
	// Unknown fields are warned about once each, at load.
	for _, f := range []string{"userdb_colour", "allow_nets"} {
		if n := strings.Count(logs.String(), `"field":"`+f+`"`); n != 1 {
			t.Errorf("field %s warned %d times, want 1; log:\n%s", f, n, logs)
		}
	}
	if !strings.Contains(logs.String(), "user listed twice") {
		t.Errorf("duplicate entry not warned about; log:\n%s", logs)
	}
}

func TestPasswords(t *testing.T) {
	d, _ := open(t, "testdata/dovecot-users")
	tests := []struct {
		login, want string
		err         error
	}{
		{"user", "{plain}password", nil},
		{"user@example.org", "{plain}password", nil},
		{"alice@example.org", "{SHA512-CRYPT}$6$6Jt7zxbB$xFzn41W2Pzg0jC0uuEtVzVQI6FrARkHZIOtNauC7STFSrzBmDoKKVeyXF.sVfQyys0WZo7LULCwlkz9Mfa36b1", nil},
		{"ALICE@example.org", "{SHA512-CRYPT}$6$6Jt7zxbB$xFzn41W2Pzg0jC0uuEtVzVQI6FrARkHZIOtNauC7STFSrzBmDoKKVeyXF.sVfQyys0WZo7LULCwlkz9Mfa36b1", nil},
		{"bob@example.org", "{BLF-CRYPT}$2a$05$DTDTNaDoVAcLyJJBVDxCo.QJk0KEehWFKzawejliCK6uUHnNKnlGW", nil},
		{"carol@example.org", "$6$6Jt7zxbB$xFzn41W2Pzg0jC0uuEtVzVQI6FrARkHZIOtNauC7STFSrzBmDoKKVeyXF.sVfQyys0WZo7LULCwlkz9Mfa36b1", nil},
		{"dave@example.org", "{PLAIN}secret", nil},
		{"frank", "{CRYPT}abJnggxhB/yWI", nil},
		{"erin@example.org", "", directory.ErrNotFound},
		{"mallory@example.org", "", directory.ErrNotFound},
		{"nobody@example.org", "", directory.ErrNotFound},
	}
	for _, tc := range tests {
		k := directory.KeyFor(tc.login)
		if !strings.Contains(tc.login, "@") {
			k = directory.Key{Address: tc.login}
		}
		got, err := d.LookupPassword(context.Background(), k)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("LookupPassword(%q) = %q, %v; want %q, %v", tc.login, got, err, tc.want, tc.err)
		}
	}
}

func TestNormalizePassword(t *testing.T) {
	for in, want := range map[string]string{
		"{SSHA}abc": "{SSHA}abc", "$2y$05$x": "$2y$05$x", "abJnggxhB/yWI": "{CRYPT}abJnggxhB/yWI",
		"$1$salt$hash[34]": "{MD5-CRYPT}$1$salt$hash",
	} {
		if got, err := normalizePassword(in); err != nil || got != want {
			t.Errorf("normalizePassword(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func write(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	t0 := time.Now().Add(-time.Hour)
	write(t, path, "a@d:{PLAIN}1:1:1::/h/a\n", t0)
	d, logs := open(t, path)
	ctx := context.Background()
	lookup := func(addr string) error {
		_, err := d.LookupUser(ctx, directory.KeyFor(addr))
		return err
	}
	if err := lookup("a@d"); err != nil {
		t.Fatal(err)
	}
	if err := lookup("b@d"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("b before reload: %v", err)
	}
	// A new version (same size, new mtime) is read at the next lookup.
	write(t, path, "b@d:{PLAIN}2:1:1::/h/b\n", t0.Add(time.Minute))
	if err := lookup("b@d"); err != nil {
		t.Fatalf("b after reload: %v", err)
	}
	if err := lookup("a@d"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("a after reload: %v", err)
	}
	// A broken version is logged; the last good one stays in use.
	write(t, path, "b@d:{PLAIN}2:1:1::/h/b::userdb_quota_rule=*:storage=lots\n", t0.Add(2*time.Minute))
	if err := lookup("b@d"); err != nil {
		t.Fatalf("b with a broken file: %v", err)
	}
	if err := d.Check(ctx); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Check with a broken file: %v", err)
	}
	if n := strings.Count(logs.String(), "does not parse"); n != 1 {
		t.Errorf("broken file logged %d times, want once; log:\n%s", n, logs)
	}
	lookup("b@d")
	if n := strings.Count(logs.String(), "does not parse"); n != 1 {
		t.Errorf("broken file logged %d times after another lookup, want once", n)
	}
	// Fixed: read again.
	write(t, path, "c@d:{PLAIN}3\n", t0.Add(3*time.Minute))
	if err := lookup("c@d"); err != nil {
		t.Fatalf("c after the fix: %v", err)
	}
	if err := d.Check(ctx); err != nil {
		t.Errorf("Check after the fix: %v", err)
	}
	// Gone: lookups fail, and not with ErrNotFound.
	os.Remove(path)
	if err := lookup("c@d"); err == nil || errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("missing file: %v, want a non-ErrNotFound error", err)
	}
	if err := d.Check(ctx); err == nil {
		t.Error("Check with the file missing passed")
	}
	d.Close()
	write(t, path, "c@d:{PLAIN}3\n", t0)
	if err := lookup("c@d"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestBadFiles(t *testing.T) {
	tests := []struct{ name, content, err string }{
		{"bad quota", "a@d:x:1:1::/h::userdb_quota_rule=*:storage=lots\n", "line 1: user a@d: field quota_rule"},
		{"mbox", "\n# c\na@d:x:1:1::/h::userdb_mail=mbox:~/mail\n", "line 3: user a@d: field mail"},
		{"tilde without home", "a@d:x:1:1::::userdb_mail=maildir:~/Maildir\n", "no home"},
		{"unknown user name", "a@d:x:no-such-user-lmtpd:1::/h\n", `uid "no-such-user-lmtpd"`},
		{"unknown group name", "a@d:x:1:no-such-group-lmtpd::/h\n", `gid "no-such-group-lmtpd"`},
		{"empty user", ":x:1:1::/h\n", "empty user field"},
		{"bad userdb_uid", "a@d:x::::::userdb_uid=-5\n", "uid"},
		{"unsupported variable", "a@d:x:1:1::/h/%r\n", "not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users")
			write(t, path, tc.content, time.Now())
			_, err := New(Options{Name: "f", Path: path})
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("New error = %v, want containing %q", err, tc.err)
			}
		})
	}
	if _, err := New(Options{Name: "f", Path: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("missing file accepted")
	}
}

func FuzzParse(f *testing.F) {
	seed, _ := os.ReadFile("testdata/dovecot-users")
	f.Add(string(seed))
	f.Add("a@d:x:1:1::/h::userdb_mail=maildir:~/M userdb_quota_rule=*:storage=1G\n")
	f.Add("a:::::::\r\n#\n\n:")
	f.Fuzz(func(t *testing.T, s string) {
		d := &Dir{o: Options{Name: "f", Path: "fuzz"}, warn: &directory.FieldWarner{}}
		byAddr, byLocal, _, err := d.parse([]byte(s))
		if err != nil {
			return
		}
		// Every entry that parsed builds a record for its own address.
		for _, m := range []map[string]*entry{byAddr, byLocal} {
			for u, e := range m {
				if _, _, err := directory.NewRecord(directory.KeyFor(u), e.fields); err != nil {
					t.Fatalf("entry %q parsed but does not build: %v", u, err)
				}
			}
		}
	})
}

// The example files of Dovecot's passwd-file documentation (wiki,
// AuthDatabase/PasswdFile, "Examples"), byte for byte.
func TestDovecotDocExamples(t *testing.T) {
	ctx := context.Background()
	login := func(s string) directory.Key { return directory.Key{Address: s} }
	t.Run("passdb", func(t *testing.T) {
		d, _ := open(t, "testdata/dovecot-doc-passdb")
		for u, p := range map[string]string{"user": "{plain}password", "user2": "{plain}password2"} {
			if got, err := d.LookupPassword(ctx, login(u)); err != nil || got != p {
				t.Errorf("LookupPassword(%s) = %q, %v; want %q", u, got, err, p)
			}
		}
		// A passdb-only entry is still a user, with nothing set: the
		// configured maildir template applies.
		if r, err := d.LookupUser(ctx, directory.KeyFor("user2@example.org")); err != nil || r.Mailbox != "" || r.UID != -1 {
			t.Errorf("LookupUser(user2) = %+v, %v", r, err)
		}
	})
	t.Run("passdb with extra fields", func(t *testing.T) {
		d, logs := open(t, "testdata/dovecot-doc-passdb-extra")
		if got, err := d.LookupPassword(ctx, login("user")); err != nil || got != "{plain}password" {
			t.Errorf("LookupPassword(user) = %q, %v", got, err)
		}
		if !strings.Contains(logs.String(), `"field":"allow_nets"`) {
			t.Errorf("allow_nets (a passdb field lmtpd ignores) not warned about; log:\n%s", logs)
		}
	})
	t.Run("passdb and userdb", func(t *testing.T) {
		d, _ := open(t, "testdata/dovecot-doc-both")
		r, err := d.LookupUser(ctx, directory.KeyFor("user@example.org"))
		want := directory.Record{Home: "/home/user", Mailbox: "/home/user/Maildir", UID: 1000, GID: 1000}
		if err != nil || !reflect.DeepEqual(r, want) {
			t.Errorf("LookupUser(user) = %+v, %v; want %+v", r, err, want)
		}
		r, err = d.LookupUser(ctx, directory.KeyFor("user2@example.org"))
		want = directory.Record{Home: "/home/user2", UID: 1001, GID: 1001}
		if err != nil || !reflect.DeepEqual(r, want) {
			t.Errorf("LookupUser(user2) = %+v, %v; want %+v", r, err, want)
		}
		if got, err := d.LookupPassword(ctx, login("user2")); err != nil || got != "{plain}pass2" {
			t.Errorf("LookupPassword(user2) = %q, %v", got, err)
		}
	})
}
