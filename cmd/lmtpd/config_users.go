package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/lmtpd/lmtpd/sasl"
)

// userSource is one user entry and where it was written: [[auth.user]] in
// the configuration file or [[user]] in auth.users_file.
type userSource struct {
	file, key string
	u         authUserConfig
}

// loadUsers merges [[auth.user]] and the users file into c.users and
// c.addresses. Every entry is checked here, once, with the sasl package's
// own checks (PrepareUsername, CheckPasswordHash, ParseScramCredentials),
// so each problem is reported at its user's key; sasl.NewStore at start-up
// and Store.Replace on SIGHUP then get only users that pass.
func (c *config) loadUsers() error {
	var all []userSource
	for i, u := range c.Auth.Users {
		all = append(all, userSource{c.file, indexKey("auth.user", i), u})
	}
	if f := c.Auth.UsersFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			ec := &errorCollector{file: c.file, loc: c.locs[c.file]}
			ec.add("auth.users_file", err)
			return ec.err()
		}
		var uf usersFile
		if err := decodeStrict(f, string(b), &uf); err != nil {
			return err
		}
		c.locs[f] = newLocator(string(b))
		for i, u := range uf.Users {
			all = append(all, userSource{f, indexKey("user", i), u})
		}
	}
	var errs configErrors
	add := func(s userSource, k string, err error) {
		key := s.key
		if k != "" {
			key = joinKey(key, k)
		}
		errs = append(errs, &configError{File: s.file, Line: c.locs[s.file].line(key), Key: key, Err: err})
	}
	c.users = make(map[string]sasl.User)
	c.addresses = make(map[string][]string)
	byName := make(map[string]userSource)
	for _, s := range all {
		prepared, su, ok := c.checkUser(s, add)
		if prepared == "" {
			continue
		}
		if prev, dup := byName[prepared]; dup {
			add(s, "name", fmt.Errorf("user %q is also defined at %s:%d", s.u.Name, prev.file, c.locs[prev.file].line(prev.key)))
			continue
		}
		byName[prepared] = s
		if !ok {
			continue
		}
		c.users[s.u.Name] = su
		addrs := slices.Clone(s.u.Addresses)
		if len(addrs) == 0 && strings.Contains(s.u.Name, "@") {
			addrs = []string{s.u.Name}
		}
		c.addresses[prepared] = addrs
	}
	if len(errs) > 0 {
		return errs
	}
	if len(c.users) == 0 {
		return nil
	}
	// Every user passed the store's own checks above, so this does not
	// fail short of running out of memory; the store is kept for serve
	// and reload.
	st, err := sasl.NewStore(c.users)
	if err != nil {
		return configErrors{{File: c.file, Line: c.locs[c.file].line("auth"), Key: "auth", Err: err}}
	}
	c.store = st
	return nil
}

// checkUser checks one user entry, reporting each problem at its key
// through add, and returns the prepared name ("" if the name is invalid)
// and the credentials; ok is false if anything was reported.
func (c *config) checkUser(s userSource, add func(s userSource, key string, err error)) (prepared string, su sasl.User, ok bool) {
	u := s.u
	ok = true
	prepared, err := sasl.PrepareUsername(u.Name)
	if err != nil {
		add(s, "name", fmt.Errorf("user name %q: %v", u.Name, err))
		return "", su, false
	}
	if u.PasswordHash == "" && u.Scram == "" {
		add(s, "", fmt.Errorf("user %q has neither password_hash nor scram (make both with lmtpd hash-password)", u.Name))
		return prepared, su, false
	}
	if u.PasswordHash != "" {
		if err := sasl.CheckPasswordHash(u.PasswordHash); err != nil {
			add(s, "password_hash", fmt.Errorf("password hash: %v (make one with lmtpd hash-password)", err))
			ok = false
		}
		su.PasswordHash = u.PasswordHash
	}
	if u.Scram != "" {
		sc, err := sasl.ParseScramCredentials(u.Scram)
		if err != nil {
			add(s, "scram", fmt.Errorf("%v (make one with lmtpd hash-password)", err))
			ok = false
		} else {
			su.Scram = &sc
		}
	}
	for j, a := range u.Addresses {
		if at := strings.LastIndexByte(a, '@'); at < 0 || at == len(a)-1 {
			add(s, indexKey("addresses", j), fmt.Errorf("%q is not an address (local@domain, or @domain for the whole domain)", a))
			ok = false
		}
	}
	return prepared, su, ok
}

// validateAuth checks the listeners that need users. It runs after
// loadUsers.
func (c *config) validateAuth(ec *errorCollector) {
	hasScram := false
	for _, u := range c.users {
		hasScram = hasScram || u.Scram != nil
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		key := joinKey(indexKey("listener", i), "auth")
		switch {
		case l.Auth == "off":
		case l.RequireTLSForAuth && l.InsecureAuth:
			ec.addf(joinKey(indexKey("listener", i), "require_tls_for_auth"), "contradicts insecure_auth = true: choose one")
		case len(c.users) == 0 && c.Auth.Directory == "":
			ec.addf(key, "auth = %q needs users: add [[auth.user]] or auth.users_file (or set auth.directory)", l.Auth)
		case l.TLS == "none" && l.RequireTLSForAuth:
			ec.addf(key, `auth = %q offers no mechanism: require_tls_for_auth = true needs tls = "starttls" or "implicit"`, l.Auth)
		case l.TLS == "none" && !l.InsecureAuth && !hasScram:
			// PLAIN and LOGIN are offered only under TLS (RFC 4954
			// section 4): no mechanism would ever be offered.
			ec.addf(key, `auth = %q offers no mechanism: PLAIN and LOGIN need TLS (tls = "starttls") or insecure_auth = true, SCRAM-SHA-256 needs users with scram keys`, l.Auth)
		}
	}
}
