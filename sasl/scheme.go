package sasl

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Password schemes as Dovecot writes them, "{SCHEME}data", so the password
// columns and attributes of an existing Dovecot setup work unchanged
// (Dovecot's documentation: core/config/auth/schemes). The scheme name is
// case-insensitive. A hash without a "{SCHEME}" prefix is recognised by
// its crypt(3) identifier: $argon2id$, $argon2i$, $2a$/$2b$/$2y$ (bcrypt),
// $5$ and $6$ (SHA-crypt).
//
//	{ARGON2ID}, {ARGON2I}   $argon2id$v=19$m=..,t=..,p=..$salt$hash (PHC, libsodium)
//	{BLF-CRYPT}, {BCRYPT}   $2y$NN$... bcrypt
//	{SHA512-CRYPT}          $6$[rounds=N$]salt$hash
//	{SHA256-CRYPT}          $5$[rounds=N$]salt$hash
//	{CRYPT}                 any of the crypt(3) forms above (OpenLDAP writes it)
//	{SSHA512}, {SSHA256}, {SSHA}  base64(H(password salt) salt)
//	{PBKDF2}                $1$salt$rounds$hex(PBKDF2-HMAC-SHA1(password, salt, rounds, 20))
//	{CRAM-MD5}, {HMAC-MD5}  the CRAM-MD5 context; usable for CRAM-MD5 only
//	{PLAIN}, {CLEAR}, {CLEARTEXT}  the password itself
//
// Any other scheme is an error that names it (*UnknownSchemeError), never
// a silent mismatch.

// ErrCRAMOnly is returned by VerifyPassword for a {CRAM-MD5} secret: it can
// answer a CRAM-MD5 challenge (CRAMSecretFromStored) but is not meant to
// check a plaintext password. It matches ErrInvalidSecret.
var ErrCRAMOnly = fmt.Errorf("%w: scheme CRAM-MD5 is usable for the CRAM-MD5 mechanism only", ErrInvalidSecret)

// UnknownSchemeError is returned for a stored password whose scheme this
// package does not implement. It matches ErrUnknownHashFormat.
type UnknownSchemeError struct {
	// Scheme is the scheme's name as written ("MD5-CRYPT", "SHA"), or a
	// crypt(3) identifier such as "$1$" for a hash without a prefix. It
	// holds at most 32 characters of [A-Za-z0-9.$_- ]; anything else is
	// replaced by "?" so that a mistyped secret cannot leak into logs.
	Scheme string
}

// Error names the scheme.
func (e *UnknownSchemeError) Error() string {
	return fmt.Sprintf("sasl: unknown password scheme %q", e.Scheme)
}

// Unwrap returns ErrUnknownHashFormat.
func (e *UnknownSchemeError) Unwrap() error { return ErrUnknownHashFormat }

