package ldap

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/sasl"
)

// Directory is an LDAP directory. It implements directory.Directory and
// directory.Authenticator and is safe for concurrent use.
type Directory struct {
	s    *settings
	pool *pool
	// authSlots bounds the user-bind connections open at once (as many
	// as service connections), so a burst of AUTH cannot open thousands.
	authSlots chan struct{}
}

var (
	_ directory.Directory     = (*Directory)(nil)
	_ directory.Authenticator = (*Directory)(nil)
)

// New checks c and returns a Directory. It does not connect: the first
// lookup (or Check) does, so lmtpd starts while the server is down.
// Errors name the configuration key at fault.
func New(c Config) (*Directory, error) {
	s, err := c.check()
	if err != nil {
		name := c.Name
		if name == "" {
			name = "ldap"
		}
		return nil, fmt.Errorf("directory %s: %w", name, err)
	}
	d := &Directory{s: s, authSlots: make(chan struct{}, s.poolSize)}
	d.pool = newPool(s.poolSize, func(ctx context.Context) (*conn, error) {
		return dialConn(ctx, s, s.bindDN, s.bindPassword)
	})
	return d, nil
}

// Name returns the configured name.
func (d *Directory) Name() string { return d.s.name }

// OpenConns returns the number of service connections open, for metrics.
func (d *Directory) OpenConns() int { return d.pool.open() }

// Close closes the idle connections; lookups after Close fail, and
// connections in use close when their lookup ends.
func (d *Directory) Close() error {
	d.pool.close()
	return nil
}

// errorf wraps err with the directory's name and what was being done.
func (d *Directory) errorf(what string, err error) error {
	return fmt.Errorf("directory %s: %s: %w", d.s.name, what, err)
}

// lookupContext bounds ctx by the configured timeout.
func (d *Directory) lookupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.s.timeout)
}

// withConn runs fn on a pooled service connection. A network failure on a
// connection that had been idle (the server may have restarted since) is
// retried once on a fresh connection, within the same deadline.
func (d *Directory) withConn(ctx context.Context, fn func(l *ldap.Conn) error) error {
	for attempt := 0; ; attempt++ {
		c, err := d.pool.get(ctx)
		if err != nil {
			return err
		}
		ok, err := c.run(ctx, fn)
		if ok {
			d.pool.put(c)
			return err
		}
		d.pool.drop(c)
		if !c.reused || attempt > 0 || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
}

// search runs one subtree search for k with the filter template and
// returns its entries. NoSuchObject or InvalidDNSyntax for a base DN
// built from placeholders means no such entry (the domain's subtree does
// not exist).
//
// A key with a NUL finds nothing, without asking: no address holds one
// (RFC 5321 section 4.1.2), and slapd compares some syntaxes as C
// strings, so the escaped value "alice@example.org\00" would find alice.
func (d *Directory) search(ctx context.Context, k directory.Key, filter template, attrs []string, sizeLimit int) ([]*ldap.Entry, error) {
	if strings.IndexByte(k.Address+k.LocalPart+k.Domain+k.Detail, 0) >= 0 {
		return nil, directory.ErrNotFound
	}
	base := d.s.base.expand(k, escapeDNValue)
	timeLimit := int(d.s.timeout.Seconds() + 0.999)
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		sizeLimit, timeLimit, false, filter.expand(k, escapeFilterValue), attrs, nil)
	var entries []*ldap.Entry
	err := d.withConn(ctx, func(l *ldap.Conn) error {
		res, err := l.Search(req)
		if err != nil {
			return err
		}
		entries = res.Entries
		return nil
	})
	switch {
	case err == nil:
		return entries, nil
	case ldap.IsErrorAnyOf(err, ldap.LDAPResultNoSuchObject, ldap.LDAPResultInvalidDNSyntax) && d.s.base.hasPlaceholders():
		// The key's values name no subtree (or none that can exist: an
		// AUTH login without a domain in "ou={domain},...").
		return nil, directory.ErrNotFound
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
		return nil, errors.New("more entries match than allowed")
	}
	return nil, err
}

// findUser returns the one entry user_filter matches for k, with attrs.
func (d *Directory) findUser(ctx context.Context, k directory.Key, attrs []string) (*ldap.Entry, error) {
	entries, err := d.search(ctx, k, d.s.userFilter, attrs, 2)
	if err != nil {
		return nil, err
	}
	switch len(entries) {
	case 0:
		return nil, directory.ErrNotFound
	case 1:
		return entries[0], nil
	}
	return nil, errors.New("user_filter matches several entries")
}

