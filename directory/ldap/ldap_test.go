package ldap

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/lmtpd/lmtpd/directory"
)

func TestLookupUser(t *testing.T) {
	s := needSlapd(t)
	d := newDir(t, s.config())
	ctx := context.Background()
	r, err := d.LookupUser(ctx, keyOf("alice@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	want := directory.Record{
		Mailbox:    "/var/mail/example.org/alice/",
		QuotaBytes: directory.Limit{Value: 1 << 30, Set: true},
		UID:        -1, GID: -1,
		Extra: map[string]string{"display_name": "Alice Liddell"},
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("alice: got %+v, want %+v", r, want)
	}
	// A user without the mapped attributes: found, fields unset.
	r, err = d.LookupUser(ctx, keyOf("bob@example.org"))
	if err != nil || r.Mailbox != "" || r.QuotaBytes.Set || r.Extra["display_name"] != "Bob" {
		t.Errorf("bob: %+v, %v", r, err)
	}
	if _, err := d.LookupUser(ctx, keyOf("nobody@example.org")); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("unknown user: %v, want ErrNotFound", err)
	}
	// Two entries for one address: an error, never a pick, never "not found".
	_, err = d.LookupUser(ctx, keyOf("twin@example.org"))
	if err == nil || errors.Is(err, directory.ErrNotFound) || !strings.Contains(err.Error(), "ldaptest") {
		t.Errorf("ambiguous user: %v", err)
	}
}

func TestLookupAlias(t *testing.T) {
	s := needSlapd(t)
	d := newDir(t, s.config())
	ctx := context.Background()
	got, err := d.LookupAlias(ctx, keyOf("team@example.org"))
	want := []string{"alice@example.org", "bob@example.org", "carol@example.org", "dave@example.org"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("team: %q, %v; want %q", got, err, want)
	}
	for _, addr := range []string{"alice@example.org", "empty@example.org", "none@example.org"} {
		if got, err := d.LookupAlias(ctx, keyOf(addr)); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("%s: %q, %v; want ErrNotFound", addr, got, err)
		}
	}
	c := s.config()
	c.AliasFilter = ""
	if _, err := newDir(t, c).LookupAlias(ctx, keyOf("team@example.org")); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("no alias_filter: %v", err)
	}
}

func TestAuthenticateBind(t *testing.T) {
	s := needSlapd(t)
	d := newDir(t, s.config())
	ctx := context.Background()
	tests := []struct {
		name, login, password string
		want                  error
	}{
		{"SSHA right", "alice@example.org", "alice pw", nil},
		{"SSHA wrong", "alice@example.org", "alice PW", directory.ErrBadPassword},
		{"CRYPT sha512 right", "bob@example.org", "bob secret", nil},
		{"CRYPT sha512 wrong", "bob@example.org", "bob secret ", directory.ErrBadPassword},
		{"empty password", "alice@example.org", "", directory.ErrBadPassword},
		{"empty password, user without one", "dave@example.org", "", directory.ErrBadPassword},
		{"NUL password", "alice@example.org", "alice pw\x00", directory.ErrBadPassword},
		{"user without password", "dave@example.org", "anything", directory.ErrBadPassword},
		{"unknown user", "nobody@example.org", "alice pw", directory.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Authenticate(ctx, keyOf(tc.login), tc.password)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Authenticate: %v, want %v", err, tc.want)
			}
			if err != nil && tc.password != "" && strings.Contains(err.Error(), tc.password) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
	// Why the empty password is refused before the server: an
	// unauthenticated bind to an existing DN succeeds (RFC 4513 5.1.2).
	l, err := ldap.DialURL(s.url)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.UnauthenticatedBind("uid=alice," + peopleBase); err != nil {
		t.Fatalf("the test slapd (allow bind_anon_dn) refused an unauthenticated bind: %v", err)
	}
}

// TestTLS: StartTLS on ldap:// and ldaps://, with the server's
// certificate trusted through tls_ca_file; without it, no lookup.
func TestTLS(t *testing.T) {
	s := needSlapd(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		url      string
		startTLS bool
	}{{"StartTLS", s.url, true}, {"ldaps", s.ldapsURL, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.config()
			c.URL, c.StartTLS, c.TLSCAFile = tc.url, tc.startTLS, s.caFile
			d := newDir(t, c)
			if r, err := d.LookupUser(ctx, keyOf("alice@example.org")); err != nil || r.Mailbox == "" {
				t.Fatalf("LookupUser: %+v, %v", r, err)
			}
			if err := d.Authenticate(ctx, keyOf("bob@example.org"), "bob secret"); err != nil {
				t.Errorf("bind over TLS: %v", err)
			}
			if err := d.Authenticate(ctx, keyOf("bob@example.org"), "bob"); !errors.Is(err, directory.ErrBadPassword) {
				t.Errorf("wrong password over TLS: %v", err)
			}
			// The certificate is not in the system's roots: refused.
			c.TLSCAFile = ""
			_, err := newDir(t, c).LookupUser(ctx, keyOf("alice@example.org"))
			if err == nil || errors.Is(err, directory.ErrNotFound) {
				t.Errorf("untrusted certificate: %v", err)
			}
		})
	}
}

