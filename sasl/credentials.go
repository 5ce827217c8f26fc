package sasl

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// SCRAM-SHA-256 parameters.
const (
	// MinScramIterations is the smallest iteration count accepted for
	// stored SCRAM-SHA-256 keys: RFC 7677 section 4 says the count SHOULD
	// be at least 4096.
	MinScramIterations = 4096

	// DefaultScramIterations is the iteration count NewScramCredentials
	// uses. SCRAM keys sit in the same file as the argon2id hashes and are
	// the cheaper target for an offline guess, so the count is well above
	// the RFC 7677 minimum. PBKDF2-HMAC-SHA-256 with 100000 iterations
	// takes about 17 ms on one core of the AMD EPYC the defaults were
	// measured on (4096 take 0.8 ms); the cost falls on the client once
	// per login, and the server never runs PBKDF2 during an exchange.
	DefaultScramIterations = 100000

	// maxScramIterations bounds the count accepted from a stored
	// encoding, so that a typo cannot make every client spin for minutes.
	maxScramIterations = 10000000

	// scramSaltLength is the salt length NewScramCredentials uses: 16
	// random bytes, as in RFC 7677's example and PostgreSQL.
	scramSaltLength = 16
	// minScramSaltLength is the shortest salt accepted from a stored
	// encoding.
	minScramSaltLength = 8
	// scramPrefix starts the text encoding, the one PostgreSQL uses for
	// pg_authid.rolpassword.
	scramPrefix = "SCRAM-SHA-256$"
)

// ScramCredentials are what a server stores for SCRAM-SHA-256 (RFC 5802
// section 3): the salt and iteration count given to the client, and
// StoredKey = H(ClientKey) and ServerKey, each sha256.Size bytes. They are
// not the password, but ServerKey lets its holder impersonate the server
// and StoredKey plus one observed exchange lets its holder log in, so they
// are secrets: every way of printing or marshaling them yields
// "[REDACTED]". Use Encode for the text form.
type ScramCredentials struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// NewScramCredentials derives SCRAM-SHA-256 credentials for password with a
// random 16-byte salt and DefaultScramIterations iterations. The password
// is prepared as RFC 5802 section 2.2 asks (Normalize, the SASLprep subset
// PrepareUsername documents; a password SASLprep rejects is used as is,
// like PostgreSQL does).
func NewScramCredentials(password string) (ScramCredentials, error) {
	if password == "" {
		return ScramCredentials{}, fmt.Errorf("sasl: empty password")
	}
	salt := make([]byte, scramSaltLength)
	_, _ = rand.Read(salt) // never fails (crypto/rand documentation)
	return deriveScramCredentials(password, salt, DefaultScramIterations)
}

// deriveScramCredentials computes the keys of RFC 5802 section 3:
//
//	SaltedPassword := Hi(Normalize(password), salt, i)
//	ClientKey      := HMAC(SaltedPassword, "Client Key")
//	StoredKey      := H(ClientKey)
//	ServerKey      := HMAC(SaltedPassword, "Server Key")
//
// Hi is PBKDF2 with HMAC-SHA-256 and a 32-byte output.
func deriveScramCredentials(password string, salt []byte, iterations int) (ScramCredentials, error) {
	salted, err := pbkdf2.Key(sha256.New, preparePassword(password), salt, iterations, sha256.Size)
	if err != nil {
		return ScramCredentials{}, fmt.Errorf("sasl: deriving SCRAM keys: %w", err)
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	storedKey := sha256.Sum256(clientKey)
	return ScramCredentials{
		Salt:       append([]byte(nil), salt...),
		Iterations: iterations,
		StoredKey:  storedKey[:],
		ServerKey:  hmacSHA256(salted, []byte("Server Key")),
	}, nil
}

// ParseScramCredentials parses the text encoding
//
//	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//
// with standard, padded base64 for salt and keys: the format PostgreSQL
// stores. It checks what Validate checks. Errors match ErrInvalidSecret
// and do not contain the input.
func ParseScramCredentials(s string) (ScramCredentials, error) {
	rest, ok := strings.CutPrefix(s, scramPrefix)
	if !ok {
		return ScramCredentials{}, fmt.Errorf("%w: SCRAM: missing %q prefix", ErrInvalidSecret, scramPrefix)
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return ScramCredentials{}, fmt.Errorf("%w: SCRAM: want <iterations>:<salt>$<StoredKey>:<ServerKey>", ErrInvalidSecret)
	}
	iterText, saltText, ok1 := strings.Cut(params, ":")
	storedText, serverText, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return ScramCredentials{}, fmt.Errorf("%w: SCRAM: want <iterations>:<salt>$<StoredKey>:<ServerKey>", ErrInvalidSecret)
	}
	iterations, err := strconv.Atoi(iterText)
	if err != nil || iterText != strconv.Itoa(iterations) {
		return ScramCredentials{}, fmt.Errorf("%w: SCRAM: iteration count is not a decimal number", ErrInvalidSecret)
	}
	var c ScramCredentials
	c.Iterations = iterations
	for _, f := range []struct {
		name string
		text string
		dst  *[]byte
	}{{"salt", saltText, &c.Salt}, {"StoredKey", storedText, &c.StoredKey}, {"ServerKey", serverText, &c.ServerKey}} {
		b, err := decodeBase64(base64.StdEncoding, f.text)
		if err != nil {
			return ScramCredentials{}, fmt.Errorf("%w: SCRAM: %s is not base64", ErrInvalidSecret, f.name)
		}
		*f.dst = b
	}
	if err := c.Validate(); err != nil {
		return ScramCredentials{}, err
	}
	return c, nil
}

