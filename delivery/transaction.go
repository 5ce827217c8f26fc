package delivery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/delivery/pipe"
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
	rcpts  [][]target // targets of each accepted RCPT, in order

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
	tgs, err := t.st.tab.lookup(ctx, rc.Address, proto, t.r.opts.Lookup)
	if err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Str("to", rc.Address.String()).Msg("recipient refused")
		return err
	}
	t.rcpts = append(t.rcpts, tgs)
	return nil
}

// Data delivers msg to every recipient and reports each outcome through
// status as soon as all of that recipient's destinations are done:
// refusals (loop, size) at once, maildir deliveries after the commit that
// makes them durable, pipe deliveries when their command exits. Recipients
// that reach the same mailbox (duplicates, aliases) are delivered once and
// share its outcome. An error is returned only when the message could not
// be read or spooled; then nothing was delivered.
func (t *transaction) Data(ctx context.Context, msg *protocol.Message, status protocol.StatusSetter) error {
	d, err := t.prepare(ctx, msg)
	if err != nil {
		return err
	}
	defer d.sp.Close()
	d.onSettle = func(i int, err error) {
		status.Set(i, err)
		d.log(ctx, i, err)
	}
	d.settle()
	d.stageMaildir(ctx)
	d.settle()
	d.commitMaildir(ctx)
	d.record(ctx)
	d.settle()
	d.runPipes(ctx)
	d.record(ctx)
	d.settle()
	return nil
}

// Stage stages msg for every recipient: maildir copies are written and
// fsynced into tmp/, then pipe commands run. If any recipient fails,
// everything staged is removed and that recipient's error is returned (a
// temporary one in preference, so the client retries). A pipe command's
// success cannot be undone: if a later recipient fails, the command has
// delivered and a retry delivers to it again.
func (t *transaction) Stage(ctx context.Context, msg *protocol.Message) error {
	d, err := t.prepare(ctx, msg)
	if err != nil {
		return err
	}
	defer d.sp.Close()
	d.stageMaildir(ctx)
	if err := d.firstError(); err != nil {
		d.abort()
		d.logAll(ctx)
		return err
	}
	d.runPipes(ctx)
	d.record(ctx)
	if err := d.firstError(); err != nil {
		d.abort()
		d.logAll(ctx)
		return err
	}
	t.staged = d
	return nil
}

// Commit renames the staged maildir copies into new/ and fsyncs the
// directories. It returns the first failure (temporary in preference);
// recipients committed before it stay delivered.
func (t *transaction) Commit(ctx context.Context) error {
	d := t.staged
	if d == nil {
		return protocol.WrapError(maildir.ReplyIOError.Code, maildir.ReplyIOError.EnhancedCode, maildir.ReplyIOError.Message, errNotStaged)
	}
	t.staged = nil
	d.commitMaildir(ctx)
	d.record(ctx)
	d.logAll(ctx)
	return d.firstError()
}

var errNotStaged = errorString("delivery: Commit without a successful Stage")

type errorString string

func (e errorString) Error() string { return string(e) }

// Close removes copies staged but not committed.
func (t *transaction) Close() error {
	if t.staged != nil {
		t.staged.abort()
		t.staged = nil
	}
	return nil
}

// delivery is the work of one message.
type delivery struct {
	t        *transaction
	msg      *protocol.Message
	start    time.Time
	sp       *spool.Spool
	rp       []byte // the Return-Path field
	base     []byte // the message header, LF line endings
	jobs     []*job
	byRcpt   [][]*job
	settled  []bool
	results  []error
	onSettle func(i int, err error)
}

// job is one destination, shared by every recipient that resolves to it.
type job struct {
	tg      target
	rcpts   []int
	header  []byte
	staged  *maildir.Staged
	file    string // path of the maildir file, for the log
	err     error
	done    bool
	elapsed time.Duration
	dkey    string // dedup journal key, when the journal is on
	dup     bool   // delivered before, within the dedup window
}

var lfPool = sync.Pool{New: func() any { return spool.NewLFWriter(nil) }}

