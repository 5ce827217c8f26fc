package delivery

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/quota"
)

// binder is implemented by the built-in targets, which hold resources
// shared across reloads (a maildir store, a pipe route's Limiter): bind
// returns the target with those of the Router, leaving the Plan's own
// untouched.
type binder interface {
	bind(b *binding) (Target, error)
}

// maildirTarget delivers into the maildirs under one root: every maildir
// destination of a message is one group, staged as one file hard-linked
// into each mailbox whose copy has the same bytes, and committed with one
// group commit (maildir.Store.Commit).
type maildirTarget struct {
	root  string
	store storeKey
	st    *maildir.Store // nil until bound

	quota   *quotaPlan     // nil when quota is off
	tracker *quota.Tracker // the Router's, once bound
	onQuota func(QuotaEvent)
	now     func() time.Time
}

func (m *maildirTarget) Kind() string { return "maildir" }

// Key is the maildir and folder (and the flags, when a Sieve script set
// some): one copy per mailbox.
func (m *maildirTarget) Key(d *Destination) string {
	k := "m" + d.Mailbox + "\x00" + d.Folder
	if len(d.Flags) > 0 {
		k += "\x00" + strings.Join(d.Flags, " ")
	}
	return k
}

// Group puts every maildir copy of a message together.
func (m *maildirTarget) Group(*Destination) string { return "" }

func (m *maildirTarget) bind(b *binding) (Target, error) {
	st, err := b.store(m.store)
	if err != nil {
		return nil, err
	}
	bound := *m
	bound.st = st
	bound.tracker, bound.onQuota, bound.now = b.r.quotaTracker(), b.r.opts.OnQuota, b.r.now
	return &bound, nil
}

// Stage writes and fsyncs each copy into tmp/. Copies with the same bytes
// as the first one staged are hard links of its file. With quota on, room
// for each copy is reserved before it is written (quota.Tracker), so a
// copy that does not fit is refused before anything is stored.
func (m *maildirTarget) Stage(ctx context.Context, msg *Message, ds []*Destination, res []Result) Staged {
	s := &maildirStaged{t: m}
	if m.quota != nil {
		s.holds = make([]*quotaHold, len(ds))
	}
	if len(ds) <= len(s.one) {
		s.staged = s.one[:len(ds)]
	} else {
		s.staged = make([]*maildir.Staged, len(ds))
	}
	// The first copy staged in each home with each owner is the one
	// further copies link to (a link shares its owner); most messages
	// have one such place, the maildir root, so the list rarely grows
	// beyond the array on the stack.
	type source struct {
		home     string
		uid, gid int
		st       *maildir.Staged
		header   []byte
	}
	var one [1]source
	srcs := one[:0]
	for i, d := range ds {
		h := msg.Header(d, msg.DeliveredTo(false))
		c := maildir.Content{Header: h, Body: msg.Spool()}
		mb := mailbox(d)
		mb.Flags = d.Flags // Sieve imap4flags
		uid, gid := -1, -1
		if mb.Owner != nil {
			uid, gid = mb.Owner.UID, mb.Owner.GID
		}
		var src *source
		for k := range srcs {
			if srcs[k].home == mb.Home && srcs[k].uid == uid && srcs[k].gid == gid {
				src = &srcs[k]
				break
			}
		}
		start := time.Now()
		var hold *quotaHold
		if m.quota != nil {
			var err error
			if hold, err = m.reserve(ctx, d, c.Size()); err != nil {
				res[i].Err = err
				res[i].Elapsed += time.Since(start)
				continue
			}
		}
		var st *maildir.Staged
		var err error
		if src != nil && bytes.Equal(src.header, h) {
			st, err = m.st.Link(ctx, mb, src.st, c)
		} else {
			st, err = m.st.Stage(ctx, mb, c)
		}
		res[i].Elapsed += time.Since(start)
		if err != nil {
			hold.release()
			res[i].Err = err
			continue
		}
		s.staged[i] = st
		if hold != nil {
			hold.mb = mb
			s.holds[i] = hold
		}
		if src == nil {
			srcs = append(srcs, source{home: mb.Home, uid: uid, gid: gid, st: st, header: h})
		}
	}
	return s
}

type maildirStaged struct {
	t      *maildirTarget
	staged []*maildir.Staged // by destination; nil where staging failed
	holds  []*quotaHold      // by destination, with quota on; nil without a reservation
	one    [1]*maildir.Staged
}

// hold returns the reservation of destination i, or nil.
func (s *maildirStaged) hold(i int) *quotaHold {
	if s.holds == nil {
		return nil
	}
	h := s.holds[i]
	s.holds[i] = nil
	return h
}

