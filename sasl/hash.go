package sasl

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2Params are the argon2id cost parameters (RFC 9106 section 3.1).
type Argon2Params struct {
	// Memory is the memory size m in KiB.
	Memory uint32
	// Time is the number of passes t.
	Time uint32
	// Threads is the degree of parallelism p.
	Threads uint8
	// SaltLength is the salt length in bytes.
	SaltLength uint32
	// KeyLength is the tag (hash) length in bytes.
	KeyLength uint32
}

// DefaultArgon2Params returns the parameters HashPassword uses:
// m=65536 (64 MiB), t=2, p=2, a 16-byte salt and a 32-byte hash.
//
// Measured with golang.org/x/crypto/argon2 on a 2-core AMD EPYC VM
// (wall time per hash): m=64MiB t=3 p=2 90 ms; m=64MiB t=2 p=2 46 ms;
// m=64MiB t=1 p=2 25 ms; m=64MiB t=3 p=1 119 ms; OWASP's minimum
// m=19MiB t=2 p=1 22 ms. The default keeps RFC 9106's 64 MiB memory,
// exceeds OWASP's recommended settings, and holds one login to about
// 46 ms using both cores, which a mail client does once per connection.
// Each concurrent login needs 64 MiB, and a 2-core server checks roughly
// 20 passwords per second at most; the SMTP layer's per-client failure
// budget is what keeps password guessing from turning into a denial of
// service.
func DefaultArgon2Params() Argon2Params {
	return Argon2Params{Memory: 64 * 1024, Time: 2, Threads: 2, SaltLength: 16, KeyLength: 32}
}

// Bounds on argon2id parameters accepted by VerifyPassword and
// HashPasswordParams, so a mistyped hash in the configuration cannot make
// each login allocate gigabytes or run for minutes.
const (
	maxArgon2Memory = 1 << 20 // KiB: 1 GiB
	maxArgon2Time   = 64
	minArgon2Salt   = 8
	maxArgon2Salt   = 64
	minArgon2Key    = 16
	maxArgon2Key    = 64
)

// maxBcryptCost bounds the bcrypt cost accepted, for the same reason:
// cost 16 already takes seconds per login.
const maxBcryptCost = 16

// bcryptMaxPassword is the number of password bytes bcrypt uses; it
// ignores the rest.
const bcryptMaxPassword = 72

// validate checks p against the accepted bounds.
func (p Argon2Params) validate() error {
	switch {
	case p.Threads < 1:
		return fmt.Errorf("%w: argon2id: parallelism must be at least 1", ErrInvalidSecret)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxArgon2Memory:
		return fmt.Errorf("%w: argon2id: memory must be between 8*p and %d KiB", ErrInvalidSecret, maxArgon2Memory)
	case p.Time < 1 || p.Time > maxArgon2Time:
		return fmt.Errorf("%w: argon2id: time must be between 1 and %d", ErrInvalidSecret, maxArgon2Time)
	case p.SaltLength < minArgon2Salt || p.SaltLength > maxArgon2Salt:
		return fmt.Errorf("%w: argon2id: salt must be %d to %d bytes", ErrInvalidSecret, minArgon2Salt, maxArgon2Salt)
	case p.KeyLength < minArgon2Key || p.KeyLength > maxArgon2Key:
		return fmt.Errorf("%w: argon2id: hash must be %d to %d bytes", ErrInvalidSecret, minArgon2Key, maxArgon2Key)
	}
	return nil
}

// HashPassword hashes password with argon2id and DefaultArgon2Params and
// returns the PHC string format
//
//	$argon2id$v=19$m=65536,t=2,p=2$<salt>$<hash>
//
// with unpadded standard base64 salt and hash, the format of the
// reference implementation, libsodium and Dovecot's ARGON2ID scheme. The
// password must be non-empty, at most MaxPasswordLength bytes and without
// NUL, since PLAIN and LOGIN could not send any other.
func HashPassword(password string) (string, error) {
	return HashPasswordParams(password, DefaultArgon2Params())
}

// HashPasswordParams is HashPassword with explicit parameters; they must be
// within the bounds VerifyPassword accepts.
func HashPasswordParams(password string, p Argon2Params) (string, error) {
	if password == "" {
		return "", errors.New("sasl: empty password")
	}
	if err := checkPassword(password); err != nil {
		return "", errors.New("sasl: password is too long or contains NUL")
	}
	if err := p.validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLength)
	_, _ = rand.Read(salt) // never fails (crypto/rand documentation)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLength)
	return encodeArgon2id(p, salt, key), nil
}

// encodeArgon2id writes the PHC string.
func encodeArgon2id(p Argon2Params, salt, key []byte) string {
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64(salt), b64(key))
}

