package delivery

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/text/secure/precis"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
)

// table is a validated, compiled Config. It is immutable once built, so
// transactions keep using the table they started with across a reload.
type table struct {
	cfg         Config
	special     map[string]bool    // special folders, lower-cased, without the dot
	domains     map[string]*domain // by lower-cased name
	postmaster  protocol.Address
	explicitPM  bool
	nextRoute   int
	maildir     *maildirTarget // the one maildir target, shared by every maildir route
	remote      *remoteTarget  // the one remote LMTP target (remote.go), shared by every LMTP route and forward
	targets     []Target       // every target the routes use, each once
	usesMaildir bool
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

// route is a compiled Route: the target that delivers, and for a maildir
// route the template that names the mailbox at RCPT time.
type route struct {
	target Target
	tmpl   *maildir.Template // maildir route
	lmtp   string            // remote LMTP route: the server's address
}

// compile validates cfg and builds its table, collecting every problem as
// a *ConfigError.
func compile(cfg *Config) (*table, error) {
	t := &table{cfg: *cfg, domains: make(map[string]*domain), special: map[string]bool{"inbox": true}}
	var errs []error
	fail := func(k []string, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: k, Err: fmt.Errorf(format, args...)})
	}
	failErr := func(k []string, err error) { errs = append(errs, &ConfigError{Key: k, Err: err}) }
	special := cfg.Maildir.SpecialFolders
	if special == nil {
		special = DefaultSpecialFolders
	}
	for i, f := range special {
		if f == "" || strings.ContainsAny(f, "./\\") {
			fail(key("Maildir", "SpecialFolders", i), "special folder %q: want a top-level folder name, without dots or slashes", f)
			continue
		}
		t.special[strings.ToLower(f)] = true
	}

	if len(cfg.Domains) == 0 {
		failErr(key("Domains"), ErrNoDomains)
	}
	if err := checkDelimiter(cfg.DetailDelimiter); err != nil {
		failErr(key("DetailDelimiter"), err)
	}
	switch cfg.DeliveredTo {
	case "", DeliveredToSingle, DeliveredToAlways, DeliveredToNever:
	default:
		fail(key("DeliveredTo"), "%q is not one of %q, %q, %q", cfg.DeliveredTo, DeliveredToSingle, DeliveredToAlways, DeliveredToNever)
	}
	tmplSrc := cfg.Maildir.Template
	if tmplSrc == "" {
		tmplSrc = DefaultTemplate
	}
	defTmpl, err := maildir.ParseTemplate(tmplSrc)
	if err != nil {
		fail(key("Maildir", "Template"), "maildir template: %v", err)
	}
	if cfg.Spool.Dir != "" {
		if err := checkAbs("spool dir", cfg.Spool.Dir); err != nil {
			failErr(key("Spool", "Dir"), err)
		}
	}
	if cfg.Maildir.MaxMessageBytes < 0 {
		fail(key("Maildir", "MaxMessageBytes"), "maildir max message bytes %d is negative", cfg.Maildir.MaxMessageBytes)
	}
	uid, gid := compileOwner(cfg.Maildir, fail)
	t.maildir = &maildirTarget{root: cfg.Maildir.Root, store: cfg.storeKey(uid, gid)}
	t.remote = &remoteTarget{routes: make(map[string]LMTP), forward: cfg.Forward}
	t.targets = append(t.targets, t.remote) // unused unless a route or a record names a server
	cfg.Forward.validate(key("Forward"), false, fail)
	usesMaildir := false
	compileRoute := func(k []string, where string, r Route, inherit *route) *route {
		switch {
		case r.IsZero() && inherit != nil:
			return inherit
		case r.Pipe != nil && r.Maildir != "":
			fail(k, "a route has either maildir or pipe, not both")
			return nil
		case r.Target != nil && (r.Pipe != nil || r.Maildir != ""):
			fail(k, "a route with a target has neither maildir nor pipe")
			return nil
		case r.LMTP != nil && (r.Pipe != nil || r.Maildir != "" || r.Target != nil):
			fail(k, "a route with lmtp has neither maildir, pipe nor a target")
			return nil
		case r.LMTP != nil:
			n := len(errs)
			r.LMTP.validate(key(k, "=lmtp"), true, fail)
			if len(errs) > n {
				return nil
			}
			if prev, ok := t.remote.routes[r.LMTP.Address]; ok && prev != *r.LMTP {
				fail(key(k, "=lmtp"), "%s: server %s is named elsewhere with other settings; one server has one set of settings", where, r.LMTP.Address)
				return nil
			}
			t.remote.routes[r.LMTP.Address] = *r.LMTP
			return &route{target: t.remote, lmtp: r.LMTP.Address}
		case r.Target != nil:
			if !slices.Contains(t.targets, r.Target) {
				t.targets = append(t.targets, r.Target)
			}
			return &route{target: r.Target}
		case r.Pipe != nil:
			cmd := r.Pipe.Command
			if err := cmd.Validate(); err != nil {
				failErr(key(k, "Pipe"), err)
			}
			t.nextRoute++
			desc := ""
			if len(cmd.Argv) > 0 {
				desc = cmd.Argv[0]
			}
			if r.Pipe.MaxProcesses < 0 {
				fail(key(k, "Pipe", "MaxProcesses"), "%s: pipe: max processes %d is negative", where, r.Pipe.MaxProcesses)
			}
			if r.Pipe.MaxWait < 0 {
				fail(key(k, "Pipe", "MaxWait"), "%s: pipe: max wait %v is negative", where, r.Pipe.MaxWait)
			}
			pt := &pipeTarget{id: t.nextRoute, cmd: &cmd, perMessage: r.Pipe.PerMessage, desc: desc,
				where: where, max: r.Pipe.MaxProcesses, wait: r.Pipe.MaxWait}
			t.targets = append(t.targets, pt)
			return &route{target: pt}
		}
		usesMaildir = true
		tm := defTmpl
		if r.Maildir != "" {
			if tm, err = maildir.ParseTemplate(r.Maildir); err != nil {
				fail(key(k, "Maildir"), "%s: %v", where, err)
			}
		}
		if tm == nil {
			return nil
		}
		t.nextRoute++ // numbered as pipe routes are, for the dedup keys of old journals
		return &route{target: t.maildir, tmpl: tm}
	}

	// Whether anything delivers to a maildir is read from the routes as
	// written, also those of domains and users with problems of their
	// own, so that a missing root is reported together with them.
	for _, dc := range cfg.Domains {
		if dc.Route.Maildir != "" || dc.Route.Pipe == nil && dc.Route.Target == nil && dc.Route.LMTP == nil {
			usesMaildir = true
		}
		for _, u := range dc.Users {
			if u.Route.Maildir != "" {
				usesMaildir = true
			}
		}
	}

	for i := range cfg.Domains {
		dc := &cfg.Domains[i]
		dk := key("Domains", i)
		if dc.Name == "" {
			failErr(key(dk, "Name"), errRequired)
			continue
		}
		if err := checkName("domain name", dc.Name); err != nil {
			fail(key(dk, "Name"), "domain %d: %v", i+1, err)
			continue
		}
		name := strings.ToLower(dc.Name)
		if t.domains[name] != nil {
			fail(dk, "domain %s listed twice", dc.Name)
			continue
		}
		d := &domain{name: name, anyUser: dc.AnyUser, utf8: dc.UTF8LocalParts, users: make(map[string]*user), aliases: make(map[string][]aliasTarget)}
		d.route = compileRoute(key(dk, "Route"), "domain "+name, dc.Route, nil)
		for j, u := range dc.Users {
			uk := key(dk, "Users", j)
			if u.Name == "" {
				failErr(key(uk, "Name"), errRequired)
				continue
			}
			if err := checkName("user name", u.Name); err != nil {
				fail(key(uk, "Name"), "domain %s: %v", name, err)
				continue
			}
			k := cfg.fold(u.Name)
			if d.users[k] != nil {
				fail(key(uk, "Name"), "domain %s: user %s listed twice", name, u.Name)
				continue
			}
			create := cfg.Maildir.CreateFolders
			if u.CreateFolders != nil {
				create = *u.CreateFolders
			}
			d.users[k] = &user{name: u.Name, route: compileRoute(key(uk, "Route"), "user "+u.Name+"@"+name, u.Route, d.route), createFolders: create}
		}
		for _, a := range sortedKeys(dc.Aliases) {
			ak := key(dk, "Aliases", "="+a)
			if err := checkName("alias", a); err != nil {
				fail(ak, "domain %s: %v", name, err)
				continue
			}
			k := cfg.fold(a)
			if d.users[k] != nil {
				fail(ak, "domain %s: alias %s is also a user, so it would never be used", name, a)
			}
			if _, dup := d.aliases[k]; dup {
				fail(ak, "domain %s: alias %s listed twice", name, a)
			}
			d.aliases[k] = nil // targets parsed below, once all domains are known
		}
		if dc.AnyUser && len(dc.CatchAll) > 0 {
			fail(key(dk, "CatchAll"), "domain %s: catch-all has no effect with any-user", name)
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
		dk := key("Domains", i)
		for _, a := range sortedKeys(dc.Aliases) {
			targets := dc.Aliases[a]
			k := cfg.fold(a)
			if _, ok := d.aliases[k]; !ok {
				continue
			}
			ak := key(dk, "Aliases", "="+a)
			if len(targets) == 0 {
				fail(ak, "domain %s: alias %s has no targets", d.name, a)
			}
			for _, spec := range targets {
				at, err := t.parseTarget(spec, d.name)
				if err != nil {
					fail(ak, "domain %s: alias %s: %v", d.name, a, err)
					continue
				}
				d.aliases[k] = append(d.aliases[k], at)
			}
		}
		for _, spec := range dc.CatchAll {
			at, err := t.parseTarget(spec, d.name)
			if err != nil {
				fail(key(dk, "CatchAll"), "domain %s: catch-all: %v", d.name, err)
				continue
			}
			d.catchAll = append(d.catchAll, at)
		}
	}
	if usesMaildir {
		t.usesMaildir = true
		t.targets = append([]Target{t.maildir}, t.targets...)
		if cfg.Maildir.Root == "" {
			fail(key("Maildir", "Root"), "required: a domain or user delivers to maildir")
		} else if err := checkAbs("maildir root", cfg.Maildir.Root); err != nil {
			failErr(key("Maildir", "Root"), err)
		}
	}
	if cfg.Dedup.Enabled {
		if cfg.Dedup.Path == "" {
			fail(key("Dedup", "Path"), "required when dedup is enabled")
		} else if err := checkAbs("dedup journal path", cfg.Dedup.Path); err != nil {
			failErr(key("Dedup", "Path"), err)
		}
	}
	cfg.Sieve.check(fail)
	if cfg.Dedup.Window < 0 {
		fail(key("Dedup", "Window"), "dedup window %v is negative", cfg.Dedup.Window)
	}
	qp, qerrs := t.compileQuota(cfg) // quota.go
	t.maildir.quota, errs = qp, append(errs, qerrs...)
	if cfg.Postmaster != "" {
		local, dom, ok := strings.Cut(cfg.Postmaster, "@")
		if !ok || local == "" || dom == "" {
			fail(key("Postmaster"), "postmaster %q is not an address local@domain", cfg.Postmaster)
		} else {
			t.postmaster = protocol.Address{LocalPart: local, Domain: dom}
			t.explicitPM = true
			if len(errs) == 0 {
				if _, err := t.lookup(context.Background(), t.postmaster, protocol.LMTP, nil); err != nil {
					fail(key("Postmaster"), "postmaster %s does not route: %v", cfg.Postmaster, err)
				}
			}
		}
	} else if len(cfg.Domains) > 0 {
		t.postmaster = protocol.Address{LocalPart: "postmaster", Domain: cfg.Domains[0].Name}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
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
	// ErrAliasLoop: a directory's aliases lead back to an address on
	// their own chain (X.4.6 routing loop detected, permanent: the
	// directory answered).
	ErrAliasLoop = protocol.NewError(protocol.CodeTransactionFailed, protocol.ECPermLoop, "Alias loop detected")
	// ErrAliasDepth: a directory's aliases nest more than
	// directory.MaxAliasDepth levels (X.4.6, treated as a loop).
	ErrAliasDepth = protocol.NewError(protocol.CodeTransactionFailed, protocol.ECPermLoop, "Alias nesting too deep")
)

// warnings returns what is wrong with a valid configuration without
// making it unusable.
func (t *table) warnings() []string {
	var w []string
	if t.usesMaildir {
		w = append(w, ownerWarnings(t.cfg.Maildir)...)
	}
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
// Lookup, an alias (user+detail, then user), any-user, the @domain
// catch-all. The bare "Postmaster" resolves as t.postmaster.
func (t *table) lookup(ctx context.Context, a protocol.Address, proto protocol.Protocol, ext Lookup) ([]Destination, error) {
	return t.lookupOpt(ctx, a, proto, ext, true)
}

// lookupOpt is lookup; dirAliases false skips the directory's aliases,
// for the final recipients of an expansion (already expanded).
func (t *table) lookupOpt(ctx context.Context, a protocol.Address, proto protocol.Protocol, ext Lookup, dirAliases bool) ([]Destination, error) {
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
		return t.one(d, u.name, "", addr, u.route, u.createFolders, nil)
	}
	if hasDetail {
		if u := d.users[t.cfg.fold(base)]; u != nil {
			return t.one(d, u.name, detail, addr, u.route, u.createFolders, nil)
		}
	}
	if ext != nil {
		k := t.cfg.fold(base)
		key := k + "@" + d.name // the directory's address of the user, its alias's too
		if al, ok := ext.(AliasLookup); ok && dirAliases {
			if ds, ok, err := t.dirAlias(ctx, key, detail, proto, ext, al); ok || err != nil {
				return ds, err
			}
		}
		rec, err := ext.LookupUser(ctx, directory.Key{Address: key, LocalPart: k, Domain: d.name, Detail: detail})
		switch {
		case err == nil:
			return t.one(d, k, detail, addr, d.route, t.cfg.Maildir.CreateFolders, &rec)
		case !errors.Is(err, directory.ErrNotFound):
			return nil, ErrLookupFailed.Wrap(err)
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
		return t.one(d, name, detail, addr, d.route, t.cfg.Maildir.CreateFolders, nil)
	}
	if len(d.catchAll) > 0 {
		return t.expand(d.catchAll, "")
	}
	// RFC 5321 section 4.5.1: postmaster at every domain served must be
	// accepted; one the domain does not route itself goes where the bare
	// Postmaster goes.
	if strings.EqualFold(local, "postmaster") && t.postmaster.Domain != "" && !strings.EqualFold(a.Domain, t.postmaster.Domain) {
		return t.lookupOpt(ctx, t.postmaster, proto, ext, dirAliases)
	}
	return nil, ErrUnknownUser
}

// dirAlias expands start (the folded user@domain of a served domain)
// through the directory's aliases (directory.ExpandAliases: rows or
// comma-separated values, recursively, a self-alias meaning the mailbox
// itself). ok false means the address is no alias, or only aliases
// itself (Postfix Admin's alice → alice): routing goes on to the
// directory's user. Each final recipient is routed like a recipient of
// its own, without the directory's aliases, carrying the unmatched
// detail; one outside the served domains is refused (lmtpd does not
// relay).
func (t *table) dirAlias(ctx context.Context, start, detail string, proto protocol.Protocol, ext Lookup, al AliasLookup) ([]Destination, bool, error) {
	k, ok := t.aliasKey(start)
	if !ok {
		return nil, false, nil // ExpandAliases too: an address Route refuses is final
	}
	// Nearly every recipient is no alias, and a domain without a
	// directory answers that at once: one lookup decides it, without the
	// expansion's maps and copies at every RCPT. An alias is expanded
	// with this first answer, not asked again.
	first, err := al.LookupAlias(ctx, k)
	if err == nil && len(first) == 0 {
		err = directory.ErrNotFound // an empty alias aliases nothing, as in ExpandAliases
	}
	switch {
	case errors.Is(err, directory.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, true, ErrLookupFailed.Wrap(err)
	}
	var dir directory.Directory = &aliasDir{al: al, first: k.Address, targets: first}
	final, err := directory.ExpandAliases(ctx, start, directory.ExpandOptions{
		Route: func(addr string) (directory.Directory, directory.Key, bool) {
			k, ok := t.aliasKey(addr)
			return dir, k, ok
		},
	})
	switch {
	case errors.Is(err, directory.ErrAliasLoop):
		return nil, true, ErrAliasLoop.Wrap(err)
	case errors.Is(err, directory.ErrAliasDepth):
		return nil, true, ErrAliasDepth.Wrap(err)
	case err != nil:
		return nil, true, ErrLookupFailed.Wrap(err)
	}
	if len(final) == 1 && final[0] == start {
		return nil, false, nil
	}
	var out []Destination
	for _, f := range final {
		local, dom, _ := strings.Cut(f, "@")
		if t.domains[strings.ToLower(dom)] == nil {
			return nil, true, ErrDomainNotServed.Wrap(fmt.Errorf("delivery: alias %s leads to %s, a domain not served here", start, f))
		}
		if _, _, has := splitDetail(local, t.cfg.DetailDelimiter); !has && detail != "" {
			local += string(t.cfg.DetailDelimiter[0]) + detail
		}
		ds, err := t.lookupOpt(ctx, protocol.Address{LocalPart: local, Domain: dom}, proto, ext, false)
		if err != nil {
			return nil, true, err
		}
		out = append(out, ds...)
	}
	return out, true, nil
}

// aliasKey is the directory key alias expansion looks addr up with; ok
// false means addr is outside the served domains (or has no local part):
// a final recipient. An addr already folded and lower-cased is the key's
// Address as it is, not a copy.
func (t *table) aliasKey(addr string) (directory.Key, bool) {
	l, dom, ok := strings.Cut(addr, "@")
	if !ok || l == "" {
		return directory.Key{}, false
	}
	ld := strings.ToLower(dom)
	if t.domains[ld] == nil {
		return directory.Key{}, false
	}
	local := t.cfg.fold(l)
	if local != l || ld != dom {
		addr = local + "@" + ld
	}
	u, det, _ := splitDetail(local, t.cfg.DetailDelimiter)
	return directory.Key{Address: addr, LocalPart: u, Domain: ld, Detail: det}, true
}

// aliasDir shows an AliasLookup to directory.ExpandAliases, which asks
// only LookupAlias; the other methods answer "nothing" and are never
// called. The targets of the address first, already looked up by
// dirAlias, are answered without asking al again.
type aliasDir struct {
	al      AliasLookup
	first   string
	targets []string
}

func (a aliasDir) Name() string { return "lookup" }
func (a aliasDir) LookupUser(context.Context, directory.Key) (directory.Record, error) {
	return directory.Record{}, directory.ErrNotFound
}
func (a aliasDir) LookupAlias(ctx context.Context, k directory.Key) ([]string, error) {
	if k.Address == a.first {
		return a.targets, nil
	}
	return a.al.LookupAlias(ctx, k)
}
func (a aliasDir) LookupPassword(context.Context, directory.Key) (string, error) {
	return "", directory.ErrNotFound
}
func (a aliasDir) Check(context.Context) error { return nil }
func (a aliasDir) Close() error                { return nil }

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
func (t *table) expand(ats []aliasTarget, detail string) ([]Destination, error) {
	var out []Destination
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
		var tg []Destination
		var err error
		if u := d.users[t.cfg.fold(at.local)]; u != nil {
			tg, err = t.one(d, u.name, det, addr, u.route, u.createFolders, nil)
		} else {
			tg, err = t.one(d, t.cfg.fold(at.local), det, addr, d.route, t.cfg.Maildir.CreateFolders, nil)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, tg...)
	}
	return out, nil
}

// one builds the destination of a user of d; create says whether the
// user's detail folder may be created; rec, if not nil, is what the Lookup
// returned for the user.
func (t *table) one(d *domain, userName, detail, addr string, r *route, create bool, rec *directory.Record) ([]Destination, error) {
	out := []Destination{{Target: r.target, Address: addr, Resolution: Resolution{User: userName, Detail: detail, Domain: d.name}}}
	dst := &out[0]
	dst.UID, dst.GID = -1, -1 // no record: no owner of its own
	if rec != nil {
		dst.Record = *rec
	}
	if r.lmtp != "" && dst.Forward == "" {
		dst.Forward = r.lmtp
	}
	if dst.Forward != "" {
		// The proxy case: the record's server (or the route's) holds the
		// mailbox; it resolves mailbox and folder itself.
		dst.Target = t.remote
		return out, nil
	}
	if r.tmpl != nil {
		if dst.Mailbox == "" {
			lp := userName
			if detail != "" {
				lp += string(t.cfg.DetailDelimiter[0]) + t.cfg.fold(detail)
			}
			p, err := r.tmpl.Expand(maildir.Vars{Domain: d.name, User: userName, LocalPart: lp, Detail: t.cfg.fold(detail)})
			if err != nil {
				return nil, ErrBadMailboxName.Wrap(err)
			}
			dst.Mailbox = p
		} else if dst.Trusted && filepath.IsAbs(dst.Mailbox) {
			// A trusted directory (the system's accounts) names the
			// maildir in the user's home; it stays confined there.
			if err := checkHomeMailbox(&dst.Record); err != nil {
				return nil, maildir.ReplyMisconfigured.Wrap(fmt.Errorf("delivery: %s@%s: %w", userName, d.name, err))
			}
		} else if !filepath.IsLocal(dst.Mailbox) {
			// No directory field names a path outside the maildir root;
			// an administrator can fix the entry, so try again later.
			return nil, maildir.ReplyMisconfigured.Wrap(fmt.Errorf("delivery: the mailbox %q of %s@%s is not a relative path under the maildir root", dst.Mailbox, userName, d.name))
		} else {
			dst.Mailbox = filepath.ToSlash(filepath.Clean(dst.Mailbox))
		}
		if t.cfg.Maildir.DetailFolders && detail != "" && !r.tmpl.UsesDetail() {
			if f, ok := maildir.FolderName(detail); ok && !t.isSpecial(f) {
				dst.Folder = f
				dst.CreateFolder = create
			}
		}
	}
	return out, nil
}
