package sql

import (
	"bytes"
	"context"
	dbsql "database/sql"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/rs/zerolog"
)

// The schema in the style of Postfix Admin (mailbox, alias with a
// comma-separated goto), plus a table of one row per target; the same
// statements work on all three databases.
var schema = []string{
	`DROP TABLE IF EXISTS mailbox`,
	`DROP TABLE IF EXISTS alias`,
	`DROP TABLE IF EXISTS forwardings`,
	`CREATE TABLE mailbox (
		username VARCHAR(255) NOT NULL PRIMARY KEY,
		password VARCHAR(255) NOT NULL,
		name VARCHAR(255) NOT NULL DEFAULT '',
		maildir VARCHAR(255) NOT NULL,
		quota BIGINT NOT NULL DEFAULT 0,
		local_part VARCHAR(255) NOT NULL,
		domain VARCHAR(255) NOT NULL,
		active BOOLEAN NOT NULL DEFAULT TRUE)`,
	`CREATE TABLE alias (
		address VARCHAR(255) NOT NULL PRIMARY KEY,
		goto TEXT NOT NULL,
		domain VARCHAR(255) NOT NULL,
		active BOOLEAN NOT NULL DEFAULT TRUE)`,
	`CREATE TABLE forwardings (source VARCHAR(255) NOT NULL, destination VARCHAR(255) NOT NULL)`,
	`INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, active) VALUES
		('alice@example.org', '{SHA512-CRYPT}$6$6Jt7zxbB$xFzn41W2Pzg0jC0uuEtVzVQI6FrARkHZIOtNauC7STFSrzBmDoKKVeyXF.sVfQyys0WZo7LULCwlkz9Mfa36b1', 'Alice', 'example.org/alice/', 1073741824, 'alice', 'example.org', TRUE),
		('bob@example.org', '{BLF-CRYPT}$2a$05$DTDTNaDoVAcLyJJBVDxCo.QJk0KEehWFKzawejliCK6uUHnNKnlGW', 'Bob', 'example.org/bob/', 0, 'bob', 'example.org', TRUE),
		('carol@example.org', '{PLAIN}secret', 'Carol', 'example.org/carol/', 0, 'carol', 'example.org', FALSE)`,
	`INSERT INTO alias (address, goto, domain, active) VALUES
		('alice@example.org', 'alice@example.org', 'example.org', TRUE),
		('bob@example.org', 'bob@example.org', 'example.org', TRUE),
		('sales@example.org', 'alice@example.org, bob@example.org', 'example.org', TRUE),
		('old@example.org', 'alice@example.org', 'example.org', FALSE),
		('empty@example.org', ' , ', 'example.org', TRUE)`,
	`INSERT INTO forwardings (source, destination) VALUES
		('team@example.org', 'sales@example.org'),
		('team@example.org', 'dave@example.net')`,
}

var testOptions = Options{
	Name:          "db",
	UserQuery:     "SELECT maildir AS mailbox, quota AS quota_bytes, name FROM mailbox WHERE username = {address} AND active = TRUE",
	AliasQuery:    "SELECT goto FROM alias WHERE address = {address} AND active = TRUE UNION ALL SELECT destination FROM forwardings WHERE source = {address}",
	PasswordQuery: "SELECT password FROM mailbox WHERE username = {address} AND active = TRUE",
}

// logBuf collects log lines; safe for concurrent use.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func openDir(t *testing.T, driver, dsn string) (*Dir, *logBuf) {
	t.Helper()
	o := testOptions
	o.Driver, o.DSN = driver, dsn
	lb := &logBuf{}
	o.Log = zerolog.New(lb)
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, lb
}

func TestPostgres(t *testing.T) {
	s := pgServer.need(t)
	s.exec(t, schema...)
	d, logs := openDir(t, DriverPostgres, s.dsn(s))
	suite(t, d, logs)
}

func TestMariaDB(t *testing.T) {
	s := myServer.need(t)
	s.exec(t, schema...)
	d, logs := openDir(t, DriverMySQL, s.dsn(s))
	suite(t, d, logs)
}

func TestSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.sqlite")
	db, err := dbsql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range schema {
		if _, err := db.Exec(st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	db.Close()
	d, logs := openDir(t, DriverSQLite, "file:"+path+"?mode=ro")
	suite(t, d, logs)

	// A database file that is not there is an error, never "no such user".
	gone, _ := openDir(t, DriverSQLite, "file:"+filepath.Join(t.TempDir(), "missing.sqlite")+"?mode=ro")
	if _, err := gone.LookupUser(context.Background(), directory.KeyFor("alice@example.org")); err == nil || errors.Is(err, directory.ErrNotFound) {
		t.Errorf("missing database file: %v, want an error", err)
	}
	if err := gone.Check(context.Background()); err == nil {
		t.Error("Check passed on a missing database file")
	}
}

// suite runs the cases every driver must pass against the schema above.
func suite(t *testing.T, d *Dir, logs *logBuf) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	set := func(n int64) directory.Limit { return directory.Limit{Value: n, Set: true} }

	t.Run("check", func(t *testing.T) {
		if err := d.Check(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("users", func(t *testing.T) {
		tests := []struct {
			addr string
			want directory.Record
		}{
			{"alice@example.org", directory.Record{Mailbox: "example.org/alice/", QuotaBytes: set(1 << 30), UID: -1, GID: -1, Extra: map[string]string{"name": "Alice"}}},
			{"bob@example.org", directory.Record{Mailbox: "example.org/bob/", QuotaBytes: set(0), UID: -1, GID: -1, Extra: map[string]string{"name": "Bob"}}},
		}
		for _, tc := range tests {
			got, err := d.LookupUser(ctx, directory.KeyFor(tc.addr))
			if err != nil {
				t.Fatalf("LookupUser(%s): %v", tc.addr, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LookupUser(%s) = %+v\nwant %+v", tc.addr, got, tc.want)
			}
		}
		for _, addr := range []string{"nobody@example.org", "carol@example.org", "alice@example.net"} {
			if _, err := d.LookupUser(ctx, directory.KeyFor(addr)); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("LookupUser(%s) = %v, want ErrNotFound", addr, err)
			}
		}
		if n := strings.Count(logs.String(), `"field":"name"`); n != 1 {
			t.Errorf("unknown column warned %d times, want once; log:\n%s", n, logs)
		}
	})
	t.Run("aliases", func(t *testing.T) {
		tests := []struct {
			addr string
			want []string
		}{
			{"alice@example.org", []string{"alice@example.org"}},
			{"sales@example.org", []string{"alice@example.org", "bob@example.org"}},
			{"team@example.org", []string{"sales@example.org", "dave@example.net"}},
		}
		for _, tc := range tests {
			got, err := d.LookupAlias(ctx, directory.KeyFor(tc.addr))
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LookupAlias(%s) = %q, %v; want %q", tc.addr, got, err, tc.want)
			}
		}
		if !directory.IsSelfAlias("alice@example.org", "alice@example.org") {
			t.Error("Postfix Admin's mailbox row is not a self-alias")
		}
		for _, addr := range []string{"nobody@example.org", "old@example.org", "empty@example.org"} {
			if _, err := d.LookupAlias(ctx, directory.KeyFor(addr)); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("LookupAlias(%s) = %v, want ErrNotFound", addr, err)
			}
		}
		// Recursive expansion over this directory: team → sales → alice,
		// bob (each a self-alias, so a mailbox), and an outside address.
		route := func(a string) (directory.Directory, directory.Key, bool) {
			k := directory.KeyFor(a)
			return d, k, k.Domain == "example.org"
		}
		got, err := directory.ExpandAliases(ctx, "team@example.org", directory.ExpandOptions{Route: route})
		if want := []string{"alice@example.org", "bob@example.org", "dave@example.net"}; err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ExpandAliases(team) = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("passwords", func(t *testing.T) {
		for addr, prefix := range map[string]string{"alice@example.org": "{SHA512-CRYPT}$6$", "bob@example.org": "{BLF-CRYPT}$2a$"} {
			p, err := d.LookupPassword(ctx, directory.KeyFor(addr))
			if err != nil || !strings.HasPrefix(p, prefix) {
				t.Errorf("LookupPassword(%s) = %q, %v; want %s...", addr, p, err, prefix)
			}
		}
		for _, addr := range []string{"carol@example.org", "nobody@example.org"} {
			if _, err := d.LookupPassword(ctx, directory.KeyFor(addr)); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("LookupPassword(%s) = %v, want ErrNotFound", addr, err)
			}
		}
	})
	t.Run("hostile keys", func(t *testing.T) {
		hostile := []string{
			"x' OR '1'='1@d",
			"alice@example.org' --",
			"alice@example.org' OR 1=1 --",
			"'; DROP TABLE mailbox; --@example.org",
			"\"; DROP TABLE alias; --@example.org",
			"alice@example.org\x00",
			"\x00' OR '1'='1@d",
			"alice@example.org\xff",
			strings.Repeat("a", 1000) + "@example.org",
			strings.Repeat("'", 1000),
			"%@example.org", "_lice@example.org", `alice\@example.org`, "$1@example.org", "?@example.org", "{address}@example.org",
		}
		for _, h := range hostile {
			k := directory.KeyFor(h)
			k.LocalPart, k.Detail = h, h // every placeholder gets the hostile text
			if _, err := d.LookupUser(ctx, k); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("LookupUser(%q) = %v, want ErrNotFound", h, err)
			}
			if _, err := d.LookupAlias(ctx, k); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("LookupAlias(%q) = %v, want ErrNotFound", h, err)
			}
			if _, err := d.LookupPassword(ctx, k); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("LookupPassword(%q) = %v, want ErrNotFound", h, err)
			}
		}
		// Nothing broke: the tables and their rows are all there.
		if _, err := d.LookupUser(ctx, directory.KeyFor("alice@example.org")); err != nil {
			t.Errorf("alice after the hostile keys: %v", err)
		}
		if got, err := d.LookupAlias(ctx, directory.KeyFor("team@example.org")); err != nil || len(got) != 2 {
			t.Errorf("team after the hostile keys: %q, %v", got, err)
		}
	})
	t.Run("burst through the cache", func(t *testing.T) {
		// 1,000 recipients to 100 users (half unknown), 50 at a time:
		// 100 queries, not 1,000.
		var st directory.Stats
		c := directory.NewCache(d, directory.CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Observer: &st})
		var wg sync.WaitGroup
		sem := make(chan struct{}, 50)
		for i := range 1000 {
			addr := []string{"alice@example.org", "bob@example.org"}[i%2]
			if u := i % 100; u >= 2 {
				addr = "u" + strings.Repeat("x", u) + "@example.org" // unknown users
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				_, err := c.LookupUser(ctx, directory.KeyFor(addr))
				if err != nil && !errors.Is(err, directory.ErrNotFound) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if q := st.Queries(directory.KindUser); q != 100 {
			t.Errorf("1000 lookups of 100 addresses made %d queries, want 100", q)
		}
		if n := st.Total(directory.KindUser); n != 1000 {
			t.Errorf("observed %d lookups, want 1000", n)
		}
	})
	t.Run("broken query", func(t *testing.T) {
		o := d.o
		o.UserQuery = "SELECT maildir AS mailbox FROM no_such_table WHERE username = {address}"
		o.Log = zerolog.Nop()
		bad, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close()
		if err := bad.Check(ctx); err == nil || !strings.Contains(err.Error(), "user_query") || !strings.Contains(err.Error(), "sql db") {
			t.Errorf("Check with a missing table: %v, want an error naming the directory and the query", err)
		}
		if _, err := bad.LookupUser(ctx, directory.KeyFor("alice@example.org")); err == nil || errors.Is(err, directory.ErrNotFound) {
			t.Errorf("lookup with a missing table: %v, want an error", err)
		}
	})
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		err  string
	}{
		{"driver", Options{Driver: "oracle", DSN: "x", UserQuery: "SELECT 1"}, `sql_driver "oracle"`},
		{"dsn", Options{Driver: DriverSQLite, UserQuery: "SELECT 1"}, "dsn is empty"},
		{"no query", Options{Driver: DriverSQLite, DSN: "x"}, "none of"},
		{"quoted placeholder", Options{Driver: DriverMySQL, DSN: "x", PasswordQuery: "SELECT password FROM m WHERE u = '{address}'"}, "password_query: placeholder {address} is inside a quoted string"},
		{"unknown placeholder", Options{Driver: DriverPostgres, DSN: "x", AliasQuery: "SELECT goto FROM a WHERE a = {adress}"}, "alias_query: unknown placeholder {adress}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("New error = %v, want %q", err, tc.err)
			}
		})
	}
}
