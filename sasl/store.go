package sasl

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/bcrypt"
)

// User holds one user's secrets. Each field is optional; a mechanism works
// for the user only when the matching secret is set, and a user with none
// cannot log in (a disabled account). Every way of printing or marshaling
// a User yields "[REDACTED]".
type User struct {
	// PasswordHash is an argon2id PHC string or a bcrypt hash (see
	// VerifyPassword), used by PLAIN and LOGIN.
	PasswordHash string
	// Scram holds the SCRAM-SHA-256 keys.
	Scram *ScramCredentials
	// CRAM holds the CRAM-MD5 secret. Leave it nil unless CRAM-MD5 is
	// needed; see the package documentation.
	CRAM *CRAMSecret
}

// String returns "[REDACTED]".
func (u User) String() string { return redacted }

// Format prints "[REDACTED]" for every verb.
func (u User) Format(f fmt.State, _ rune) { formatRedacted(f) }

// MarshalJSON returns the JSON string "[REDACTED]".
func (u User) MarshalJSON() ([]byte, error) { return jsonRedacted() }

// LogValue returns "[REDACTED]" for log/slog.
func (u User) LogValue() slog.Value { return slogRedacted() }

// Store is an in-memory credential store: a map from prepared user name
// (PrepareUsername) to User that Replace swaps atomically, so a reload
// never shows a half-updated set. All methods are safe for concurrent use.
// The zero Store has no users; NewStore fills one.
type Store struct {
	state atomic.Pointer[storeState]
	// verify checks a password against a hash; nil means VerifyPassword.
	// Tests replace it to observe which hash each attempt used.
	verify func(encoded, password string) (bool, error)
}

// storeState is one immutable generation of the store.
type storeState struct {
	users map[string]User
	// dummyHash is verified for unknown users and users without a
	// password hash; "" means defaultDummyHash.
	dummyHash string
	mechs     []string
	// maxMem is MaxVerifyMemory's answer.
	maxMem int64
}

// emptyState is the state of a zero Store.
var emptyState = &storeState{users: map[string]User{}}

// NewStore returns a Store holding users; see Replace.
func NewStore(users map[string]User) (*Store, error) {
	s := &Store{}
	if err := s.Replace(users); err != nil {
		return nil, err
	}
	return s, nil
}

// Replace validates users and, if all are valid, makes them the store's
// whole content in one atomic step; on error the store is unchanged. Keys
// are user names, prepared with PrepareUsername (two keys that prepare to
// the same name are an error). Every secret must parse: hashes as
// VerifyPassword accepts them, SCRAM keys per ScramCredentials.Validate,
// CRAM secrets non-zero. The map and the secrets are copied, so the caller
// may reuse them.
//
// Replace also picks the dummy hash that Authenticate verifies for unknown
// users: a hash of a random password with the parameters most users' hashes
// have (argon2id cost, or bcrypt cost), so that an unknown user costs the
// same time as a typical known one. That costs one hash computation per
// Replace, except with the default parameters, whose dummy is computed once
// per process. Errors name the user, never the secret.
func (s *Store) Replace(users map[string]User) error {
	names := make([]string, 0, len(users))
	for name := range users {
		names = append(names, name)
	}
	slices.Sort(names)
	st := &storeState{users: make(map[string]User, len(users))}
	var hasPassword, hasScram, hasCRAM bool
	for _, raw := range names {
		u := users[raw]
		name, err := PrepareUsername(raw)
		if err != nil {
			return fmt.Errorf("sasl: user %q: %w", raw, err)
		}
		if _, dup := st.users[name]; dup {
			return fmt.Errorf("sasl: user %q: same name as another user after SASLprep", raw)
		}
		var c User
		if u.PasswordHash != "" {
			if err := checkHash(u.PasswordHash); err != nil {
				return fmt.Errorf("sasl: user %q: password hash: %w", raw, err)
			}
			c.PasswordHash = u.PasswordHash
			hasPassword = true
		}
		if u.Scram != nil {
			if err := u.Scram.Validate(); err != nil {
				return fmt.Errorf("sasl: user %q: %w", raw, err)
			}
			c.Scram = &ScramCredentials{
				Salt:       slices.Clone(u.Scram.Salt),
				Iterations: u.Scram.Iterations,
				StoredKey:  slices.Clone(u.Scram.StoredKey),
				ServerKey:  slices.Clone(u.Scram.ServerKey),
			}
			hasScram = true
		}
		if u.CRAM != nil {
			if *u.CRAM == (CRAMSecret{}) {
				return fmt.Errorf("%w: user %q: CRAM-MD5 secret is zero", ErrInvalidSecret, raw)
			}
			cram := *u.CRAM
			c.CRAM = &cram
			hasCRAM = true
		}
		st.users[name] = c
	}
	// Preference order for EHLO: the mechanism that keeps the password
	// off the wire first.
	if hasScram {
		st.mechs = append(st.mechs, MechScramSHA256)
	}
	if hasPassword {
		st.mechs = append(st.mechs, MechPlain, MechLogin)
	}
	if hasCRAM {
		st.mechs = append(st.mechs, MechCramMD5)
	}
	dummy, err := dummyHashFor(names, users)
	if err != nil {
		return err
	}
	st.dummyHash = dummy
	if hasPassword {
		st.maxMem = argon2Memory(st.dummy())
		for _, u := range st.users {
			st.maxMem = max(st.maxMem, argon2Memory(u.PasswordHash))
		}
	}
	s.state.Store(st)
	return nil
}

