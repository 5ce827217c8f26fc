package delivery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery/spool"
	"github.com/lmtpd/lmtpd/protocol"
)

// transaction is one mail transaction on a Router.
type transaction struct {
	r      *Router
	st     *state
	conn   *protocol.ConnState
	from   protocol.Address
	params *protocol.MailParams
	rcpts  [][]Destination // destinations of each accepted RCPT, in order

	staged *delivery // between Stage and Commit or Close
}

var (
	_ protocol.Transaction = (*transaction)(nil)
	_ protocol.Stager      = (*transaction)(nil)
)

// Rcpt routes the recipient; see table.lookup for the order and the
// refusals.
func (t *transaction) Rcpt(ctx context.Context, rc *protocol.Recipient) error {
	proto := protocol.SMTP
	if t.conn != nil {
		proto = t.conn.Protocol
	}
	ds, err := t.st.plan.tab.lookup(ctx, rc.Address, proto, t.st.plan.opts.Lookup)
	if err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Str("to", rc.Address.String()).Msg("recipient refused")
		return err
	}
	for i := range ds {
		ds[i].Target = t.st.target(ds[i].Target)
	}
	if err := t.checkQuota(ctx, rc, ds); err != nil {
		return err
	}
	t.rcpts = append(t.rcpts, ds)
	return nil
}

// Data delivers msg to every recipient and reports each outcome through
// status as soon as all of that recipient's destinations are done:
// refusals (loop, size) at once, staged copies (maildir) after the commit
// that makes them durable, final targets (pipe commands) when they return.
// Recipients that reach the same destination (duplicates, aliases) are
// delivered once and share its outcome. An error is returned only when the
// message could not be read or spooled; then nothing was delivered.
func (t *transaction) Data(ctx context.Context, msg *protocol.Message, status protocol.StatusSetter) error {
	d, err := t.prepare(ctx, msg)
	if err != nil {
		return err
	}
	defer d.sp.Close()
	d.onSettle = func(i int, err error) {
		// The Done hooks run before the status is handed on (in LMTP
		// before the recipient's reply is written): Sieve's redirects
		// and vacation replies are sent by the time the client hears
		// 250, and a hook's failure (a redirect neither sent nor kept)
		// becomes the recipient's reply instead (StepResult.Done).
		if derr := d.done(ctx, i, err); derr != nil {
			err = derr
			d.results[i] = err
		}
		status.Set(i, err)
		d.log(ctx, i, err)
	}
	d.settle()
	d.stage(ctx, false)
	d.settle()
	d.commit(ctx)
	d.record(ctx)
	d.settle()
	d.stage(ctx, true)
	d.record(ctx)
	d.settle()
	return nil
}

// Stage stages msg for every recipient: copies that can be undone are
// staged first (maildir files written and fsynced into tmp/), then final
// targets run (pipe commands). If any recipient fails, everything staged
// is removed and that recipient's error is returned (a temporary one in
// preference, so the client retries). A final target's success cannot be
// undone: if a later recipient fails, the command has delivered and a
// retry delivers to it again.
func (t *transaction) Stage(ctx context.Context, msg *protocol.Message) error {
	d, err := t.prepare(ctx, msg)
	if err != nil {
		return err
	}
	d.stage(ctx, false)
	if err := d.firstError(); err != nil {
		d.abort()
		d.failed = true
		d.logAll(ctx)
		d.sp.Close()
		return err
	}
	d.stage(ctx, true)
	d.record(ctx)
	if err := d.firstError(); err != nil {
		d.abort()
		d.failed = true
		d.logAll(ctx)
		d.sp.Close()
		return err
	}
	// The spool stays open until Commit or Close: the steps' Done hooks
	// read the body when the recipients are reported (Sieve's redirects).
	t.staged = d
	return nil
}

