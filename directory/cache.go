package directory

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults of CacheOptions.
const (
	DefaultTimeout    = 3 * time.Second
	DefaultMaxEntries = 10000
)

// CacheOptions configures a Cache. The zero value caches nothing but
// still applies single flight, the default timeout and the observer.
type CacheOptions struct {
	// TTL is how long a found answer is served without asking again
	// (cache_ttl); 0 disables the positive cache.
	TTL time.Duration
	// NegativeTTL is how long an ErrNotFound answer is served
	// (negative_cache_ttl); 0 disables the negative cache.
	NegativeTTL time.Duration
	// MaxEntries bounds the cache; the least recently used entry goes
	// first. 0 means DefaultMaxEntries.
	MaxEntries int
	// Timeout bounds each query to the directory, connection included
	// (timeout); 0 means DefaultTimeout. A caller whose own context ends
	// sooner stops waiting sooner.
	Timeout time.Duration
	// Observer, if not nil, receives one Event per lookup.
	Observer Observer
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
}

// Cache wraps a Directory with a positive and a negative cache, single
// flight (identical lookups in flight at once are made once) and a
// per-lookup timeout. It is safe for concurrent use.
//
// Errors other than ErrNotFound are never cached: the next lookup asks
// again, so the directory's recovery is seen at once. During an outage
// entries still within their TTL are served; an expired one is not.
//
// Authenticate (when the wrapped directory has it) and Check pass
// through with the timeout, uncached. Returned records and slices are
// copies the caller may keep and modify.
type Cache struct {
	d  Directory
	o  CacheOptions
	sf singleflight.Group

	mu  sync.Mutex
	lru *list.List // of *entry, most recently used first
	m   map[string]*list.Element
}

type entry struct {
	key     string
	val     any
	err     error // nil or ErrNotFound
	expires time.Time
}

// authCache is a Cache around a Directory that is also an Authenticator.
type authCache struct {
	*Cache
	a Authenticator
}

// NewCache wraps d. The result is a *Cache, and implements Authenticator
// exactly when d does (use AsCache to reach the *Cache).
func NewCache(d Directory, o CacheOptions) Directory {
	c := &Cache{d: d, o: o, lru: list.New(), m: make(map[string]*list.Element)}
	if a, ok := d.(Authenticator); ok {
		return &authCache{Cache: c, a: a}
	}
	return c
}

// AsCache returns the *Cache behind a Directory NewCache returned, or nil.
func AsCache(d Directory) *Cache {
	switch c := d.(type) {
	case *Cache:
		return c
	case *authCache:
		return c.Cache
	}
	return nil
}

// Unwrap returns the wrapped Directory.
func (c *Cache) Unwrap() Directory { return c.d }

// Name returns the wrapped directory's name.
func (c *Cache) Name() string { return c.d.Name() }

// LookupUser answers from the cache or asks the directory.
func (c *Cache) LookupUser(ctx context.Context, k Key) (Record, error) {
	v, err := c.do(ctx, KindUser, k, func(ctx context.Context) (any, error) {
		return c.d.LookupUser(ctx, k)
	})
	if err != nil {
		return Record{}, err
	}
	r := v.(Record)
	r.Extra = maps.Clone(r.Extra)
	return r, nil
}

// LookupAlias answers from the cache or asks the directory.
func (c *Cache) LookupAlias(ctx context.Context, k Key) ([]string, error) {
	v, err := c.do(ctx, KindAlias, k, func(ctx context.Context) (any, error) {
		return c.d.LookupAlias(ctx, k)
	})
	if err != nil {
		return nil, err
	}
	return slices.Clone(v.([]string)), nil
}

