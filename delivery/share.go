package delivery

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// Recipients of one transaction that resolve to the same destination are
// delivered to it once, and its steps (Sieve) run once, for the first of
// them: two RCPTs of one address, two aliases of one mailbox, an alias and
// its user. Postfix removes such duplicates in its queue manager and its
// local(8) delivers once per final mailbox; Dovecot's LMTP delivers a
// recipient that repeats an earlier RCPT once and answers it with a copy
// of the first one's reply (src/lmtp/lmtp-local.c,
// smtp_server_reply_submit_duplicate). lmtpd goes by the destination
// after alias and directory expansion rather than by the address, so
// "BOB" and "bob", or "sales" aliased to bob and bob, are one delivery.
//
// A destination here is its target and Target.Key as resolved at RCPT
// (maildir: the mailbox and folder; pipe: the command and address;
// remote LMTP: the server and address) and the detail, which a Sieve
// script sees (envelope :detail): bob+a and bob+b are filtered each, as
// Dovecot runs the script for each address, and their copies share one
// file when the scripts store into the same folder. With detail folders
// they are two folders, so two copies, as in Dovecot; so are bob and
// bob+x when the folder .x is missing and may not be created, although
// both copies then land in INBOX (the fallback is decided at staging,
// after the copies were told apart).
//
// A recipient whose destinations are exactly those of an earlier one (the
// usual duplicate) shares everything: its steps do not run, and its status
// is the earlier one's final status, Done hooks' failures included,
// reported once the earlier one's is. In LMTP it gets the same code,
// enhanced code and text (Dovecot copies the reply), with its own
// address; in SMTP the one reply is unchanged. A recipient that has some
// destinations of earlier recipients and some of its own (an alias of
// bob and carol after bob) runs its steps on its own destinations only
// and takes the copies the earlier recipients' steps made for the shared
// ones: its status is the worst of all of them and of those recipients'
// Done hooks' failures, and is reported after theirs. A step's answer
// (a Sieve reject) for a part of such a recipient's destinations, its
// own ones or one it shares, answers for the recipient when it is
// temporary or the recipient has nothing else; a permanent one leaves
// that part without a copy and is logged, as Sieve treats a reject by
// one target of an alias.
//
// The Done hooks of a shared destination (Sieve's vacation replies and
// redirects) run once, for the first recipient, with that recipient's
// status: for an alias of several users, the worst of them, as without
// sharing.

// unitKey identifies a destination as resolved at RCPT, before the steps:
// its target, the target's key and the detail.
type unitKey struct {
	destKey
	detail string
}

// sharing is which recipients of a delivery share destinations with
// earlier ones; nil when none do.
type sharing struct {
	// same[i] is the earlier recipient whose destinations are exactly
	// those of recipient i, -1 if none.
	same []int
	// borrow[i] are the units of recipient i first met at an earlier
	// recipient, when same[i] is -1.
	borrow [][]int
	// after[i] are the earlier recipients whose outcome recipient i
	// shares, in RCPT order: it is reported after them.
	after [][]int
	// owner[u] is the recipient that unit u was first met at, whose
	// steps run on it; unitJobs[u] are the jobs its copies went to.
	owner    []int
	unitJobs [][]*job
	// hasOwn[i] says whether recipient i has units of its own.
	hasOwn []bool
	// hookErr[i] is the error recipient i's Done hooks returned.
	hookErr []error
}

// share finds the destinations that recipients share. It returns the
// destinations each recipient is filtered and delivered to by itself (its
// own ones, each tagged with its unit; nothing for a recipient that has
// none of its own) and the sharing, or rcpts unchanged and nil when no
// recipient shares a destination with another.
func share(rcpts [][]Destination) ([][]Destination, *sharing) {
	if len(rcpts) < 2 {
		return rcpts, nil
	}
	// The unit of each destination, recipient after recipient; units are
	// numbered from 1 (0 is "none") in the order they are met. Most
	// messages have a few destinations: those are searched, not hashed.
	type unit struct {
		key   unitKey
		owner int // the recipient it was met at first
	}
	total := 0
	for _, ds := range rcpts {
		total += len(ds)
	}
	units := make([]unit, 0, total)
	flat := make([]int, 0, total)
	var byKey map[unitKey]int
	shared := false
	for i, ds := range rcpts {
		for k := range ds {
			dst := &ds[k]
			uk := unitKey{destKey{dst.Target, dst.Target.Key(dst)}, dst.Detail}
			u := 0
			if byKey != nil {
				u = byKey[uk]
			} else if x := slices.IndexFunc(units, func(v unit) bool { return v.key == uk }); x >= 0 {
				u = x + 1
			}
			switch {
			case u == 0:
				units = append(units, unit{uk, i})
				u = len(units)
				if byKey != nil {
					byKey[uk] = u
				} else if len(units) > 8 {
					byKey = make(map[unitKey]int, 2*len(units))
					for x, v := range units {
						byKey[v.key] = x + 1
					}
				}
			case units[u-1].owner != i:
				shared = true
			}
			flat = append(flat, u)
		}
	}
	if !shared {
		return rcpts, nil
	}
	n := len(rcpts)
	sh := &sharing{
		same:     make([]int, n),
		borrow:   make([][]int, n),
		after:    make([][]int, n),
		owner:    make([]int, len(units)+1),
		unitJobs: make([][]*job, len(units)+1),
		hasOwn:   make([]bool, n),
		hookErr:  make([]error, n),
	}
	sh.owner[0] = -1
	for x, v := range units {
		sh.owner[x+1] = v.owner
	}
	out := make([][]Destination, n)
	sets := make(map[string]int) // the units of a recipient → the first recipient with them
	off := 0
	for i, ds := range rcpts {
		us := flat[off : off+len(ds)]
		off += len(ds)
		sh.same[i] = -1
		sig := signature(us)
		if p, ok := sets[sig]; ok && len(us) > 0 {
			sh.same[i] = p
			sh.after[i] = []int{p}
			continue
		}
		sets[sig] = i
		for k, u := range us {
			if p := sh.owner[u]; p != i {
				if !slices.Contains(sh.borrow[i], u) {
					sh.borrow[i] = append(sh.borrow[i], u)
				}
				if !slices.Contains(sh.after[i], p) {
					sh.after[i] = append(sh.after[i], p)
				}
				continue
			}
			dst := ds[k]
			dst.unit = u
			out[i] = append(out[i], dst)
			sh.hasOwn[i] = true
		}
		slices.Sort(sh.after[i])
	}
	return out, sh
}

