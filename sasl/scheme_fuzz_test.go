package sasl

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseStored feeds arbitrary stored passwords to the parser and, when
// the cost is small, to VerifyPassword. Properties: no panic; every error
// matches ErrUnknownHashFormat or ErrInvalidSecret; an accepted hash has
// its cost within the bounds (checked before anything is computed); and a
// {PLAIN} or crypt hash never matches a password other than its own.
func FuzzParseStored(f *testing.F) {
	for _, s := range []string{
		"{SHA512-CRYPT}$6$rounds=1000$s$" + strings.Repeat("a", 86),
		"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
		"{SSHA}BeZMWN/z3Ej763ugxYxj/CMew/vIf5Y3",
		"{SSHA512}l06SOI6GGvoA7y/NIXilCnN/UFVDyfbhw1qmXeyXevk4vuYKqx9Ac/0fxrbFU1ioB2aHpJdd8pocuUNG/+9UlcCTlQA=",
		"{PBKDF2}$1$PqK4zxxpWc0C5zab$5000$fc92497946fe3b0d7077f842b5b251b52fa7eb9b",
		"{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$tJcoKULy2T9CX5ciJzasbg$Xp1/jb9EDLq3+12JQ2Kerk8Ise8PB08NSaHTjRBM62U",
		"{BLF-CRYPT}$2y$05$TPTYS/CBa.ZMHAVrNxKuKOUIEYtFNqhE.3BjRxRp1X8t0pAPeqbbS",
		"{CRAM-MD5}c0a49b541c47c13e0fed75e90df0510e8e19d265316dbafce5048e1f92c94232",
		"{PLAIN}x", "{CRYPT}$6$x$y", "{}", "{", "$1$", "$", "{BCRYPT}{BCRYPT}",
	} {
		f.Add(s, "Tr0ub4dor&3")
	}
	f.Fuzz(func(t *testing.T, stored, password string) {
		kind, p, err := parseStored(stored)
		if err != nil {
			if !errors.Is(err, ErrUnknownHashFormat) && !errors.Is(err, ErrInvalidSecret) {
				t.Fatalf("error %v matches no sentinel", err)
			}
			if _, verr := VerifyPassword(stored, password); verr == nil && !strings.HasPrefix(stored, "$argon2id$") && !isBcrypt(stored) {
				t.Fatalf("parseStored refused %q but VerifyPassword did not", stored)
			}
			return
		}
		// Cost bounds hold for everything accepted.
		switch kind {
		case kindSHA512Crypt, kindSHA256Crypt:
			if p.sha.rounds < shaCryptMinRounds || p.sha.rounds > maxShaCryptRounds || len(p.sha.salt) > shaCryptMaxSalt {
				t.Fatalf("SHA-crypt params out of bounds: %d rounds", p.sha.rounds)
			}
		case kindPBKDF2:
			if p.rounds < 1 || p.rounds > maxPBKDF2Rounds {
				t.Fatalf("PBKDF2 rounds %d", p.rounds)
			}
		case kindArgon2id, kindArgon2i:
			if p.argon.validate() != nil {
				t.Fatal("argon2 params out of bounds")
			}
		}
		// Verify only what is cheap, so the fuzzer stays fast.
		cheap := (kind == kindSHA512Crypt || kind == kindSHA256Crypt) && p.sha.rounds <= 2000 ||
			kind == kindPBKDF2 && p.rounds <= 2000 ||
			kind == kindSSHA || kind == kindSSHA256 || kind == kindSSHA512 || kind == kindPlain
		if !cheap {
			return
		}
		ok, err := VerifyPassword(stored, password)
		if err != nil {
			t.Fatalf("parsed but VerifyPassword failed: %v", err)
		}
		if kind == kindPlain && ok != (password == p.data) {
			t.Fatalf("{PLAIN} match %v for a different password", ok)
		}
	})
}
