package delivery

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/quota"
)

// QuotaConfig configures mailbox quota for maildir destinations: the
// Maildir++ maildirsize file (package quota), which Dovecot's "maildir"
// quota backend reads and updates too. A user's limits are, from the
// weakest to the strongest: Limits, the user's domain in Domains, the user
// in Users, and the QuotaBytes and QuotaMessages of the directory record a
// Lookup returned. Every folder counts (Trash too), as in Dovecot's
// default rule; pipe destinations have no quota.
type QuotaConfig struct {
	// Enabled turns quota on. Off, nothing is checked and maildirsize is
	// neither read nor written.
	Enabled bool
	// Limits are the default limits per user; zero fields are unlimited.
	Limits quota.Limits
	// Grace lets a message that crosses the byte limit in while the
	// result stays within limit + grace (Dovecot's quota_grace).
	Grace quota.Grace
	// Defer answers over quota with 452 4.2.2 (try again later) instead
	// of 552 5.2.2 (Dovecot's quota_full_tempfail).
	Defer bool
	// Warnings are delivered into the user's INBOX when a delivery takes
	// usage across their threshold; see QuotaWarning.
	Warnings []QuotaWarning
	// Domains override Limits for the users of a domain, by domain name
	// (case-insensitive); the domain must be served.
	Domains map[string]QuotaOverride
	// Users override them for one configured user, by "user@domain" (the
	// user as configured, matched as local parts are).
	Users map[string]QuotaOverride
}

// QuotaOverride sets a limit where a field is Set; a Set zero means
// unlimited.
type QuotaOverride struct {
	Bytes, Messages directory.Limit
}

// apply returns l with o's set fields.
func (o QuotaOverride) apply(l quota.Limits) quota.Limits {
	if o.Bytes.Set {
		l.Bytes = o.Bytes.Value
	}
	if o.Messages.Set {
		l.Messages = o.Messages.Value
	}
	return l
}

// QuotaWarning is a message delivered once into the user's INBOX when a
// delivery takes usage from below Percent of a limit (bytes or messages)
// to at or above it; not again until usage has fallen below it. The
// warning is stored even past the limit and counts in maildirsize.
type QuotaWarning struct {
	// Percent is the threshold, 1 to 100.
	Percent int
	// Message is the warning: a message (header, empty line, body) with
	// these placeholders replaced: {user} the address, {usage} and
	// {limit} the bytes used and allowed ("12.5 MiB"), {messages} and
	// {message_limit} the message count and its limit, {percent} the
	// threshold. Date and Message-ID fields are added when missing.
	Message []byte
}

// Quota refusals (RFC 3463 X.2.2 mailbox full; RFC 5321 552 exceeded
// storage allocation, 452 insufficient storage).
var (
	// ErrMailboxFull refuses a recipient over quota.
	ErrMailboxFull = protocol.NewError(protocol.CodeExceededStorage, protocol.ECPermMailboxFull, "Mailbox full")
	// ErrMailboxFullTemp is ErrMailboxFull under QuotaConfig.Defer.
	ErrMailboxFullTemp = protocol.NewError(protocol.CodeInsufficientSpace, protocol.ECTempMailboxFull, "Mailbox full")
	// ErrQuotaUnavailable: the usage of a mailbox cannot be known now (its
	// maildir cannot be scanned); the recipient is deferred, never
	// refused.
	ErrQuotaUnavailable = protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, "Temporary quota failure, try again later")
)

// QuotaEvent is reported to Options.OnQuota: a recipient refused over
// quota, or a warning delivered.
type QuotaEvent struct {
	// Kind is "refused" or "warning".
	Kind string
	// Stage is where a refusal happened: "rcpt" or "data".
	Stage string
	// Temporary is set for a 452 refusal (QuotaConfig.Defer).
	Temporary bool
}

// quotaPlan is a compiled QuotaConfig, part of the maildir target of a
// plan.
type quotaPlan struct {
	cfg        QuotaConfig
	domains    map[string]QuotaOverride // by lower-cased domain
	users      map[string]QuotaOverride // by folded user "@" lower-cased domain
	fold       func(string) string
	thresholds []int
}

