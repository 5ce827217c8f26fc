package sasl

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashPasswordDefaults(t *testing.T) {
	h, err := HashPassword("pencil")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=2,p=2\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Fatalf("HashPassword = %q, want the PHC form with default parameters", h)
	}
	// Each default-cost hash takes tens of milliseconds: check the
	// right and one wrong password only.
	for _, tt := range []struct {
		password string
		want     bool
	}{{"pencil", true}, {"Pencil", false}} {
		ok, err := VerifyPassword(h, tt.password)
		if err != nil || ok != tt.want {
			t.Fatalf("VerifyPassword(%q) = (%v, %v), want %v", tt.password, ok, err, tt.want)
		}
	}
}

func TestHashPasswordSalted(t *testing.T) {
	a, b := mustHash(t, "pencil"), mustHash(t, "pencil")
	if a == b {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
}

func TestHashPasswordErrors(t *testing.T) {
	tests := []struct {
		name     string
		password string
		params   Argon2Params
	}{
		{"empty password", "", cheapArgon2},
		{"password with NUL", "a\x00b", cheapArgon2},
		{"password too long", strings.Repeat("p", MaxPasswordLength+1), cheapArgon2},
		{"no threads", "pencil", Argon2Params{Memory: 64, Time: 1, Threads: 0, SaltLength: 16, KeyLength: 32}},
		{"memory below 8*p", "pencil", Argon2Params{Memory: 15, Time: 1, Threads: 2, SaltLength: 16, KeyLength: 32}},
		{"memory too large", "pencil", Argon2Params{Memory: maxArgon2Memory + 1, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}},
		{"no passes", "pencil", Argon2Params{Memory: 64, Time: 0, Threads: 1, SaltLength: 16, KeyLength: 32}},
		{"too many passes", "pencil", Argon2Params{Memory: 64, Time: maxArgon2Time + 1, Threads: 1, SaltLength: 16, KeyLength: 32}},
		{"salt too short", "pencil", Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 7, KeyLength: 32}},
		{"salt too long", "pencil", Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 65, KeyLength: 32}},
		{"key too short", "pencil", Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 15}},
		{"key too long", "pencil", Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 65}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := HashPasswordParams(tt.password, tt.params)
			if err == nil {
				t.Fatalf("HashPasswordParams = %q, want an error", h)
			}
			checkNoLeak(t, err, tt.password)
		})
	}
}