// prepare reads the body into the spool, builds the header and plans one
// job per distinct destination.
func (t *transaction) prepare(ctx context.Context, msg *protocol.Message) (*delivery, error) {
	cfg := &t.st.tab.cfg
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
		if protocol.AsError(err) == nil && opts.Dir != "" && isNotExist(err) {
			err = &maildir.RootError{Dir: opts.Dir, Err: err}
		}
		r := maildir.Classify(err)
		if h := maildir.Hint(err); h != "" {
			zerolog.Ctx(ctx).Error().Err(err).Str("fix", h).Msg("cannot spool message")
		}
		return nil, r
	}

	hdr := msg.Header()
	hdr.Del("Return-Path")
	var hb bytes.Buffer
	if err := textproto.WriteHeader(&hb, *hdr); err != nil {
		d.sp.Close()
		return nil, maildir.Classify(err)
	}
	hbytes := hb.Bytes()
	if !msg.HasBlankLine() {
		// WriteHeader always ends the section with the empty line; a
		// message of header fields only had none, and its copy must be
		// what the client sent.
		hbytes = bytes.TrimSuffix(hbytes, []byte("\r\n"))
	}
	d.base = spool.AppendLF(make([]byte, 0, len(hbytes)), hbytes)
	d.rp = []byte("Return-Path: <" + headerValue(t.from.String()) + ">\n")

	delivered := deliveredTo(hdr)
	n := len(msg.Recipients)
	d.byRcpt = make([][]*job, n)
	d.settled = make([]bool, n)
	d.results = make([]error, n)
	byKey := make(map[string]*job)
	for i := 0; i < n && i < len(t.rcpts); i++ {
		for _, tg := range t.rcpts[i] {
			k := tg.key()
			j := byKey[k]
			if j == nil {
				j = &job{tg: tg}
				byKey[k] = j
				d.jobs = append(d.jobs, j)
			}
			if len(j.rcpts) == 0 || j.rcpts[len(j.rcpts)-1] != i {
				j.rcpts = append(j.rcpts, i)
			}
			d.byRcpt[i] = append(d.byRcpt[i], j)
		}
	}
	for _, j := range d.jobs {
		d.planJob(j, delivered)
	}
	if t.st.journal != nil {
		d.dedup(ctx, bodySum)
	}
	return d, nil
}