// compileQuota checks c.Quota and builds its plan (nil when quota is off).
func (t *table) compileQuota(c *Config) (*quotaPlan, []error) {
	q := &c.Quota
	if !q.Enabled {
		return nil, nil
	}
	var errs []error
	fail := func(k []string, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: k, Err: fmt.Errorf(format, args...)})
	}
	if q.Limits.Bytes < 0 || q.Limits.Messages < 0 {
		fail(key("Quota", "Limits"), "negative limit")
	}
	if q.Grace.Bytes < 0 || q.Grace.Percent < 0 || q.Grace.Percent > 1000 {
		fail(key("Quota", "Grace"), "grace must be a byte count or 0%% to 1000%%")
	}
	p := &quotaPlan{cfg: *q, domains: make(map[string]QuotaOverride), users: make(map[string]QuotaOverride), fold: c.fold}
	for i, w := range q.Warnings {
		if w.Percent < 1 || w.Percent > 100 {
			fail(key("Quota", "Warnings", i, "Percent"), "%d: want a percentage from 1 to 100", w.Percent)
		}
		if len(strings.TrimSpace(string(w.Message))) == 0 {
			fail(key("Quota", "Warnings", i, "Message"), "the warning message is empty")
		}
		p.thresholds = append(p.thresholds, w.Percent)
	}
	for name, o := range q.Domains {
		if o.Bytes.Value < 0 || o.Messages.Value < 0 {
			fail(key("Quota", "Domains", "="+name), "negative limit")
		}
		p.domains[strings.ToLower(name)] = o
	}
	for addr, o := range q.Users {
		u, d, ok := strings.Cut(addr, "@")
		if !ok || u == "" || d == "" {
			fail(key("Quota", "Users", "="+addr), "%q: want user@domain", addr)
			continue
		}
		if o.Bytes.Value < 0 || o.Messages.Value < 0 {
			fail(key("Quota", "Users", "="+addr), "negative limit")
		}
		p.users[c.fold(u)+"@"+strings.ToLower(d)] = o
	}
	return p, errs
}

// limits returns the limits of d, in the documented order.
func (p *quotaPlan) limits(d *Destination) quota.Limits {
	l := p.cfg.Limits
	if o, ok := p.domains[d.Domain]; ok {
		l = o.apply(l)
	}
	if o, ok := p.users[p.fold(d.User)+"@"+d.Domain]; ok {
		l = o.apply(l)
	}
	return QuotaOverride{Bytes: d.QuotaBytes, Messages: d.QuotaMessages}.apply(l)
}

// refusal is the error for a recipient over quota.
func (p *quotaPlan) refusal() *protocol.Error {
	if p.cfg.Defer {
		return ErrMailboxFullTemp
	}
	return ErrMailboxFull
}

// quotaOf returns the maildir target of d with quota on, and d's maildir
// (absolute) and limits; nil when d has no quota. err is set when the
// maildir leads outside the maildir root (see confined).
func quotaOf(d *Destination) (mt *maildirTarget, dir string, l quota.Limits, err error) {
	mt, ok := d.Target.(*maildirTarget)
	if !ok || mt.quota == nil || mt.tracker == nil {
		return nil, "", quota.Limits{}, nil
	}
	l = mt.quota.limits(d)
	if l.Unlimited() {
		return nil, "", l, nil
	}
	dir, base := filepath.Join(mt.root, filepath.FromSlash(d.Mailbox)), mt.root
	if filepath.IsAbs(d.Mailbox) {
		// A trusted record's maildir of its own, in its home (or beside
		// it): quota stays inside that.
		dir = filepath.Clean(d.Mailbox)
		if base = d.Home; base == "" {
			base = filepath.Dir(dir)
		}
	}
	return mt, dir, l, confined(base, dir)
}

// confined checks that dir, its symbolic links resolved, is under root.
// Quota reads and writes maildirsize there with lmtpd's privileges, so a
// maildir replaced by a link must not lead it elsewhere (the maildir store
// refuses such links itself, through its os.Root; quota opens an os.Root
// on the maildir, which keeps the scan and the writes inside it). A
// maildir that does not exist yet is fine: the delivery creates it inside
// the root.
func confined(root, dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delivery: quota: %w", err)
	}
	r, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("delivery: quota: %w", err)
	}
	if rel, err := filepath.Rel(r, real); err != nil || !filepath.IsLocal(rel) {
		return fmt.Errorf("delivery: quota: the maildir %s resolves to %s, outside the maildir root %s", dir, real, r)
	}
	return nil
}

