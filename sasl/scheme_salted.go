package sasl

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Salted SHA ({SSHA}, {SSHA256}, {SSHA512}): base64 of H(password salt)
// followed by the salt, as OpenLDAP's slappasswd and Dovecot write them.

// maxSaltedSHASalt bounds the salt of a salted SHA hash (Dovecot writes 4
// bytes, slappasswd 4 or 8): a longer one is a damaged entry.
const maxSaltedSHASalt = 64

// saltedSHAHash returns the hash and scheme name of a salted SHA kind.
func saltedSHAHash(kind storedKind) (func() hash.Hash, int, string) {
	switch kind {
	case kindSSHA512:
		return sha512.New, sha512.Size, "SSHA512"
	case kindSSHA256:
		return sha256.New, sha256.Size, "SSHA256"
	}
	return sha1.New, sha1.Size, "SSHA"
}

// parseSaltedSHA splits base64(digest salt) into digest and salt; the salt
// must be 1 to 64 bytes.
func parseSaltedSHA(kind storedKind, data string) (digest, salt []byte, err error) {
	_, size, name := saltedSHAHash(kind)
	if strings.ContainsAny(data, "\r\n") || len(data) > base64.StdEncoding.EncodedLen(size+maxSaltedSHASalt) {
		return nil, nil, fmt.Errorf("%w: %s: want base64 of the digest and a salt of at most %d bytes", ErrInvalidSecret, name, maxSaltedSHASalt)
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(raw) <= size || len(raw) > size+maxSaltedSHASalt {
		return nil, nil, fmt.Errorf("%w: %s: want base64 of the digest and a salt of 1 to %d bytes", ErrInvalidSecret, name, maxSaltedSHASalt)
	}
	return raw[:size], raw[size:], nil
}

// verifySaltedSHA compares H(password salt) with the stored digest in
// constant time.
func verifySaltedSHA(kind storedKind, p parsedStored, password string) bool {
	newH, _, _ := saltedSHAHash(kind)
	h := newH()
	h.Write([]byte(password))
	h.Write(p.salt)
	return subtle.ConstantTimeCompare(h.Sum(nil), p.key) == 1
}

// Dovecot's {PBKDF2}: "$1$" salt "$" rounds "$" 40 hex digits, the
// PBKDF2-HMAC-SHA1 key of 20 bytes; the salt is used as the text it is
// (Dovecot's src/auth/password-scheme-pbkdf2.c).
const (
	// maxPBKDF2Rounds bounds the iterations accepted: HMAC-SHA1 costs
	// about 0.18 µs per iteration (100,000 took 18 ms on a busy 2-core AMD
	// EPYC VM), so 10,000,000 stay under two seconds; SCRAM keys have the
	// same bound.
	maxPBKDF2Rounds = 10000000
	// maxPBKDF2Salt bounds the salt text (Dovecot writes 16 characters).
	maxPBKDF2Salt = 64
	// pbkdf2SaltLength and pbkdf2HashRounds are what HashWithScheme
	// writes; Dovecot's default is 5000 rounds, too few today.
	pbkdf2SaltLength = 16
	pbkdf2HashRounds = 100000
)

// parsePBKDF2 parses "$1$salt$rounds$hexkey".
func parsePBKDF2(data string) (salt []byte, rounds int, key []byte, err error) {
	bad := func(why string) ([]byte, int, []byte, error) {
		return nil, 0, nil, fmt.Errorf("%w: PBKDF2: %s", ErrInvalidSecret, why)
	}
	rest, ok := strings.CutPrefix(data, "$1$")
	fields := strings.Split(rest, "$")
	if !ok || len(fields) != 3 {
		return bad("want $1$salt$rounds$hash")
	}
	if len(fields[0]) > maxPBKDF2Salt || strings.ContainsAny(fields[0], "\x00\r\n") {
		return bad(fmt.Sprintf("salt longer than %d characters or with a control character", maxPBKDF2Salt))
	}
	n, err := strconv.Atoi(fields[1])
	if err != nil || fields[1] != strconv.Itoa(n) || n < 1 {
		return bad("rounds is not a positive decimal number")
	}
	if n > maxPBKDF2Rounds {
		return bad(fmt.Sprintf("rounds above %d", maxPBKDF2Rounds))
	}
	key, err = hex.DecodeString(fields[2])
	if err != nil || len(key) != sha1.Size {
		return bad("hash is not 40 hexadecimal digits")
	}
	return []byte(fields[0]), n, key, nil
}

// verifyPBKDF2 derives the key and compares it in constant time.
func verifyPBKDF2(p parsedStored, password string) bool {
	got, err := pbkdf2.Key(sha1.New, password, p.salt, p.rounds, sha1.Size)
	if err != nil {
		return false
	}
	return hmac.Equal(got, p.key)
}

// formatPBKDF2 writes Dovecot's PBKDF2 form for password.
func formatPBKDF2(password, salt string, rounds int) string {
	key, err := pbkdf2.Key(sha1.New, password, []byte(salt), rounds, sha1.Size)
	if err != nil {
		// Only FIPS 140-only mode refuses HMAC-SHA1 keys; lmtpd is not
		// built for it.
		panic("sasl: PBKDF2-HMAC-SHA1: " + err.Error())
	}
	return fmt.Sprintf("$1$%s$%d$%s", salt, rounds, hex.EncodeToString(key))
}

// argon2i, the data-independent variant libsodium writes for Dovecot's
// {ARGON2I}: "$argon2i$v=19$m=M,t=T,p=P$salt$hash", with the argon2id
// bounds.

// parseArgon2i parses an argon2i PHC string with parseArgon2id's rules:
// the two strings differ only in the identifier.
func parseArgon2i(data string) (Argon2Params, []byte, []byte, error) {
	rest, ok := strings.CutPrefix(data, "$argon2i$")
	if !ok {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: ARGON2I: want $argon2i$v=19$m=M,t=T,p=P$salt$hash", ErrInvalidSecret)
	}
	return parseArgon2id("$argon2id$" + rest)
}

// verifyArgon2i computes argon2i and compares in constant time.
func verifyArgon2i(p parsedStored, password string) bool {
	got := argon2.Key([]byte(password), p.salt, p.argon.Time, p.argon.Memory, p.argon.Threads, p.argon.KeyLength)
	return subtle.ConstantTimeCompare(got, p.key) == 1
}

// hashArgon2i hashes password with argon2i and p, in the PHC format.
func hashArgon2i(password string, p Argon2Params) (string, error) {
	if err := p.validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLength)
	_, _ = rand.Read(salt) // never fails (crypto/rand documentation)
	key := argon2.Key([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLength)
	return "$argon2i" + strings.TrimPrefix(encodeArgon2id(p, salt, key), "$argon2id"), nil
}