// Validate reports whether c can be used by a server: Iterations between
// MinScramIterations and 10000000, a salt of at least 8 bytes, and keys of
// sha256.Size bytes. Errors match ErrInvalidSecret.
func (c ScramCredentials) Validate() error {
	switch {
	case c.Iterations < MinScramIterations:
		return fmt.Errorf("%w: SCRAM: iteration count below %d (RFC 7677 section 4)", ErrInvalidSecret, MinScramIterations)
	case c.Iterations > maxScramIterations:
		return fmt.Errorf("%w: SCRAM: iteration count above %d", ErrInvalidSecret, maxScramIterations)
	case len(c.Salt) < minScramSaltLength:
		return fmt.Errorf("%w: SCRAM: salt shorter than %d bytes", ErrInvalidSecret, minScramSaltLength)
	case len(c.StoredKey) != sha256.Size || len(c.ServerKey) != sha256.Size:
		return fmt.Errorf("%w: SCRAM: keys must be %d bytes", ErrInvalidSecret, sha256.Size)
	}
	return nil
}

// Encode returns the text encoding ParseScramCredentials reads. The result
// is a secret; it belongs in a credentials file, never in a log.
func (c ScramCredentials) Encode() string {
	b64 := base64.StdEncoding.EncodeToString
	return scramPrefix + strconv.Itoa(c.Iterations) + ":" + b64(c.Salt) + "$" + b64(c.StoredKey) + ":" + b64(c.ServerKey)
}

// UnmarshalText parses the text encoding (see ParseScramCredentials), so a
// configuration decoder can fill a ScramCredentials from a string.
func (c *ScramCredentials) UnmarshalText(text []byte) error {
	parsed, err := ParseScramCredentials(string(text))
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// String returns "[REDACTED]".
func (c ScramCredentials) String() string { return redacted }

// Format prints "[REDACTED]" for every verb.
func (c ScramCredentials) Format(f fmt.State, _ rune) { formatRedacted(f) }

// MarshalJSON returns the JSON string "[REDACTED]"; the credentials are
// deliberately not serialisable this way.
func (c ScramCredentials) MarshalJSON() ([]byte, error) { return jsonRedacted() }

// LogValue returns "[REDACTED]" for log/slog.
func (c ScramCredentials) LogValue() slog.Value { return slogRedacted() }

// MakeSecrets derives, from one password, the two values a user entry in
// the configuration holds: an argon2id hash for PLAIN and LOGIN (see
// HashPassword) and SCRAM-SHA-256 keys in their text encoding (see
// NewScramCredentials). It backs the `lmtpd hash-password` command.
func MakeSecrets(password string) (hash, scram string, err error) {
	hash, err = HashPassword(password)
	if err != nil {
		return "", "", err
	}
	creds, err := NewScramCredentials(password)
	if err != nil {
		return "", "", err
	}
	return hash, creds.Encode(), nil
}

// hmacSHA256 returns HMAC-SHA-256(key, msg).
func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// decodeBase64 decodes s strictly: canonical padding and trailing bits
// (Encoding.Strict) and, unlike encoding/base64, no CR or LF anywhere, so
// each value has exactly one accepted spelling.
func decodeBase64(enc *base64.Encoding, s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("sasl: line break in base64")
	}
	return enc.Strict().DecodeString(s)
}
