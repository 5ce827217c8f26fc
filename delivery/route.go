package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/text/secure/precis"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/protocol"
)

// table is a validated, compiled Config. It is immutable once built, so
// transactions keep using the table they started with across a reload.
type table struct {
	cfg        Config
	special    map[string]bool    // special folders, lower-cased, without the dot
	domains    map[string]*domain // by lower-cased name
	postmaster protocol.Address
	explicitPM bool
	nextRoute  int
}

type domain struct {
	name     string // lower-cased
	anyUser  bool
	utf8     bool             // any-user accepts PRECIS-canonical non-ASCII names
	users    map[string]*user // by folded name
	aliases  map[string][]aliasTarget
	catchAll []aliasTarget
	route    *route
}

type user struct {
	name          string // as configured
	route         *route
	createFolders bool // detail folders may be created
}

// aliasTarget is a parsed alias or catch-all target.
type aliasTarget struct {
	local, detail, domain string // domain lower-cased
	spec                  string // as configured
}

// route is a compiled Route.
type route struct {
	id         int
	tmpl       *maildir.Template // maildir route
	cmd        *pipe.Command     // pipe route
	perMessage bool
	desc       string        // for the log: template or argv[0]
	where      string        // "domain D" or "domain D user U", for the limiter
	limiter    *pipe.Limiter // pipe route: bounds concurrent runs
}

