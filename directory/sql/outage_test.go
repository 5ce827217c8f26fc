package sql

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/directory"
)

func TestPostgresOutage(t *testing.T) {
	s := pgServer.need(t)
	s.exec(t, schema...)
	outage(t, s, DriverPostgres)
}

func TestMariaDBOutage(t *testing.T) {
	s := myServer.need(t)
	s.exec(t, schema...)
	outage(t, s, DriverMySQL)
}

// outage takes the server away twice, as lmtpd would see it through its
// Cache wrapper (which applies the per-lookup timeout): hung (every
// process stopped, so connections and queries get no answer) and shut
// down. Each lookup then fails within the timeout with an error that is
// not ErrNotFound, and the same Directory answers again once the server
// is back, without being recreated.
func outage(t *testing.T, s *server, driver string) {
	const timeout = 500 * time.Millisecond
	// The bound for "within the timeout": generous, so a loaded machine
	// cannot make it flaky, yet far below a hang.
	const bound = timeout + 5*time.Second
	raw, _ := openDir(t, driver, s.dsn(s))
	d := directory.NewCache(raw, directory.CacheOptions{Timeout: timeout}) // no TTL: every lookup asks
	alice := directory.KeyFor("alice@example.org")
	lookup := func(what string, d directory.Directory) error {
		t.Helper()
		start := time.Now()
		_, err := d.LookupUser(context.Background(), alice)
		el := time.Since(start)
		t.Logf("%s: %v after %v", what, err, el.Round(time.Millisecond))
		if el > bound {
			t.Errorf("%s: lookup returned after %v, beyond the %v timeout", what, el, timeout)
		}
		return err
	}
	mustFail := func(what string, d directory.Directory) {
		t.Helper()
		err := lookup(what, d)
		if err == nil || errors.Is(err, directory.ErrNotFound) {
			t.Errorf("%s: %v, want an error that is not ErrNotFound", what, err)
		}
	}
	if err := lookup("warm", d); err != nil {
		t.Fatal(err)
	}

	// Hung server: the pooled connection's query, and a directory that
	// must connect first.
	if err := s.pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.resume() })
	mustFail("hung, pooled connection", d)
	fresh, _ := openDir(t, driver, s.dsn(s))
	mustFail("hung, new connection", directory.NewCache(fresh, directory.CacheOptions{Timeout: timeout}))
	// Without the Cache, the Dir's own timeout bounds the lookup.
	fresh.o.Timeout = timeout
	mustFail("hung, no cache", fresh)
	if err := s.resume(); err != nil {
		t.Fatal(err)
	}
	if err := lookup("after the hang", d); err != nil {
		t.Errorf("after the hang: %v", err)
	}

	// Stopped server.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	mustFail("stopped", d)
	mustFail("stopped, again", d)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	if err := lookup("after restart", d); err != nil {
		t.Errorf("after restart, same Directory: %v", err)
	}
	if _, err := d.LookupAlias(context.Background(), directory.KeyFor("sales@example.org")); err != nil {
		t.Errorf("alias after restart: %v", err)
	}
}
