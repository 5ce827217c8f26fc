package sasl

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// SHA-crypt ($5$ SHA-256, $6$ SHA-512) as Ulrich Drepper specified it in
// "Unix crypt using SHA-256 and SHA-512" (2008, the text glibc, libxcrypt,
// OpenSSL and Dovecot's SHA256-CRYPT/SHA512-CRYPT follow). The step numbers
// in comments are the specification's.
const (
	// shaCryptDefaultRounds is the count used when the hash has no
	// "rounds=" field (specification: 5000).
	shaCryptDefaultRounds = 5000
	// shaCryptMinRounds and shaCryptSpecMaxRounds are the specification's
	// clamps: a smaller or larger "rounds=" is silently raised or lowered.
	shaCryptMinRounds     = 1000
	shaCryptSpecMaxRounds = 999999999
	// maxShaCryptRounds bounds what VerifyPassword accepts, like the
	// argon2id bounds: SHA-512 crypt costs about 0.2 µs per round on a
	// busy 2-core AMD EPYC VM (100,000 rounds: 21 ms), so 2,000,000 rounds
	// hold one login to about half a second; a hash asking more is refused
	// rather than letting a typo spend minutes per login.
	maxShaCryptRounds = 2000000
	// shaCryptMaxSalt is the number of salt characters used; longer salts
	// are truncated (specification).
	shaCryptMaxSalt = 16
	// shaCryptHashRounds is what HashWithScheme writes: 100,000 rounds
	// took 21 ms for SHA512-CRYPT and 11 ms for SHA256-CRYPT there, the
	// order of the argon2id default's 46 ms (glibc's default, 5000, is
	// twenty times cheaper).
	shaCryptHashRounds = 100000
)

// shaCryptVariant is one of the two SHA-crypt algorithms.
type shaCryptVariant struct {
	id     string // "$5$" or "$6$"
	name   string // Dovecot scheme name
	newH   func() hash.Hash
	size   int      // digest size
	perm   [][3]int // output byte order, groups of three (step 22)
	tail   []int    // the last, short group
	encLen int      // length of the encoded hash
}

var (
	sha512Crypt = &shaCryptVariant{
		id: "$6$", name: "SHA512-CRYPT", newH: sha512.New, size: sha512.Size, encLen: 86,
		perm: [][3]int{
			{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4}, {47, 5, 26}, {6, 27, 48},
			{28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13},
			{56, 14, 35}, {15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19}, {62, 20, 41},
		},
		tail: []int{63},
	}
	sha256Crypt = &shaCryptVariant{
		id: "$5$", name: "SHA256-CRYPT", newH: sha256.New, size: sha256.Size, encLen: 43,
		perm: [][3]int{
			{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
			{15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29},
		},
		tail: []int{31, 30},
	}
)

// shaCryptParams is a parsed SHA-crypt string.
type shaCryptParams struct {
	v *shaCryptVariant
	// rounds is the count to run, after the specification's clamps.
	rounds int
	// explicit is true when the string had a "rounds=" field.
	explicit bool
	salt     string
	hash     string // encoded hash; "" when parsing a salt only
}

// parseShaCrypt parses "$6$[rounds=N$]salt$hash" (or $5$). The salt is
// truncated to 16 characters as the specification does; the hash must have
// the exact length and alphabet. Errors match ErrInvalidSecret and contain
// nothing of the input.
func parseShaCrypt(v *shaCryptVariant, s string) (shaCryptParams, error) {
	p := shaCryptParams{v: v, rounds: shaCryptDefaultRounds}
	rest, ok := strings.CutPrefix(s, v.id)
	if !ok {
		return p, fmt.Errorf("%w: %s: want %s prefix", ErrInvalidSecret, v.name, v.id)
	}
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		text, after, found := strings.Cut(r, "$")
		n, err := strconv.ParseUint(text, 10, 64)
		if !found || err != nil || text == "" || text[0] == '+' {
			return p, fmt.Errorf("%w: %s: rounds= is not a decimal number", ErrInvalidSecret, v.name)
		}
		switch {
		case n < shaCryptMinRounds:
			n = shaCryptMinRounds
		case n > shaCryptSpecMaxRounds:
			n = shaCryptSpecMaxRounds
		}
		if n > maxShaCryptRounds {
			return p, fmt.Errorf("%w: %s: rounds above %d", ErrInvalidSecret, v.name, maxShaCryptRounds)
		}
		p.rounds, p.explicit, rest = int(n), true, after
	}
	salt, hashText, ok := strings.Cut(rest, "$")
	if !ok {
		return p, fmt.Errorf("%w: %s: want %s[rounds=N$]salt$hash", ErrInvalidSecret, v.name, v.id)
	}
	if len(salt) > shaCryptMaxSalt {
		salt = salt[:shaCryptMaxSalt]
	}
	if strings.ContainsAny(salt, "\x00\n\r:") {
		return p, fmt.Errorf("%w: %s: salt contains a control character", ErrInvalidSecret, v.name)
	}
	if len(hashText) != v.encLen || strings.Trim(hashText, cryptAlphabet) != "" {
		return p, fmt.Errorf("%w: %s: hash must be %d characters of ./0-9A-Za-z", ErrInvalidSecret, v.name, v.encLen)
	}
	p.salt, p.hash = salt, hashText
	return p, nil
}

