package sieve

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

type control int

const (
	ctlNext control = iota
	ctlStop
	ctlReturn
	ctlBreak // break out of foreverypart; run.breakTo says which
)

// frame is one script being run: the main one or an included one. Local
// variables belong to the frame (RFC 6609 section 3.3); names declared
// global live in run.globals. The maps are made at their first write.
type frame struct {
	script  *Script
	vars    map[string]string
	globals map[string]bool
}

// run is the state of one Execute call.
type run struct {
	ctx        context.Context
	msg        Message
	env        *Env
	opts       Options
	now        time.Time
	res        Result
	hdr        []HeaderField     // the header after edits; nil until the first edit
	fieldCache []fieldEntry      // fields' answers for hdr (or the message's header)
	decoded    []memo[string]    // decodeHeader's results by raw value, when it had work to do
	addrs      []memo[[]address] // parseAddressList(unfold(raw)) by raw value
	fieldBuf   [16]fieldEntry    // fieldCache's first array, allocated with the run
	stackBuf   [4]string         // stack's
	globals    map[string]string // made at the first write
	nvars      int
	match      []string // ${0}..${n} of the last successful :matches/:regex
	flags      []string // the internal variable of imap4flags
	steps      int
	ctxChecked int             // r.steps when ctx was last looked at
	stack      []string        // include keys being run
	once       map[string]bool // include :once already run
	dup        map[string]bool // duplicate answers of this run
	redirs     int
	vacDone    bool
	body       *bodyCache
	parts      []*mimePart // the current parts of the enclosing foreverypart loops
	breakTo    string      // the :name of the loop a break ends, "" for the innermost
}

// Execute runs the script against msg. It does no I/O of its own beyond
// the interfaces in env. On success the Result lists the actions in
// script order. On a run-time error (a limit, a conflict of actions, an
// include that cannot be loaded, the error command) it returns a Result
// with only the implicit keep and a *RuntimeError: RFC 5228 section
// 2.10.6, the caller keeps the message. A cancelled ctx ends the run with
// ctx's error.
func (s *Script) Execute(ctx context.Context, msg Message, env *Env, opts *Options) (Result, error) {
	if env == nil {
		env = &Env{}
	}
	r := &run{ctx: ctx, msg: msg, env: env, opts: opts.withDefaults()}
	r.now = env.Now
	if r.now.IsZero() {
		r.now = time.Now()
	}
	r.res.ImplicitKeep = true
	r.fieldCache = r.fieldBuf[:0]
	f := &frame{script: s}
	r.stack = append(r.stackBuf[:0], "main")
	_, err := r.block(f, s.cmds)
	if err != nil {
		return Result{ImplicitKeep: true}, err
	}
	if r.res.ImplicitKeep {
		r.res.ImplicitKeepFlags = r.flags
	}
	return r.res, nil
}

func (r *run) fail(f *frame, p Pos, cause error, format string, args ...any) error {
	return &RuntimeError{File: f.script.name, Pos: p, Msg: fmt.Sprintf(format, args...), Cause: cause}
}