// checkQuota is the RCPT-time check: a recipient whose maildir is at or
// over quota, or that the declared SIZE= would take past limit + grace,
// is refused before anything is stored. A maildir whose usage cannot be
// known defers the recipient.
func (t *transaction) checkQuota(ctx context.Context, rc *protocol.Recipient, ds []Destination) error {
	var size int64
	if t.params != nil {
		size = t.params.Size
	}
	for i := range ds {
		mt, dir, l, err := quotaOf(&ds[i])
		if mt == nil {
			continue
		}
		var u quota.Usage
		if err == nil {
			u, err = mt.tracker.Usage(dir, l)
		}
		if err != nil {
			zerolog.Ctx(ctx).Error().Err(err).Str("to", rc.Address.String()).Str("maildir", dir).
				Msg("quota: cannot read the usage of the maildir; recipient deferred")
			return ErrQuotaUnavailable.Wrap(err)
		}
		if v := quota.Check(l, u, size, mt.quota.cfg.Grace); v != quota.Fits {
			rerr := mt.quota.refusal()
			zerolog.Ctx(ctx).Info().Str("to", rc.Address.String()).Str("maildir", dir).
				Int64("usage_bytes", u.Bytes).Int64("usage_messages", u.Messages).
				Int64("limit_bytes", l.Bytes).Int64("limit_messages", l.Messages).Int64("size", size).
				Str("verdict", v.String()).Str("status", rerr.Error()).Msg("recipient refused: over quota")
			mt.event(QuotaEvent{Kind: "refused", Stage: "rcpt", Temporary: rerr.Temporary()})
			return rerr
		}
	}
	return nil
}

// event reports e to Options.OnQuota.
func (m *maildirTarget) event(e QuotaEvent) {
	if m.onQuota != nil {
		m.onQuota(e)
	}
}

// reserve reserves room for a copy of size bytes for d before it is
// staged: nil when d has no quota, or the refusal.
func (m *maildirTarget) reserve(ctx context.Context, d *Destination, size int64) (*quotaHold, error) {
	mt, dir, l, err := quotaOf(d)
	if mt == nil {
		return nil, nil
	}
	var r *quota.Reservation
	if err == nil {
		r, err = m.tracker.Reserve(dir, l, m.quota.cfg.Grace, size)
	}
	if err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Str("to", d.Address).Str("maildir", dir).
			Msg("quota: cannot read the usage of the maildir; recipient deferred")
		return nil, ErrQuotaUnavailable.Wrap(err)
	}
	if r.Verdict != quota.Fits {
		rerr := m.quota.refusal()
		zerolog.Ctx(ctx).Info().Str("to", d.Address).Str("maildir", dir).
			Int64("usage_bytes", r.Before.Bytes).Int64("usage_messages", r.Before.Messages).
			Int64("limit_bytes", l.Bytes).Int64("limit_messages", l.Messages).Int64("size", size).
			Str("verdict", r.Verdict.String()).Msg("quota: message refused")
		m.event(QuotaEvent{Kind: "refused", Stage: "data", Temporary: rerr.Temporary()})
		return nil, rerr.Wrap(fmt.Errorf("delivery: %s: %v", dir, r.Verdict))
	}
	return &quotaHold{r: r, dir: dir, addr: d.Address}, nil
}

// quotaHold is one staged copy's reservation, until the copy is committed
// or aborted.
type quotaHold struct {
	r    *quota.Reservation
	dir  string          // the maildir, absolute
	mb   maildir.Mailbox // where the copy went; a warning goes to its INBOX
	addr string
}

// commit records the stored copy of stored bytes in maildirsize and
// delivers the warnings whose thresholds it crossed. Errors are logged:
// the message is delivered whatever happens here.
func (m *maildirTarget) commitQuota(ctx context.Context, h *quotaHold, stored int64) {
	if err := h.r.Commit(stored); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("maildir", h.dir).
			Msg("quota: cannot record the delivery in maildirsize; the next recalculation counts it")
	}
	after := h.r.Before.Add(quota.Usage{Bytes: stored, Messages: 1})
	for _, p := range quota.Crossed(h.r.Limits, h.r.Before, after, m.quota.thresholds) {
		m.warn(ctx, h, p, after)
	}
}