// routes returns every compiled route of the table, each once.
func (t *table) routes() []*route {
	seen := make(map[*route]bool)
	var out []*route
	add := func(r *route) {
		if r != nil && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	for _, d := range t.domains {
		add(d.route)
		for _, u := range d.users {
			add(u.route)
		}
	}
	return out
}

func (r *route) backend() string {
	if r.cmd != nil {
		return "pipe"
	}
	return "maildir"
}

// compile validates cfg and builds its table, collecting every problem.
func compile(cfg *Config) (*table, error) {
	t := &table{cfg: *cfg, domains: make(map[string]*domain), special: map[string]bool{"inbox": true}}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	special := cfg.Maildir.SpecialFolders
	if special == nil {
		special = DefaultSpecialFolders
	}
	for _, f := range special {
		if f == "" || strings.ContainsAny(f, "./\\") {
			fail("special folder %q: want a top-level folder name, without dots or slashes", f)
			continue
		}
		t.special[strings.ToLower(f)] = true
	}

	if len(cfg.Domains) == 0 {
		errs = append(errs, errNoDomains)
	}
	if err := checkDelimiter(cfg.DetailDelimiter); err != nil {
		errs = append(errs, err)
	}
	switch cfg.DeliveredTo {
	case "", DeliveredToSingle, DeliveredToAlways, DeliveredToNever:
	default:
		fail("delivered_to %q: want %q, %q or %q", cfg.DeliveredTo, DeliveredToSingle, DeliveredToAlways, DeliveredToNever)
	}
	tmplSrc := cfg.Maildir.Template
	if tmplSrc == "" {
		tmplSrc = DefaultTemplate
	}
	defTmpl, err := maildir.ParseTemplate(tmplSrc)
	if err != nil {
		fail("maildir template: %v", err)
	}
	if cfg.Spool.Dir != "" {
		if err := checkAbs("spool dir", cfg.Spool.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Maildir.MaxMessageBytes < 0 {
		fail("maildir max message bytes %d is negative", cfg.Maildir.MaxMessageBytes)
	}
	usesMaildir := false
	compileRoute := func(where string, r Route, inherit *route) *route {
		switch {
		case r.IsZero() && inherit != nil:
			return inherit
		case r.Pipe != nil && r.Maildir != "":
			fail("%s: route has both a maildir and a pipe", where)
			return nil
		case r.Pipe != nil:
			cmd := r.Pipe.Command
			if err := cmd.Validate(); err != nil {
				fail("%s: pipe: %v", where, err)
			}
			t.nextRoute++
			desc := ""
			if len(cmd.Argv) > 0 {
				desc = cmd.Argv[0]
			}
			if r.Pipe.MaxProcesses < 0 {
				fail("%s: pipe: max processes %d is negative", where, r.Pipe.MaxProcesses)
			}
			if r.Pipe.MaxWait < 0 {
				fail("%s: pipe: max wait %v is negative", where, r.Pipe.MaxWait)
			}
			return &route{id: t.nextRoute, cmd: &cmd, perMessage: r.Pipe.PerMessage, desc: desc,
				where: where, limiter: pipe.NewLimiter(r.Pipe.MaxProcesses, r.Pipe.MaxWait)}
		}
		usesMaildir = true
		tm := defTmpl
		if r.Maildir != "" {
			if tm, err = maildir.ParseTemplate(r.Maildir); err != nil {
				fail("%s: %v", where, err)
			}
		}
		if tm == nil {
			return nil
		}
		t.nextRoute++
		return &route{id: t.nextRoute, tmpl: tm, desc: tm.String()}
	}

	for i := range cfg.Domains {
		dc := &cfg.Domains[i]
		if err := checkName("domain name", dc.Name); err != nil {
			fail("domain %d: %v", i+1, err)
			continue
		}
		name := strings.ToLower(dc.Name)
		if t.domains[name] != nil {
			fail("domain %s listed twice", dc.Name)
			continue
		}
		d := &domain{name: name, anyUser: dc.AnyUser, utf8: dc.UTF8LocalParts, users: make(map[string]*user), aliases: make(map[string][]aliasTarget)}
		d.route = compileRoute("domain "+name, dc.Route, nil)
		for _, u := range dc.Users {
			if err := checkName("user name", u.Name); err != nil {
				fail("domain %s: %v", name, err)
				continue
			}
			k := cfg.fold(u.Name)
			if d.users[k] != nil {
				fail("domain %s: user %s listed twice", name, u.Name)
				continue
			}
			create := cfg.Maildir.CreateFolders
			if u.CreateFolders != nil {
				create = *u.CreateFolders
			}
			d.users[k] = &user{name: u.Name, route: compileRoute("user "+u.Name+"@"+name, u.Route, d.route), createFolders: create}
		}
		for a := range dc.Aliases {
			if err := checkName("alias", a); err != nil {
				fail("domain %s: %v", name, err)
				continue
			}
			k := cfg.fold(a)
			if d.users[k] != nil {
				fail("domain %s: alias %s is also a user, so it would never be used", name, a)
			}
			if _, dup := d.aliases[k]; dup {
				fail("domain %s: alias %s listed twice", name, a)
			}
			d.aliases[k] = nil // targets parsed below, once all domains are known
		}
		if dc.AnyUser && len(dc.CatchAll) > 0 {
			fail("domain %s: catch-all has no effect with any-user", name)
		}
		t.domains[name] = d
	}
	// Alias and catch-all targets may name users of any served domain.
	for i := range cfg.Domains {
		dc := &cfg.Domains[i]
		d := t.domains[strings.ToLower(dc.Name)]
		if d == nil {
			continue
		}
		for a, targets := range dc.Aliases {
			k := cfg.fold(a)
			if _, ok := d.aliases[k]; !ok {
				continue
			}
			if len(targets) == 0 {
				fail("domain %s: alias %s has no targets", d.name, a)
			}
			for _, spec := range targets {
				at, err := t.parseTarget(spec, d.name)
				if err != nil {
					fail("domain %s: alias %s: %v", d.name, a, err)
					continue
				}
				d.aliases[k] = append(d.aliases[k], at)
			}
		}
		for _, spec := range dc.CatchAll {
			at, err := t.parseTarget(spec, d.name)
			if err != nil {
				fail("domain %s: catch-all: %v", d.name, err)
				continue
			}
			d.catchAll = append(d.catchAll, at)
		}
	}
	if usesMaildir {
		if cfg.Maildir.Root == "" {
			fail("maildir root is required for maildir delivery")
		} else if err := checkAbs("maildir root", cfg.Maildir.Root); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Dedup.Enabled {
		if err := checkAbs("dedup journal path", cfg.Dedup.Path); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Dedup.Window < 0 {
		fail("dedup window %v is negative", cfg.Dedup.Window)
	}
	if cfg.Postmaster != "" {
		local, dom, ok := strings.Cut(cfg.Postmaster, "@")
		if !ok || local == "" || dom == "" {
			fail("postmaster %q is not an address local@domain", cfg.Postmaster)
		} else {
			t.postmaster = protocol.Address{LocalPart: local, Domain: dom}
			t.explicitPM = true
			if len(errs) == 0 {
				if _, err := t.lookup(context.Background(), t.postmaster, protocol.LMTP, nil); err != nil {
					fail("postmaster %s does not route: %v", cfg.Postmaster, err)
				}
			}
		}
	} else if len(cfg.Domains) > 0 {
		t.postmaster = protocol.Address{LocalPart: "postmaster", Domain: cfg.Domains[0].Name}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("delivery config: %w", errors.Join(errs...))
	}
	return t, nil
}

// parseTarget parses an alias or catch-all target and checks that it
// names a user.
func (t *table) parseTarget(spec, defDomain string) (aliasTarget, error) {
	local, dom, hasDomain := strings.Cut(spec, "@")
	if !hasDomain {
		dom = defDomain
	}
	if err := checkName("target", local); err != nil {
		return aliasTarget{}, err
	}
	at := aliasTarget{local: local, domain: strings.ToLower(dom), spec: spec}
	if u, d, ok := splitDetail(local, t.cfg.DetailDelimiter); ok {
		at.local, at.detail = u, d
	}
	d := t.domains[at.domain]
	if d == nil {
		return aliasTarget{}, fmt.Errorf("target %s: domain %s is not served", spec, dom)
	}
	if d.users[t.cfg.fold(at.local)] == nil && d.users[t.cfg.fold(local)] == nil && !d.anyUser {
		return aliasTarget{}, fmt.Errorf("target %s is not a user (aliases do not chain)", spec)
	}
	return at, nil
}

// UserLookup is an optional source of users beyond the configuration,
// such as a database. It is consulted after the configured users and
// before aliases, for the local part without its detail.
type UserLookup interface {
	// LookupUser reports whether user exists in domain (lower-cased). An
	// error means the answer is not known now: the recipient gets 451
	// 4.3.0, never a permanent refusal.
	LookupUser(ctx context.Context, domain, user string) (bool, error)
}

// target is one final destination of a recipient.
type target struct {
	route   *route
	user    string // canonical user name
	detail  string
	domain  string // lower-cased
	addr    string // the address delivered to: Delivered-To, pipe RECIPIENT
	mailbox maildir.Mailbox
}

// key identifies the destination, so that recipients reaching the same
// mailbox or command invocation are delivered once.
func (tg *target) key() string {
	if tg.route.cmd != nil {
		return fmt.Sprintf("p%d\x00%s", tg.route.id, strings.ToLower(tg.addr))
	}
	return "m" + tg.mailbox.Path + "\x00" + tg.mailbox.Folder
}

// Recipient refusals (RFC 3463 codes).
var (
	// ErrUnknownUser: no user, alias or catch-all matches (X.1.1 bad
	// destination mailbox address).
	ErrUnknownUser = protocol.NewError(protocol.CodeMailboxUnavailable, protocol.ECPermBadDestMailbox, "No such user here")
	// ErrDomainNotServed is the LMTP answer for a domain that is not ours
	// (X.1.2 bad destination system address): the MTA in front of us
	// should not have sent it.
	ErrDomainNotServed = protocol.NewError(protocol.CodeMailboxUnavailable, protocol.ECPermBadDestSystem, "Domain not served here")
	// ErrRelayDenied is the SMTP answer for a domain that is not ours: we
	// are not a relay (X.7.1 delivery not authorized).
	ErrRelayDenied = protocol.NewError(protocol.CodeTransactionFailed, protocol.ECPermNotAuthorized, "Relay access denied")
	// ErrLookupFailed: a user lookup failed for a temporary reason (X.3.0).
	ErrLookupFailed = protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, "Temporary lookup failure, try again later")
	// ErrBadMailboxName: the address cannot be mapped to a maildir path,
	// for instance a local part too long for a file name (X.1.3).
	ErrBadMailboxName = protocol.NewError(protocol.CodeMailboxNameInvalid, protocol.ECPermBadDestSyntax, "Mailbox name not allowed")
	// ErrNonASCIILocalPart: an any-user domain without UTF8LocalParts
	// got a non-ASCII user name: 553 5.6.7, "non-ASCII addresses not
	// permitted for that sender/recipient", the code RFC 6531 registers
	// for RCPT.
	ErrNonASCIILocalPart = protocol.NewError(protocol.CodeMailboxNameInvalid, protocol.ECPermNeedsUTF8, "Non-ASCII mailbox names are not accepted here")
	// ErrLoop: the message already carries Delivered-To for this recipient
	// (X.4.6 routing loop detected).
	ErrLoop = protocol.NewError(protocol.CodeTransactionFailed, protocol.ECPermLoop, "Mail loop detected: message already delivered to this recipient")
)

// warnings returns what is wrong with a valid configuration without
// making it unusable.
func (t *table) warnings() []string {
	var w []string
	if !t.explicitPM && t.postmaster.Domain != "" {
		if _, err := t.lookup(context.Background(), t.postmaster, protocol.LMTP, nil); err != nil {
			w = append(w, fmt.Sprintf("%s does not route (%v): RCPT TO:<Postmaster> and postmaster@ every domain are refused, "+
				"which RFC 5321 section 4.5.1 forbids; add a user or an alias postmaster to domain %s, or set postmaster",
				t.postmaster, err, t.postmaster.Domain))
		}
	}
	return w
}

// lookup resolves a recipient to its targets, in the order of Postfix
// virtual(8): user+detail@domain as a user, user@domain, the external
// UserLookup, an alias (user+detail, then user), any-user, the @domain
// catch-all. The bare "Postmaster" resolves as t.postmaster.
func (t *table) lookup(ctx context.Context, a protocol.Address, proto protocol.Protocol, ext UserLookup) ([]target, error) {
	if a.Domain == "" {
		if !strings.EqualFold(a.LocalPart, "postmaster") || t.postmaster.Domain == "" {
			return nil, ErrUnknownUser
		}
		a = t.postmaster
	}
	d := t.domains[strings.ToLower(a.Domain)]
	if d == nil {
		if proto == protocol.LMTP {
			return nil, ErrDomainNotServed
		}
		return nil, ErrRelayDenied
	}
	local := a.DecodedLocalPart()
	base, detail, hasDetail := splitDetail(local, t.cfg.DetailDelimiter)
	addr := a.String()

	if u := d.users[t.cfg.fold(local)]; u != nil {
		return t.one(d, u.name, "", addr, u.route, u.createFolders)
	}
	if hasDetail {
		if u := d.users[t.cfg.fold(base)]; u != nil {
			return t.one(d, u.name, detail, addr, u.route, u.createFolders)
		}
	}
	if ext != nil {
		ok, err := ext.LookupUser(ctx, d.name, t.cfg.fold(base))
		if err != nil {
			return nil, ErrLookupFailed.Wrap(err)
		}
		if ok {
			return t.one(d, t.cfg.fold(base), detail, addr, d.route, t.cfg.Maildir.CreateFolders)
		}
	}
	if ats, ok := d.aliases[t.cfg.fold(local)]; ok {
		return t.expand(ats, "")
	}
	if ats, ok := d.aliases[t.cfg.fold(base)]; ok && hasDetail {
		return t.expand(ats, detail)
	}
	if d.anyUser {
		name, err := t.anyUserName(d, base)
		if err != nil {
			return nil, err
		}
		return t.one(d, name, detail, addr, d.route, t.cfg.Maildir.CreateFolders)
	}
	if len(d.catchAll) > 0 {
		return t.expand(d.catchAll, "")
	}
	// RFC 5321 section 4.5.1: postmaster at every domain served must be
	// accepted; one the domain does not route itself goes where the bare
	// Postmaster goes.
	if strings.EqualFold(local, "postmaster") && t.postmaster.Domain != "" && !strings.EqualFold(a.Domain, t.postmaster.Domain) {
		return t.lookup(ctx, t.postmaster, proto, ext)
	}
	return nil, ErrUnknownUser
}

// isSpecial reports whether a Maildir++ folder (".Trash", ".Trash.old")
// is a special folder or under one: a detail never delivers there.
func (t *table) isSpecial(folder string) bool {
	top, _, _ := strings.Cut(strings.TrimPrefix(folder, "."), ".")
	return t.special[strings.ToLower(top)]
}

// anyUserName returns the mailbox name of user (a local part without its
// detail) in an any-user domain, or the refusal: non-ASCII without
// UTF8LocalParts, or not canonical under PRECIS with it.
func (t *table) anyUserName(d *domain, user string) (string, error) {
	if isASCII(user) {
		return t.cfg.fold(user), nil
	}
	if !d.utf8 {
		return "", ErrNonASCIILocalPart.Wrap(fmt.Errorf("delivery: non-ASCII user %q in any-user domain %s (utf8_local_parts is off)", user, d.name))
	}
	bad := func(why string, err error) error {
		return ErrBadMailboxName.Wrap(fmt.Errorf("delivery: user %q in any-user domain %s: %s: %v", user, d.name, why, err))
	}
	p, err := precis.UsernameCasePreserved.String(user)
	if err != nil {
		return "", bad("not a PRECIS username", err)
	}
	if p != user {
		return "", bad("not in canonical form", fmt.Errorf("PRECIS form is %q", p))
	}
	if t.cfg.CaseSensitive {
		return user, nil
	}
	k, err := precis.UsernameCaseMapped.String(user)
	if err != nil {
		return "", bad("no case-mapped form", err)
	}
	if isASCII(k) {
		return "", bad("folds into an ASCII name", fmt.Errorf("%q", k))
	}
	return k, nil
}

// expand resolves alias targets, passing on an unmatched detail.
func (t *table) expand(ats []aliasTarget, detail string) ([]target, error) {
	var out []target
	for _, at := range ats {
		d := t.domains[at.domain]
		det := at.detail
		if det == "" {
			det = detail
		}
		local := at.local
		if det != "" {
			local += string(t.cfg.DetailDelimiter[0]) + det
		}
		addr := local + "@" + at.domain
		var tg []target
		var err error
		if u := d.users[t.cfg.fold(at.local)]; u != nil {
			tg, err = t.one(d, u.name, det, addr, u.route, u.createFolders)
		} else {
			tg, err = t.one(d, t.cfg.fold(at.local), det, addr, d.route, t.cfg.Maildir.CreateFolders)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, tg...)
	}
	return out, nil
}

// one builds the target for a user of d; create says whether the user's
// detail folder may be created.
func (t *table) one(d *domain, userName, detail, addr string, r *route, create bool) ([]target, error) {
	tg := target{route: r, user: userName, detail: detail, domain: d.name, addr: addr}
	if r.tmpl != nil {
		lp := userName
		if detail != "" {
			lp += string(t.cfg.DetailDelimiter[0]) + t.cfg.fold(detail)
		}
		p, err := r.tmpl.Expand(maildir.Vars{Domain: d.name, User: userName, LocalPart: lp, Detail: t.cfg.fold(detail)})
		if err != nil {
			return nil, ErrBadMailboxName.Wrap(err)
		}
		tg.mailbox.Path = p
		if t.cfg.Maildir.DetailFolders && detail != "" && !r.tmpl.UsesDetail() {
			if f, ok := maildir.FolderName(detail); ok && !t.isSpecial(f) {
				tg.mailbox.Folder = f
				tg.mailbox.CreateFolder = create
			}
		}
	}
	return []target{tg}, nil
}