// unknownScheme builds an UnknownSchemeError with a printable name.
func unknownScheme(name string) error {
	clean := len(name) > 0 && len(name) <= 32 && strings.Trim(name,
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.$_- ") == ""
	if !clean {
		name = "?"
	}
	return &UnknownSchemeError{Scheme: name}
}

// storedKind is what a stored password was recognised as.
type storedKind int

const (
	kindArgon2id storedKind = iota + 1
	kindArgon2i
	kindBcrypt
	kindSHA512Crypt
	kindSHA256Crypt
	kindSSHA512
	kindSSHA256
	kindSSHA
	kindPBKDF2
	kindCRAM
	kindPlain
)

// schemeNames maps upper-case Dovecot scheme names to what they hold.
// kindArgon2id etc. for {CRYPT} are decided by the data.
var schemeNames = map[string]storedKind{
	"ARGON2ID":     kindArgon2id,
	"ARGON2I":      kindArgon2i,
	"BLF-CRYPT":    kindBcrypt,
	"BCRYPT":       kindBcrypt,
	"SHA512-CRYPT": kindSHA512Crypt,
	"SHA256-CRYPT": kindSHA256Crypt,
	"SSHA512":      kindSSHA512,
	"SSHA256":      kindSSHA256,
	"SSHA":         kindSSHA,
	"PBKDF2":       kindPBKDF2,
	"CRAM-MD5":     kindCRAM,
	"HMAC-MD5":     kindCRAM,
	"PLAIN":        kindPlain,
	"CLEAR":        kindPlain,
	"CLEARTEXT":    kindPlain,
}

// canonicalNames are the names HashScheme reports, by kind.
var canonicalNames = map[storedKind]string{
	kindArgon2id: "ARGON2ID", kindArgon2i: "ARGON2I", kindBcrypt: "BLF-CRYPT",
	kindSHA512Crypt: "SHA512-CRYPT", kindSHA256Crypt: "SHA256-CRYPT",
	kindSSHA512: "SSHA512", kindSSHA256: "SSHA256", kindSSHA: "SSHA",
	kindPBKDF2: "PBKDF2", kindCRAM: "CRAM-MD5", kindPlain: "PLAIN",
}

// splitStored finds the kind of a stored password and returns the data
// after any "{SCHEME}" prefix. Only the $id$ forms are recognised without
// a prefix; a bare string of another shape is ErrUnknownHashFormat (it
// could be a plaintext password, which is never assumed).
func splitStored(stored string) (storedKind, string, error) {
	if strings.HasPrefix(stored, "{") {
		end := strings.IndexByte(stored, '}')
		if end < 0 {
			return 0, "", unknownScheme("")
		}
		name, data := strings.ToUpper(stored[1:end]), stored[end+1:]
		if name == "CRYPT" {
			kind, ok := cryptKind(data)
			if !ok {
				// DES and MD5 crypt are too weak to carry on with.
				return 0, "", unknownScheme(strings.TrimSpace("CRYPT " + cryptID(data)))
			}
			return kind, data, nil
		}
		kind, ok := schemeNames[name]
		if !ok {
			return 0, "", unknownScheme(stored[1:end])
		}
		return kind, data, nil
	}
	if kind, ok := cryptKind(stored); ok {
		return kind, stored, nil
	}
	if id := cryptID(stored); id != "" {
		return 0, "", unknownScheme(id)
	}
	return 0, "", ErrUnknownHashFormat
}

// cryptKind recognises a crypt(3) string by its identifier.
func cryptKind(s string) (storedKind, bool) {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return kindArgon2id, true
	case strings.HasPrefix(s, "$argon2i$"):
		return kindArgon2i, true
	case isBcrypt(s):
		return kindBcrypt, true
	case strings.HasPrefix(s, "$6$"):
		return kindSHA512Crypt, true
	case strings.HasPrefix(s, "$5$"):
		return kindSHA256Crypt, true
	}
	return 0, false
}

// cryptID returns the "$id$" a string starts with, or "".
func cryptID(s string) string {
	if len(s) < 3 || s[0] != '$' {
		return ""
	}
	end := strings.IndexByte(s[1:], '$')
	if end < 0 || end > 16 {
		return ""
	}
	return s[:end+2]
}

// HashScheme returns the canonical Dovecot name of the scheme of stored
// ("SHA512-CRYPT", "BLF-CRYPT", ...) after checking that it parses and
// that its cost is within bounds, without computing a hash. Load-time
// checks of passwd-files and TOML use it; errors are those of
// VerifyPassword.
func HashScheme(stored string) (string, error) {
	kind, _, err := parseStored(stored)
	if err != nil {
		return "", err
	}
	return canonicalNames[kind], nil
}

// parsedStored is a stored password, parsed; which fields are set depends
// on the kind.
type parsedStored struct {
	data   string // the data after the prefix
	sha    shaCryptParams
	argon  Argon2Params
	salt   []byte
	key    []byte
	rounds int
}