// warn delivers the warning of threshold p into h's INBOX.
func (m *maildirTarget) warn(ctx context.Context, h *quotaHold, p int, u quota.Usage) {
	var tmpl []byte
	for _, w := range m.quota.cfg.Warnings {
		if w.Percent == p {
			tmpl = w.Message
			break
		}
	}
	l := h.r.Limits
	msg := warningMessage(tmpl, warningVars{addr: h.addr, usage: u, limits: l, percent: p}, m.now())
	log := zerolog.Ctx(ctx).With().Str("to", h.addr).Str("maildir", h.dir).Int("percent", p).Logger()
	inbox := h.mb
	inbox.Folder, inbox.CreateFolder = "", false
	st, err := m.st.Deliver(ctx, inbox, maildir.Content{Header: msg})
	if err != nil {
		log.Error().Err(err).Msg("quota: cannot deliver the quota warning")
		return
	}
	if err := m.tracker.Add(h.dir, l, quota.Usage{Bytes: st.Size(), Messages: 1}); err != nil {
		log.Warn().Err(err).Msg("quota: cannot record the warning in maildirsize; the next recalculation counts it")
	}
	log.Info().Int64("usage_bytes", u.Bytes).Int64("limit_bytes", l.Bytes).
		Str("file", filepath.Join(h.dir, "new", path.Base(st.Path()))).Msg("quota warning delivered")
	m.event(QuotaEvent{Kind: "warning"})
}

// release ends the reservation of a copy that was not stored.
func (h *quotaHold) release() {
	if h != nil {
		h.r.Release()
	}
}

// quotaTracker returns the Router's quota.Tracker, made on first use: one
// per Router, kept across reloads, so that deliveries of an old and a new
// plan to one maildir see each other's reservations.
func (r *Router) quotaTracker() *quota.Tracker {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.quota == nil {
		r.quota = &quota.Tracker{Options: quota.Options{Now: r.opts.Now, FileMode: r.opts.QuotaFileMode}}
	}
	return r.quota
}

// now returns the Router's clock.
func (r *Router) now() time.Time {
	if r.opts.Now != nil {
		return r.opts.Now()
	}
	return time.Now()
}

// QuotaStatus is the quota of one maildir destination of an address, as
// Router.Quota reports it.
type QuotaStatus struct {
	// Address is the destination's address (an alias's target).
	Address string
	// Maildir is the maildir's path.
	Maildir string
	// Limits are the user's limits; zero fields are unlimited.
	Limits quota.Limits
	// Usage is what the maildir holds, counting deliveries in flight in
	// this process.
	Usage quota.Usage
	// Verdict is the answer for a message of the size asked about.
	Verdict quota.Verdict
	// Err is the refusal a recipient gets for it (ErrMailboxFull or
	// ErrMailboxFullTemp), nil when it fits.
	Err error
}

// ErrQuotaOff is returned by Router.Quota when quota is not enabled.
var ErrQuotaOff = errors.New("delivery: quota is not enabled")

// Quota resolves a as RCPT does and returns the quota of each of its
// maildir destinations (none for a pipe destination or an unlimited
// user), checked for a message of size bytes (0: unknown). The error is
// the refusal RCPT would give (*protocol.Error: 550 5.1.1 unknown user,
// 451 4.3.0 lookup failed, ...), ErrQuotaUnavailable for a maildir that
// cannot be scanned, or ErrQuotaOff. With recalc, each maildirsize is
// recalculated first. It serves the policy listener and "lmtpd quota".
func (r *Router) Quota(ctx context.Context, a protocol.Address, size int64, recalc bool) ([]QuotaStatus, error) {
	st := r.state.Load()
	if !st.plan.tab.cfg.Quota.Enabled {
		return nil, ErrQuotaOff
	}
	ds, err := st.plan.tab.lookup(ctx, a, protocol.LMTP, st.plan.opts.Lookup)
	if err != nil {
		return nil, err
	}
	var out []QuotaStatus
	for i := range ds {
		ds[i].Target = st.target(ds[i].Target)
		mt, dir, l, err := quotaOf(&ds[i])
		if mt == nil {
			continue
		}
		if err != nil {
			return nil, ErrQuotaUnavailable.Wrap(err)
		}
		if recalc {
			if err := recalculate(dir, l, mt.tracker.Options); err != nil {
				return nil, ErrQuotaUnavailable.Wrap(err)
			}
		}
		u, err := mt.tracker.Usage(dir, l)
		if err != nil {
			return nil, ErrQuotaUnavailable.Wrap(err)
		}
		qs := QuotaStatus{Address: ds[i].Address, Maildir: dir, Limits: l, Usage: u,
			Verdict: quota.Check(l, u, size, mt.quota.cfg.Grace)}
		if qs.Verdict != quota.Fits {
			qs.Err = mt.quota.refusal()
		}
		out = append(out, qs)
	}
	return out, nil
}

// recalculate rewrites the maildirsize of the maildir at dir, if the
// maildir exists.
func recalculate(dir string, l quota.Limits, o quota.Options) error {
	m, err := quota.Open(dir, l, o)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer m.Close()
	_, err = m.Recalculate()
	return err
}
