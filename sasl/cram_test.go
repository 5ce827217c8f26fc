package sasl

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// RFC 2195 section 2 example.
const (
	rfc2195Challenge = "<1896.697170952@postoffice.reston.mci.net>"
	rfc2195User      = "tim"
	rfc2195Password  = "tanstaaftanstaaf"
	rfc2195Response  = "tim b913a602c7eda7a495b4e6e7334d3890"
)

// newTestCram returns a CRAM-MD5 server with the RFC 2195 user and a fixed
// challenge.
func newTestCram(t testing.TB) *cramServer {
	secret := mustCRAM(t, rfc2195Password)
	s := NewCramMD5Server(func(name string) (CRAMSecret, error) {
		if name == rfc2195User {
			return *secret, nil
		}
		return CRAMSecret{}, ErrUnknownUser
	}, "example.org").(*cramServer)
	s.challenge = func() string { return rfc2195Challenge }
	return s
}

func TestCramMD5(t *testing.T) {
	tests := []struct {
		name     string
		initial  []byte
		response string
		want     error
		wantUser string
	}{
		{name: "RFC 2195 example", response: rfc2195Response, wantUser: "tim"},
		{name: "user name is case-sensitive", response: strings.ToUpper(rfc2195Response[:4]) + rfc2195Response[4:], want: ErrAuthFailed},
		{name: "upper-case hex digits", response: "tim " + strings.ToUpper(rfc2195Response[4:]), wantUser: "tim"},
		{name: "wrong digest", response: "tim b913a602c7eda7a495b4e6e7334d3891", want: ErrAuthFailed},
		{name: "unknown user", response: "bob b913a602c7eda7a495b4e6e7334d3890", want: ErrAuthFailed},
		{name: "initial response", initial: []byte("tim"), want: ErrMalformed},
		{name: "empty initial response", initial: []byte{}, want: ErrMalformed},
		{name: "no space", response: "timb913a602c7eda7a495b4e6e7334d3890", want: ErrMalformed},
		{name: "short digest", response: "tim b913a602c7eda7a495b4e6e7334d389", want: ErrMalformed},
		{name: "non-hex digest", response: "tim b913a602c7eda7a495b4e6e7334d389z", want: ErrMalformed},
		{name: "empty user name", response: " b913a602c7eda7a495b4e6e7334d3890", want: ErrMalformed},
		{name: "NUL in user name", response: "t\x00m b913a602c7eda7a495b4e6e7334d3890", want: ErrMalformed},
		{name: "too long", response: strings.Repeat("u", MaxUsernameLength+1) + " b913a602c7eda7a495b4e6e7334d3890", want: ErrMalformed},
		{name: "empty", response: "", want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestCram(t)
			var err error
			var done bool
			if tt.initial != nil {
				_, done, err = s.Next(tt.initial)
			} else {
				var ch []byte
				ch, done, err = s.Next(nil)
				if err != nil || done || string(ch) != rfc2195Challenge {
					t.Fatalf("Next(nil) = (%q, %v, %v), want the challenge", ch, done, err)
				}
				_, done, err = s.Next([]byte(tt.response))
			}
			if !done {
				t.Fatal("not done")
			}
			checkKind(t, err, tt.want)
			checkNoLeak(t, err, "b913a602", "bob")
			if s.Username() != tt.wantUser {
				t.Fatalf("Username() = %q, want %q", s.Username(), tt.wantUser)
			}
			if _, _, err := s.Next([]byte(rfc2195Response)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Next after the end: %v, want ErrMalformed", err)
			}
		})
	}
}

func TestCramMD5LookupError(t *testing.T) {
	internal := errors.New("backend down")
	s := NewCramMD5Server(func(string) (CRAMSecret, error) { return CRAMSecret{}, internal }, "")
	ch, _, err := s.Next(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(ch), "<") || !strings.HasSuffix(string(ch), "@"+defaultHostname()+">") {
		t.Fatalf("challenge %q is not <digits.time@hostname>", ch)
	}
	if _, _, err := s.Next([]byte(rfc2195Response)); !errors.Is(err, internal) || errors.Is(err, ErrAuthFailed) {
		t.Fatalf("error %v, want the lookup error wrapped", err)
	}
}

