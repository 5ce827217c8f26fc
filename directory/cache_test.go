package directory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var errDown = errors.New("connection refused")

func key(a string) Key { return KeyFor(a) }

func TestCacheTTL(t *testing.T) {
	f := newFake("pg")
	f.users["alice@d"] = Record{Mailbox: "d/alice", Extra: map[string]string{"x": "1"}}
	clk := newClock()
	var st Stats
	c := NewCache(f, CacheOptions{TTL: time.Minute, NegativeTTL: 10 * time.Second, Now: clk.Now, Observer: &st})
	ctx := context.Background()

	lookup := func(addr string) error {
		t.Helper()
		_, err := c.LookupUser(ctx, key(addr))
		return err
	}
	// Positive: the second lookup within the TTL is a hit.
	for range 3 {
		if err := lookup("alice@d"); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("3 lookups within TTL made %d queries, want 1", n)
	}
	// Negative: cached for NegativeTTL only.
	for range 2 {
		if err := lookup("nobody@d"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown user: %v, want ErrNotFound", err)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("queries = %d, want 2", n)
	}
	clk.Advance(11 * time.Second) // negative entry expired, positive not
	if err := lookup("nobody@d"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := lookup("alice@d"); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("queries = %d, want 3 (negative expired, positive still cached)", n)
	}
	clk.Advance(time.Minute)
	if err := lookup("alice@d"); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 4 {
		t.Fatalf("queries = %d, want 4 (positive expired)", n)
	}
	if got := st.Queries(KindUser); got != 4 {
		t.Errorf("Stats.Queries = %d, want 4", got)
	}
	if got := st.Count(KindUser, ResultFound, SourceCache) + st.Count(KindUser, ResultNotFound, SourceCache); got != 4 {
		t.Errorf("cache hits = %d, want 4", got)
	}
	if got := st.Total(KindUser); got != 8 {
		t.Errorf("Stats.Total = %d, want 8", got)
	}
}

// During an outage, entries within their TTL are served; expired ones
// and uncached ones are errors (never ErrNotFound), and recovery is seen
// at the next lookup because errors are not cached.
func TestCacheOutage(t *testing.T) {
	f := newFake("pg")
	f.users["alice@d"] = Record{Mailbox: "a"}
	f.users["bob@d"] = Record{Mailbox: "b"}
	clk := newClock()
	c := NewCache(f, CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Now: clk.Now})
	ctx := context.Background()
	if _, err := c.LookupUser(ctx, key("alice@d")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	if _, err := c.LookupUser(ctx, key("bob@d")); err != nil {
		t.Fatal(err)
	}
	f.setErr(errDown)
	clk.Advance(40 * time.Second) // alice expired (70s), bob within TTL (40s)
	if r, err := c.LookupUser(ctx, key("bob@d")); err != nil || r.Mailbox != "b" {
		t.Fatalf("bob within TTL during outage: %+v, %v", r, err)
	}
	_, err := c.LookupUser(ctx, key("alice@d"))
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("expired entry during outage: %v, want a non-ErrNotFound error", err)
	}
	if !errors.Is(err, errDown) || !strings.Contains(err.Error(), "directory pg") {
		t.Errorf("error %q should wrap the cause and name the directory", err)
	}
	// The error was not cached: recovery shows at once.
	f.setErr(nil)
	if _, err := c.LookupUser(ctx, key("alice@d")); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestCacheTimeout(t *testing.T) {
	f := newFake("slow")
	f.gate = make(chan struct{}) // never opened: every lookup hangs until its context ends
	var st Stats
	c := NewCache(f, CacheOptions{TTL: time.Minute, Timeout: 50 * time.Millisecond, Observer: &st})
	done := make(chan error, 1)
	go func() {
		_, err := c.LookupUser(context.Background(), key("alice@d"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hung directory: %v, want a deadline error", err)
		}
		if !strings.Contains(err.Error(), "no answer within 50ms") {
			t.Errorf("error %q should say the timeout", err)
		}
	case <-time.After(10 * time.Second): // a generous bound, not a timing assertion
		t.Fatal("lookup did not return after its timeout")
	}
	if st.Count(KindUser, ResultError, SourceDirectory) != 1 {
		t.Errorf("error not counted: %+v", st.Count(KindUser, ResultError, SourceDirectory))
	}
	// The caller's own shorter deadline wins.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.LookupAlias(ctx, key("x@d")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	if err := c.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "directory slow: check") {
		t.Errorf("Check on hung directory: %v", err)
	}
}

// A burst of 1,000 recipients to 100 users, all at once, costs about
// 100 queries: single flight joins identical lookups in flight, the cache
// answers the rest.
func TestCacheSingleFlightBurst(t *testing.T) {
	f := newFake("pg")
	for i := range 100 {
		f.users[fmt.Sprintf("u%d@d", i)] = Record{Mailbox: fmt.Sprint(i)}
	}
	f.gate = make(chan struct{})
	var st Stats
	c := NewCache(f, CacheOptions{TTL: time.Minute, Observer: &st})
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Go(func() {
			r, err := c.LookupUser(context.Background(), key(fmt.Sprintf("u%d@d", i%100)))
			if err == nil && r.Mailbox != fmt.Sprint(i%100) {
				err = fmt.Errorf("u%d: got mailbox %q", i%100, r.Mailbox)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	// Let the first lookups pile up behind the gate, then open it.
	for f.calls.Load() < 100 && st.Total(KindUser) == 0 {
		time.Sleep(time.Millisecond)
	}
	close(f.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.calls.Load(); n != 100 {
		t.Errorf("1000 lookups of 100 users made %d queries, want 100", n)
	}
	if got := st.Total(KindUser); got != 1000 {
		t.Errorf("observed %d lookups, want 1000", got)
	}
	if got := st.Queries(KindUser); got != 100 {
		t.Errorf("Stats.Queries = %d, want 100", got)
	}
}

// A caller that gives up does not cancel the query others wait on.
func TestCacheSingleFlightCallerLeaves(t *testing.T) {
	f := newFake("pg")
	f.users["a@d"] = Record{Mailbox: "a"}
	f.gate = make(chan struct{})
	f.started = make(chan struct{}, 1)
	c := NewCache(f, CacheOptions{TTL: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := c.LookupUser(ctx, key("a@d")); first <- err }()
	<-f.started
	second := make(chan error, 1)
	go func() { _, err := c.LookupUser(context.Background(), key("a@d")); second <- err }()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	close(f.gate)
	if err := <-second; err != nil {
		t.Fatalf("second caller after the first left: %v", err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("queries = %d, want 1", n)
	}
}

func TestCacheBounded(t *testing.T) {
	f := newFake("pg")
	for i := range 10 {
		f.users[fmt.Sprintf("u%d@d", i)] = Record{}
	}
	c := NewCache(f, CacheOptions{TTL: time.Hour, MaxEntries: 3})
	cc := AsCache(c)
	ctx := context.Background()
	get := func(i int) {
		if _, err := c.LookupUser(ctx, key(fmt.Sprintf("u%d@d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		get(i)
	}
	if cc.Len() != 3 {
		t.Fatalf("Len = %d, want 3", cc.Len())
	}
	// u7..u9 are cached; touching u7 makes u8 the least recently used.
	before := f.calls.Load()
	get(7)
	get(0) // evicts u8
	get(9)
	get(7)
	if n := f.calls.Load() - before; n != 1 {
		t.Errorf("queries = %d, want 1 (only u0)", n)
	}
	get(8)
	if n := f.calls.Load() - before; n != 2 {
		t.Errorf("queries = %d, want 2 (u8 was evicted)", n)
	}
	cc.Purge()
	if cc.Len() != 0 {
		t.Errorf("Len after Purge = %d", cc.Len())
	}
}

func TestCacheKindsAndCopies(t *testing.T) {
	f := newFake("pg")
	f.users["a@d"] = Record{Extra: map[string]string{"k": "v"}}
	f.aliases["a@d"] = []string{"b@d"}
	f.pw["a@d"] = "{PLAIN}x"
	c := NewCache(f, CacheOptions{TTL: time.Hour, NegativeTTL: time.Hour})
	ctx := context.Background()
	r, _ := c.LookupUser(ctx, key("a@d"))
	r.Extra["k"] = "changed"
	al, _ := c.LookupAlias(ctx, key("a@d"))
	al[0] = "changed"
	if pw, err := c.LookupPassword(ctx, key("a@d")); err != nil || pw != "{PLAIN}x" {
		t.Fatalf("password: %q %v", pw, err)
	}
	r2, _ := c.LookupUser(ctx, key("a@d"))
	al2, _ := c.LookupAlias(ctx, key("a@d"))
	if r2.Extra["k"] != "v" || al2[0] != "b@d" {
		t.Errorf("cached values were modified through a returned copy: %v %v", r2.Extra, al2)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("queries = %d, want 3 (one per kind)", n)
	}
	// The key's other fields are part of the cache key.
	if _, err := c.LookupUser(ctx, Key{Address: "a@d", LocalPart: "a", Domain: "d", Detail: "x"}); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 4 {
		t.Errorf("a lookup with another detail was answered from the cache")
	}
}

func TestCacheAuthenticator(t *testing.T) {
	plain := NewCache(newFake("pg"), CacheOptions{})
	if _, ok := plain.(Authenticator); ok {
		t.Error("Cache of a directory without Authenticate claims to be an Authenticator")
	}
	f := newFake("ldap")
	f.pw["a@d"] = "secret"
	var st Stats
	c := NewCache(fakeAuth{f}, CacheOptions{TTL: time.Hour, Observer: &st})
	a, ok := c.(Authenticator)
	if !ok {
		t.Fatal("Cache of an Authenticator is not one")
	}
	ctx := context.Background()
	if err := a.Authenticate(ctx, key("a@d"), "secret"); err != nil {
		t.Errorf("right password: %v", err)
	}
	if err := a.Authenticate(ctx, key("a@d"), "wrong"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if err := a.Authenticate(ctx, key("a@d"), "secret"); err != nil {
		t.Errorf("right password again: %v", err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("Authenticate was cached: %d queries, want 3", n)
	}
	if st.Count(KindAuth, ResultBadPassword, SourceDirectory) != 1 || st.Count(KindAuth, ResultFound, SourceDirectory) != 2 {
		t.Errorf("auth stats wrong")
	}
	if AsCache(c) == nil || AsCache(c).Unwrap() != (fakeAuth{f}) {
		t.Error("AsCache/Unwrap")
	}
}