// MaxVerifyMemory returns the most memory, in bytes, one password check by
// Authenticate may allocate: the largest argon2id memory parameter among
// the users' hashes and the dummy hash unknown users are checked against
// (bcrypt's few KiB are not counted), or 0 when no user has a password
// hash. It is the m_max of the AUTH memory ceiling (protocol.Server's
// MaxAuthVerifications); SCRAM-SHA-256 and CRAM-MD5 allocate no more than
// a few hundred bytes per check.
func (s *Store) MaxVerifyMemory() int64 { return s.load().maxMem }

// argon2Memory returns the memory parameter of an argon2id hash in bytes,
// or 0 for another hash or one that does not parse.
func argon2Memory(encoded string) int64 {
	if !strings.HasPrefix(encoded, "$argon2id$") {
		return 0
	}
	p, _, _, err := parseArgon2id(encoded)
	if err != nil {
		return 0
	}
	return int64(p.Memory) << 10
}

// load returns the current generation.
func (s *Store) load() *storeState {
	if st := s.state.Load(); st != nil {
		return st
	}
	return emptyState
}

// Mechanisms returns the mechanisms at least one user can use, in the
// order to advertise them: SCRAM-SHA-256, PLAIN, LOGIN, CRAM-MD5. A client
// usually picks the first mechanism it supports and may not fall back, so
// every user should have a secret for every mechanism listed (MakeSecrets
// makes both the hash and the SCRAM keys). The caller still drops plaintext
// mechanisms on connections without TLS (IsPlaintext).
func (s *Store) Mechanisms() []string { return slices.Clone(s.load().mechs) }

// NewServer returns a server for one exchange of mech (case-insensitive)
// against the store, or ErrUnsupportedMechanism when mech is not one of
// Mechanisms(). The server reads the store when it needs a secret, so an
// exchange that spans a Replace uses the new generation. Authorization
// identities other than the authenticated user are refused.
func (s *Store) NewServer(mech string) (Server, error) {
	mech = strings.ToUpper(mech)
	if !slices.Contains(s.load().mechs, mech) {
		return nil, ErrUnsupportedMechanism
	}
	switch mech {
	case MechPlain:
		return NewPlainServer(s.Authenticate), nil
	case MechLogin:
		return NewLoginServer(s.Authenticate), nil
	case MechScramSHA256:
		return NewScramServer(s.LookupScram, nil), nil
	case MechCramMD5:
		return NewCramMD5Server(s.LookupCRAM, ""), nil
	}
	return nil, ErrUnsupportedMechanism
}

// Authenticate checks username and password against the store. It returns
// nil on success and ErrAuthFailed for an unknown user, a user without a
// password hash and a wrong password alike. All three verify one hash:
// the user's, or for the first two the store's dummy hash, which has the
// parameters most users' hashes have, so they take the same time. Another
// error means a stored hash could not be used (Replace prevents that).
func (s *Store) Authenticate(username, password string) error {
	st := s.load()
	u, found := st.lookup(username)
	encoded := u.PasswordHash
	if !found || encoded == "" {
		encoded = st.dummy()
	}
	verify := s.verify
	if verify == nil {
		verify = VerifyPassword
	}
	ok, err := verify(encoded, password)
	if err != nil {
		return fmt.Errorf("sasl: verifying password: %w", err)
	}
	if !ok || !found || u.PasswordHash == "" {
		return ErrAuthFailed
	}
	return nil
}