// parseStored recognises and parses stored without computing any hash.
// Every parameter that sets the cost of verifying is bounded here.
func parseStored(stored string) (storedKind, parsedStored, error) {
	kind, data, err := splitStored(stored)
	if err != nil {
		return 0, parsedStored{}, err
	}
	p := parsedStored{data: data}
	switch kind {
	case kindArgon2id:
		if !strings.HasPrefix(data, "$argon2id$") {
			return 0, p, fmt.Errorf("%w: ARGON2ID: want a $argon2id$ hash", ErrInvalidSecret)
		}
		p.argon, p.salt, p.key, err = parseArgon2id(data)
	case kindArgon2i:
		p.argon, p.salt, p.key, err = parseArgon2i(data)
	case kindBcrypt:
		// Prefix first: checkHash would come back here for other data.
		if !isBcrypt(data) {
			err = fmt.Errorf("%w: BLF-CRYPT: want $2a$, $2b$ or $2y$", ErrInvalidSecret)
		} else {
			err = checkHash(data)
		}
	case kindSHA512Crypt:
		p.sha, err = parseShaCrypt(sha512Crypt, data)
	case kindSHA256Crypt:
		p.sha, err = parseShaCrypt(sha256Crypt, data)
	case kindSSHA512, kindSSHA256, kindSSHA:
		p.key, p.salt, err = parseSaltedSHA(kind, data)
	case kindPBKDF2:
		p.salt, p.rounds, p.key, err = parsePBKDF2(data)
	case kindCRAM:
		_, err = ParseCRAMSecret(cramPrefix + data)
	case kindPlain:
		// Anything is a password.
	}
	if err != nil {
		return 0, parsedStored{}, err
	}
	return kind, p, nil
}

// verifyStored checks password against a stored password in one of the
// schemes above; VerifyPassword calls it for everything that is not a
// bare argon2id or bcrypt hash.
func verifyStored(stored, password string) (bool, error) {
	kind, p, err := parseStored(stored)
	if err != nil {
		return false, err
	}
	switch kind {
	case kindArgon2id, kindBcrypt:
		return VerifyPassword(p.data, password)
	case kindArgon2i:
		return verifyArgon2i(p, password), nil
	case kindSHA512Crypt, kindSHA256Crypt:
		return verifyShaCrypt(p.sha, password), nil
	case kindSSHA512, kindSSHA256, kindSSHA:
		return verifySaltedSHA(kind, p, password), nil
	case kindPBKDF2:
		return verifyPBKDF2(p, password), nil
	case kindCRAM:
		return false, ErrCRAMOnly
	case kindPlain:
		// Compare digests so that the time does not depend on where the
		// strings differ nor on their lengths.
		a, b := sha256.Sum256([]byte(password)), sha256.Sum256([]byte(p.data))
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1, nil
	}
	return false, ErrUnknownHashFormat
}

// checkStored is checkHash for the schemes above. A {CRAM-MD5} secret is
// refused (ErrCRAMOnly): where checkHash is used, the hash must check
// plaintext passwords.
func checkStored(stored string) error {
	kind, _, err := parseStored(stored)
	if err == nil && kind == kindCRAM {
		return ErrCRAMOnly
	}
	return err
}

// CRAMSecretFromStored returns the CRAM-MD5 secret a stored password
// gives: a {CRAM-MD5} (or {HMAC-MD5}) context as is, or one computed from
// a {PLAIN} password. Any other scheme is a one-way hash that cannot
// answer CRAM-MD5, an error matching ErrInvalidSecret that names it.
func CRAMSecretFromStored(stored string) (CRAMSecret, error) {
	kind, p, err := parseStored(stored)
	if err != nil {
		return CRAMSecret{}, err
	}
	switch kind {
	case kindCRAM:
		return ParseCRAMSecret(cramPrefix + p.data)
	case kindPlain:
		return NewCRAMSecret(p.data)
	}
	return CRAMSecret{}, fmt.Errorf("%w: scheme %s cannot answer CRAM-MD5", ErrInvalidSecret, canonicalNames[kind])
}

// StrongSchemes are the schemes HashWithScheme writes, in order of
// preference.
var StrongSchemes = []string{"ARGON2ID", "ARGON2I", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "PBKDF2"}

