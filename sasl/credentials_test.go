package sasl

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestNewScramCredentials(t *testing.T) {
	c, err := NewScramCredentials("pencil")
	if err != nil {
		t.Fatal(err)
	}
	if c.Iterations != DefaultScramIterations || len(c.Salt) != scramSaltLength {
		t.Fatalf("iterations %d, salt %d bytes; want %d and %d", c.Iterations, len(c.Salt), DefaultScramIterations, scramSaltLength)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c2, _ := NewScramCredentials("pencil")
	if bytes.Equal(c.Salt, c2.Salt) {
		t.Fatal("two salts are equal")
	}
	// The keys work with a client written from the RFC.
	s := NewScramServer(func(string) (ScramCredentials, error) { return c, nil }, nil)
	if err := runScram(t, s, &scramClient{username: "user", password: "pencil", nonce: "n"}, true, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := NewScramCredentials(""); err == nil {
		t.Fatal("empty password accepted")
	}
}

func TestScramCredentialsPasswordPreparation(t *testing.T) {
	salt := []byte("0123456789abcdef")
	tests := []struct{ name, stored, typed string }{
		// SASLprep maps U+00A0 to a space and removes U+00AD, so a
		// client that prepares its password sends the mapped form.
		{"non-ASCII space", "pen\u00a0cil", "pen cil"},
		{"soft hyphen", "pen\u00adcil", "pencil"},
		// A prohibited character makes SASLprep fail; the raw
		// password is used, as PostgreSQL does.
		{"control character kept raw", "pen\tcil", "pen\tcil"},
		{"invalid UTF-8 kept raw", "pen\xffcil", "pen\xffcil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := deriveScramCredentials(tt.stored, salt, MinScramIterations)
			if err != nil {
				t.Fatal(err)
			}
			s := NewScramServer(func(string) (ScramCredentials, error) { return c, nil }, nil)
			if err := runScram(t, s, &scramClient{username: "user", password: tt.typed, nonce: "n"}, true, nil, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestScramCredentialsEncoding(t *testing.T) {
	c := rfcCredentials(t)
	enc := c.Encode()
	if !strings.HasPrefix(enc, "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$") {
		t.Fatalf("Encode() = %q", enc)
	}
	back, err := ParseScramCredentials(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.Iterations != c.Iterations || !bytes.Equal(back.Salt, c.Salt) ||
		!bytes.Equal(back.StoredKey, c.StoredKey) || !bytes.Equal(back.ServerKey, c.ServerKey) {
		t.Fatal("round trip changed the credentials")
	}
	var viaText ScramCredentials
	if err := viaText.UnmarshalText([]byte(enc)); err != nil || viaText.Encode() != enc {
		t.Fatalf("UnmarshalText: %v", err)
	}
}

// TestScramCredentialsPostgres parses a verifier in PostgreSQL's
// pg_authid.rolpassword format for the RFC 7677 example (user "user",
// password "pencil"); the same StoredKey and ServerKey appear in other
// SCRAM implementations' tests, for example the ongres/scram library.
func TestScramCredentialsPostgres(t *testing.T) {
	const pg = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
	c, err := ParseScramCredentials(pg)
	if err != nil {
		t.Fatal(err)
	}
	want := rfcCredentials(t)
	if !bytes.Equal(c.StoredKey, want.StoredKey) || !bytes.Equal(c.ServerKey, want.ServerKey) {
		t.Fatalf("keys differ from the RFC 7677 derivation: got %s", want.Encode())
	}
}

func TestParseScramCredentialsErrors(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	salt := base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"other scheme", "SCRAM-SHA-1$4096:" + salt + "$" + key + ":" + key},
		{"no key part", "SCRAM-SHA-256$4096:" + salt},
		{"no salt", "SCRAM-SHA-256$4096$" + key + ":" + key},
		{"one key", "SCRAM-SHA-256$4096:" + salt + "$" + key},
		{"iterations not a number", "SCRAM-SHA-256$many:" + salt + "$" + key + ":" + key},
		{"iterations with sign", "SCRAM-SHA-256$+4096:" + salt + "$" + key + ":" + key},
		{"iterations below 4096", "SCRAM-SHA-256$4095:" + salt + "$" + key + ":" + key},
		{"iterations too many", "SCRAM-SHA-256$10000001:" + salt + "$" + key + ":" + key},
		{"salt not base64", "SCRAM-SHA-256$4096:!!!!$" + key + ":" + key},
		{"salt unpadded", "SCRAM-SHA-256$4096:" + strings.TrimRight(salt, "=") + "$" + key + ":" + key},
		{"salt too short", "SCRAM-SHA-256$4096:c2FsdA==$" + key + ":" + key},
		{"stored key not base64", "SCRAM-SHA-256$4096:" + salt + "$!!!!:" + key},
		{"server key not base64", "SCRAM-SHA-256$4096:" + salt + "$" + key + ":!!!!"},
		{"short key", "SCRAM-SHA-256$4096:" + salt + "$c2FsdA==:" + key},
		{"line break in key", "SCRAM-SHA-256$4096:" + salt + "$" + key[:4] + "\n" + key[4:] + ":" + key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseScramCredentials(tt.in)
			if !errors.Is(err, ErrInvalidSecret) {
				t.Fatalf("error %v, want ErrInvalidSecret", err)
			}
			checkNoLeak(t, err, key, salt, "c2FsdA")
			var c ScramCredentials
			if err := c.UnmarshalText([]byte(tt.in)); !errors.Is(err, ErrInvalidSecret) {
				t.Fatalf("UnmarshalText: %v, want ErrInvalidSecret", err)
			}
		})
	}
}

func TestMakeSecrets(t *testing.T) {
	hash, scram, err := MakeSecrets("pencil")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := VerifyPassword(hash, "pencil"); !ok || err != nil {
		t.Fatalf("VerifyPassword(hash) = (%v, %v)", ok, err)
	}
	c, err := ParseScramCredentials(scram)
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewStore(map[string]User{"user": {PasswordHash: hash, Scram: &c}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := store.NewServer("scram-sha-256")
	if err != nil {
		t.Fatal(err)
	}
	if err := runScram(t, srv.(*ScramServer), &scramClient{username: "user", password: "pencil", nonce: "n"}, true, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "a\x00b"} {
		if _, _, err := MakeSecrets(bad); err == nil {
			t.Fatalf("MakeSecrets(%q) succeeded", bad)
		}
	}
}