func TestCramChallengesDiffer(t *testing.T) {
	a, b := randomCramChallenge("h"), randomCramChallenge("h")
	if a == b {
		t.Fatalf("two challenges are equal: %q", a)
	}
}

// TestCRAMSecretMatchesHMAC checks the precomputed-context digest against
// crypto/hmac, for keys shorter than, equal to and longer than the block.
func TestCRAMSecretMatchesHMAC(t *testing.T) {
	for _, password := range []string{"a", rfc2195Password, strings.Repeat("k", 64), strings.Repeat("long", 40)} {
		t.Run(fmt.Sprintf("length %d", len(password)), func(t *testing.T) {
			secret := mustCRAM(t, password)
			got, err := secret.digest([]byte(rfc2195Challenge))
			if err != nil {
				t.Fatal(err)
			}
			m := hmac.New(md5.New, []byte(password))
			m.Write([]byte(rfc2195Challenge))
			if want := m.Sum(nil); !hmac.Equal(got, want) {
				t.Fatalf("digest %x, want %x", got, want)
			}
		})
	}
}

// TestCRAMSecretDovecot checks the text encoding against values printed by
// Dovecot 2.3.19 ("doveadm pw -s CRAM-MD5 -p ...").
func TestCRAMSecretDovecot(t *testing.T) {
	tests := []struct{ name, password, encoded string }{
		{"RFC 2195 password", rfc2195Password, "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"},
		{"key longer than a block", "a-password-longer-than-sixty-four-bytes-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
			"{CRAM-MD5}d336699c84458ecb77555ecda593ddd73bbeddd463ea2d8b76e9ced2894cf08b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := mustCRAM(t, tt.password)
			if got := secret.Encode(); got != tt.encoded {
				t.Fatalf("Encode() = %q, want %q", got, tt.encoded)
			}
			parsed, err := ParseCRAMSecret(strings.ToUpper(tt.encoded[:10]) + strings.ToUpper(tt.encoded[10:]))
			if err != nil {
				t.Fatal(err)
			}
			if parsed != *secret {
				t.Fatal("parsed secret differs")
			}
			var viaText CRAMSecret
			if err := viaText.UnmarshalText([]byte(tt.encoded)); err != nil || viaText != *secret {
				t.Fatalf("UnmarshalText: %v", err)
			}
		})
	}
	t.Run("RFC 2195 digest from the Dovecot value", func(t *testing.T) {
		secret, err := ParseCRAMSecret(tests[0].encoded)
		if err != nil {
			t.Fatal(err)
		}
		d, err := secret.digest([]byte(rfc2195Challenge))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(d); got != rfc2195Response[4:] {
			t.Fatalf("digest %s, want %s", got, rfc2195Response[4:])
		}
	})
}

func TestParseCRAMSecretErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"no prefix", "d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"},
		{"other scheme", "{PLAIN}tanstaaftanstaaf"},
		{"short", "{CRAM-MD5}d06d4e1b"},
		{"long", "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b00"},
		{"not hex", "{CRAM-MD5}z06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCRAMSecret(tt.in)
			if !errors.Is(err, ErrInvalidSecret) {
				t.Fatalf("error %v, want ErrInvalidSecret", err)
			}
			checkNoLeak(t, err, "d06d4e1b", "tanstaaf")
			var c CRAMSecret
			if err := c.UnmarshalText([]byte(tt.in)); !errors.Is(err, ErrInvalidSecret) {
				t.Fatalf("UnmarshalText: %v, want ErrInvalidSecret", err)
			}
		})
	}
	if _, err := NewCRAMSecret(""); err == nil {
		t.Fatal("NewCRAMSecret(\"\") succeeded")
	}
}
