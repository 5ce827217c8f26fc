package sasl

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// schemeVector is one line of testdata/schemes.txt: a hash written by a
// real tool (doveadm pw, openssl passwd, mkpasswd, slappasswd, python3).
type schemeVector struct {
	password, stored, tool string
}

func readSchemeVectors(t *testing.T) []schemeVector {
	t.Helper()
	f, err := os.Open("testdata/schemes.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []schemeVector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 3 {
			t.Fatalf("bad vector line %q", line)
		}
		out = append(out, schemeVector{fields[0], fields[1], fields[2]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("only %d vectors", len(out))
	}
	return out
}

// wantScheme is the canonical scheme a vector's stored form must report.
func wantScheme(stored string) string {
	if strings.HasPrefix(stored, "{") {
		name := strings.ToUpper(stored[1:strings.IndexByte(stored, '}')])
		if name != "CRYPT" {
			return name
		}
		stored = stored[strings.IndexByte(stored, '}')+1:]
	}
	switch {
	case strings.HasPrefix(stored, "$6$"):
		return "SHA512-CRYPT"
	case strings.HasPrefix(stored, "$5$"):
		return "SHA256-CRYPT"
	case strings.HasPrefix(stored, "$2"):
		return "BLF-CRYPT"
	}
	return "?"
}

func TestSchemeVectors(t *testing.T) {
	for _, v := range readSchemeVectors(t) {
		t.Run(v.tool+"/"+v.password, func(t *testing.T) {
			scheme, err := HashScheme(v.stored)
			if err != nil {
				t.Fatalf("HashScheme: %v", err)
			}
			if want := wantScheme(v.stored); scheme != want {
				t.Errorf("HashScheme = %s, want %s", scheme, want)
			}
			if scheme == "CRAM-MD5" {
				if _, err := VerifyPassword(v.stored, v.password); !errors.Is(err, ErrCRAMOnly) || !errors.Is(err, ErrInvalidSecret) {
					t.Errorf("VerifyPassword on CRAM-MD5: %v, want ErrCRAMOnly", err)
				}
				if err := checkHash(v.stored); !errors.Is(err, ErrCRAMOnly) {
					t.Errorf("checkHash on CRAM-MD5: %v, want ErrCRAMOnly", err)
				}
			} else {
				if err := checkHash(v.stored); err != nil {
					t.Errorf("checkHash: %v", err)
				}
				ok, err := VerifyPassword(v.stored, v.password)
				if err != nil || !ok {
					t.Errorf("right password: %v, %v", ok, err)
				}
				// The argon2 and bcrypt vectors cost the most: check a
				// wrong password on one of each tool's three.
				if (!strings.Contains(scheme, "ARGON2") && scheme != "BLF-CRYPT") || v.password == "a" {
					ok, err = VerifyPassword(v.stored, v.password+"x")
					if err != nil || ok {
						t.Errorf("wrong password: %v, %v", ok, err)
					}
				}
			}
			cram, err := CRAMSecretFromStored(v.stored)
			switch scheme {
			case "CRAM-MD5", "PLAIN":
				want, _ := NewCRAMSecret(v.password)
				if err != nil || cram != want {
					t.Errorf("CRAMSecretFromStored: %v (secret matches: %v)", err, cram == want)
				}
			default:
				if !errors.Is(err, ErrInvalidSecret) || !strings.Contains(err.Error(), scheme) {
					t.Errorf("CRAMSecretFromStored on %s: %v", scheme, err)
				}
			}
		})
	}
}

// TestShaCryptExact recomputes the whole string of the SHA-crypt vectors,
// salt and rounds= included, so the encoding is checked byte for byte and
// not only through VerifyPassword.
func TestShaCryptExact(t *testing.T) {
	n := 0
	for _, v := range readSchemeVectors(t) {
		kind, p, err := parseStored(v.stored)
		if err != nil || (kind != kindSHA512Crypt && kind != kindSHA256Crypt) {
			continue
		}
		n++
		rounds := p.sha.rounds
		got := formatShaCrypt(p.sha.v, v.password, p.sha.salt, rounds, p.sha.explicit)
		if !p.sha.explicit {
			// The tools omit rounds=5000; formatShaCrypt does too.
			if rounds != shaCryptDefaultRounds {
				t.Fatalf("%s: implicit rounds %d", v.tool, rounds)
			}
		}
		if strings.TrimPrefix(strings.TrimPrefix(v.stored, "{"+wantScheme(v.stored)+"}"), "{CRYPT}") != got {
			t.Errorf("%s: computed %s, tool wrote %s", v.tool, got, v.stored)
		}
	}
	if n < 20 {
		t.Fatalf("only %d SHA-crypt vectors", n)
	}
}

func TestStoredErrors(t *testing.T) {
	tests := []struct {
		name, stored string
		is           error
		scheme       string // for *UnknownSchemeError
	}{
		{"unknown scheme", "{MD5-CRYPT}$1$abc$def", ErrUnknownHashFormat, "MD5-CRYPT"},
		{"unknown scheme lower case", "{sha}abc", ErrUnknownHashFormat, "sha"},
		{"unsalted SHA512", "{SHA512}abc", ErrUnknownHashFormat, "SHA512"},
		{"scheme with odd characters", "{a b\x00}x", ErrUnknownHashFormat, "?"},
		{"unclosed brace", "{SSHA", ErrUnknownHashFormat, "?"},
		{"md5 crypt without prefix", "$1$saltsalt$abcdefghijklmnopqrstuv", ErrUnknownHashFormat, "$1$"},
		{"yescrypt", "$y$j9T$abc$def", ErrUnknownHashFormat, "$y$"},
		{"DES crypt in {CRYPT}", "{CRYPT}abJnggxhB/yWI", ErrUnknownHashFormat, "CRYPT"},
		{"md5 crypt in {CRYPT}", "{CRYPT}$1$abc$def", ErrUnknownHashFormat, "CRYPT $1$"},
		{"bare text", "hunter2", ErrUnknownHashFormat, ""},
		{"empty", "", ErrUnknownHashFormat, ""},
		{"SHA512-CRYPT short hash", "{SHA512-CRYPT}$6$salt$abc", ErrInvalidSecret, ""},
		{"SHA512-CRYPT wrong id", "{SHA512-CRYPT}$5$salt$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", ErrInvalidSecret, ""},
		{"SHA256-CRYPT bad alphabet", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc!", ErrInvalidSecret, ""},
		{"SHA-crypt rounds too high", "$5$rounds=2000001$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", ErrInvalidSecret, ""},
		{"SHA-crypt rounds huge", "$6$rounds=99999999999999999999$s$x", ErrInvalidSecret, ""},
		{"SHA-crypt rounds signed", "$5$rounds=+5000$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", ErrInvalidSecret, ""},
		{"SHA-crypt no salt end", "$6$saltonly", ErrInvalidSecret, ""},
		{"BLF-CRYPT not bcrypt", "{BLF-CRYPT}$6$x$y", ErrInvalidSecret, ""},
		{"BLF-CRYPT nested prefix", "{BCRYPT}{BCRYPT}$2y$05$x", ErrInvalidSecret, ""},
		{"bcrypt cost too high", "{BLF-CRYPT}$2y$17$TPTYS/CBa.ZMHAVrNxKuKOUIEYtFNqhE.3BjRxRp1X8t0pAPeqbbS", ErrInvalidSecret, ""},
		{"ARGON2ID holding argon2i", "{ARGON2ID}$argon2i$v=19$m=32768,t=4,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", ErrInvalidSecret, ""},
		{"argon2i memory too high", "$argon2i$v=19$m=2097152,t=4,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", ErrInvalidSecret, ""},
		{"argon2i version 16", "$argon2i$v=16$m=32768,t=4,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", ErrInvalidSecret, ""},
		{"SSHA too short", "{SSHA}AAAA", ErrInvalidSecret, ""},
		{"SSHA no salt", "{SSHA}" + strings.Repeat("A", 27) + "=", ErrInvalidSecret, ""},
		{"SSHA not base64", "{SSHA}!!!!", ErrInvalidSecret, ""},
		{"SSHA512 salt too long", "{SSHA512}" + strings.Repeat("AAAA", 60), ErrInvalidSecret, ""},
		{"PBKDF2 no $1$", "{PBKDF2}salt$5000$fc92497946fe3b0d7077f842b5b251b52fa7eb9b", ErrInvalidSecret, ""},
		{"PBKDF2 rounds zero", "{PBKDF2}$1$salt$0$fc92497946fe3b0d7077f842b5b251b52fa7eb9b", ErrInvalidSecret, ""},
		{"PBKDF2 rounds too high", "{PBKDF2}$1$salt$10000001$fc92497946fe3b0d7077f842b5b251b52fa7eb9b", ErrInvalidSecret, ""},
		{"PBKDF2 short hash", "{PBKDF2}$1$salt$5000$fc92", ErrInvalidSecret, ""},
		{"PBKDF2 extra field", "{PBKDF2}$1$salt$5000$fc92497946fe3b0d7077f842b5b251b52fa7eb9b$", ErrInvalidSecret, ""},
		{"CRAM-MD5 short", "{CRAM-MD5}abcd", ErrInvalidSecret, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyPassword(tc.stored, "password")
			if !errors.Is(err, tc.is) {
				t.Fatalf("VerifyPassword: %v, want %v", err, tc.is)
			}
			if err2 := checkHash(tc.stored); !errors.Is(err2, tc.is) {
				t.Errorf("checkHash: %v, want %v", err2, tc.is)
			}
			if _, err3 := HashScheme(tc.stored); !errors.Is(err3, tc.is) {
				t.Errorf("HashScheme: %v, want %v", err3, tc.is)
			}
			var use *UnknownSchemeError
			if tc.scheme != "" {
				if !errors.As(err, &use) || use.Scheme != tc.scheme {
					t.Fatalf("error %v does not name scheme %q", err, tc.scheme)
				}
				if !strings.Contains(err.Error(), tc.scheme) {
					t.Errorf("error text %q lacks the scheme", err)
				}
			}
			if len(tc.stored) > 8 && strings.Contains(err.Error(), tc.stored[len(tc.stored)-8:]) {
				t.Errorf("error %q contains the hash", err)
			}
		})
	}
}

func TestShaCryptRoundsClamp(t *testing.T) {
	// rounds=10 runs 1000 rounds (the specification's minimum), the value
	// openssl writes back.
	low, err := parseShaCrypt(sha512Crypt, "$6$rounds=10$roundstoolow$"+strings.Repeat("a", 86))
	if err != nil || low.rounds != shaCryptMinRounds || !low.explicit {
		t.Fatalf("rounds=10: %+v, %v", low, err)
	}
	long, err := parseShaCrypt(sha256Crypt, "$5$0123456789abcdefXYZ$"+strings.Repeat("a", 43))
	if err != nil || long.salt != "0123456789abcdef" {
		t.Fatalf("long salt: %q, %v", long.salt, err)
	}
}

// cheapHashCosts makes HashWithScheme fast for the test (the real costs
// take seconds under the race detector).
func cheapHashCosts(t *testing.T) {
	saved := hashCosts
	t.Cleanup(func() { hashCosts = saved })
	hashCosts.bcrypt, hashCosts.shaCryptRounds, hashCosts.pbkdf2Rounds = bcrypt.MinCost, shaCryptMinRounds, 1000
	hashCosts.argon2i = Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}
}

