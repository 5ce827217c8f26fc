package directory

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// fakeDir is an in-memory Directory that counts the queries it gets,
// fails on demand and can hold queries until released.
type fakeDir struct {
	name    string
	mu      sync.Mutex
	users   map[string]Record
	aliases map[string][]string
	pw      map[string]string
	err     error         // returned by every lookup while set
	gate    chan struct{} // when not nil, lookups wait for it (or ctx)
	calls   atomic.Int64
	started chan struct{} // when not nil, gets a value as each lookup starts
}

func newFake(name string) *fakeDir {
	return &fakeDir{name: name, users: map[string]Record{}, aliases: map[string][]string{}, pw: map[string]string{}}
}

func (f *fakeDir) setErr(err error) { f.mu.Lock(); f.err = err; f.mu.Unlock() }

func (f *fakeDir) enter(ctx context.Context) error {
	f.calls.Add(1)
	if f.started != nil {
		f.started <- struct{}{}
	}
	f.mu.Lock()
	gate, err := f.gate, f.err
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (f *fakeDir) Name() string { return f.name }

func (f *fakeDir) LookupUser(ctx context.Context, k Key) (Record, error) {
	if err := f.enter(ctx); err != nil {
		return Record{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.users[k.Address]
	if !ok {
		return Record{}, ErrNotFound
	}
	return r, nil
}

func (f *fakeDir) LookupAlias(ctx context.Context, k Key) ([]string, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.aliases[k.Address]
	if !ok {
		return nil, ErrNotFound
	}
	return t, nil
}

func (f *fakeDir) LookupPassword(ctx context.Context, k Key) (string, error) {
	if err := f.enter(ctx); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pw[k.Address]
	if !ok {
		return "", ErrNotFound
	}
	return p, nil
}

func (f *fakeDir) Check(ctx context.Context) error { return f.enter(ctx) }
func (f *fakeDir) Close() error                    { return nil }

// fakeAuth adds Authenticator to fakeDir.
type fakeAuth struct{ *fakeDir }

func (f fakeAuth) Authenticate(ctx context.Context, k Key, password string) error {
	p, err := f.LookupPassword(ctx, k)
	if err != nil {
		return err
	}
	if p != password {
		return ErrBadPassword
	}
	return nil
}

// clock is a settable clock for cache tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
