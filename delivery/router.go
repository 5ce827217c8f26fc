package delivery

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/protocol"
)

// Options are the parts of a Router that are not configuration: seams for
// tests and optional sources of users. The zero value uses the real file
// system and clock.
type Options struct {
	// FS replaces the maildir file system (maildir.NewRootFS on
	// Config.Maildir.Root); for tests.
	FS maildir.FS
	// Now replaces time.Now for maildir file names and tmp/ cleanup.
	Now func() time.Time
	// Names replaces the maildir unique-name source.
	Names maildir.NameSource
	// Lookup, if set, is asked about local parts the configuration does
	// not list (see UserLookup).
	Lookup UserLookup
	// Observe, if set, is called with the outcome of every recipient's
	// delivery to each of its destinations, when the recipient's status is
	// reported: for metrics. It is called from delivering goroutines, so it
	// must be safe for concurrent use, and it should be quick.
	Observe func(Outcome)
}

// Outcome is one recipient's delivery to one destination, for
// Options.Observe.
type Outcome struct {
	// Backend is "maildir" or "pipe".
	Backend string
	// Duration is the time the destination's delivery took.
	Duration time.Duration
	// Err is the recipient's status: nil when delivered, else a
	// *protocol.Error.
	Err error
}

// Router is the delivery backend: it routes recipients at RCPT time and
// delivers each message to maildirs and pipe commands, with one status
// per recipient. It implements protocol.Backend; its transactions
// implement protocol.Stager.
//
// A Router is safe for concurrent use. Reload swaps the configuration
// atomically; a transaction keeps the configuration it started with.
type Router struct {
	opts  Options
	state atomic.Pointer[state]

	mu       sync.Mutex
	stores   map[storeKey]*maildir.Store
	journals map[string]*journal
	limiters map[limiterKey]*pipe.Limiter
	closed   bool
}

// limiterKey identifies a pipe route's concurrency limit across reloads:
// the same place in the configuration with the same settings keeps its
// Limiter, so runs started before a reload still count.
type limiterKey struct {
	where string
	max   int
	wait  time.Duration
}

// shareLimiters gives the pipe routes of tab the Limiters of the running
// configuration where their place and settings did not change, and drops
// the Limiters no route uses any more.
func (r *Router) shareLimiters(tab *table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[limiterKey]*pipe.Limiter)
	for _, rt := range tab.routes() {
		if rt.limiter == nil {
			continue
		}
		k := limiterKey{rt.where, rt.limiter.Max(), rt.limiter.Wait()}
		if l := r.limiters[k]; l != nil {
			rt.limiter = l
		}
		next[k] = rt.limiter
	}
	r.limiters = next
}

// state is one configuration with what it needs.
type state struct {
	tab     *table
	store   *maildir.Store // nil without maildir root
	journal *journal       // nil unless Dedup.Enabled
}

var _ protocol.Backend = (*Router)(nil)

// New validates cfg and returns a Router for it.
func New(cfg Config, opts Options) (*Router, error) {
	r := &Router{opts: opts, stores: make(map[storeKey]*maildir.Store), journals: make(map[string]*journal)}
	if err := r.Reload(cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload validates cfg and, if it is valid, makes it the configuration of
// new transactions. On error the running configuration stays. Maildir
// state (group commit, created-maildir cache) is kept when the maildir
// settings did not change.
func (r *Router) Reload(cfg Config) error {
	tab, err := compile(&cfg)
	if err != nil {
		return err
	}
	r.shareLimiters(tab)
	st := &state{tab: tab}
	if cfg.Maildir.Root != "" || r.opts.FS != nil {
		if st.store, err = r.storeFor(&cfg); err != nil {
			return err
		}
	}
	if cfg.Dedup.Enabled {
		if st.journal, err = r.journalFor(cfg.Dedup); err != nil {
			return err
		}
	}
	r.state.Store(st)
	return nil
}

// journalFor returns the dedup journal at c.Path, opened once per Router.
func (r *Router) journalFor(c DedupConfig) (*journal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errClosed
	}
	if j := r.journals[c.Path]; j != nil {
		return j, nil
	}
	now := r.opts.Now
	if now == nil {
		now = time.Now
	}
	j, err := openJournal(c.Path, c.window(), now)
	if err != nil {
		return nil, err
	}
	r.journals[c.Path] = j
	return j, nil
}

// storeFor returns the Store for cfg's maildir settings, shared between
// configurations with equal settings. Stores are closed by Close only,
// since transactions of an old configuration may still use theirs.
func (r *Router) storeFor(cfg *Config) (*maildir.Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errClosed
	}
	k := cfg.storeKey()
	if s := r.stores[k]; s != nil {
		return s, nil
	}
	s, err := maildir.New(maildir.Options{
		Root:            cfg.Maildir.Root,
		FS:              r.opts.FS,
		Now:             r.opts.Now,
		Names:           r.opts.Names,
		Hostname:        cfg.Maildir.Hostname,
		MaxMessageBytes: cfg.Maildir.MaxMessageBytes,
		// Folder creation is decided per delivery (Mailbox.CreateFolder),
		// from the user's setting.
	})
	if err != nil {
		return nil, err
	}
	r.stores[k] = s
	return s, nil
}

var errClosed = errors.New("delivery: router closed")

// Close releases the maildir roots. Transactions must have ended.
func (r *Router) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	var errs []error
	for k, s := range r.stores {
		errs = append(errs, s.Close())
		delete(r.stores, k)
	}
	for k, j := range r.journals {
		errs = append(errs, j.close())
		delete(r.journals, k)
	}
	return errors.Join(errs...)
}

// Mail starts a transaction. Every sender is accepted: lmtpd delivers
// what the MTA in front of it accepted.
func (r *Router) Mail(ctx context.Context, conn *protocol.ConnState, from protocol.Address, params *protocol.MailParams) (protocol.Transaction, error) {
	return &transaction{r: r, st: r.state.Load(), conn: conn, from: from, params: params}, nil
}