// signature is a set of units as a map key.
func signature(units []int) string {
	s := slices.Clone(units)
	slices.Sort(s)
	s = slices.Compact(s)
	var b []byte
	for _, u := range s {
		b = binary.AppendUvarint(b, uint64(u))
	}
	return string(b)
}

// link gives the recipients that share destinations the jobs of those
// destinations (d.byRcpt, Destination.Rcpts) and the steps' answers, once
// the jobs of every recipient's own destinations are planned.
func (sh *sharing) link(ctx context.Context, d *delivery) {
	for i := range sh.same {
		if p := sh.same[i]; p >= 0 {
			d.byRcpt[i] = d.byRcpt[p]
			for _, j := range d.byRcpt[i] {
				j.addRcpt(i)
			}
			if d.stepErr != nil {
				d.stepErr[i] = d.stepErr[p]
			}
			continue
		}
		if len(sh.borrow[i]) == 0 {
			continue
		}
		// A step's answer for a part of the recipient's destinations
		// (its own ones, or one it shares) answers for it when it is
		// temporary or the recipient has nothing else; a permanent one
		// (a Sieve reject) then stores nothing for that part, as Sieve
		// treats a reject by one target of an alias.
		parts := len(sh.borrow[i])
		if sh.hasOwn[i] {
			parts++
		}
		answer := func(err error, p int) {
			if parts == 1 || isTemporary(err) {
				d.stepErr[i] = protocol.WorseStatus(d.stepErr[i], err)
				return
			}
			zerolog.Ctx(ctx).Info().Err(err).Str("to", d.msg.Recipients[i].Address.String()).
				Str("answered_for", d.msg.Recipients[p].Address.String()).
				Msg("a step refused one of several destinations of the recipient: nothing stored for it")
		}
		if d.stepErr != nil && d.stepErr[i] != nil {
			err := d.stepErr[i]
			d.stepErr[i] = nil
			answer(err, i)
		}
		for _, u := range sh.borrow[i] {
			p := sh.owner[u]
			if d.stepErr != nil && d.stepErr[p] != nil {
				answer(d.stepErr[p], p)
				continue
			}
			for _, j := range sh.unitJobs[u] {
				if !slices.Contains(d.byRcpt[i], j) {
					d.byRcpt[i] = append(d.byRcpt[i], j)
					j.addRcpt(i)
				}
			}
		}
	}
}

// isTemporary reports whether err is a temporary failure: a 4xx
// *protocol.Error, or anything else (answered with a generic 451).
func isTemporary(err error) bool {
	pe := protocol.AsError(err)
	return pe == nil || pe.Temporary()
}

// addRcpt adds recipient i to the job's Destination.Rcpts, in RCPT order.
func (j *job) addRcpt(i int) {
	if k, found := slices.BinarySearch(j.dest.Rcpts, i); !found {
		j.dest.Rcpts = slices.Insert(j.dest.Rcpts, k, i)
	}
}

// ready reports whether recipient i can be reported: every recipient whose
// outcome it shares has been. Then shared is what it shares of theirs:
// with dup, the final status of the recipient it duplicates, to be its
// own as it is; without, the worst of the failures of their Done hooks.
func (sh *sharing) ready(d *delivery, i int) (ok, dup bool, shared error) {
	for _, p := range sh.after[i] {
		if !d.settled[p] {
			return false, false, nil
		}
	}
	if p := sh.same[i]; p >= 0 {
		return true, true, d.results[p]
	}
	for _, p := range sh.after[i] {
		shared = protocol.WorseStatus(shared, sh.hookErr[p])
	}
	return true, false, shared
}

// sharedWith names the recipients whose delivery recipient i shares, for
// its outcome line: their addresses, comma-separated; "" for none.
func (sh *sharing) sharedWith(d *delivery, i int) string {
	if sh == nil || len(sh.after[i]) == 0 {
		return ""
	}
	var b strings.Builder
	for k, p := range sh.after[i] {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(d.msg.Recipients[p].Address.String())
	}
	return b.String()
}