func TestAuthenticateAttribute(t *testing.T) {
	s := needSlapd(t)
	c := s.config()
	c.Auth = "attribute" // password attribute: the default, userPassword
	d := newDir(t, c)
	ctx := context.Background()
	tests := []struct {
		name, login, password string
		want                  error
	}{
		{"SSHA from slappasswd", "alice@example.org", "alice pw", nil},
		{"SSHA wrong", "alice@example.org", "alice pw2", directory.ErrBadPassword},
		{"CRYPT $6$", "bob@example.org", "bob secret", nil},
		{"SHA512-CRYPT from doveadm", "carol@example.org", "carol pw", nil},
		{"SHA512-CRYPT wrong", "carol@example.org", "Carol pw", directory.ErrBadPassword},
		{"BLF-CRYPT from doveadm", "erin@example.org", "erin pw", nil},
		{"BLF-CRYPT wrong", "erin@example.org", "erin", directory.ErrBadPassword},
		{"empty", "carol@example.org", "", directory.ErrBadPassword},
		{"no password attribute", "dave@example.org", "x", directory.ErrNotFound},
		{"unknown", "nobody@example.org", "x", directory.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Authenticate(ctx, keyOf(tc.login), tc.password)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Authenticate: %v, want %v", err, tc.want)
			}
		})
	}
	stored, err := d.LookupPassword(ctx, keyOf("carol@example.org"))
	if err != nil || !strings.HasPrefix(stored, "{SHA512-CRYPT}$6$bvnJuqAZDYSSmxPv$") {
		t.Errorf("LookupPassword: %q, %v", stored, err)
	}
	// The bind configuration maps no password attribute: reading one is
	// an error, not "no such user".
	if _, err := newDir(t, s.config()).LookupPassword(ctx, keyOf("carol@example.org")); err == nil || errors.Is(err, directory.ErrNotFound) {
		t.Errorf("LookupPassword with auth = bind: %v", err)
	}
}

// TestHostileInput: filter syntax, NUL and long values are literal
// values: they find nothing, and break nothing.
func TestHostileInput(t *testing.T) {
	s := needSlapd(t)
	d := newDir(t, s.config())
	ctx := context.Background()
	for _, addr := range []string{
		"*)(uid=*",
		"*",
		"*@example.org",
		"alice@example.org)(|(mail=*",
		"*)(uid=*@example.org",
		"alice@example.org\x00",
		"\x00",
		"al*ce@example.org",
		"alice@example.org\\2a",
		"x' OR '1'='1@example.org",
		strings.Repeat("a", 1000) + "@example.org",
		strings.Repeat("*", 1000),
		"\xff\xfe@example.org",
	} {
		k := keyOf(addr)
		if r, err := d.LookupUser(ctx, k); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("LookupUser(%q) = %+v, %v; want ErrNotFound", addr, r, err)
		}
		if got, err := d.LookupAlias(ctx, k); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("LookupAlias(%q) = %q, %v; want ErrNotFound", addr, got, err)
		}
		if err := d.Authenticate(ctx, k, "alice pw"); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("Authenticate(%q) = %v; want ErrNotFound", addr, err)
		}
	}
	// The directory still works.
	if _, err := d.LookupUser(ctx, keyOf("alice@example.org")); err != nil {
		t.Fatal(err)
	}
	// A DN built from placeholders escapes them too: a domain trying to
	// climb out of its subtree names no existing entry.
	c := s.config()
	c.BaseDN = "uid={localpart},ou=people,dc=example,dc=org"
	c.UserFilter = "(objectClass=inetOrgPerson)"
	dn := newDir(t, c)
	if _, err := dn.LookupUser(ctx, keyOf("alice@x")); err != nil {
		t.Errorf("base_dn with {localpart}: %v", err)
	}
	// (" alice" would find alice: RFC 4518 makes the spaces insignificant
	// for uid's matching rule, a server's rule, not an injection.)
	for _, addr := range []string{"alice,ou=people@x", "x,dc=org@x", "=@x", "alice+uid=bob@x", `alice\@x`, "#alice@x", "@x", "nobody@x"} {
		if _, err := dn.LookupUser(ctx, keyOf(addr)); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("base_dn with local part %q: %v, want ErrNotFound", addr, err)
		}
	}
}