// LookupPassword answers from the cache or asks the directory. Cached
// hashes live as long as cache_ttl, so a changed password takes effect
// within it, as with Dovecot's auth cache.
func (c *Cache) LookupPassword(ctx context.Context, k Key) (string, error) {
	v, err := c.do(ctx, KindPassword, k, func(ctx context.Context) (any, error) {
		return c.d.LookupPassword(ctx, k)
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// Authenticate passes through to the wrapped Authenticator under the
// timeout; it is never cached.
func (c *authCache) Authenticate(ctx context.Context, k Key, password string) error {
	start := c.now()
	lctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	err := c.wrapErr(lctx, KindAuth, c.a.Authenticate(lctx, k, password))
	c.observe(KindAuth, err, SourceDirectory, c.now().Sub(start))
	return err
}

// Check passes through to the wrapped directory under the timeout.
func (c *Cache) Check(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if err := c.d.Check(lctx); err != nil {
		return c.wrapErr(lctx, -1, err)
	}
	return nil
}

// Close empties the cache and closes the wrapped directory.
func (c *Cache) Close() error {
	c.Purge()
	return c.d.Close()
}

// Purge drops every cached entry.
func (c *Cache) Purge() {
	c.mu.Lock()
	c.lru.Init()
	clear(c.m)
	c.mu.Unlock()
}

// Len returns the number of cached entries, expired ones included until
// they are next touched or evicted.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *Cache) now() time.Time {
	if c.o.Now != nil {
		return c.o.Now()
	}
	return time.Now()
}

func (c *Cache) timeout() time.Duration {
	if c.o.Timeout > 0 {
		return c.o.Timeout
	}
	return DefaultTimeout
}

func (c *Cache) maxEntries() int {
	if c.o.MaxEntries > 0 {
		return c.o.MaxEntries
	}
	return DefaultMaxEntries
}

func (c *Cache) observe(kind Kind, err error, src Source, d time.Duration) {
	if c.o.Observer != nil {
		c.o.Observer.Observe(Event{Directory: c.d.Name(), Kind: kind, Result: ResultOf(err), Source: src, Duration: d})
	}
}

// cacheKey holds every field of k: a query may use any placeholder.
func cacheKey(kind Kind, k Key) string {
	return strings.Join([]string{kind.String(), k.Address, k.LocalPart, k.Domain, k.Detail}, "\x00")
}

// wrapErr names the directory in an error that is not a plain answer,
// and says so when the cause is the timeout.
func (c *Cache) wrapErr(ctx context.Context, kind Kind, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadPassword) {
		return err
	}
	what := "check"
	if kind >= 0 {
		what = kind.String() + " lookup"
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("directory %s: %s: no answer within %v: %w", c.d.Name(), what, c.timeout(), err)
	}
	return fmt.Errorf("directory %s: %s: %w", c.d.Name(), what, err)
}

func (c *Cache) get(key string) (any, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return nil, nil, false
	}
	e := el.Value.(*entry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.m, key)
		return nil, nil, false
	}
	c.lru.MoveToFront(el)
	return e.val, e.err, true
}

func (c *Cache) put(key string, val any, err error, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &entry{key: key, val: val, err: err, expires: c.now().Add(ttl)}
	if el, ok := c.m[key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.m[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.maxEntries() {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*entry).key)
	}
}

// do answers one lookup: from the cache, from a query already in flight
// for the same key, or from a new query. The query runs detached from
// the caller's cancellation (others may be waiting on it) but under the
// timeout; each caller stops waiting when its own ctx ends.
func (c *Cache) do(ctx context.Context, kind Kind, k Key, query func(context.Context) (any, error)) (any, error) {
	start := c.now()
	key := cacheKey(kind, k)
	if v, err, ok := c.get(key); ok {
		c.observe(kind, err, SourceCache, 0)
		return v, err
	}
	leader, hit := false, false
	ch := c.sf.DoChan(key, func() (any, error) {
		leader = true
		// A flight that finished between our miss and this one stored
		// its answer: use it rather than ask again.
		if v, err, ok := c.get(key); ok {
			hit = true
			return v, err
		}
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout())
		defer cancel()
		v, err := query(qctx)
		switch {
		case err == nil:
			c.put(key, v, nil, c.o.TTL)
		case errors.Is(err, ErrNotFound):
			c.put(key, nil, ErrNotFound, c.o.NegativeTTL)
			err = ErrNotFound
		default:
			err = c.wrapErr(qctx, kind, err)
		}
		return v, err
	})
	select {
	case r := <-ch:
		src := SourceShared
		switch {
		case leader && hit:
			src = SourceCache
		case leader:
			src = SourceDirectory
		}
		c.observe(kind, r.Err, src, c.now().Sub(start))
		return r.Val, r.Err
	case <-ctx.Done():
		err := fmt.Errorf("directory %s: %s lookup: %w", c.d.Name(), kind, ctx.Err())
		c.observe(kind, err, SourceDirectory, c.now().Sub(start))
		return nil, err
	}
}