// Commit commits the staged copies (maildir: renamed into new/, the
// directories fsynced). It returns the first failure (temporary in
// preference); recipients committed before it stay delivered.
//
// The steps' Done hooks run here, before Commit returns the one reply,
// and see the status of the whole message: nil only when every recipient
// was committed and no earlier hook failed, else that failure, so that
// nothing is sent (Sieve's redirects, vacation replies) for an attempt
// the client will resend as a whole. A hook's error (a redirect neither
// sent nor kept) becomes the reply.
func (t *transaction) Commit(ctx context.Context) error {
	d := t.staged
	if d == nil {
		return errSpoolIO.Wrap(errNotStaged)
	}
	t.staged = nil
	defer d.sp.Close()
	d.commit(ctx)
	d.record(ctx)
	d.markUndone()
	fold := d.firstError()
	d.onSettle = func(i int, err error) {
		switch {
		case err != nil:
			if derr := d.done(ctx, i, err); derr != nil {
				err = derr
			}
		case fold != nil:
			// The reply is not 250 and the client resends the message
			// to every recipient: this recipient's copies are stored
			// (the retry may store them again), but what its hooks
			// would send waits for the attempt that succeeds. One with
			// nothing stored (discard, redirect) is not delivered.
			d.done(ctx, i, fold)
			if len(d.byRcpt[i]) == 0 {
				err = errNotDelivered
			}
		default:
			if derr := d.done(ctx, i, nil); derr != nil {
				err = derr
				fold = protocol.WorseStatus(fold, derr)
			}
		}
		d.results[i] = err
		d.log(ctx, i, err)
	}
	d.settle()
	return fold
}

var errNotStaged = errorString("delivery: Commit without a successful Stage")

type errorString string

func (e errorString) Error() string { return string(e) }

// Close removes copies staged but not committed.
func (t *transaction) Close() error {
	if t.staged != nil {
		t.staged.abort()
		t.staged.sp.Close()
		t.staged = nil
	}
	return nil
}

// delivery is the work of one message.
type delivery struct {
	t        *transaction
	msg      *protocol.Message
	m        Message // what targets see
	start    time.Time
	sp       *spool.Spool
	jobs     []*job
	groups   []group
	byRcpt   [][]*job
	settled  []bool
	results  []error
	stepErr  []error      // per recipient: a Step's answer, nil if none
	stepLog  [][]logField // per recipient: what the steps add to the outcome line
	stepDone [][]func(context.Context, error) error
	// share is which recipients share destinations with earlier ones
	// (share.go); nil when none do.
	share *sharing
	// failed is set when an all-or-nothing (SMTP) Stage failed and was
	// aborted: no recipient is delivered.
	failed   bool
	onSettle func(i int, err error)
	// The usual message has one destination: its job, the job lists and
	// its group live here rather than in allocations of their own.
	one struct {
		job    job
		jobs   [1]*job
		groups [1]group
		gjobs  [1]*job
		ds     [1]*Destination
		res    [1]Result
	}
}

// job is one destination, shared by every recipient that resolves to it.
type job struct {
	dest  Destination // with Rcpts set
	res   Result
	done  bool
	dkey  string // dedup journal key, when the journal is on
	dup   bool   // delivered before, within the dedup window
	group int    // index in delivery.groups, when not done before staging
}

// group is the jobs of one target that share one Stage call.
type group struct {
	key    destKey
	target Target
	final  bool
	n      int // jobs
	jobs   []*job
	ds     []*Destination // of the jobs
	res    []Result
	staged Staged // between Stage and Commit or Abort
}

// destKey identifies a destination: its target and the target's key.
type destKey struct {
	t   Target
	key string
}

var lfPool = sync.Pool{New: func() any { return spool.NewLFWriter(nil) }}