// Known vectors from implementations independent of ours.
var knownHashes = []struct {
	name, encoded, password string
	slow                    bool // default cost: check only the match
}{
	// Reference implementation CLI (Debian argon2 0~20171227):
	// echo -n pencil | argon2 c29tZXNhbHQxMjM0 -id -t 1 -m 10 -p 1 -l 16 -e
	{"argon2id reference", "$argon2id$v=19$m=1024,t=1,p=1$YzI5dFpYTmhiSFF4TWpNMA$IHKFLcckJH7+CfoNARftdQ", "pencil", false},
	// echo -n password | argon2 somesaltsomesalt -id -t 2 -m 16 -p 2 -l 32 -e
	// (our default parameters)
	{"argon2id reference defaults", "$argon2id$v=19$m=65536,t=2,p=2$c29tZXNhbHRzb21lc2FsdA$AuvOwMXBQOLbZ1niEaxDBWzMAykNPgj15+amwSisSnQ", "password", true},
	// crypt_blowfish test vector, reproduced with libxcrypt
	// (Python crypt.crypt) for each prefix.
	{"bcrypt $2a$", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", false},
	{"bcrypt $2b$", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", false},
	{"bcrypt $2y$", "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", false},
	{"bcrypt $2y$ cost 4", "$2y$04$abcdefghijklmnopqrstuu/FyAyuZSl3DbPdvio4KrIBdz2k2yhV2", "pencil", false},
}

func TestVerifyPasswordKnownVectors(t *testing.T) {
	for _, tt := range knownHashes {
		t.Run(tt.name, func(t *testing.T) {
			cases := []struct {
				password string
				want     bool
			}{{tt.password, true}, {tt.password + "x", false}, {"", false}}
			if tt.slow {
				cases = cases[:1]
			}
			for _, c := range cases {
				ok, err := VerifyPassword(tt.encoded, c.password)
				if err != nil || ok != c.want {
					t.Fatalf("VerifyPassword(%q) = (%v, %v), want %v", c.password, ok, err, c.want)
				}
			}
		})
	}
}

func TestHashRoundTrip(t *testing.T) {
	passwords := []struct{ name, password string }{
		{"word", "pencil"},
		{"one byte", "p"},
		{"spaces and non-ASCII", "with spaces and ünïcödé"},
		{"longest", strings.Repeat("x", MaxPasswordLength)},
	}
	for _, pw := range passwords {
		p := pw.password
		t.Run("argon2id "+pw.name, func(t *testing.T) {
			h := mustHash(t, p)
			if ok, err := VerifyPassword(h, p); !ok || err != nil {
				t.Fatalf("VerifyPassword = (%v, %v)", ok, err)
			}
			if ok, err := VerifyPassword(h, p+"!"); ok || err != nil {
				t.Fatalf("VerifyPassword(wrong) = (%v, %v)", ok, err)
			}
		})
	}
	t.Run("bcrypt", func(t *testing.T) {
		h, err := bcrypt.GenerateFromPassword([]byte("pencil"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := VerifyPassword(string(h), "pencil"); !ok || err != nil {
			t.Fatalf("VerifyPassword = (%v, %v)", ok, err)
		}
		if ok, err := VerifyPassword(string(h), "pencil!"); ok || err != nil {
			t.Fatalf("VerifyPassword(wrong) = (%v, %v)", ok, err)
		}
	})
	t.Run("bcrypt ignores nothing", func(t *testing.T) {
		// bcrypt would accept any password with the same first 72
		// bytes; VerifyPassword must not.
		long := strings.Repeat("a", 72)
		h, err := bcrypt.GenerateFromPassword([]byte(long), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := VerifyPassword(string(h), long); !ok || err != nil {
			t.Fatalf("72-byte password: (%v, %v), want a match", ok, err)
		}
		if ok, err := VerifyPassword(string(h), long+"anything"); ok || err != nil {
			t.Fatalf("longer password: (%v, %v), want no match", ok, err)
		}
	})
}

func TestVerifyPasswordErrors(t *testing.T) {
	const salt, key = "YzI5dFpYTmhiSFF4TWpNMA", "IHKFLcckJH7+CfoNARftdQ"
	tests := []struct {
		name    string
		encoded string
		want    error
	}{
		{"empty", "", ErrUnknownHashFormat},
		{"plaintext", "pencil", ErrUnknownHashFormat},
		{"argon2d", "$argon2d$v=19$m=1024,t=1,p=1$" + salt + "$" + key, ErrUnknownHashFormat}, // argon2i: scheme_test.go
		{"md5-crypt", "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", ErrUnknownHashFormat},
		{"bcrypt $2x$", "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", ErrUnknownHashFormat},
		{"bcrypt $2$", "$2$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", ErrUnknownHashFormat},
		{"argon2id too few fields", "$argon2id$v=19$m=1024,t=1,p=1$" + salt, ErrInvalidSecret},
		{"argon2id too many fields", "$argon2id$v=19$m=1024,t=1,p=1$" + salt + "$" + key + "$", ErrInvalidSecret},
		{"argon2id version 16", "$argon2id$v=16$m=1024,t=1,p=1$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id no version", "$argon2id$m=1024,t=1,p=1$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id parameters reordered", "$argon2id$v=19$t=1,m=1024,p=1$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id parameter missing", "$argon2id$v=19$m=1024,t=1$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id leading zero", "$argon2id$v=19$m=01024,t=1,p=1$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id negative", "$argon2id$v=19$m=-1,t=1,p=1$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id overflow", "$argon2id$v=19$m=99999999999,t=1,p=1$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id memory too large", "$argon2id$v=19$m=2097152,t=1,p=1$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id parallelism too large", "$argon2id$v=19$m=1048576,t=1,p=256$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id zero passes", "$argon2id$v=19$m=1024,t=0,p=1$" + salt + "$" + key, ErrInvalidSecret},
		{"argon2id padded base64", "$argon2id$v=19$m=1024,t=1,p=1$" + salt + "==$" + key, ErrInvalidSecret},
		{"argon2id bad base64", "$argon2id$v=19$m=1024,t=1,p=1$!!!$" + key, ErrInvalidSecret},
		{"argon2id line break in base64", "$argon2id$v=19$m=1024,t=1,p=1$" + salt[:4] + "\r\n" + salt[4:] + "$" + key, ErrInvalidSecret},
		{"argon2id short salt", "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$" + key, ErrInvalidSecret},
		{"argon2id short hash", "$argon2id$v=19$m=1024,t=1,p=1$" + salt + "$c2FsdA", ErrInvalidSecret},
		{"bcrypt truncated", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0Xo", ErrInvalidSecret},
		{"bcrypt cost too high", "$2b$17$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", ErrInvalidSecret},
		{"bcrypt cost too low", "$2b$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", ErrInvalidSecret},
		{"bcrypt bad cost", "$2b$xx$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", ErrInvalidSecret},
		{"bcrypt trailing garbage", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeWx", ErrInvalidSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyPassword(tt.encoded, "pencil")
			if ok || !errors.Is(err, tt.want) {
				t.Fatalf("VerifyPassword = (%v, %v), want %v", ok, err, tt.want)
			}
			if err := CheckPasswordHash(tt.encoded); !errors.Is(err, tt.want) {
				t.Fatalf("CheckPasswordHash = %v, want %v", err, tt.want)
			}
			checkNoLeak(t, err, "pencil", salt, key, "CCCCCCCC")
		})
	}
}