// LookupScram returns the SCRAM-SHA-256 credentials of username, or
// ErrUnknownUser when the user does not exist or has none. It is the
// lookup NewScramServer expects. The returned slices are shared with the
// store and must not be modified.
func (s *Store) LookupScram(username string) (ScramCredentials, error) {
	u, found := s.load().lookup(username)
	if !found || u.Scram == nil {
		return ScramCredentials{}, ErrUnknownUser
	}
	return *u.Scram, nil
}

// LookupCRAM returns the CRAM-MD5 secret of username, or ErrUnknownUser
// when the user does not exist or has none. It is the lookup
// NewCramMD5Server expects.
func (s *Store) LookupCRAM(username string) (CRAMSecret, error) {
	u, found := s.load().lookup(username)
	if !found || u.CRAM == nil {
		return CRAMSecret{}, ErrUnknownUser
	}
	return *u.CRAM, nil
}

// lookup finds a user by name after preparing it; a name that does not
// prepare is not found.
func (st *storeState) lookup(username string) (User, bool) {
	name, err := PrepareUsername(username)
	if err != nil {
		return User{}, false
	}
	u, ok := st.users[name]
	return u, ok
}

// dummy returns the hash verified for unknown users.
func (st *storeState) dummy() string {
	if st.dummyHash != "" {
		return st.dummyHash
	}
	return defaultDummyHash()
}

// hashTemplate is the cost-relevant part of a password hash.
type hashTemplate struct {
	argon2 Argon2Params // zero for bcrypt
	cost   int          // bcrypt cost, zero for argon2id
}

// dummyHashFor returns a hash of a random password with the most common
// template among the users' hashes (ties go to the first user in sorted
// order), or "" for the default argon2id parameters.
func dummyHashFor(names []string, users map[string]User) (string, error) {
	counts := map[hashTemplate]int{}
	var best hashTemplate
	for _, name := range names {
		encoded := users[name].PasswordHash
		if encoded == "" {
			continue
		}
		var t hashTemplate
		if strings.HasPrefix(encoded, "$argon2id$") {
			p, _, _, err := parseArgon2id(encoded)
			if err != nil {
				return "", err
			}
			t.argon2 = p
		} else if isBcrypt(encoded) {
			cost, err := bcrypt.Cost([]byte(encoded))
			if err != nil {
				return "", fmt.Errorf("%w: bcrypt hash does not parse", ErrInvalidSecret)
			}
			t.cost = cost
		} else {
			continue // Dovecot {SCHEME}s (scheme.go): the default dummy serves
		}
		counts[t]++
		if counts[t] > counts[best] {
			best = t
		}
	}
	switch {
	case len(counts) == 0 || best.argon2 == DefaultArgon2Params():
		return "", nil
	case best.cost != 0:
		h, err := bcrypt.GenerateFromPassword([]byte(randomPassword()), best.cost)
		if err != nil {
			return "", fmt.Errorf("sasl: making the dummy bcrypt hash: %w", err)
		}
		return string(h), nil
	}
	return HashPasswordParams(randomPassword(), best.argon2)
}

// defaultDummyHash is a hash of a random password with the default
// parameters, computed once, on first need.
var defaultDummyHash = sync.OnceValue(func() string {
	h, err := HashPassword(randomPassword())
	if err != nil {
		panic("sasl: hashing the dummy password with default parameters: " + err.Error())
	}
	return h
})

// randomPassword returns a password nobody knows.
func randomPassword() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand documentation)
	return hex.EncodeToString(b)
}

// ReplaceWith makes o's users s's whole content in one atomic step, as
// Replace would, without checking them or computing a dummy hash again:
// o was built by NewStore or Replace, which did. Later changes to o do not
// affect s. It lets a caller validate a configuration's users into a new
// Store once and then swap them into the running one.
func (s *Store) ReplaceWith(o *Store) { s.state.Store(o.load()) }