// prepare reads the body into the spool, builds the header and plans one
// job per distinct destination.
func (t *transaction) prepare(ctx context.Context, msg *protocol.Message) (*delivery, error) {
	cfg := &t.st.plan.tab.cfg
	d := &delivery{t: t, msg: msg, start: time.Now()}
	opts := cfg.spoolOptions()
	d.sp = spool.New(opts)
	lf := lfPool.Get().(*spool.LFWriter)
	lf.Reset(d.sp)
	var err error
	var bodySum hash.Hash
	if msg.Body != nil {
		body := msg.Body
		if t.st.journal != nil {
			// The body streams once: digest it on its way to the spool,
			// so that dedup can decide before anything is committed.
			bodySum = sha256.New()
			body = io.TeeReader(body, bodySum)
		}
		_, err = io.Copy(lf, body)
	}
	if err == nil {
		err = lf.Flush()
	}
	lf.Reset(nil)
	lfPool.Put(lf)
	if err != nil {
		d.sp.Close()
		return nil, spoolFailure(ctx, err, opts.Dir)
	}

	hdr := msg.Header()
	hdr.Del("Return-Path")
	var hb bytes.Buffer
	if err := textproto.WriteHeader(&hb, *hdr); err != nil {
		d.sp.Close()
		return nil, spoolFailure(ctx, err, "")
	}
	hbytes := hb.Bytes()
	if !msg.HasBlankLine() {
		// WriteHeader always ends the section with the empty line; a
		// message of header fields only had none, and its copy must be
		// what the client sent.
		hbytes = bytes.TrimSuffix(hbytes, []byte("\r\n"))
	}
	from := t.from.String()
	d.m = Message{
		ID: msg.ID, From: from, Conn: t.conn, Recipients: msg.Recipients,
		from: t.from, params: t.params, proto: msg,
		body: d.sp,
		hdr:  hdr,
		base: spool.AppendLF(make([]byte, 0, len(hbytes)), hbytes),
		rp:   []byte("Return-Path: <" + headerValue(from) + ">\n"),
		mode: cfg.DeliveredTo,
	}

	delivered := deliveredTo(hdr)
	if len(delivered) > 0 {
		d.m.topDT = delivered[0]
	}
	n := len(msg.Recipients)
	d.byRcpt = make([][]*job, n)
	d.settled = make([]bool, n)
	d.results = make([]error, n)
	// Recipients that reach a destination an earlier one reaches share
	// its delivery and its steps' run (share.go).
	rcpts, sh := share(t.rcpts[:min(n, len(t.rcpts))])
	d.share = sh
	if steps := t.st.steps; len(steps) > 0 {
		// Per-recipient steps (Sieve) see every recipient's resolution
		// before anything is grouped.
		d.stepErr = make([]error, n)
		d.stepLog = make([][]logField, n)
		d.stepDone = make([][]func(context.Context, error) error, n)
		rcpts = d.applySteps(ctx, steps, rcpts)
	}
	byKey := make(map[destKey]*job)
	d.jobs = d.one.jobs[:0]
	for i := 0; i < n && i < len(rcpts); i++ {
		for r := range rcpts[i] {
			dst := &rcpts[i][r]
			k := destKey{dst.Target, dst.Target.Key(dst)}
			j := byKey[k]
			if j == nil {
				if len(d.jobs) == 0 {
					j = &d.one.job
					*j = job{dest: *dst}
				} else {
					j = &job{dest: *dst}
				}
				j.dest.Rcpts = nil
				byKey[k] = j
				d.jobs = append(d.jobs, j)
			}
			if rs := j.dest.Rcpts; len(rs) == 0 || rs[len(rs)-1] != i {
				j.dest.Rcpts = append(j.dest.Rcpts, i)
			}
			if !slices.Contains(d.byRcpt[i], j) {
				d.byRcpt[i] = append(d.byRcpt[i], j)
			}
			if sh != nil && dst.unit > 0 && !slices.Contains(sh.unitJobs[dst.unit], j) {
				sh.unitJobs[dst.unit] = append(sh.unitJobs[dst.unit], j)
			}
		}
	}
	if sh != nil {
		sh.link(ctx, d)
	}
	d.m.nDests = len(d.jobs)
	if cfg.LoopCheck {
		for _, j := range d.jobs {
			for _, v := range delivered {
				if strings.EqualFold(v, j.dest.Address) {
					j.res.Err, j.done = ErrLoop, true
					break
				}
			}
		}
	}
	if t.st.journal != nil {
		d.dedup(ctx, bodySum)
	}
	// Jobs of one target that can share a copy are staged together, in
	// the order of their first recipient.
	// First the group of each live job, then one slice of jobs, of
	// destinations and of results for all groups, each group a part.
	var byGroup map[destKey]int // only for many jobs: a few are searched
	if len(d.jobs) > 8 {
		byGroup = make(map[destKey]int)
	}
	live := 0
	d.groups = d.one.groups[:0]
	for _, j := range d.jobs {
		if j.done {
			continue
		}
		k := destKey{j.dest.Target, j.dest.Target.Group(&j.dest)}
		gi, ok := -1, false
		if byGroup != nil {
			gi, ok = byGroup[k]
		} else {
			for i := range d.groups {
				if d.groups[i].key == k {
					gi, ok = i, true
					break
				}
			}
		}
		if !ok {
			gi = len(d.groups)
			d.groups = append(d.groups, group{key: k, target: j.dest.Target, final: isFinal(j.dest.Target)})
			if byGroup != nil {
				byGroup[k] = gi
			}
		}
		j.group = gi
		d.groups[gi].n++
		live++
	}
	jobs, ds, res := d.one.gjobs[:], d.one.ds[:], d.one.res[:]
	if live != 1 {
		jobs, ds, res = make([]*job, live), make([]*Destination, live), make([]Result, live)
	}
	off := 0
	for i := range d.groups {
		g := &d.groups[i]
		g.jobs, g.ds, g.res = jobs[off:off:off+g.n], ds[off:off:off+g.n], res[off:off+g.n]
		off += g.n
	}
	for _, j := range d.jobs {
		if !j.done {
			g := &d.groups[j.group]
			g.jobs = append(g.jobs, j)
			g.ds = append(g.ds, &j.dest)
		}
	}
	return d, nil
}