func TestCheck(t *testing.T) {
	s := needSlapd(t)
	ctx := context.Background()
	if err := newDir(t, s.config()).Check(ctx); err != nil {
		t.Fatal(err)
	}
	c := s.config()
	c.BindPassword = "wrong"
	d := newDir(t, c)
	err := d.Check(ctx)
	if err == nil || errors.Is(err, directory.ErrBadPassword) || !strings.Contains(err.Error(), "ldaptest") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong service password: %v", err)
	}
	// A service bind that fails is a temporary error for lookups, never
	// "no such user" nor "bad password".
	if _, err := d.LookupUser(ctx, keyOf("alice@example.org")); err == nil || errors.Is(err, directory.ErrNotFound) {
		t.Errorf("lookup with a wrong service password: %v", err)
	}
	if err := d.Authenticate(ctx, keyOf("alice@example.org"), "alice pw"); err == nil || errors.Is(err, directory.ErrBadPassword) || errors.Is(err, directory.ErrNotFound) {
		t.Errorf("auth with a wrong service password: %v", err)
	}
}

// TestPoolBound: many concurrent lookups share at most PoolSize service
// connections.
func TestPoolBound(t *testing.T) {
	s := needSlapd(t)
	d := newDir(t, s.config()) // PoolSize 2
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	maxOpen, failures := 0, 0
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := []string{"alice@example.org", "bob@example.org", "nobody@example.org"}[i%3]
			_, err := d.LookupUser(ctx, keyOf(addr))
			mu.Lock()
			defer mu.Unlock()
			maxOpen = max(maxOpen, d.OpenConns())
			if err != nil && !errors.Is(err, directory.ErrNotFound) {
				failures++
				t.Log(err)
			}
		}()
	}
	wg.Wait()
	if failures > 0 || maxOpen > 2 || maxOpen < 1 {
		t.Errorf("%d failures, %d connections open at most (pool of 2)", failures, maxOpen)
	}
	d.Close()
	if d.OpenConns() != 0 {
		t.Errorf("%d connections open after Close", d.OpenConns())
	}
	if _, err := d.LookupUser(ctx, keyOf("alice@example.org")); err == nil {
		t.Error("lookup after Close succeeded")
	}
}

// TestOutage stops slapd with connections in the pool: lookups fail with
// an error that is not ErrNotFound, within the timeout; after a restart
// the same Directory recovers by itself. It runs last among the slapd
// tests (Go runs tests in source order), since it stops the server.
func TestOutage(t *testing.T) {
	s := needSlapd(t)
	c := s.config()
	c.Timeout = time.Second
	d := newDir(t, c)
	ctx := context.Background()
	if _, err := d.LookupUser(ctx, keyOf("alice@example.org")); err != nil {
		t.Fatal(err)
	}
	s.stop()
	restarted := false
	defer func() {
		if !restarted {
			if err := s.start(); err != nil {
				t.Errorf("restarting slapd: %v", err)
			}
		}
	}()
	for _, op := range []struct {
		name string
		call func() error
	}{
		{"LookupUser", func() error { _, err := d.LookupUser(ctx, keyOf("alice@example.org")); return err }},
		{"LookupUser unknown", func() error { _, err := d.LookupUser(ctx, keyOf("nobody@example.org")); return err }},
		{"LookupAlias", func() error { _, err := d.LookupAlias(ctx, keyOf("team@example.org")); return err }},
		{"Authenticate", func() error { return d.Authenticate(ctx, keyOf("alice@example.org"), "alice pw") }},
		{"Check", func() error { return d.Check(ctx) }},
	} {
		start := time.Now()
		err := op.call()
		elapsed := time.Since(start)
		if err == nil || errors.Is(err, directory.ErrNotFound) || errors.Is(err, directory.ErrBadPassword) {
			t.Errorf("%s with slapd down: %v; want a temporary error", op.name, err)
		}
		// Bound, not speed: the timeout plus scheduling slack.
		if elapsed > c.Timeout+2*time.Second {
			t.Errorf("%s took %v with a timeout of %v", op.name, elapsed, c.Timeout)
		}
		t.Logf("%s with slapd down: %v", op.name, err)
	}
	if err := s.start(); err != nil {
		t.Fatalf("restarting slapd: %v", err)
	}
	restarted = true
	r, err := d.LookupUser(ctx, keyOf("alice@example.org"))
	if err != nil || r.Mailbox == "" {
		t.Fatalf("after restart: %+v, %v", r, err)
	}
	if err := d.Authenticate(ctx, keyOf("bob@example.org"), "bob secret"); err != nil {
		t.Fatalf("auth after restart: %v", err)
	}
}

