package sieve

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// add appends an action after the count limit.
func (r *run) add(f *frame, n *node, a Action) error {
	if len(r.res.Actions) >= r.opts.MaxActions {
		return r.fail(f, n.pos, ErrTooManyActions, "more than %d actions", r.opts.MaxActions)
	}
	a.Script, a.Pos, a.Edits = f.script.name, n.pos, len(r.res.HeaderEdits)
	r.res.Actions = append(r.res.Actions, a)
	return nil
}

func (r *run) find(k ...Kind) *Action {
	for i := range r.res.Actions {
		for _, kk := range k {
			if r.res.Actions[i].Kind == kk {
				return &r.res.Actions[i]
			}
		}
	}
	return nil
}

// conflict reports the reject that forbids a delivering action (RFC 5429
// section 2.1: reject and ereject cannot be combined with keep, fileinto,
// redirect or vacation).
func (r *run) conflict(f *frame, n *node) error {
	if a := r.find(ActReject, ActEreject); a != nil {
		return r.fail(f, n.pos, ErrActionConflict, "%s conflicts with the %s at line %d", n.name, a.Kind, a.Pos.Line)
	}
	return nil
}

func sameMailbox(a, b string) bool {
	// RFC 3501 section 5.1: INBOX is case-insensitive, other names are not.
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

// addStore adds keep or fileinto. Storing twice into one mailbox stores
// once (RFC 5228 section 2.10.3); the flags of the later one win, as in
// Pigeonhole.
func (r *run) addStore(f *frame, n *node, a Action) error {
	if err := r.conflict(f, n); err != nil {
		return err
	}
	if !a.Copy {
		r.res.ImplicitKeep = false
	}
	for i := range r.res.Actions {
		o := &r.res.Actions[i]
		if (o.Kind == ActKeep || o.Kind == ActFileinto) && sameMailbox(o.Mailbox, a.Mailbox) {
			o.Flags = a.Flags
			o.Copy = o.Copy && a.Copy
			o.Create = o.Create || a.Create
			return nil
		}
	}
	return r.add(f, n, a)
}

func (r *run) addRedirect(f *frame, n *node, addr string, cp bool) error {
	if err := r.conflict(f, n); err != nil {
		return err
	}
	if !cp {
		r.res.ImplicitKeep = false
	}
	for i := range r.res.Actions {
		o := &r.res.Actions[i]
		// RFC 5228 section 4.2: not twice to the same address.
		if o.Kind == ActRedirect && sameAddress(o.Address, addr) {
			o.Copy = o.Copy && cp
			return nil
		}
	}
	if r.redirs >= r.opts.MaxRedirects {
		return r.fail(f, n.pos, ErrTooManyRedirects, "more than %d redirects", r.opts.MaxRedirects)
	}
	r.redirs++
	return r.add(f, n, Action{Kind: ActRedirect, Address: addr, Copy: cp})
}

func (r *run) addReject(f *frame, n *node, k Kind, reason string) error {
	if a := r.find(ActReject, ActEreject); a != nil {
		return r.fail(f, n.pos, ErrActionConflict, "only one reject or ereject is allowed (the first is at line %d)", a.Pos.Line)
	}
	if a := r.find(ActKeep, ActFileinto, ActRedirect, ActVacation); a != nil {
		return r.fail(f, n.pos, ErrActionConflict, "%s conflicts with the %s at line %d", k, a.Kind, a.Pos.Line)
	}
	r.res.ImplicitKeep = false
	return r.add(f, n, Action{Kind: k, Reason: reason})
}

// parseFlags splits flag strings at white space and drops duplicates
// (RFC 5232 section 3: flag names are case-insensitive).
func parseFlags(list []string) []string {
	var out []string
	for _, s := range list {
		for _, fl := range strings.Fields(s) {
			if !containsFold(out, fl) {
				out = append(out, fl)
			}
		}
	}
	return out
}

func containsFold(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// actionFlags returns the flags of keep/fileinto: :flags, or else the
// internal variable (RFC 5232 section 5).
func (r *run) actionFlags(f *frame, n *node) ([]string, error) {
	if a, ok := n.tags["flags"]; ok {
		l, err := r.strs(f, n, a)
		if err != nil {
			return nil, err
		}
		return parseFlags(l), nil
	}
	return append([]string(nil), r.flags...), nil
}

func (r *run) flagCommand(f *frame, n *node) error {
	list, err := r.strs(f, n, n.args[1])
	if err != nil {
		return err
	}
	var cur []string
	varName := ""
	if n.args[0] != nil {
		varName, err = r.str(f, n, n.args[0].strs[0])
		if err != nil {
			return err
		}
		cur = parseFlags([]string{r.getVar(f, varName)})
	} else {
		cur = r.flags
	}
	add := parseFlags(list)
	var out []string
	switch n.name {
	case "setflag":
		out = add
	case "addflag":
		out = parseFlags(append(append([]string(nil), cur...), add...))
	case "removeflag":
		for _, c := range cur {
			if !containsFold(add, c) {
				out = append(out, c)
			}
		}
	}
	if varName != "" {
		return r.setVar(f, n, varName, strings.Join(out, " "))
	}
	r.flags = out
	return nil
}

func (r *run) hasflag(f *frame, n *node) (bool, error) {
	var have []string
	if n.args[0] != nil {
		names, err := r.strs(f, n, n.args[0])
		if err != nil {
			return false, err
		}
		for _, v := range names {
			have = append(have, r.getVar(f, v))
		}
		have = parseFlags(have)
	} else {
		have = r.flags
	}
	keys, err := r.strs(f, n, n.args[1])
	if err != nil {
		return false, err
	}
	// Keys are flag lists too: split them (RFC 5232 section 4), except
	// regular expressions, which Pigeonhole takes whole.
	if n.mt != mtRegex {
		keys = parseFlags(keys)
	}
	return r.matchValues(f, n, have, keys)
}

// getVar reads a variable (names are case-insensitive, RFC 5229 section 3).
func (r *run) getVar(f *frame, name string) string {
	name = lower(name)
	if f.globals[name] {
		return r.globals[name]
	}
	return f.vars[name]
}

func (r *run) setVar(f *frame, n *node, name, val string) error {
	name = lower(name)
	if !validIdent(name) {
		return r.fail(f, n.pos, ErrInvalidArgument, "invalid variable name %q", name)
	}
	if len(val) > r.opts.MaxVariableSize {
		return r.fail(f, n.pos, ErrInvalidArgument, "value of variable %s longer than %d bytes", name, r.opts.MaxVariableSize)
	}
	mp := &f.vars
	if f.globals[name] {
		mp = &r.globals
	}
	if _, ok := (*mp)[name]; !ok {
		r.nvars++
		if r.nvars > r.opts.MaxVariables {
			return r.fail(f, n.pos, ErrInvalidArgument, "more than %d variables", r.opts.MaxVariables)
		}
	}
	if *mp == nil {
		*mp = map[string]string{}
	}
	(*mp)[name] = val
	return nil
}

// expand replaces variable references (RFC 5229 section 3). A reference
// that is not well-formed, or names a namespace we do not have, stays as
// written; an unset variable expands to "".
func (r *run) expand(f *frame, s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		rest := s[i+2:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		name := rest[:j]
		switch {
		case name != "" && allDigits(name):
			k, err := strconv.Atoi(name)
			if err == nil && k < len(r.match) {
				b.WriteString(r.match[k])
			}
			s = rest[j+1:]
		case validIdent(name):
			b.WriteString(r.getVar(f, name))
			s = rest[j+1:]
		default:
			b.WriteString("${")
			s = rest
		}
		if b.Len() > r.opts.MaxVariableSize*4 {
			break
		}
	}
	out := b.String()
	if len(out) > r.opts.MaxVariableSize*4 {
		out = out[:r.opts.MaxVariableSize*4]
	}
	return out
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return len(s) <= 4
}

var regexMeta = `\.+*?()|[]{}^$`

func (r *run) set(f *frame, n *node) error {
	name := n.args[0].strs[0].val
	v, err := r.str(f, n, n.args[1].strs[0])
	if err != nil {
		return err
	}
	return r.setVar(f, n, name, modify(n, v))
}

// modify applies the modifiers of set and extracttext.
func modify(n *node, v string) string {
	// Modifiers apply from the highest precedence down (RFC 5229
	// section 4.1).
	for _, m := range []string{"lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "quoteregex", "encodeurl", "length"} {
		if !n.has(m) {
			continue
		}
		switch m {
		case "lower":
			v = strings.ToLower(v)
		case "upper":
			v = strings.ToUpper(v)
		case "lowerfirst", "upperfirst":
			if r0, size := utf8.DecodeRuneInString(v); size > 0 {
				if m == "lowerfirst" {
					r0 = unicode.ToLower(r0)
				} else {
					r0 = unicode.ToUpper(r0)
				}
				v = string(r0) + v[size:]
			}
		case "quotewildcard":
			v = quoteWildcard(v)
		case "quoteregex":
			var b strings.Builder
			for _, c := range v {
				if c < utf8.RuneSelf && strings.IndexByte(regexMeta, byte(c)) >= 0 {
					b.WriteByte('\\')
				}
				b.WriteRune(c)
			}
			v = b.String()
		case "encodeurl":
			v = encodeURL(v)
		case "length":
			v = strconv.Itoa(utf8.RuneCountInString(v))
		}
	}
	return v
}

func (r *run) regexFor(f *frame, n *node, ki int, k string) (*regexp.Regexp, error) {
	if n.keyRE != nil {
		return n.keyRE[ki], nil
	}
	if len(k) > r.opts.MaxRegexSize {
		return nil, r.fail(f, n.pos, ErrRegexTooLarge, "regular expression longer than %d bytes", r.opts.MaxRegexSize)
	}
	if err := r.step(f, n.pos, 1+len(k)/16); err != nil {
		return nil, err
	}
	re, err := compileRegex(k, n.cmp)
	if err != nil {
		return nil, r.fail(f, n.pos, ErrInvalidArgument, "invalid regular expression %q: %v", k, err)
	}
	return re, nil
}

func (r *run) include(f *frame, n *node) (control, error) {
	name := n.args[0].strs[0].val
	loc := Personal
	if n.has("global") {
		loc = Global
	}
	key := loc.String() + ":" + name
	if n.has("once") && r.once[key] {
		return ctlNext, nil
	}
	for _, k := range r.stack {
		if k == key {
			return ctlStop, r.fail(f, n.pos, ErrIncludeLoop, "include loop: %s includes itself", name)
		}
	}
	if len(r.stack) > r.opts.MaxIncludeDepth {
		return ctlStop, r.fail(f, n.pos, ErrIncludeDepth, "includes nested deeper than %d", r.opts.MaxIncludeDepth)
	}
	if r.env.Loader == nil {
		return ctlStop, r.fail(f, n.pos, ErrNotFound, "include %s: no script loader", name)
	}
	s, err := r.env.Loader.LoadScript(r.ctx, loc, name)
	if err != nil {
		if errors.Is(err, ErrNotFound) && n.has("optional") {
			return ctlNext, nil
		}
		return ctlStop, r.fail(f, n.pos, err, "include %s %q: %v", loc, name, err)
	}
	if r.once == nil {
		r.once = map[string]bool{}
	}
	r.once[key] = true
	r.stack = append(r.stack, key)
	c, err := r.block(&frame{script: s}, s.cmds)
	r.stack = r.stack[:len(r.stack)-1]
	if err != nil || c == ctlStop {
		return ctlStop, err
	}
	return ctlNext, nil
}

func (r *run) environment(name string) (string, bool) {
	if v, ok := r.env.Environment[name]; ok {
		return v, true
	}
	switch name {
	case "name":
		return "lmtpd", true
	case "location":
		return "MDA", true
	case "phase":
		return "during", true
	case "version":
		return Version, true
	}
	return "", false
}

// Version is what environment "version" answers unless Env sets it.
var Version = "1"

func (r *run) duplicate(f *frame, n *node) (bool, error) {
	var id string
	if v, ok, err := r.tagString(f, n, "uniqueid"); err != nil {
		return false, err
	} else if ok {
		id = v
	} else {
		h := "Message-ID"
		if v, ok, err := r.tagString(f, n, "header"); err != nil {
			return false, err
		} else if ok {
			h = v
		}
		if vals := r.fields(h); len(vals) > 0 {
			id = unfold(vals[0])
		}
	}
	if id == "" {
		return false, nil
	}
	handle, _, err := r.tagString(f, n, "handle")
	if err != nil {
		return false, err
	}
	key := "duplicate\x00" + handle + "\x00" + id
	if v, ok := r.dup[key]; ok {
		return v, nil
	}
	period := r.opts.DuplicateDefaultPeriod
	if s, ok := n.tagNum("seconds"); ok {
		period = time.Duration(s) * time.Second
		if period > r.opts.DuplicateMaxPeriod {
			period = r.opts.DuplicateMaxPeriod
		}
	}
	seen := false
	if r.env.Tracker != nil {
		seen, err = r.env.Tracker.Seen(r.ctx, key, period)
		if err != nil {
			return false, r.fail(f, n.pos, err, "duplicate: %v", err)
		}
	}
	if r.dup == nil {
		r.dup = map[string]bool{}
	}
	r.dup[key] = seen
	r.res.Marks = append(r.res.Marks, Mark{Key: key, Period: period, Last: n.has("last")})
	return seen, nil
}

var numberRE = regexp.MustCompile(`-?[0-9]+(\.[0-9]+)?`)

// spamVirus computes the value of spamtest and virustest (RFC 5235).
func (r *run) spamVirus(n *node) string {
	if n.name == "virustest" {
		c := &r.opts.VirusTest
		vals := r.fields(c.Header)
		if c.Header == "" || len(vals) == 0 {
			return "0"
		}
		v := r.decodeHeader(vals[0])
		for _, p := range c.Values {
			if p.Pattern.MatchString(v) {
				return strconv.Itoa(p.Value)
			}
		}
		if !c.Strlen && c.TextValues == nil && c.Max <= 0 && c.MaxHeader == "" {
			// The status is the verdict itself.
			x, err := strconv.Atoi(numberRE.FindString(v))
			if err != nil {
				return "0"
			}
			return strconv.Itoa(min(max(x, 1), 5))
		}
		ratio := r.scoreRatio(v, &c.ScoreConfig, 5)
		if ratio < 0 {
			return "0"
		}
		return strconv.Itoa(int(1 + 4*ratio + 0.001))
	}
	c := &r.opts.SpamTest
	vals := r.fields(c.Header)
	if c.Header == "" || len(vals) == 0 {
		return "0"
	}
	ratio := r.scoreRatio(r.decodeHeader(vals[0]), &c.ScoreConfig, 10)
	switch {
	case ratio < 0:
		return "0"
	case n.has("percent"):
		return strconv.Itoa(int(100*ratio + 0.001))
	}
	// Truncated as Pigeonhole does (not rounded): 1 + floor(9 * ratio).
	return strconv.Itoa(int(1 + 9*ratio + 0.001))
}

// scoreRatio returns the status of header value v over its maximum, in
// 0..1, or -1 when there is no status (not tested). textMax is the top of
// TextValues' scale.
func (r *run) scoreRatio(v string, c *ScoreConfig, textMax int) float64 {
	status, ok := extract(v, c.Pattern)
	if !ok {
		return -1
	}
	var score, top float64
	switch {
	case c.TextValues != nil:
		x, ok := c.TextValues[strings.TrimSpace(status)]
		if !ok {
			return -1
		}
		score, top = float64(x), float64(textMax)
	case c.Strlen:
		score, top = float64(len(strings.TrimSpace(status))), c.Max
	default:
		if c.Pattern == nil {
			status = numberRE.FindString(status)
		}
		var err error
		if score, err = strconv.ParseFloat(strings.TrimSpace(status), 64); err != nil {
			return -1
		}
		top = c.Max
	}
	if c.TextValues == nil && c.MaxHeader != "" {
		vals := r.fields(c.MaxHeader)
		if len(vals) == 0 {
			return -1
		}
		m, ok := extract(r.decodeHeader(vals[0]), c.MaxPattern)
		if c.MaxPattern == nil {
			m = numberRE.FindString(m)
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(m), 64)
		if !ok || err != nil {
			return -1
		}
		top = x
	}
	if top <= 0 {
		return -1
	}
	return math.Min(math.Max(score/top, 0), 1)
}

// extract returns the first submatch of p in v (the whole match if p has
// no group; v itself if p is nil), and false if p does not match.
func extract(v string, p *regexp.Regexp) (string, bool) {
	if p == nil {
		return v, true
	}
	m := p.FindStringSubmatch(v)
	if m == nil {
		return "", false
	}
	if len(m) > 1 {
		return m[1], true
	}
	return m[0], true
}

func (r *run) protected(name string) bool {
	return containsFold(r.opts.ProtectedHeaders, name)
}

func (r *run) editable(f *frame, n *node) error {
	if len(r.res.HeaderEdits) >= r.opts.MaxHeaderEdits {
		return r.fail(f, n.pos, ErrTooManyActions, "more than %d header edits", r.opts.MaxHeaderEdits)
	}
	if r.hdr == nil {
		r.setHeader(append([]HeaderField{}, r.msg.Header()...))
	}
	return nil
}

func (r *run) addheader(f *frame, n *node) error {
	name, err := r.str(f, n, n.args[0].strs[0])
	if err != nil {
		return err
	}
	val, err := r.str(f, n, n.args[1].strs[0])
	if err != nil {
		return err
	}
	if !validFieldName(name) {
		return r.fail(f, n.pos, ErrInvalidArgument, "addheader: invalid header field name %q", name)
	}
	if r.protected(name) {
		return nil
	}
	if err := r.editable(f, n); err != nil {
		return err
	}
	val = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ", "\x00", "").Replace(val)
	fld := HeaderField{Name: name, Value: " " + val}
	if n.has("last") {
		r.setHeader(append(r.hdr, fld))
	} else {
		r.setHeader(append([]HeaderField{fld}, r.hdr...))
	}
	r.res.HeaderEdits = append(r.res.HeaderEdits, HeaderEdit{Add: true, Last: n.has("last"), Name: name, Value: val})
	return nil
}

func (r *run) deleteheader(f *frame, n *node) error {
	name, err := r.str(f, n, n.args[0].strs[0])
	if err != nil {
		return err
	}
	if !validFieldName(name) || r.protected(name) {
		return nil
	}
	hdr := r.currentHeader()
	var occ []int // indexes into hdr of the fields named name
	for i, h := range hdr {
		if strings.EqualFold(h.Name, name) {
			occ = append(occ, i)
		}
	}
	var del []int // 1-based occurrence numbers
	for k := range occ {
		num := k + 1
		if idx, ok := n.tagNum("index"); ok {
			want := int(idx)
			if n.has("last") {
				want = len(occ) - int(idx) + 1
			}
			if num != want {
				continue
			}
		}
		if n.args[1] != nil {
			ok, err := r.matchKeys(f, n, []string{r.decodeHeader(hdr[occ[k]].Value)}, n.args[1])
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		del = append(del, num)
	}
	if len(del) == 0 {
		return nil
	}
	if err := r.editable(f, n); err != nil {
		return err
	}
	drop := map[int]bool{}
	for _, d := range del {
		drop[occ[d-1]] = true
	}
	var out []HeaderField
	for i, h := range r.hdr {
		if !drop[i] {
			out = append(out, h)
		}
	}
	if out == nil {
		out = []HeaderField{}
	}
	r.setHeader(out)
	r.res.HeaderEdits = append(r.res.HeaderEdits, HeaderEdit{Name: name, Delete: del})
	return nil
}

func (r *run) vacation(f *frame, n *node) error {
	if err := r.conflict(f, n); err != nil {
		return err
	}
	if a := r.find(ActVacation); a != nil {
		return r.fail(f, n.pos, ErrActionConflict, "only one vacation is allowed (the first is at line %d)", a.Pos.Line)
	}
	if r.vacDone {
		return r.fail(f, n.pos, ErrActionConflict, "only one vacation is allowed")
	}
	r.vacDone = true
	reason, err := r.str(f, n, n.args[0].strs[0])
	if err != nil {
		return err
	}
	subject, _, err := r.tagString(f, n, "subject")
	if err != nil {
		return err
	}
	from, hasFrom, err := r.tagString(f, n, "from")
	if err != nil {
		return err
	}
	if hasFrom {
		if _, perr := parseMailbox(from); perr != nil {
			return r.fail(f, n.pos, ErrInvalidArgument, "vacation :from: invalid address %q", from)
		}
	}
	addrs, err := r.strs(f, n, n.tags["addresses"])
	if err != nil {
		return err
	}
	handle, hasHandle, err := r.tagString(f, n, "handle")
	if err != nil {
		return err
	}
	period := r.opts.VacationDefaultPeriod
	if d, ok := n.tagNum("days"); ok {
		period = time.Duration(d) * 24 * time.Hour
	}
	if s, ok := n.tagNum("seconds"); ok {
		period = time.Duration(s) * time.Second
	}
	period = min(max(period, r.opts.VacationMinPeriod), r.opts.VacationMaxPeriod)
	env := r.env.Envelope
	user := env.To
	mine := make([]string, 0, 2+len(addrs)+len(r.env.UserAddresses))
	mine = append(mine, env.To, env.OrigTo)
	for _, list := range [2][]string{addrs, r.env.UserAddresses} {
		for _, a := range list {
			// ":addresses" may carry display names ("Me <me@example.org>").
			if m, err := parseMailbox(a); err == nil {
				a = m
			}
			mine = append(mine, a)
		}
	}
	if ok, _ := VacationAllowed(r.currentHeader(), env.From, mine); !ok {
		return nil
	}
	if !hasHandle {
		handle = n.vacHandle
		if handle == "" {
			handle = vacationHandle(reason, subject, from, n.has("mime"))
		}
	}
	key := "vacation\x00" + handle + "\x00" + strings.ToLower(env.From)
	if r.env.Tracker != nil {
		seen, err := r.env.Tracker.Seen(r.ctx, key, period)
		if err != nil {
			return r.fail(f, n.pos, err, "vacation: %v", err)
		}
		if seen {
			return nil
		}
	}
	if !hasFrom {
		from = user
	}
	if subject == "" {
		orig := ""
		if v := r.fields("Subject"); len(v) > 0 {
			orig = r.decodeHeader(v[0])
		}
		subject = "Auto: " + orig
	}
	var msgID, refs string
	if v := r.fields("Message-ID"); len(v) > 0 {
		msgID = unfold(v[0])
	}
	if v := r.fields("References"); len(v) > 0 {
		refs = unfold(v[0])
	}
	if msgID != "" {
		refs = strings.TrimSpace(refs + " " + msgID)
	}
	return r.add(f, n, Action{Kind: ActVacation, Vacation: &Vacation{
		To: env.From, From: from, Subject: subject, Reason: reason, Mime: n.has("mime"),
		Handle: handle, Period: period, InReplyTo: msgID, References: refs, TrackKey: key,
	}})
}

// vacationHandle is the handle of a vacation without :handle: RFC 5230
// section 4.2, replies that differ in their text are tracked apart.
func vacationHandle(reason, subject, from string, mime bool) string {
	h := sha256.Sum256([]byte(reason + "\x00" + subject + "\x00" + from + "\x00" + strconv.FormatBool(mime)))
	return hex.EncodeToString(h[:8])
}

// sameAddress compares addr-specs: the local part exactly (RFC 5321
// section 2.4), the domain without case, as Pigeonhole does.
func sameAddress(a, b string) bool {
	ia, ib := strings.LastIndexByte(a, '@'), strings.LastIndexByte(b, '@')
	if ia < 0 || ib < 0 {
		return a == b
	}
	return a[:ia] == b[:ib] && strings.EqualFold(a[ia:], b[ib:])
}