// LookupUser returns the record of the user k names, with the result
// fields read from the attributes mapped in Config.Attributes.
func (d *Directory) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	ctx, cancel := d.lookupContext(ctx)
	defer cancel()
	e, err := d.findUser(ctx, k, d.s.attrs)
	if errors.Is(err, directory.ErrNotFound) {
		return directory.Record{}, err
	}
	if err != nil {
		return directory.Record{}, d.errorf("user lookup", err)
	}
	fields := map[string]string{}
	for field, attr := range d.s.fields {
		if field == "password" {
			continue
		}
		// Servers spell attribute names as their schema does, whatever
		// case was asked.
		if v := e.GetEqualFoldAttributeValue(attr); v != "" {
			fields[field] = v
		}
	}
	r, err := newRecord(fields, d.s.trusted)
	if err != nil {
		return directory.Record{}, d.errorf("user "+e.DN, err)
	}
	return r, nil
}

// LookupAlias returns the targets of the alias entries alias_filter finds
// for k: every value of alias_attribute of every entry, comma-separated
// values split. No alias_filter, no entry, or entries without targets all
// mean k is not an alias (ErrNotFound).
func (d *Directory) LookupAlias(ctx context.Context, k directory.Key) ([]string, error) {
	if !d.s.hasAliases {
		return nil, directory.ErrNotFound
	}
	ctx, cancel := d.lookupContext(ctx)
	defer cancel()
	entries, err := d.search(ctx, k, d.s.aliasFilter, []string{d.s.aliasAttr}, maxAliasEntries)
	if errors.Is(err, directory.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, d.errorf("alias lookup", err)
	}
	var targets []string
	for _, e := range entries {
		for _, v := range e.GetEqualFoldAttributeValues(d.s.aliasAttr) {
			for t := range strings.SplitSeq(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					targets = append(targets, t)
				}
			}
		}
	}
	if len(targets) == 0 {
		return nil, directory.ErrNotFound
	}
	return targets, nil
}

// LookupPassword returns the value of the attribute mapped to "password"
// (auth = "attribute": default userPassword), as stored: Dovecot's or
// OpenLDAP's "{SCHEME}..." form. A user without one is ErrNotFound. With
// auth = "bind" and no password attribute mapped, passwords cannot be
// read: that is an error, not ErrNotFound.
func (d *Directory) LookupPassword(ctx context.Context, k directory.Key) (string, error) {
	if d.s.passwordAttr == "" {
		return "", fmt.Errorf("directory %s: auth = \"bind\" and no password attribute mapped: passwords are checked by binding", d.s.name)
	}
	ctx, cancel := d.lookupContext(ctx)
	defer cancel()
	e, err := d.findUser(ctx, k, []string{d.s.passwordAttr})
	if errors.Is(err, directory.ErrNotFound) {
		return "", err
	}
	if err != nil {
		return "", d.errorf("password lookup", err)
	}
	v := e.GetEqualFoldAttributeValue(d.s.passwordAttr)
	if v == "" {
		return "", directory.ErrNotFound
	}
	return v, nil
}

// Authenticate checks password for the login k names. With auth =
// "bind" it finds the user's DN on a service connection and binds as it
// on a connection of its own; with auth = "attribute" it verifies the
// stored password (sasl.VerifyPassword). An empty password, or one with a
// NUL, is ErrBadPassword without asking the server: an empty simple bind
// is an unauthenticated bind, which succeeds (RFC 4513 section 5.1.2).
func (d *Directory) Authenticate(ctx context.Context, k directory.Key, password string) error {
	if password == "" || strings.IndexByte(password, 0) >= 0 {
		return directory.ErrBadPassword
	}
	if !d.s.authBind {
		stored, err := d.LookupPassword(ctx, k)
		if err != nil {
			return err
		}
		ok, err := sasl.VerifyPassword(stored, password)
		if err != nil {
			return d.errorf("verifying the stored password", err)
		}
		if !ok {
			return directory.ErrBadPassword
		}
		return nil
	}
	ctx, cancel := d.lookupContext(ctx)
	defer cancel()
	e, err := d.findUser(ctx, k, []string{"1.1"})
	if errors.Is(err, directory.ErrNotFound) {
		return err
	}
	if err != nil {
		return d.errorf("user lookup for bind", err)
	}
	if e.DN == "" {
		return d.errorf("user lookup for bind", errors.New("entry without a DN"))
	}
	select {
	case d.authSlots <- struct{}{}:
		defer func() { <-d.authSlots }()
	case <-ctx.Done():
		return d.errorf("user bind", ctx.Err())
	}
	c, err := dialConn(ctx, d.s, e.DN, password)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		return directory.ErrBadPassword
	}
	if err != nil {
		return d.errorf("user bind", err)
	}
	c.close()
	return nil
}

// Check connects and binds with the service account and reads the root
// DSE (RFC 4512 section 5.1), which every server answers.
func (d *Directory) Check(ctx context.Context) error {
	ctx, cancel := d.lookupContext(ctx)
	defer cancel()
	req := ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil)
	err := d.withConn(ctx, func(l *ldap.Conn) error {
		_, err := l.Search(req)
		return err
	})
	if err != nil {
		return d.errorf("check", err)
	}
	return nil
}
