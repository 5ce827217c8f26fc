package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/sasl"
)

// dirAuth checks AUTH passwords in the [auth] directory.
//
// PLAIN and LOGIN give the login name and the password. The users of the
// store ([[auth.user]], auth.users_file) are checked first when it has
// any with a password hash; a login the store does not accept is then
// looked up in the directory: by binding as the user (LDAP with auth =
// "bind", a directory.Authenticator), otherwise by
// verifying the password the directory returns with sasl.VerifyPassword
// (Dovecot's {SCHEME} forms). The answers map to AUTH replies thus:
//
//   - right password: 235;
//   - unknown login, wrong password, a {CRAM-MD5} password offered to
//     PLAIN or LOGIN: sasl.ErrAuthFailed, 535 5.7.8. An unknown login
//     verifies the password against the last hash the directory
//     returned, so it costs what a wrong password costs;
//   - the directory not answering, or a stored hash that cannot be used
//     (an unknown scheme, named in the log): an error that is neither,
//     454 4.7.0, not counted as a failed attempt.
//
// Every check runs inside protocol's AuthLimiter slot and per-address
// budget (protocol.Server runs Next there), and under the directory's
// timeout (the Cache).
//
// CRAM-MD5 is offered for directory users only when [auth]
// directory_cram_md5 is set: the sasl store offers it only once an
// administrator gives a user a CRAM secret (see the sasl package for
// why), and which directory users have one cannot be known before the
// client picks a mechanism, so the administrator says so. It then works
// for the users whose stored password is {CRAM-MD5} (or {HMAC-MD5}) or
// {PLAIN} (sasl.CRAMSecretFromStored); for the others it fails like a
// wrong password. SCRAM-SHA-256 works only for the store's users with
// SCRAM keys.
type dirAuth struct {
	reg *dirRegistry

	// lastStored is the last stored hash the directory returned.
	lastStored atomic.Pointer[string]
	// dummy is a hash of a random password with the default parameters,
	// made on first need.
	dummy func() string
}

// newDirAuth returns a dirAuth over reg.
func newDirAuth(reg *dirRegistry) *dirAuth {
	return &dirAuth{reg: reg, dummy: sync.OnceValue(func() string {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		h, err := sasl.HashPassword(hex.EncodeToString(b))
		if err != nil {
			panic("hashing the dummy password: " + err.Error())
		}
		return h
	})}
}

// mechanisms returns the store's mechanisms, with PLAIN and LOGIN added
// when the [auth] directory is set, and CRAM-MD5 with
// directory_cram_md5.
func (a *authenticator) mechanisms() []string {
	m := a.store.Mechanisms()
	if a.dirs == nil {
		return m
	}
	auth, cram := a.dirs.reg.hasAuth()
	if !auth {
		return m
	}
	add := []string{sasl.MechPlain, sasl.MechLogin}
	if cram {
		add = append(add, sasl.MechCramMD5)
	}
	for _, mech := range add {
		if !slices.Contains(m, mech) {
			m = append(m, mech)
		}
	}
	// The preference order of sasl.Store: SCRAM, PLAIN, LOGIN, CRAM-MD5.
	order := map[string]int{sasl.MechScramSHA256: 0, sasl.MechPlain: 1, sasl.MechLogin: 2, sasl.MechCramMD5: 3}
	slices.SortStableFunc(m, func(x, y string) int { return order[x] - order[y] })
	return m
}

// check returns the PLAIN and LOGIN callback for one exchange on a
// connection whose context is ctx.
func (a *dirAuth) check(ctx context.Context, store *sasl.Store) func(username, password string) error {
	return func(username, password string) error {
		if slices.Contains(store.Mechanisms(), sasl.MechPlain) {
			err := store.Authenticate(username, password)
			if !errors.Is(err, sasl.ErrAuthFailed) {
				return err // nil: a configured user; or the store failed
			}
		}
		return a.verify(ctx, username, password)
	}
}

