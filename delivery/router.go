package delivery

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/quota"
)

// Options are the parts of a Router that are not configuration: seams for
// tests and the metrics hook. The zero value uses the real file system
// and clock.
type Options struct {
	// FS replaces the maildir file system (maildir.NewRootFS on
	// Config.Maildir.Root); for tests.
	FS maildir.FS
	// Now replaces time.Now for maildir file names and tmp/ cleanup.
	Now func() time.Time
	// Names replaces the maildir unique-name source.
	Names maildir.NameSource
	// OnQuota, if set, is called for every recipient refused over quota
	// and every quota warning delivered: for metrics. Like Observe, it
	// must be safe for concurrent use and quick.
	OnQuota func(QuotaEvent)
	// QuotaFileMode is the mode of a maildirsize file lmtpd creates; 0
	// means 0600.
	QuotaFileMode os.FileMode
	// Observe, if set, is called with the outcome of every recipient's
	// delivery to each of its destinations, when the recipient's status is
	// reported: for metrics. It is called from delivering goroutines, so it
	// must be safe for concurrent use, and it should be quick.
	Observe func(Outcome)
	// ObserveSieve, if set, is called for every Sieve action carried out
	// ("keep", "fileinto", "implicit_keep", "redirect", "vacation", ...)
	// and error ("compile_error" once per version of a broken script,
	// "runtime_error"): for metrics. It must be safe for concurrent use.
	ObserveSieve func(event string)
	// QuietFlush logs which barrier flush = "auto" chose for a file
	// system at debug level instead of info: for a process per message
	// (lmtpd deliver), where once per file system is once per message.
	QuietFlush bool
}

// Outcome is one recipient's delivery to one destination, for
// Options.Observe.
type Outcome struct {
	// Backend is the target's Kind: "maildir", "pipe" or "lmtp".
	Backend string
	// Duration is the time the destination's delivery took.
	Duration time.Duration
	// Err is the recipient's status: nil when delivered, else a
	// *protocol.Error.
	Err error
}

// Router is the delivery backend: it routes recipients at RCPT time and
// delivers each message to its targets (maildirs, pipe commands), with one
// status per recipient. It implements protocol.Backend; its transactions
// implement protocol.Stager.
//
// A Router is safe for concurrent use. Reload swaps the plan atomically; a
// transaction keeps the plan it started with.
type Router struct {
	opts  Options
	state atomic.Pointer[state]

	scripts *scriptCache // compiled Sieve scripts, kept across reloads

	mu       sync.Mutex
	stores   map[storeKey]*maildir.Store
	journals map[string]*journal
	limiters map[limiterKey]*pipe.Limiter
	remotes  *remotePools // remote LMTP connections, made on first use (remote_pool.go)
	closed   bool
	quota    *quota.Tracker // made by quotaTracker; coordinates deliveries per maildir
}

// state is one plan bound to the Router's shared resources.
type state struct {
	plan    *Plan
	targets map[Target]Target // the plan's targets, bound (see binder)
	journal *journal          // nil unless Dedup.Enabled
	steps   []Step            // per-recipient steps, in order (see Step)
}

// target returns the bound form of one of the plan's targets.
func (st *state) target(t Target) Target {
	if b := st.targets[t]; b != nil {
		return b
	}
	return t
}

var _ protocol.Backend = (*Router)(nil)