// verifyShaCrypt checks password against a parsed hash in constant time.
func verifyShaCrypt(p shaCryptParams, password string) bool {
	got := shaCryptEncode(p.v, shaCryptSum(p.v, []byte(password), []byte(p.salt), p.rounds))
	return subtle.ConstantTimeCompare([]byte(got), []byte(p.hash)) == 1
}

// formatShaCrypt returns the full crypt string for password, salt and
// rounds, with "rounds=" written when explicit (as the tools do when it
// was asked for, even at the default).
func formatShaCrypt(v *shaCryptVariant, password, salt string, rounds int, explicit bool) string {
	var b strings.Builder
	b.WriteString(v.id)
	if explicit {
		fmt.Fprintf(&b, "rounds=%d$", rounds)
	}
	b.WriteString(salt)
	b.WriteByte('$')
	b.WriteString(shaCryptEncode(v, shaCryptSum(v, []byte(password), []byte(salt), rounds)))
	return b.String()
}

// shaCryptSum runs steps 1 to 21 of the specification and returns the
// final digest C.
func shaCryptSum(v *shaCryptVariant, pw, salt []byte, rounds int) []byte {
	// Steps 4-8: digest B = H(P S P).
	h := v.newH()
	h.Write(pw)
	h.Write(salt)
	h.Write(pw)
	b := h.Sum(nil)

	// Steps 1-3 and 9-12: digest A.
	h.Reset()
	h.Write(pw)
	h.Write(salt)
	n := len(pw)
	for ; n > v.size; n -= v.size {
		h.Write(b)
	}
	h.Write(b[:n])
	for n := len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(pw)
		}
	}
	a := h.Sum(nil)

	// Steps 13-16: the P sequence, DP repeated to len(P) bytes.
	h.Reset()
	for range len(pw) {
		h.Write(pw)
	}
	pseq := repeatTo(h.Sum(nil), len(pw))

	// Steps 17-20: the S sequence, DS repeated to len(S) bytes.
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	sseq := repeatTo(h.Sum(nil), len(salt))

	// Step 21: the rounds.
	c := a
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(pseq)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sseq)
		}
		if i%7 != 0 {
			h.Write(pseq)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pseq)
		}
		c = h.Sum(c[:0])
	}
	return c
}

// repeatTo returns d repeated to n bytes.
func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, d[:min(len(d), n-len(out))]...)
	}
	return out
}

// cryptAlphabet is crypt(3)'s base64 alphabet.
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// shaCryptEncode is step 22: the digest's bytes in the variant's order,
// three at a time, each group written as four characters, low bits first.
func shaCryptEncode(v *shaCryptVariant, c []byte) string {
	out := make([]byte, 0, v.encLen)
	put := func(w uint32, n int) {
		for range n {
			out = append(out, cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	for _, g := range v.perm {
		put(uint32(c[g[0]])<<16|uint32(c[g[1]])<<8|uint32(c[g[2]]), 4)
	}
	switch len(v.tail) {
	case 1: // SHA-512: the last byte alone, two characters
		put(uint32(c[v.tail[0]]), 2)
	case 2: // SHA-256: bytes 31 and 30, three characters
		put(uint32(c[v.tail[0]])<<8|uint32(c[v.tail[1]]), 3)
	}
	return string(out)
}