// cramLookup returns the CRAM-MD5 secret lookup for one exchange: the
// store's users first, then the directory's stored password, when it is
// one CRAM-MD5 can use. An unknown login, or one whose password is a
// one-way hash, is sasl.ErrUnknownUser (the exchange then fails like a
// wrong digest, at the same cost); a directory that does not answer is
// another error (454).
func (a *dirAuth) cramLookup(ctx context.Context, store *sasl.Store) func(username string) (sasl.CRAMSecret, error) {
	return func(username string) (sasl.CRAMSecret, error) {
		if s, err := store.LookupCRAM(username); err == nil {
			return s, nil
		}
		g := a.reg.acquire()
		if g == nil {
			return sasl.CRAMSecret{}, sasl.ErrUnknownUser
		}
		defer g.release()
		if g.auth == nil {
			return sasl.CRAMSecret{}, sasl.ErrUnknownUser
		}
		stored, err := g.auth.LookupPassword(ctx, authKey(username, g.caseSens))
		switch {
		case errors.Is(err, directory.ErrNotFound):
			return sasl.CRAMSecret{}, sasl.ErrUnknownUser
		case err != nil:
			return sasl.CRAMSecret{}, err
		}
		s, err := sasl.CRAMSecretFromStored(stored)
		switch {
		case errors.Is(err, sasl.ErrUnknownHashFormat):
			// A scheme nobody knows: the directory's data is wrong, and
			// the log must say so (454), not a silent 535.
			return sasl.CRAMSecret{}, fmt.Errorf("directory %s: the stored password of a user cannot be used: %w", g.auth.Name(), err)
		case err != nil:
			// A one-way hash cannot answer CRAM-MD5: that user cannot
			// use it, like a wrong password.
			return sasl.CRAMSecret{}, sasl.ErrUnknownUser
		}
		return s, nil
	}
}

// verify checks username and password in the directory.
func (a *dirAuth) verify(ctx context.Context, username, password string) error {
	g := a.reg.acquire()
	if g == nil || g.auth == nil {
		if g != nil {
			g.release()
		}
		return sasl.ErrAuthFailed
	}
	defer g.release()
	d := g.auth
	k := authKey(username, g.caseSens)
	// LDAP with auth = "bind" decides itself. (With auth = "attribute"
	// the hash is read and verified here, as for the other drivers, so
	// an unknown login costs a verification too.)
	if au, ok := d.(directory.Authenticator); ok && g.authBind {
		err := au.Authenticate(ctx, k, password)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, directory.ErrNotFound), errors.Is(err, directory.ErrBadPassword):
			// No dummy here: the directory did the work (a search, and a
			// bind for a known user: the one round trip that tells
			// them apart is the LDAP server's, as with Dovecot).
			return sasl.ErrAuthFailed
		}
		return err
	}
	stored, err := d.LookupPassword(ctx, k)
	switch {
	case errors.Is(err, directory.ErrNotFound):
		a.burnDummy(password)
		return sasl.ErrAuthFailed
	case err != nil:
		return err
	}
	a.noteScheme(stored)
	ok, err := sasl.VerifyPassword(stored, password)
	switch {
	case errors.Is(err, sasl.ErrCRAMOnly):
		// A {CRAM-MD5} entry cannot log in with PLAIN or LOGIN
		// (Dovecot: "scheme not usable"): a refusal, not an outage.
		return sasl.ErrAuthFailed
	case err != nil:
		// Never the hash, never the login name (it may be a mistyped
		// password): the directory and the cause.
		return fmt.Errorf("directory %s: the stored password of a user cannot be used: %w", d.Name(), err)
	case !ok:
		return sasl.ErrAuthFailed
	}
	return nil
}

// authKey builds the lookup key of a login name: {address} is the login as
// given (lower-cased unless [delivery] case_sensitive), {localpart} and
// {domain} its parts at the last '@'.
func authKey(username string, caseSens bool) directory.Key {
	if !caseSens {
		username = strings.ToLower(username)
	}
	return directory.KeyFor(username)
}

// noteScheme remembers the last stored hash the directory returned, for
// burnDummy.
func (a *dirAuth) noteScheme(stored string) {
	if p := a.lastStored.Load(); p == nil || *p != stored {
		a.lastStored.Store(&stored)
	}
}

// burnDummy verifies password against the last stored hash the
// directory returned (its result ignored), or before any against a hash
// of a random password with the default parameters, so that an unknown
// login costs what a known one with a wrong password costs: the same
// scheme, the same rounds or memory as the directory's users have.
func (a *dirAuth) burnDummy(password string) {
	h := ""
	if p := a.lastStored.Load(); p != nil {
		h = *p
	} else {
		h = a.dummy()
	}
	_, _ = sasl.VerifyPassword(h, password)
}