// New returns a Router delivering by plan; it opens the maildir store and
// the dedup journal the plan needs.
func New(plan *Plan, opts Options) (*Router, error) {
	r := &Router{opts: opts, stores: make(map[storeKey]*maildir.Store), journals: make(map[string]*journal), scripts: newScriptCache()}
	r.scripts.onError = func() {
		if opts.ObserveSieve != nil {
			opts.ObserveSieve("compile_error")
		}
	}
	if err := r.Reload(plan); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload makes plan the plan of new transactions, once what it needs is
// open. On error the running plan stays. Maildir state (group commit,
// created-maildir cache) is kept when the maildir settings did not
// change, and a pipe route's Limiter when its place and limits did not.
func (r *Router) Reload(plan *Plan) error {
	cfg := &plan.tab.cfg
	b := &binding{r: r, limiters: make(map[limiterKey]*pipe.Limiter)}
	st := &state{plan: plan, targets: make(map[Target]Target, len(plan.tab.targets))}
	for _, t := range plan.tab.targets {
		bt, ok := t.(binder)
		if !ok {
			continue
		}
		bound, err := bt.bind(b)
		if err != nil {
			return err
		}
		st.targets[t] = bound
	}
	if cfg.Dedup.Enabled {
		var err error
		if st.journal, err = r.journalFor(cfg.Dedup); err != nil {
			return err
		}
	}
	if cfg.Sieve.Enabled {
		st.steps = append(st.steps, r.sieveStep(cfg))
	}
	st.steps = append(st.steps, plan.opts.Steps...)
	r.mu.Lock()
	r.limiters = b.limiters
	r.mu.Unlock()
	r.state.Store(st)
	return nil
}

// binding gives the targets of a plan being loaded the Router's shared
// resources.
type binding struct {
	r        *Router
	limiters map[limiterKey]*pipe.Limiter // those of the plan being loaded
}

// limiter returns the Limiter of the pipe route at where: the running
// one if its limits did not change, else a new one.
func (b *binding) limiter(where string, max int, wait time.Duration) *pipe.Limiter {
	l := pipe.NewLimiter(max, wait)
	k := limiterKey{where, l.Max(), l.Wait()}
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	if old := b.r.limiters[k]; old != nil {
		l = old
	}
	if prev := b.limiters[k]; prev != nil {
		l = prev
	}
	b.limiters[k] = l
	return l
}

// store returns the maildir store for k, shared between plans with equal
// maildir settings, or nil when there is no maildir root and no test file
// system.
func (b *binding) store(k storeKey) (*maildir.Store, error) {
	if k.root == "" && b.r.opts.FS == nil {
		return nil, nil
	}
	return b.r.storeFor(k)
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

// storeFor returns the Store for maildir settings k, shared between
// plans with equal settings. Stores are closed by Close only, since
// transactions of an old plan may still use theirs.
func (r *Router) storeFor(k storeKey) (*maildir.Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errClosed
	}
	if s := r.stores[k]; s != nil {
		return s, nil
	}
	var owner *maildir.Owner
	if k.uid >= 0 || k.gid >= 0 {
		owner = &maildir.Owner{UID: k.uid, GID: k.gid}
	}
	s, err := maildir.New(maildir.Options{
		Owner:           owner,
		Root:            k.root,
		FS:              r.opts.FS,
		Now:             r.opts.Now,
		Names:           r.opts.Names,
		Hostname:        k.hostname,
		MaxMessageBytes: k.maxBytes,
		FileMode:        k.fileMode,
		DirMode:         k.dirMode,
		Flush:           k.flush,
		QuietFlush:      r.opts.QuietFlush,
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

// sieveStep builds the Sieve step of a plan's configuration (validated by
// Compile) on the Router's script cache.
func (r *Router) sieveStep(cfg *Config) *sieveStep {
	tmpl, _ := parseScriptTemplate(cfg.Sieve.script())
	now := r.opts.Now
	if now == nil {
		now = time.Now
	}
	host := cfg.Maildir.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	return &sieveStep{cfg: cfg.Sieve, tmpl: tmpl, root: cfg.Maildir.Root, create: cfg.Maildir.CreateFolders,
		host: host, delim: cfg.DetailDelimiter, cache: r.scripts, now: now, observe: r.opts.ObserveSieve}
}

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
	if r.remotes != nil {
		r.remotes.close()
	}
	return errors.Join(errs...)
}

// Mail starts a transaction. Every sender is accepted: lmtpd delivers
// what the MTA in front of it accepted.
func (r *Router) Mail(ctx context.Context, conn *protocol.ConnState, from protocol.Address, params *protocol.MailParams) (protocol.Transaction, error) {
	return &transaction{r: r, st: r.state.Load(), conn: conn, from: from, params: params}, nil
}