// TestFrozenSlapd: a slapd that stops answering (SIGSTOP) with
// connections pooled holds lookups no longer than the timeout; once it
// runs again (SIGCONT) the same Directory answers.
func TestFrozenSlapd(t *testing.T) {
	s := needSlapd(t)
	c := s.config()
	c.Timeout = 500 * time.Millisecond
	d := newDir(t, c)
	ctx := context.Background()
	if _, err := d.LookupUser(ctx, keyOf("alice@example.org")); err != nil {
		t.Fatal(err)
	}
	s.signal(t, syscall.SIGSTOP)
	cont := sync.OnceFunc(func() { s.signal(t, syscall.SIGCONT) })
	defer cont()
	start := time.Now()
	_, err := d.LookupUser(ctx, keyOf("alice@example.org"))
	elapsed := time.Since(start)
	if err == nil || errors.Is(err, directory.ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("frozen slapd: %v; want a deadline error", err)
	}
	if elapsed > c.Timeout+2*time.Second {
		t.Errorf("lookup took %v with a timeout of %v", elapsed, c.Timeout)
	}
	t.Logf("frozen slapd: %v after %v", err, elapsed)
	cont()
	if _, err := d.LookupUser(ctx, keyOf("alice@example.org")); err != nil {
		t.Fatalf("after SIGCONT: %v", err)
	}
}

// TestStaleConnections restarts slapd under a Directory whose pool holds
// connections: the first lookup after the restart succeeds (the dead
// pooled connection is replaced and the lookup retried once).
func TestStaleConnections(t *testing.T) {
	s := needSlapd(t)
	d := newDir(t, s.config())
	ctx := context.Background()
	if _, err := d.LookupUser(ctx, keyOf("alice@example.org")); err != nil {
		t.Fatal(err)
	}
	if d.OpenConns() != 1 {
		t.Fatalf("%d connections open", d.OpenConns())
	}
	s.stop()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LookupUser(ctx, keyOf("alice@example.org")); err != nil {
		t.Fatalf("first lookup after a restart: %v", err)
	}
}

// TestHungServer: a server that accepts and never answers holds a lookup
// no longer than the timeout, and a cancelled context ends it at once.
func TestHungServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	c := Config{
		Name: "hung", URL: "ldap://" + l.Addr().String(), BindDN: serviceDN, BindPassword: servicePW,
		BaseDN: "dc=example,dc=org", UserFilter: "(mail={address})", Timeout: 300 * time.Millisecond,
	}
	d := newDir(t, c)
	start := time.Now()
	_, err = d.LookupUser(context.Background(), keyOf("alice@example.org"))
	if err == nil || errors.Is(err, directory.ErrNotFound) || !strings.Contains(err.Error(), "hung") {
		t.Errorf("hung server: %v", err)
	}
	if elapsed := time.Since(start); elapsed > c.Timeout+2*time.Second {
		t.Errorf("lookup took %v with a timeout of %v", elapsed, c.Timeout)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	c.Timeout = time.Hour
	start = time.Now()
	if err := newDir(t, c).Authenticate(ctx, keyOf("alice@example.org"), "pw"); err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("cancelled lookup took %v", elapsed)
	}
}