// VerifyPassword reports whether password matches encoded, which is an
// argon2id PHC string (as HashPassword writes) or a bcrypt hash with
// prefix $2a$, $2b$ or $2y$. The comparison of hash outputs is constant
// time. A mismatch is (false, nil). Dovecot's "{SCHEME}" forms and the
// crypt(3) ones listed in scheme.go are accepted too. An encoded hash of
// another format gives ErrUnknownHashFormat (an *UnknownSchemeError when
// the scheme has a name); a malformed one, or one with parameters out
// of bounds, an error matching ErrInvalidSecret. Errors never contain the
// password or the hash.
//
// bcrypt ignores password bytes after the 72nd; so that such a password
// cannot match a hash of its prefix, a longer password never matches a
// bcrypt hash (the hash is still computed, so the time taken is the same).
func VerifyPassword(encoded, password string) (bool, error) {
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		p, salt, key, err := parseArgon2id(encoded)
		if err != nil {
			return false, err
		}
		got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLength)
		return subtle.ConstantTimeCompare(got, key) == 1, nil
	case isBcrypt(encoded):
		if err := checkHash(encoded); err != nil {
			return false, err
		}
		err := bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password))
		switch {
		case err == nil:
			return len(password) <= bcryptMaxPassword, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		}
		return false, fmt.Errorf("%w: bcrypt hash does not parse", ErrInvalidSecret)
	}
	return verifyStored(encoded, password) // Dovecot's {SCHEME}s: scheme.go
}

// CheckPasswordHash reports whether encoded is a password hash
// VerifyPassword and Store accept, without computing anything expensive:
// nil, ErrUnknownHashFormat for a hash of another format, or an error
// matching ErrInvalidSecret for a malformed one or one with parameters out
// of bounds. Errors never contain the hash. Configuration loaders use it
// to name the user whose hash is wrong.
func CheckPasswordHash(encoded string) error { return checkHash(encoded) }

// checkHash is CheckPasswordHash.
func checkHash(encoded string) error {
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		_, _, _, err := parseArgon2id(encoded)
		return err
	case isBcrypt(encoded):
		cost, err := bcrypt.Cost([]byte(encoded))
		if err != nil || len(encoded) != 60 {
			return fmt.Errorf("%w: bcrypt hash does not parse", ErrInvalidSecret)
		}
		if cost < bcrypt.MinCost || cost > maxBcryptCost {
			return fmt.Errorf("%w: bcrypt cost must be %d to %d", ErrInvalidSecret, bcrypt.MinCost, maxBcryptCost)
		}
		return nil
	}
	return checkStored(encoded) // Dovecot's {SCHEME}s: scheme.go
}

// isBcrypt reports whether encoded has one of the bcrypt prefixes we
// accept. $2$ and $2x$ (the buggy crypt_blowfish variant) are refused.
func isBcrypt(encoded string) bool {
	return strings.HasPrefix(encoded, "$2a$") || strings.HasPrefix(encoded, "$2b$") ||
		strings.HasPrefix(encoded, "$2y$")
}

// parseArgon2id parses "$argon2id$v=19$m=M,t=T,p=P$salt$hash" strictly:
// version 19 only, parameters in that order, unpadded base64, and the
// bounds of Argon2Params.validate.
func parseArgon2id(encoded string) (Argon2Params, []byte, []byte, error) {
	fields := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(fields) != 6 || fields[0] != "" || fields[1] != "argon2id" {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: argon2id: want $argon2id$v=19$m=M,t=T,p=P$salt$hash", ErrInvalidSecret)
	}
	if fields[2] != "v="+strconv.Itoa(argon2.Version) {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: argon2id: only version %d is supported", ErrInvalidSecret, argon2.Version)
	}
	params := strings.Split(fields[3], ",")
	if len(params) != 3 {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: argon2id: want m=M,t=T,p=P", ErrInvalidSecret)
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		text, ok := strings.CutPrefix(params[i], name)
		v, err := strconv.ParseUint(text, 10, 32)
		if !ok || err != nil || text != strconv.FormatUint(v, 10) {
			return Argon2Params{}, nil, nil, fmt.Errorf("%w: argon2id: want m=M,t=T,p=P in decimal", ErrInvalidSecret)
		}
		vals[i] = v
	}
	if vals[2] > 255 {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: argon2id: parallelism above 255", ErrInvalidSecret)
	}
	salt, err1 := decodeBase64(base64.RawStdEncoding, fields[4])
	key, err2 := decodeBase64(base64.RawStdEncoding, fields[5])
	if err1 != nil || err2 != nil {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: argon2id: salt and hash must be unpadded base64", ErrInvalidSecret)
	}
	p := Argon2Params{
		Memory:     uint32(vals[0]),
		Time:       uint32(vals[1]),
		Threads:    uint8(vals[2]),
		SaltLength: uint32(len(salt)),
		KeyLength:  uint32(len(key)),
	}
	if err := p.validate(); err != nil {
		return Argon2Params{}, nil, nil, err
	}
	return p, salt, key, nil
}