// dedup marks the jobs the journal says were delivered already as done.
// A job is a resend of an earlier delivery when sender, destination,
// Message-ID (or its absence) and content all match; see messageKey.
func (d *delivery) dedup(ctx context.Context, bodySum hash.Hash) {
	msgKey := d.messageKey(bodySum)
	w := d.t.st.plan.tab.cfg.Dedup.window()
	for _, j := range d.jobs {
		if j.done {
			continue
		}
		j.dkey = dedupKey(msgKey, d.t.from.String(), j.dest.Target.Key(&j.dest))
		if d.t.st.journal.has(j.dkey, w) {
			j.done, j.dup = true, true
		}
	}
}

// messageKey identifies a message for dedup: its Message-ID and a SHA-256
// digest of its content, the header fields as the client sent them (the
// server's own Received field, which differs on every attempt, left out)
// and the body as it came off the wire. A client that resends a
// transaction sends the same bytes, so the same key; a different message
// that reuses a Message-ID (a buggy generator, a list that keeps the id
// and changes the text, a forged id) has other bytes and is delivered.
// bodySum is the digest of the body, computed while spooling; nil means
// an empty body.
func (d *delivery) messageKey(bodySum hash.Hash) string {
	var sum []byte
	if bodySum != nil {
		sum = bodySum.Sum(nil)
	}
	return messageKeyOf(d.msg, sum, d.sp.Size())
}

// messageKeyOf is messageKey of msg, whose body has digest bodySum (nil:
// empty) and size bytes in the spool.
func messageKeyOf(msg *protocol.Message, bodySum []byte, size int64) string {
	hdr := msg.Header()
	h := sha256.New()
	first := true
	for f := hdr.Fields(); f.Next(); {
		if first && msg.ID != "" && strings.EqualFold(f.Key(), "Received") &&
			strings.Contains(f.Value(), "id "+msg.ID) {
			first = false
			continue // our trace field: not part of what the client sent
		}
		first = false
		if raw, err := f.Raw(); err == nil {
			h.Write(raw)
		} else {
			h.Write([]byte(f.Key() + ": " + f.Value() + "\r\n"))
		}
	}
	if !msg.HasBlankLine() {
		h.Write([]byte{0}) // header only vs empty body: different bytes
	}
	h.Write([]byte{0})
	h.Write(bodySum)
	fmt.Fprintf(h, "\x00%d", size)
	return dedupKeyVersion + "\x00" + strings.TrimSpace(hdr.Get("Message-ID")) + "\x00" + hex.EncodeToString(h.Sum(nil))
}