// dedup marks the jobs the journal says were delivered already as done.
// A job is a resend of an earlier delivery when sender, destination,
// Message-ID (or its absence) and content all match; see messageKey.
func (d *delivery) dedup(ctx context.Context, bodySum hash.Hash) {
	msgKey := d.messageKey(bodySum)
	w := d.t.st.tab.cfg.Dedup.window()
	for _, j := range d.jobs {
		if j.done {
			continue
		}
		j.dkey = dedupKey(msgKey, d.t.from.String(), j.tg.key())
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
	hdr := d.msg.Header()
	h := sha256.New()
	first := true
	for f := hdr.Fields(); f.Next(); {
		if first && d.msg.ID != "" && strings.EqualFold(f.Key(), "Received") &&
			strings.Contains(f.Value(), "id "+d.msg.ID) {
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
	if !d.msg.HasBlankLine() {
		h.Write([]byte{0}) // header only vs empty body: different bytes
	}
	h.Write([]byte{0})
	if bodySum != nil {
		h.Write(bodySum.Sum(nil))
	}
	fmt.Fprintf(h, "\x00%d", d.sp.Size())
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
		if j.done && j.err == nil && !j.dup && j.dkey != "" {
			keys = append(keys, j.dkey)
			j.dkey = ""
		}
	}
	if err := jr.add(d.t.st.tab.cfg.Dedup.window(), keys...); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("dedup: cannot write the journal")
	}
}

// planJob applies the loop check and builds the job's header.
func (d *delivery) planJob(j *job, delivered []string) {
	cfg := &d.t.st.tab.cfg
	if cfg.LoopCheck {
		for _, v := range delivered {
			if strings.EqualFold(v, j.tg.addr) {
				j.err, j.done = ErrLoop, true
				return
			}
		}
	}
	h := make([]byte, 0, len(d.rp)+len(d.base)+len(j.tg.addr)+16)
	h = append(h, d.rp...)
	if cfg.deliveredTo(len(d.jobs), j.tg.route.cmd != nil) && !j.tg.route.perMessage {
		h = append(h, "Delivered-To: "...)
		h = append(h, headerValue(j.tg.addr)...)
		h = append(h, '\n')
	}
	j.header = append(h, d.base...)
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

func (j *job) content(sp *spool.Spool) maildir.Content {
	return maildir.Content{Header: j.header, Body: sp}
}

// stageMaildir writes every maildir job into tmp/. Jobs with the same
// bytes as an earlier one get a hard link of its file.
func (d *delivery) stageMaildir(ctx context.Context) {
	store := d.t.st.store
	var src *job
	for _, j := range d.jobs {
		if j.done || j.tg.route.tmpl == nil {
			continue
		}
		start := time.Now()
		var err error
		if src != nil && bytes.Equal(src.header, j.header) {
			j.staged, err = store.Link(ctx, j.tg.mailbox, src.staged, j.content(d.sp))
		} else {
			j.staged, err = store.Stage(ctx, j.tg.mailbox, j.content(d.sp))
		}
		j.elapsed += time.Since(start)
		if err != nil {
			j.err, j.done = err, true
			continue
		}
		if src == nil {
			src = j
		}
	}
}

// commitMaildir moves the staged files into new/.
func (d *delivery) commitMaildir(ctx context.Context) {
	var js []*job
	var sts []*maildir.Staged
	for _, j := range d.jobs {
		if !j.done && j.staged != nil {
			js = append(js, j)
			sts = append(sts, j.staged)
		}
	}
	if len(sts) == 0 {
		return
	}
	start := time.Now()
	errs := d.t.st.store.Commit(ctx, sts...)
	for i, j := range js {
		j.err, j.done = errs[i], true
		j.elapsed += time.Since(start)
		if errs[i] == nil {
			j.file = filepath.Join(d.t.st.tab.cfg.Maildir.Root, filepath.FromSlash(j.staged.Path()))
		}
	}
}

// abort removes staged, uncommitted files.
func (d *delivery) abort() {
	for _, j := range d.jobs {
		if j.staged != nil && !j.done {
			j.staged.Abort()
		}
	}
}

// runPipes runs the pipe jobs: once per job, or once per route for
// PerMessage routes.
func (d *delivery) runPipes(ctx context.Context) {
	groups := make(map[int][]*job)
	var order []int
	for _, j := range d.jobs {
		if j.done || j.tg.route.cmd == nil {
			continue
		}
		if !j.tg.route.perMessage {
			d.runPipe(ctx, []*job{j})
			d.settle()
			continue
		}
		id := j.tg.route.id
		if groups[id] == nil {
			order = append(order, id)
		}
		groups[id] = append(groups[id], j)
	}
	for _, id := range order {
		d.runPipe(ctx, groups[id])
		d.settle()
	}
}

// runPipe runs one command for the jobs given (several only for a
// PerMessage route) and records the shared outcome.
func (d *delivery) runPipe(ctx context.Context, js []*job) {
	j0 := js[0]
	stdin := io.MultiReader(bytes.NewReader(j0.header), d.sp.NewReader())
	v := d.vars(j0)
	start := time.Now()
	release, err := j0.tg.route.limiter.Acquire(ctx)
	if err != nil {
		for _, j := range js {
			j.err, j.done = err, true
			j.elapsed += time.Since(start)
		}
		return
	}
	defer release()
	var res pipe.Result
	if j0.tg.route.perMessage {
		addrs := make([]string, len(js))
		for i, j := range js {
			addrs[i] = j.tg.addr
			if j.tg.domain != v.Domain {
				v.Domain = ""
			}
		}
		v.Recipient, v.OriginalRecipient, v.User, v.Detail = "", "", "", ""
		res, err = j0.tg.route.cmd.RunMulti(ctx, v, addrs, stdin)
	} else {
		res, err = j0.tg.route.cmd.Run(ctx, v, stdin)
	}
	if res.Leftover > 0 {
		zerolog.Ctx(ctx).Warn().Str("command", j0.tg.route.desc).Int("killed", res.Leftover).
			Msg("delivery command left processes running when it ended; they were killed")
	}
	for _, j := range js {
		j.err, j.done = err, true
		j.elapsed += time.Since(start)
	}
}

// vars returns the pipe variables of a job.
func (d *delivery) vars(j *job) pipe.Vars {
	t := d.t
	v := pipe.Vars{
		Sender:    t.from.String(),
		Recipient: j.tg.addr,
		User:      j.tg.user,
		Detail:    j.tg.detail,
		Domain:    j.tg.domain,
		Size:      int64(len(j.header)) + d.sp.Size(),
	}
	if rc := d.msg.Recipients[j.rcpts[0]]; rc.Params.OriginalRecipient != "" {
		v.OriginalRecipient = rc.Params.OriginalRecipient
	} else {
		v.OriginalRecipient = rc.Address.String()
	}
	if c := t.conn; c != nil {
		v.SessionID = c.ID
		v.ClientHelo = c.Hostname
		if c.XForward.Helo != "" {
			v.ClientHelo = c.XForward.Helo
		}
		if c.XForward.Addr != "" {
			v.ClientAddress = c.XForward.Addr
		} else {
			v.ClientAddress = clientIP(c.RemoteAddr)
		}
	}
	return v
}

// clientIP returns the IP address of a client's socket address, without
// port or zone brackets, and "" for an address that is not an IP address:
// a unix-socket client has no network address (its net.UnixAddr is
// typically "@" or empty), and the pipe variable CLIENT_ADDRESS is then
// empty (see package pipe).
func clientIP(a net.Addr) string {
	switch a := a.(type) {
	case nil:
		return ""
	case *net.TCPAddr:
		if a == nil || a.IP == nil {
			return ""
		}
		return a.IP.String()
	case *net.UDPAddr:
		if a == nil || a.IP == nil {
			return ""
		}
		return a.IP.String()
	case *net.UnixAddr:
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		h = a.String()
	}
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return ""
}

// settle reports every recipient whose destinations are all done.
func (d *delivery) settle() {
	for i, js := range d.byRcpt {
		if d.settled[i] {
			continue
		}
		var res error
		done := true
		for _, j := range js {
			if !j.done {
				done = false
				break
			}
			res = worse(res, j.err)
		}
		if !done {
			continue
		}
		d.settled[i] = true
		d.results[i] = res
		if d.onSettle != nil {
			d.onSettle(i, res)
		}
	}
}

// worse picks the outcome a recipient with two destinations gets: a
// failure over success, and a temporary failure over a permanent one, so
// that no destination loses the message for good while another could
// still get it on a retry.
func worse(a, b error) error {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	pa, pb := protocol.AsError(a), protocol.AsError(b)
	if pa != nil && !pa.Temporary() && (pb == nil || pb.Temporary()) {
		return b
	}
	return a
}

// firstError settles every recipient and returns the outcome the single
// SMTP reply should carry: nil if every job succeeded, else a temporary
// failure if there is one, else the first permanent one.
func (d *delivery) firstError() error {
	var res error
	for _, j := range d.jobs {
		if j.done {
			res = worse(res, j.err)
		}
	}
	return res
}

// logAll settles and logs every recipient (Stage and Commit).
func (d *delivery) logAll(ctx context.Context) {
	for _, j := range d.jobs {
		if !j.done && j.err == nil {
			j.done = true
			j.err = errNotDelivered
		}
	}
	d.onSettle = func(i int, err error) { d.log(ctx, i, err) }
	d.settle()
}

// errNotDelivered marks jobs left undone because another recipient failed
// in a staged (all-or-nothing) transaction.
var errNotDelivered = protocol.NewError(protocol.CodeLocalError, protocol.EnhancedCode{4, 3, 0}, "Not delivered: another recipient of the message failed")

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
	var backends, files, commands []string
	var elapsed time.Duration
	dup := false
	observe := d.t.r.opts.Observe
	for _, j := range d.byRcpt[i] {
		dup = dup || j.dup
		backends = append(backends, j.tg.route.backend())
		if observe != nil {
			observe(Outcome{Backend: j.tg.route.backend(), Duration: j.elapsed, Err: err})
		}
		if j.file != "" {
			files = append(files, j.file)
		}
		if j.tg.route.cmd != nil {
			commands = append(commands, j.tg.route.desc)
		}
		elapsed = max(elapsed, j.elapsed)
	}
	ev = ev.Str("msgid", d.msg.ID).
		Str("from", d.t.from.String()).
		Str("to", d.msg.Recipients[i].Address.String()).
		Int64("size", int64(len(d.rp)+len(d.base))+d.sp.Size()).
		Dur("duration_ms", time.Since(d.start)).
		Dur("delivery_time_ms", elapsed).
		Strs("backend", backends)
	if len(files) > 0 {
		ev = ev.Strs("file", files)
	}
	if len(commands) > 0 {
		ev = ev.Strs("command", commands)
	}
	if dup {
		ev = ev.Bool("duplicate", true)
	}
	ev.Msg(outcome)
}
