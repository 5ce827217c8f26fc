package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/directory"
)

// dirGeneration is the set of directories of one configuration, open and
// wrapped in their caches: what start-up opens and each SIGHUP replaces.
//
// Users of a generation hold it (acquire/release) for the length of one
// lookup or one password check. A retired generation closes its
// directories when the last holder releases it, so a reload never fails
// a lookup in flight: the lookup ends on the old pools, the next one
// starts on the new ones.
type dirGeneration struct {
	byName  map[string]directory.Directory
	order   []string                       // names in configuration order, for check and metrics
	domains map[string]directory.Directory // lower-cased domain -> its directory
	auth    directory.Directory            // [auth] directory, or nil
	// cram is [auth] directory_cram_md5: CRAM-MD5 for the directory's
	// users.
	cram bool
	// authBind: the [auth] directory checks passwords itself (LDAP,
	// auth = "bind"); otherwise lmtpd verifies the stored hash.
	authBind bool
	// caseSens is [delivery] case_sensitive: keys keep the case of the
	// local part (and login) when set, else are lower-cased.
	caseSens bool
	log      zerolog.Logger

	mu      sync.Mutex
	holders int
	retired bool
	closed  chan struct{} // closed once the directories are closed
}

// openDirectories opens every directory of cfg, each in a Cache with its
// cache settings and obs (nil for none). On error the ones already
// opened are closed again.
func openDirectories(cfg *config, log zerolog.Logger, obs directory.Observer) (*dirGeneration, error) {
	g := &dirGeneration{
		byName:   make(map[string]directory.Directory),
		domains:  make(map[string]directory.Directory),
		log:      log,
		caseSens: cfg.Delivery.CaseSensitive,
		closed:   make(chan struct{}),
	}
	for _, s := range cfg.dirSpecs {
		d, err := s.open(log.With().Str("directory", s.name).Logger())
		if err != nil {
			g.closeAll()
			return nil, &dirOpenError{key: s.key, name: s.name, err: err}
		}
		o := s.cache
		o.Observer = obs
		g.byName[s.name] = directory.NewCache(d, o)
		g.order = append(g.order, s.name)
	}
	for _, dm := range cfg.Domains {
		if dm.Directory != "" {
			g.domains[strings.ToLower(dm.Name)] = g.byName[dm.Directory]
		}
	}
	if cfg.Auth.Directory != "" {
		g.auth = g.byName[cfg.Auth.Directory]
		g.cram = cfg.Auth.DirectoryCRAMMD5
		for _, dc := range cfg.Directories {
			if dc.Name == cfg.Auth.Directory {
				g.authBind = dc.Driver == driverLDAP && dc.Auth != "attribute"
			}
		}
	}
	return g, nil
}

// dirOpenError is a directory that could not be opened, at its key.
type dirOpenError struct {
	key, name string
	err       error
}

func (e *dirOpenError) Error() string { return fmt.Sprintf("directory %q: %v", e.name, e.err) }
func (e *dirOpenError) Unwrap() error { return e.err }

// hold registers a user of g; false if g is retired (the caller loads
// the current generation again).
func (g *dirGeneration) hold() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired {
		return false
	}
	g.holders++
	return true
}

// release ends a use of g; the last one of a retired g closes it.
func (g *dirGeneration) release() {
	g.mu.Lock()
	g.holders--
	last := g.retired && g.holders == 0
	g.mu.Unlock()
	if last {
		go g.closeAll()
	}
}

// retire marks g replaced: it closes once nobody holds it.
func (g *dirGeneration) retire() {
	g.mu.Lock()
	already := g.retired
	g.retired = true
	idle := g.holders == 0
	g.mu.Unlock()
	if !already && idle {
		go g.closeAll()
	}
}

// closeAll closes every directory of g (SQL pools wait for their queries
// in flight) and then g.closed.
func (g *dirGeneration) closeAll() {
	for _, name := range g.order {
		if err := g.byName[name].Close(); err != nil {
			g.log.Warn().Str("directory", name).Err(err).Msg("closing the directory")
		}
	}
	close(g.closed)
}

// dirRegistry holds the current generation. The zero value holds none:
// every lookup through it finds no directory.
type dirRegistry struct {
	cur atomic.Pointer[dirGeneration]
}

// acquire returns the current generation, held; the caller releases it.
// nil when there is none.
func (r *dirRegistry) acquire() *dirGeneration {
	for {
		g := r.cur.Load()
		if g == nil {
			return nil
		}
		if g.hold() {
			return g
		}
		// Retired between Load and hold: the new one is stored already.
	}
}

// replace makes g current and retires the previous generation, which
// closes when its last lookup ends.
func (r *dirRegistry) replace(g *dirGeneration) {
	if old := r.cur.Swap(g); old != nil {
		old.retire()
	}
}

// close retires the current generation (at shutdown).
func (r *dirRegistry) close() {
	r.replace(nil)
}

// hasAuth reports whether the current configuration checks passwords in
// a directory, and whether it offers CRAM-MD5 for it.
func (r *dirRegistry) hasAuth() (auth, cram bool) {
	g := r.cur.Load()
	if g == nil || g.auth == nil {
		return false, false
	}
	return true, g.cram
}

// domainLookup is delivery's Lookup and AliasLookup over the [[domain]] directory
// keys: a local part the configuration does not list is a user of the
// domain when the domain's directory has it (delivery then routes it
// like a configured user without a route of its own: the domain's
// route, the maildir template by default). Domains without a directory
// answer "no" without asking anything. ErrNotFound is "no"; any other
// error is a temporary failure (delivery answers 451 4.3.0).
type domainLookup struct {
	reg *dirRegistry
}

// LookupUser implements delivery.Lookup: the record of the domain's
// directory, whose fields (mailbox, quota, sieve, forward, uid/gid) route
// the user; ErrNotFound for a domain without a directory.
func (l *domainLookup) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	g := l.reg.acquire()
	if g == nil {
		return directory.Record{}, directory.ErrNotFound
	}
	defer g.release()
	d := g.domains[strings.ToLower(k.Domain)]
	if d == nil {
		return directory.Record{}, directory.ErrNotFound
	}
	return d.LookupUser(ctx, k)
}

// LookupAlias implements delivery.AliasLookup: the aliases of the
// domain's directory (ErrNotFound for a domain without one), which
// delivery expands before the directory's users, as Postfix applies
// virtual_alias_maps before the mailbox lookup.
func (l *domainLookup) LookupAlias(ctx context.Context, k directory.Key) ([]string, error) {
	g := l.reg.acquire()
	if g == nil {
		return nil, directory.ErrNotFound
	}
	defer g.release()
	d := g.domains[strings.ToLower(k.Domain)]
	if d == nil {
		return nil, directory.ErrNotFound
	}
	return d.LookupAlias(ctx, k)
}