// record writes the keys of newly delivered jobs to the dedup journal.
func (d *delivery) record(ctx context.Context) {
	jr := d.t.st.journal
	if jr == nil {
		return
	}
	var keys []string
	for _, j := range d.jobs {
		if j.done && j.res.Err == nil && !j.dup && j.dkey != "" {
			keys = append(keys, j.dkey)
			j.dkey = ""
		}
	}
	if err := jr.add(d.t.st.plan.tab.cfg.Dedup.window(), keys...); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("dedup: cannot write the journal")
	}
}

// deliveredTo returns the addresses in the message's Delivered-To fields.
func deliveredTo(h *textproto.Header) []string {
	vs := h.Values("Delivered-To")
	for i, v := range vs {
		vs[i] = strings.Trim(strings.TrimSpace(v), "<>")
	}
	return vs
}

// headerValue makes s safe inside a header field: control characters
// (CR and LF above all) become '?'.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// stage stages the groups of final targets (final) or of the others, in
// order. Jobs whose staging failed are done; a final target's jobs are
// all done, and are reported as each group returns when Data reports.
func (d *delivery) stage(ctx context.Context, final bool) {
	for gi := range d.groups {
		g := &d.groups[gi]
		if g.final != final {
			continue
		}
		g.staged = g.target.Stage(ctx, &d.m, g.ds, g.res)
		for i, j := range g.jobs {
			j.res = g.res[i]
			if final || g.staged == nil || j.res.Err != nil {
				j.done = true // nothing left to commit for it
			}
		}
		if final && d.onSettle != nil {
			d.settle()
		}
	}
}

// commit commits what the non-final groups staged.
func (d *delivery) commit(ctx context.Context) {
	for gi := range d.groups {
		g := &d.groups[gi]
		if g.final || g.staged == nil {
			continue
		}
		g.staged.Commit(ctx, g.res)
		g.staged = nil
		for i, j := range g.jobs {
			if !j.done {
				j.res, j.done = g.res[i], true
			}
		}
	}
}

// abort removes what was staged and not committed.
func (d *delivery) abort() {
	for gi := range d.groups {
		g := &d.groups[gi]
		if g.staged != nil {
			g.staged.Abort()
			g.staged = nil
		}
	}
}

// settle reports every recipient whose destinations are all done.
func (d *delivery) settle() {
	for i, js := range d.byRcpt {
		if d.settled[i] {
			continue
		}
		var res error
		if sh := d.share; sh != nil {
			// Reported after the recipients it shares with: their
			// status, or their hooks' failures, are part of its own.
			ok, dup, shared := sh.ready(d, i)
			if !ok {
				continue
			}
			if dup {
				d.settled[i] = true
				d.results[i] = shared
				if d.onSettle != nil {
					d.onSettle(i, shared)
				}
				continue
			}
			res = shared
		}
		if d.stepErr != nil {
			res = protocol.WorseStatus(res, d.stepErr[i])
		}
		done := true
		for _, j := range js {
			if !j.done {
				done = false
				break
			}
			res = protocol.WorseStatus(res, j.res.Err)
		}
		if !done {
			continue
		}
		if res == nil && d.failed {
			// A recipient with nothing to store (Sieve's discard or
			// redirect) shares the fate of the aborted transaction.
			res = errNotDelivered
		}
		d.settled[i] = true
		d.results[i] = res
		if d.onSettle != nil {
			d.onSettle(i, res)
		}
	}
}

// firstError settles every recipient and returns the outcome the single
// SMTP reply should carry: nil if every job succeeded, else a temporary
// failure if there is one, else the first permanent one (the fold rule,
// protocol.WorseStatus).
func (d *delivery) firstError() error {
	var res error
	for _, j := range d.jobs {
		if j.done {
			res = protocol.WorseStatus(res, j.res.Err)
		}
	}
	for _, err := range d.stepErr {
		res = protocol.WorseStatus(res, err)
	}
	return res
}