// Commit renames the staged files into new/ and fsyncs the directories,
// all in one group commit. A copy whose Result has failed since Stage is
// aborted.
func (s *maildirStaged) Commit(ctx context.Context, res []Result) {
	var idx []int
	var sts []*maildir.Staged
	for i, st := range s.staged {
		switch {
		case st == nil:
			s.hold(i).release()
		case res[i].Err == nil:
			idx = append(idx, i)
			sts = append(sts, st)
		default:
			// Failed since Stage (a later step): take the copy back,
			// or its file stays open and in tmp/ until the cleanup.
			st.Abort()
			s.staged[i] = nil
			s.hold(i).release()
		}
	}
	if len(sts) == 0 {
		return
	}
	start := time.Now()
	errs := s.t.st.Commit(ctx, sts...)
	for k, i := range idx {
		res[i].Err = errs[k]
		res[i].Elapsed += time.Since(start)
		if errs[k] == nil {
			base := s.t.root
			if h := sts[k].Home(); h != "" {
				base = h
			}
			res[i].LogKey, res[i].LogValue = "file", filepath.Join(base, filepath.FromSlash(sts[k].Path()))
		}
	}
	if s.holds != nil {
		for k, i := range idx {
			// Only now is the copy durable: count it, then warn; or
			// free its room.
			if h := s.hold(i); errs[k] == nil && h != nil {
				s.t.commitQuota(ctx, h, sts[k].Size())
			} else {
				h.release()
			}
		}
	}
}

// Abort removes the staged files and ends their reservations.
func (s *maildirStaged) Abort() {
	for i, st := range s.staged {
		if st != nil {
			st.Abort()
		}
		s.hold(i).release()
	}
}

// pipeTarget runs one route's command: once per recipient, or once per
// message for all of its recipients on the route (PerMessage). A run that
// exited 0 has delivered for good (Final).
type pipeTarget struct {
	id         int // the route's number, part of the dedup key
	cmd        *pipe.Command
	perMessage bool
	desc       string // argv[0], for the log
	where      string // "domain D" or "user U@D", for the Limiter across reloads
	max        int
	wait       time.Duration
	limiter    *pipe.Limiter // nil until bound
}

func (p *pipeTarget) Kind() string { return "pipe" }

// Key is the route and the recipient: one run per recipient address.
func (p *pipeTarget) Key(d *Destination) string {
	return fmt.Sprintf("p%d\x00%s", p.id, strings.ToLower(d.Address))
}

// Group is the destination itself, or the whole route for a per-message
// command.
func (p *pipeTarget) Group(d *Destination) string {
	if p.perMessage {
		return ""
	}
	return p.Key(d)
}

// Final: a command's success cannot be undone.
func (p *pipeTarget) Final() bool { return true }

// limiterKey identifies a pipe route's concurrency limit across reloads:
// the same place in the configuration with the same settings keeps its
// Limiter, so runs started before a reload still count.
type limiterKey struct {
	where string
	max   int
	wait  time.Duration
}

func (p *pipeTarget) bind(b *binding) (Target, error) {
	bound := *p
	bound.limiter = b.limiter(p.where, p.max, p.wait)
	return &bound, nil
}

// Stage runs the command for ds (several only for a PerMessage route) and
// records the shared outcome. It returns nil: there is nothing to commit.
func (p *pipeTarget) Stage(ctx context.Context, m *Message, ds []*Destination, res []Result) Staged {
	d0 := ds[0]
	header := m.Header(d0, !p.perMessage && m.DeliveredTo(true))
	stdin := io.MultiReader(bytes.NewReader(header), m.Body())
	v := p.vars(m, d0, int64(len(header)))
	start := time.Now()
	finish := func(err error) {
		for i := range res {
			res[i].Err = err
			res[i].Elapsed += time.Since(start)
			res[i].LogKey, res[i].LogValue = "command", p.desc
		}
	}
	release, err := p.limiter.Acquire(ctx)
	if err != nil {
		finish(err)
		return nil
	}
	defer release()
	var r pipe.Result
	if p.perMessage {
		addrs := make([]string, len(ds))
		for i, d := range ds {
			addrs[i] = d.Address
			if d.Domain != v.Domain {
				v.Domain = ""
			}
		}
		v.Recipient, v.OriginalRecipient, v.User, v.Detail = "", "", "", ""
		r, err = p.cmd.RunMulti(ctx, v, addrs, stdin)
	} else {
		r, err = p.cmd.Run(ctx, v, stdin)
	}
	if r.Leftover > 0 {
		zerolog.Ctx(ctx).Warn().Str("command", p.desc).Int("killed", r.Leftover).
			Msg("delivery command left processes running when it ended; they were killed")
	}
	finish(err)
	return nil
}

// vars returns the pipe variables of destination d, whose copy has a
// header of hlen bytes.
func (p *pipeTarget) vars(m *Message, d *Destination, hlen int64) pipe.Vars {
	v := pipe.Vars{
		Sender:    m.From,
		Recipient: d.Address,
		User:      d.User,
		Detail:    d.Detail,
		Domain:    d.Domain,
		Size:      hlen + m.BodySize(),
	}
	if len(d.Rcpts) > 0 {
		v.OriginalRecipient = m.OriginalRecipient(d.Rcpts[0])
	}
	if c := m.Conn; c != nil {
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