func TestHashCostDefaults(t *testing.T) {
	if hashCosts.bcrypt != 11 || hashCosts.shaCryptRounds != 100000 || hashCosts.pbkdf2Rounds != 100000 ||
		hashCosts.argon2i != (Argon2Params{Memory: 64 * 1024, Time: 3, Threads: 2, SaltLength: 16, KeyLength: 32}) {
		t.Errorf("HashWithScheme costs %+v differ from the documented ones", hashCosts)
	}
}

func TestHashWithScheme(t *testing.T) {
	cheapHashCosts(t)
	for _, scheme := range append([]string{"bcrypt", "sha512-crypt"}, StrongSchemes...) {
		t.Run(scheme, func(t *testing.T) {
			const pw = "s3cret pässword"
			stored, err := HashWithScheme(scheme, pw)
			if err != nil {
				t.Fatal(err)
			}
			name, err := HashScheme(stored)
			want := strings.ToUpper(scheme)
			if want == "BCRYPT" {
				want = "BLF-CRYPT"
			}
			if err != nil || name != want || !strings.HasPrefix(stored, "{"+want+"}") {
				t.Fatalf("HashScheme(%q) = %s, %v", stored, name, err)
			}
			if ok, err := VerifyPassword(stored, pw); !ok || err != nil {
				t.Errorf("right password: %v, %v", ok, err)
			}
			if ok, err := VerifyPassword(stored, pw+"!"); ok || err != nil {
				t.Errorf("wrong password: %v, %v", ok, err)
			}
			again, _ := HashWithScheme(scheme, pw)
			if again == stored {
				t.Error("two hashes of the same password are equal: no random salt")
			}
		})
	}
	for _, tc := range []struct{ scheme, pw, want string }{
		{"SSHA", "x", "too weak"},
		{"PLAIN", "x", "too weak"},
		{"CRAM-MD5", "x", "too weak"},
		{"MD5-CRYPT", "x", `"MD5-CRYPT"`},
		{"ARGON2ID", "", "empty"},
		{"SHA512-CRYPT", "a\x00b", "NUL"},
	} {
		if _, err := HashWithScheme(tc.scheme, tc.pw); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("HashWithScheme(%s, %q) = %v, want an error with %q", tc.scheme, tc.pw, err, tc.want)
		}
	}
}

// TestStoreAcceptsSchemes: the TOML user store takes Dovecot's forms too,
// and refuses a CRAM-MD5 secret as a password hash at load.
func TestStoreAcceptsSchemes(t *testing.T) {
	s, err := NewStore(map[string]User{
		"a": {PasswordHash: "{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
		"b": {PasswordHash: "{PLAIN}Hello world!"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"a", "b"} {
		if err := s.Authenticate(u, "Hello world!"); err != nil {
			t.Errorf("%s: %v", u, err)
		}
		if err := s.Authenticate(u, "hello world!"); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("%s wrong password: %v", u, err)
		}
	}
	_, err = NewStore(map[string]User{"c": {PasswordHash: "{CRAM-MD5}c0a49b541c47c13e0fed75e90df0510e8e19d265316dbafce5048e1f92c94232"}})
	if !errors.Is(err, ErrCRAMOnly) {
		t.Errorf("CRAM-MD5 as password hash: %v", err)
	}
	_, err = NewStore(map[string]User{"d": {PasswordHash: "{MD5}abc"}})
	var use *UnknownSchemeError
	if !errors.As(err, &use) || use.Scheme != "MD5" {
		t.Errorf("unknown scheme at load: %v", err)
	}
}
