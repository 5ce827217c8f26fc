package sql

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/directory"
)

// BenchmarkPostgresLookup measures a RCPT-time user lookup against the
// private PostgreSQL: straight to the database (cold: every lookup is a
// query), and through the Cache with the entry warm. Reports only; no
// test asserts speed.
func BenchmarkPostgresLookup(b *testing.B) {
	if pgServer.once.Do(func() { pgServer.err = pgServer.init() }); pgServer.err != nil {
		b.Skipf("PostgreSQL could not start: %v", pgServer.err)
	}
	s := pgServer
	db, err := New(Options{Name: "bench", Driver: DriverPostgres, DSN: s.dsn(s), UserQuery: testOptions.UserQuery})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	setup, err := New(Options{Name: "setup", Driver: DriverPostgres, DSN: s.dsn(s), UserQuery: "SELECT 1"})
	if err != nil {
		b.Fatal(err)
	}
	for _, st := range schema {
		if _, err := setup.db.Exec(st); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 100 {
		if _, err := setup.db.Exec(fmt.Sprintf(`INSERT INTO mailbox (username, password, maildir, local_part, domain) VALUES ('u%d@example.org', 'x', 'example.org/u%d/', 'u%d', 'example.org')`, i, i, i)); err != nil {
			b.Fatal(err)
		}
	}
	setup.Close()
	ctx := context.Background()
	run := func(b *testing.B, d directory.Directory) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := d.LookupUser(ctx, directory.KeyFor(fmt.Sprintf("u%d@example.org", i%100))); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	}
	b.Run("cold", func(b *testing.B) { run(b, db) })
	b.Run("warm", func(b *testing.B) {
		c := directory.NewCache(db, directory.CacheOptions{TTL: time.Hour})
		run(b, c) // the first 100 lookups fill the cache
	})
}