// bcryptHashCost is the bcrypt cost HashWithScheme uses: 2^11 rounds,
// about 115 ms on a busy 2-core AMD EPYC VM (Dovecot's default of 5 is 64
// times cheaper).
const bcryptHashCost = 11

// hashCosts are the costs HashWithScheme writes; a variable so that tests
// can make hashing cheap (TestHashCostDefaults pins the real values).
var hashCosts = struct {
	bcrypt, shaCryptRounds, pbkdf2Rounds int
	argon2i                              Argon2Params
}{bcryptHashCost, shaCryptHashRounds, pbkdf2HashRounds, argon2iHashParams()}

// argon2iHashParams are DefaultArgon2Params with t=3: RFC 9106 asks more
// passes of argon2i than of argon2id.
func argon2iHashParams() Argon2Params {
	p := DefaultArgon2Params()
	p.Time = 3
	return p
}

// HashWithScheme hashes password with a random salt and returns it in
// Dovecot's form "{SCHEME}data", for a SQL column, an LDAP attribute or a
// passwd-file. scheme is one of StrongSchemes (case-insensitive; BCRYPT is
// BLF-CRYPT); the weak ones (salted SHA, CRAM-MD5, PLAIN) are refused. The
// costs: ARGON2ID DefaultArgon2Params; ARGON2I the same with t=3 (RFC 9106
// asks more passes of argon2i); BLF-CRYPT cost 11; SHA512-CRYPT and
// SHA256-CRYPT rounds=100000; PBKDF2 100000 iterations of HMAC-SHA1 (the
// only hash Dovecot's PBKDF2 knows).
func HashWithScheme(scheme, password string) (string, error) {
	name, err := HashingScheme(scheme)
	if err != nil {
		return "", err
	}
	if password == "" {
		return "", errors.New("sasl: empty password")
	}
	if err := checkPassword(password); err != nil {
		return "", errors.New("sasl: password is too long or contains NUL")
	}
	var data string
	switch name {
	case "ARGON2ID":
		data, err = HashPassword(password)
	case "ARGON2I":
		data, err = hashArgon2i(password, hashCosts.argon2i)
	case "BLF-CRYPT":
		var h []byte
		h, err = bcrypt.GenerateFromPassword([]byte(password), hashCosts.bcrypt)
		data = string(h)
	case "SHA512-CRYPT":
		data = formatShaCrypt(sha512Crypt, password, cryptSalt(shaCryptMaxSalt), hashCosts.shaCryptRounds, true)
	case "SHA256-CRYPT":
		data = formatShaCrypt(sha256Crypt, password, cryptSalt(shaCryptMaxSalt), hashCosts.shaCryptRounds, true)
	case "PBKDF2":
		data = formatPBKDF2(password, cryptSalt(pbkdf2SaltLength), hashCosts.pbkdf2Rounds)
	}
	if err != nil {
		return "", err
	}
	return "{" + name + "}" + data, nil
}

// HashingScheme returns the canonical name of scheme if HashWithScheme
// can write it, without hashing anything: one of StrongSchemes, compared
// without regard to case, BCRYPT meaning BLF-CRYPT. A weak scheme is an
// error saying so; an unknown one an *UnknownSchemeError.
func HashingScheme(scheme string) (string, error) {
	name := strings.ToUpper(scheme)
	if name == "BCRYPT" {
		name = "BLF-CRYPT"
	}
	if !slices.Contains(StrongSchemes, name) {
		if _, known := schemeNames[name]; known {
			return "", fmt.Errorf("sasl: scheme %s is too weak to hash new passwords; use one of %s", name, strings.Join(StrongSchemes, ", "))
		}
		return "", unknownScheme(scheme)
	}
	return name, nil
}

// cryptSalt returns n random characters of the crypt(3) alphabet.
func cryptSalt(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand documentation)
	for i := range b {
		b[i] = cryptAlphabet[b[i]&0x3f]
	}
	return string(b)
}