// logAll settles and logs every recipient of a failed Stage.
func (d *delivery) logAll(ctx context.Context) {
	d.markUndone()
	d.onSettle = func(i int, err error) {
		d.log(ctx, i, err)
		d.done(ctx, i, err)
	}
	d.settle()
}

// markUndone fails the jobs left neither done nor failed (staged, but the
// transaction did not get to commit them).
func (d *delivery) markUndone() {
	for _, j := range d.jobs {
		if !j.done && j.res.Err == nil {
			j.done = true
			j.res.Err = errNotDelivered
		}
	}
}

// done calls the steps' Done hooks of recipient i with its status and
// returns the first error one of them returned (StepResult.Done).
func (d *delivery) done(ctx context.Context, i int, err error) error {
	if d.stepDone == nil {
		return nil
	}
	var first error
	for _, f := range d.stepDone[i] {
		if derr := f(ctx, err); derr != nil && first == nil {
			first = derr
		}
	}
	if d.share != nil {
		d.share.hookErr[i] = first
	}
	return first
}

// errNotDelivered marks jobs left undone because another recipient failed
// in a staged (all-or-nothing) transaction.
var errNotDelivered = protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, "Not delivered: another recipient of the message failed")

// logField is one key of the outcome line that says where copies went
// (Result.LogKey), with its values.
type logField struct {
	key  string
	vals []string
}

// log writes the one line per recipient outcome.
func (d *delivery) log(ctx context.Context, i int, err error) {
	l := zerolog.Ctx(ctx)
	var ev *zerolog.Event
	outcome := "delivered"
	switch pe := protocol.AsError(err); {
	case err == nil:
		ev = l.Info()
	case pe != nil && !pe.Temporary():
		ev, outcome = l.Info().Err(err), "bounced"
	default:
		lvl, fix := deferralLevel(err)
		ev, outcome = l.WithLevel(lvl).Err(err), "deferred"
		if fix != "" {
			ev = ev.AnErr("cause", replyCause(err)).Str("fix", fix)
		}
	}
	if err == nil {
		ev = ev.Str("status", "250 2.0.0")
	} else if pe := protocol.AsError(err); pe != nil {
		ev = ev.Str("status", pe.Error())
	}
	var backends []string
	var whereBuf [2]logField
	where := whereBuf[:0]
	var elapsed time.Duration
	dup := false
	observe := d.t.r.opts.Observe
	for _, j := range d.byRcpt[i] {
		dup = dup || j.dup
		kind := j.dest.Target.Kind()
		backends = append(backends, kind)
		if observe != nil {
			observe(Outcome{Backend: kind, Duration: j.res.Elapsed, Err: err})
		}
		if k := j.res.LogKey; k != "" {
			n := 0
			for n < len(where) && where[n].key != k {
				n++
			}
			if n == len(where) {
				where = append(where, logField{key: k})
			}
			where[n].vals = append(where[n].vals, j.res.LogValue)
		}
		elapsed = max(elapsed, j.res.Elapsed)
	}
	ev = ev.Str("msgid", d.msg.ID).
		Str("from", d.m.From).
		Str("to", d.msg.Recipients[i].Address.String()).
		Int64("size", int64(len(d.m.rp)+len(d.m.base))+d.sp.Size()).
		Dur("duration_ms", time.Since(d.start)).
		Dur("delivery_time_ms", elapsed).
		Strs("backend", backends)
	for _, f := range where {
		ev = ev.Strs(f.key, f.vals)
	}
	if d.stepLog != nil {
		for _, f := range d.stepLog[i] {
			ev = ev.Str(f.key, f.vals[0])
		}
	}
	if dup {
		ev = ev.Bool("duplicate", true)
	}
	if with := d.share.sharedWith(d, i); with != "" {
		// Its delivery was made for an earlier recipient, in this
		// transaction (share.go); "duplicate" is the journal's: made
		// by an earlier transaction.
		ev = ev.Str("shared_with", with)
	}
	ev.Msg(outcome)
}