// step charges n units of the budget.
func (r *run) step(f *frame, p Pos, n int) error {
	r.steps += n
	if r.steps > r.opts.MaxSteps {
		return r.fail(f, p, ErrStepBudget, "step budget of %d exhausted", r.opts.MaxSteps)
	}
	// The context (the caller's deadline, a shutdown) is looked at every
	// 64 steps, a few tens of microseconds of work at most.
	if r.steps-r.ctxChecked >= 64 {
		r.ctxChecked = r.steps
		if err := r.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) block(f *frame, nodes []*node) (control, error) {
	for _, n := range nodes {
		if err := r.step(f, n.pos, 1); err != nil {
			return ctlStop, err
		}
		c, err := r.command(f, n)
		if err != nil || c != ctlNext {
			return c, err
		}
	}
	return ctlNext, nil
}

// str expands the variables in one string argument (RFC 5229 section 3).
func (r *run) str(f *frame, n *node, s sstring) (string, error) {
	if !n.vars || !strings.Contains(s.val, "${") {
		return s.val, nil
	}
	out := r.expand(f, s.val)
	if err := r.step(f, s.pos, 1+len(out)/256); err != nil {
		return "", err
	}
	return out, nil
}

// strs expands the strings of a string-list argument. The slice it
// returns may be the argument's own (a list without variables): callers
// only read it, and copy it before they hand it out.
func (r *run) strs(f *frame, n *node, a *argument) ([]string, error) {
	if a == nil {
		return nil, nil
	}
	if a.vals != nil {
		return a.vals, nil
	}
	out := make([]string, len(a.strs))
	for i, s := range a.strs {
		v, err := r.str(f, n, s)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (r *run) tagString(f *frame, n *node, tag string) (string, bool, error) {
	s, ok := n.tagStr(tag)
	if !ok {
		return "", false, nil
	}
	v, err := r.str(f, n, s)
	return v, true, err
}

func (r *run) command(f *frame, n *node) (control, error) {
	switch n.name {
	case "if":
		for b := n; b != nil; b = b.next {
			ok := true
			if b.name != "else" {
				var err error
				ok, err = r.test(f, b.tests[0])
				if err != nil {
					return ctlStop, err
				}
			}
			if ok {
				return r.block(f, b.block)
			}
		}
		return ctlNext, nil
	case "stop":
		return ctlStop, nil
	case "return":
		return ctlReturn, nil
	case "keep":
		flags, err := r.actionFlags(f, n)
		if err != nil {
			return ctlStop, err
		}
		return ctlNext, r.addStore(f, n, Action{Kind: ActKeep, Mailbox: "INBOX", Flags: flags})
	case "fileinto":
		mb, err := r.str(f, n, n.args[0].strs[0])
		if err != nil {
			return ctlStop, err
		}
		if !utf8.ValidString(mb) {
			// A "?" match can cut a character (as in Pigeonhole, which
			// fails the same way).
			return ctlStop, r.fail(f, n.pos, ErrInvalidArgument, "fileinto: mailbox name %q is not valid UTF-8", mb)
		}
		flags, err := r.actionFlags(f, n)
		if err != nil {
			return ctlStop, err
		}
		su, _, err := r.tagString(f, n, "specialuse")
		if err != nil {
			return ctlStop, err
		}
		if su != "" && !validSpecialUse(su) {
			return ctlStop, r.fail(f, n.pos, ErrInvalidArgument, "fileinto: invalid special-use attribute %q", su)
		}
		return ctlNext, r.addStore(f, n, Action{Kind: ActFileinto, Mailbox: mb, Flags: flags, Copy: n.has("copy"), Create: n.has("create"), SpecialUse: su})
	case "redirect":
		s, err := r.str(f, n, n.args[0].strs[0])
		if err != nil {
			return ctlStop, err
		}
		addr, perr := parseMailbox(s)
		if perr != nil {
			return ctlStop, r.fail(f, n.pos, ErrInvalidArgument, "redirect: invalid address %q", s)
		}
		return ctlNext, r.addRedirect(f, n, addr, n.has("copy"))
	case "discard":
		r.res.ImplicitKeep = false
		return ctlNext, r.add(f, n, Action{Kind: ActDiscard})
	case "reject", "ereject":
		s, err := r.str(f, n, n.args[0].strs[0])
		if err != nil {
			return ctlStop, err
		}
		return ctlNext, r.addReject(f, n, Kind(n.name), s)
	case "setflag", "addflag", "removeflag":
		return ctlNext, r.flagCommand(f, n)
	case "set":
		return ctlNext, r.set(f, n)
	case "global":
		if f.globals == nil {
			f.globals = map[string]bool{}
		}
		for _, s := range n.args[0].strs {
			f.globals[lower(s.val)] = true
		}
		return ctlNext, nil
	case "include":
		return r.include(f, n)
	case "vacation":
		return ctlNext, r.vacation(f, n)
	case "addheader":
		return ctlNext, r.addheader(f, n)
	case "deleteheader":
		return ctlNext, r.deleteheader(f, n)
	case "notify":
		return ctlNext, r.notify(f, n)
	case "foreverypart":
		return r.foreverypart(f, n)
	case "break":
		r.breakTo = ""
		if s, ok := n.tagStr("name"); ok {
			r.breakTo = s.val
		}
		return ctlBreak, nil
	case "extracttext":
		return ctlNext, r.extracttext(f, n)
	case "error":
		s, err := r.str(f, n, n.args[0].strs[0])
		if err != nil {
			return ctlStop, err
		}
		return ctlStop, r.fail(f, n.pos, ErrScriptError, "error: %s", s)
	}
	return ctlStop, r.fail(f, n.pos, nil, "internal: command %s has no implementation", n.name)
}

func (r *run) test(f *frame, n *node) (bool, error) {
	if err := r.step(f, n.pos, 1); err != nil {
		return false, err
	}
	switch n.name {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "not":
		ok, err := r.test(f, n.tests[0])
		return !ok, err
	case "allof":
		for _, t := range n.tests {
			ok, err := r.test(f, t)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case "anyof":
		for _, t := range n.tests {
			ok, err := r.test(f, t)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case "exists":
		names, err := r.strs(f, n, n.args[0])
		if err != nil {
			return false, err
		}
		for _, name := range names {
			vals, err := r.headerFields(f, n, name)
			if err != nil || len(vals) == 0 {
				return false, err
			}
		}
		return true, nil
	case "size":
		lim := n.args[0].num
		if n.has("over") {
			return r.msg.Size() > lim, nil
		}
		return r.msg.Size() < lim, nil
	case "header":
		return r.headerTest(f, n)
	case "address":
		return r.addressTest(f, n)
	case "envelope":
		return r.envelopeTest(f, n)
	case "string":
		src, err := r.strs(f, n, n.args[0])
		if err != nil {
			return false, err
		}
		if n.mt == mtCount {
			// RFC 5229 section 5: empty strings are not counted.
			var ne []string
			for _, s := range src {
				if s != "" {
					ne = append(ne, s)
				}
			}
			src = ne
		}
		return r.matchKeys(f, n, src, n.args[1])
	case "hasflag":
		return r.hasflag(f, n)
	case "body":
		return r.bodyTest(f, n)
	case "date", "currentdate":
		return r.dateTest(f, n)
	case "mailboxexists":
		names, err := r.strs(f, n, n.args[0])
		if err != nil {
			return false, err
		}
		if r.env.Mailboxes == nil {
			return false, nil
		}
		for _, name := range names {
			ok, err := r.env.Mailboxes.MailboxExists(r.ctx, name)
			if err != nil {
				return false, r.fail(f, n.pos, err, "mailboxexists: %v", err)
			}
			if !ok {
				return false, nil
			}
		}
		return true, nil
	case "metadata", "servermetadata", "metadataexists", "servermetadataexists":
		return r.metadataTest(f, n)
	case "specialuse_exists":
		mb := ""
		if n.args[0] != nil {
			var err error
			if mb, err = r.str(f, n, n.args[0].strs[0]); err != nil {
				return false, err
			}
		}
		attrs, err := r.strs(f, n, n.args[1])
		if err != nil {
			return false, err
		}
		for _, a := range attrs {
			if !validSpecialUse(a) {
				return false, nil
			}
		}
		su, ok := r.env.Mailboxes.(SpecialUseChecker)
		if !ok {
			return false, nil
		}
		res, err := su.SpecialUseExists(r.ctx, mb, attrs)
		if err != nil {
			return false, r.fail(f, n.pos, err, "specialuse_exists: %v", err)
		}
		return res, nil
	case "environment":
		name, err := r.str(f, n, n.args[0].strs[0])
		if err != nil {
			return false, err
		}
		v, ok := r.environment(lower(name))
		if !ok {
			return false, nil
		}
		return r.matchKeys(f, n, []string{v}, n.args[1])
	case "duplicate":
		return r.duplicate(f, n)
	case "ihave":
		return !n.disable, nil
	case "valid_notify_method":
		uris, err := r.strs(f, n, n.args[0])
		if err != nil {
			return false, err
		}
		for _, u := range uris {
			if _, err := parseMailtoURI(u); err != nil {
				return false, nil
			}
		}
		return true, nil
	case "notify_method_capability":
		uri, err := r.str(f, n, n.args[0].strs[0])
		if err != nil {
			return false, err
		}
		capa, err := r.str(f, n, n.args[1].strs[0])
		if err != nil {
			return false, err
		}
		if _, err := parseMailtoURI(uri); err != nil || lower(capa) != "online" {
			return false, nil
		}
		// RFC 5436 section 2.2: mail cannot tell whether the
		// recipient is online.
		return r.matchKeys(f, n, []string{"maybe"}, n.args[2])
	case "spamtest", "virustest":
		v := r.spamVirus(n)
		return r.matchKeys(f, n, []string{v}, n.args[0])
	}
	return false, r.fail(f, n.pos, nil, "internal: test %s has no implementation", n.name)
}

// currentHeader is the header as edited so far.
func (r *run) currentHeader() []HeaderField {
	if r.hdr != nil {
		return r.hdr
	}
	return r.msg.Header()
}

// fields returns the raw values of the fields named name, in order. The
// slice is shared with later calls: callers only read it.
//
// A script asks for the same few fields again and again (twenty List-Id
// tests in a row are common), so the answers are kept for the run, up to
// maxFieldCache names, until an editheader action changes the header
// (setHeader).
func (r *run) fields(name string) []string {
	// Names the same as the one asked for first: a script's constant
	// string is the same string at every test, and any entry whose name
	// folds to name holds the same fields.
	for i := range r.fieldCache {
		if e := &r.fieldCache[i]; e.name == name {
			return e.vals
		}
	}
	for i := range r.fieldCache {
		if e := &r.fieldCache[i]; strings.EqualFold(e.name, name) {
			return e.vals
		}
	}
	var out []string
	for _, h := range r.currentHeader() {
		if strings.EqualFold(h.Name, name) {
			out = append(out, h.Value)
		}
	}
	out = out[:len(out):len(out)] // an append by a caller copies
	if len(r.fieldCache) < maxFieldCache {
		r.fieldCache = append(r.fieldCache, fieldEntry{name: name, vals: out})
	}
	return out
}

// maxFieldCache bounds run.fieldCache: past it, fields scans the header.
const maxFieldCache = 32

// fieldEntry is one answer of fields: the values of the fields named
// name (any case, as strings.EqualFold compares it).
type fieldEntry struct {
	name string
	vals []string
}

// setHeader replaces the header the script sees (editheader) and forgets
// what was read of the old one.
func (r *run) setHeader(h []HeaderField) {
	r.hdr = h
	r.fieldCache = r.fieldBuf[:0]
}

// indexed applies :index/:last (RFC 5260 section 6) to the occurrences of
// one field name.
func indexed(n *node, vals []string) []string {
	if !n.hasIndex {
		return vals
	}
	idx := n.index
	if idx > int64(len(vals)) {
		return nil
	}
	if n.last {
		return []string{vals[int64(len(vals))-idx]}
	}
	return []string{vals[idx-1]}
}

func (r *run) headerTest(f *frame, n *node) (bool, error) {
	names, err := r.strs(f, n, n.args[0])
	if err != nil {
		return false, err
	}
	var vals []string
	for _, name := range names {
		raw, err := r.headerFields(f, n, name)
		if err != nil {
			return false, err
		}
		for _, v := range indexed(n, raw) {
			if n.mimeOpt {
				vals = append(vals, mimeOption(n, r.decodeHeader(v))...)
			} else {
				vals = append(vals, r.decodeHeader(v))
			}
		}
	}
	return r.matchKeys(f, n, vals, n.args[1])
}

func (r *run) addressTest(f *frame, n *node) (bool, error) {
	names, err := r.strs(f, n, n.args[0])
	if err != nil {
		return false, err
	}
	var vals []string
	for _, name := range names {
		if !isAddressHeader(name) {
			continue
		}
		raw, err := r.headerFields(f, n, name)
		if err != nil {
			return false, err
		}
		for _, v := range indexed(n, raw) {
			// Parsed raw: an encoded word may hide a comma in a display
			// name, and RFC 2047 section 5 never encodes the addr-spec.
			for _, a := range r.addressList(v) {
				if p, ok := r.addressPart(n.ap, a); ok {
					vals = append(vals, p)
				}
			}
		}
	}
	return r.matchKeys(f, n, vals, n.args[1])
}

// addressPart extracts :all, :localpart, :domain, :user or :detail (RFC
// 5228 section 2.7.4, RFC 5233 section 4). An address that did not parse
// only has :all.
func (r *run) addressPart(ap string, a address) (string, bool) {
	if ap == "all" {
		return a.raw, true
	}
	if !a.valid {
		return "", false
	}
	switch ap {
	case "localpart":
		return a.local, true
	case "domain":
		return a.domain, true
	case "user", "detail":
		i := strings.IndexAny(a.local, r.opts.SubaddressDelimiters)
		if ap == "user" {
			if i < 0 {
				return a.local, true
			}
			return a.local[:i], true
		}
		if i < 0 {
			// RFC 5233 section 4: no detail, no match.
			return "", false
		}
		return a.local[i+1:], true
	}
	return "", false
}

func (r *run) envelopeTest(f *frame, n *node) (bool, error) {
	parts, err := r.strs(f, n, n.args[0])
	if err != nil {
		return false, err
	}
	e := r.env.Envelope
	var vals []string
	for _, p := range parts {
		var v string
		switch lower(p) {
		case "from":
			v = e.From
			if v == "" {
				// RFC 5228 section 5.4: the null reverse-path is the
				// empty string whatever the address part.
				vals = append(vals, "")
				continue
			}
		case "to":
			v = e.To
			if e.OrigTo != "" {
				v = e.OrigTo
			}
		case "orig_to":
			v = e.OrigTo
		case "auth":
			v = e.Auth
		default:
			continue
		}
		if v == "" {
			continue
		}
		a := splitAddr(strings.Trim(v, "<>"))
		if pv, ok := r.addressPart(n.ap, a); ok {
			vals = append(vals, pv)
		}
	}
	return r.matchKeys(f, n, vals, n.args[1])
}

// matchKeys is the heart of every matching test: does any value match any
// key under the node's match type and comparator? On a successful :matches
// or :regex it sets the match variables.
func (r *run) matchKeys(f *frame, n *node, vals []string, keyArg *argument) (bool, error) {
	keys, err := r.strs(f, n, keyArg)
	if err != nil {
		return false, err
	}
	return r.matchValues(f, n, vals, keys)
}

// matchValues matches values against keys that are already expanded.
func (r *run) matchValues(f *frame, n *node, vals, keys []string) (bool, error) {
	if n.mt == mtCount {
		c := strconv.Itoa(len(vals))
		for _, k := range keys {
			if relHolds(n.rel, n.cmp.compare(c, k)) {
				return true, nil
			}
		}
		return false, nil
	}
	for _, v := range vals {
		for ki, k := range keys {
			if err := r.step(f, n.pos, 1+(len(v)+len(k))/256); err != nil {
				return false, err
			}
			switch n.mt {
			case mtIs:
				if n.cmp.equal(v, k) {
					return true, nil
				}
			case mtContains:
				if n.cmp.contains(v, k) {
					return true, nil
				}
			case mtValue:
				if relHolds(n.rel, n.cmp.compare(v, k)) {
					return true, nil
				}
			case mtMatches:
				ok, caps, work := glob(v, k, n.cmp != cmpOctet, n.vars)
				if err := r.step(f, n.pos, work/128); err != nil {
					return false, err
				}
				if ok {
					if n.vars {
						r.match = caps
					}
					return true, nil
				}
			case mtRegex:
				re, err := r.regexFor(f, n, ki, k)
				if err != nil {
					return false, err
				}
				// RE2 is linear, but its NFA may spend up to a few
				// hundred nanoseconds per byte: one step per 4 bytes.
				if err := r.step(f, n.pos, len(v)/4); err != nil {
					return false, err
				}
				if re.MatchString(v) {
					// Captures cost more: only for a match, once.
					if n.vars {
						r.match = re.FindStringSubmatch(v)
					}
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// metadataTest runs the four metadata tests of RFC 5490 section 4.
func (r *run) metadataTest(f *frame, n *node) (bool, error) {
	args := n.args
	mailbox := ""
	if n.name == "metadata" || n.name == "metadataexists" {
		var err error
		if mailbox, err = r.str(f, n, args[0].strs[0]); err != nil {
			return false, err
		}
		args = args[1:]
	}
	md, _ := r.env.Mailboxes.(MetadataReader)
	get := func(entry string) (string, bool, error) {
		if md == nil {
			return "", false, nil
		}
		v, ok, err := md.Metadata(r.ctx, mailbox, entry)
		if err != nil {
			return "", false, r.fail(f, n.pos, err, "%s: %v", n.name, err)
		}
		return v, ok, nil
	}
	if strings.HasSuffix(n.name, "exists") {
		names, err := r.strs(f, n, args[0])
		if err != nil {
			return false, err
		}
		for _, e := range names {
			_, ok, err := get(e)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	}
	entry, err := r.str(f, n, args[0].strs[0])
	if err != nil {
		return false, err
	}
	v, ok, err := get(entry)
	if err != nil || !ok {
		return false, err
	}
	return r.matchKeys(f, n, []string{v}, args[1])
}
