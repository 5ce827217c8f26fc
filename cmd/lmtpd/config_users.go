package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/lmtpd/lmtpd/sasl"
)

// loadUsers merges [[auth.user]] and the users file into c.users and
// c.addresses, checking every secret.
func (c *config) loadUsers() error {
	type src struct {
		file, key string
		u         authUserConfig
	}
	var all []src
	for i, u := range c.Auth.Users {
		all = append(all, src{c.file, indexKey("auth.user", i), u})
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
			all = append(all, src{f, indexKey("user", i), u})
		}
	}
	var errs configErrors
	add := func(s src, k string, err error) {
		key := s.key
		if k != "" {
			key = joinKey(key, k)
		}
		errs = append(errs, &configError{File: s.file, Line: c.locs[s.file].line(key), Key: key, Err: err})
	}
	c.users = make(map[string]sasl.User)
	c.addresses = make(map[string][]string)
	byName := make(map[string]src)
	for _, s := range all {
		u := s.u
		prepared, err := sasl.PrepareUsername(u.Name)
		if err != nil {
			add(s, "name", fmt.Errorf("user name %q: %v", u.Name, err))
			continue
		}
		if prev, dup := byName[prepared]; dup {
			add(s, "name", fmt.Errorf("user %q is also defined at %s:%d", u.Name, prev.file, c.locs[prev.file].line(prev.key)))
			continue
		}
		byName[prepared] = s
		var su sasl.User
		if u.PasswordHash != "" {
			su.PasswordHash = u.PasswordHash
		}
		if u.Scram != "" {
			sc, err := sasl.ParseScramCredentials(u.Scram)
			if err != nil {
				add(s, "scram", fmt.Errorf("%v (make one with lmtpd hash-password)", err))
				continue
			}
			su.Scram = &sc
		}
		if u.PasswordHash == "" && u.Scram == "" {
			add(s, "", fmt.Errorf("user %q has neither password_hash nor scram (make both with lmtpd hash-password)", u.Name))
			continue
		}
		for j, a := range u.Addresses {
			if at := strings.LastIndexByte(a, '@'); at < 0 || at == len(a)-1 {
				add(s, indexKey("addresses", j), fmt.Errorf("%q is not an address (local@domain, or @domain for the whole domain)", a))
			}
		}
		c.users[u.Name] = su
		addrs := slices.Clone(u.Addresses)
		if len(addrs) == 0 && strings.Contains(u.Name, "@") {
			addrs = []string{u.Name}
		}
		c.addresses[prepared] = addrs
	}
	if len(errs) > 0 {
		return errs
	}
	if len(c.users) == 0 {
		return nil
	}
	// The store checks every hash; its errors name the user.
	if _, err := sasl.NewStore(c.users); err != nil {
		for _, s := range byName {
			if strings.Contains(err.Error(), fmt.Sprintf("user %q", s.u.Name)) {
				add(s, "password_hash", fmt.Errorf("%s (make one with lmtpd hash-password)", strings.TrimPrefix(err.Error(), fmt.Sprintf("sasl: user %q: ", s.u.Name))))
				return errs
			}
		}
		return configErrors{{File: c.file, Line: c.locs[c.file].line("auth"), Key: "auth", Err: err}}
	}
	return nil
}

// validateAuth checks the users and the listeners that need them. It
// runs after loadUsers.
func (c *config) validateAuth(ec *errorCollector) {
	if c.Server.MaxAuthVerifications < 0 {
		ec.addf("server.max_auth_verifications", "must not be negative (0 means the number of cores)")
	}
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
		case len(c.users) == 0:
			ec.addf(key, "auth = %q needs users: add [[auth.user]] or auth.users_file", l.Auth)
		case l.TLS == "none" && l.RequireTLSForAuth:
			ec.addf(key, `auth = %q offers no mechanism: require_tls_for_auth = true needs tls = "starttls" or "implicit"`, l.Auth)
		case l.TLS == "none" && !l.InsecureAuth && !hasScram:
			// PLAIN and LOGIN are offered only under TLS (RFC 4954
			// section 4): no mechanism would ever be offered.
			ec.addf(key, `auth = %q offers no mechanism: PLAIN and LOGIN need TLS (tls = "starttls") or insecure_auth = true, SCRAM-SHA-256 needs users with scram keys`, l.Auth)
		}
	}
}
