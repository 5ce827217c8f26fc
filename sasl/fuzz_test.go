package sasl

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// Each fuzz target feeds arbitrary client messages to a mechanism and
// checks two properties: Next never panics, and it succeeds only when the
// input carries the right secret, as computed independently here. Errors
// must match one of the sentinels (these servers have no internal
// failures), and a success must name the right user.

// checkFuzzErr fails unless err is one of the two client-caused kinds.
func checkFuzzErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("error %v matches neither ErrMalformed nor ErrAuthFailed", err)
	}
}

func FuzzLogin(f *testing.F) {
	f.Add(true, []byte("user"), []byte("secret"), []byte(nil))
	f.Add(false, []byte("user"), []byte("secret"), []byte(nil))
	f.Add(false, []byte("us\u00ader"), []byte("secret"), []byte(""))
	f.Add(true, []byte("user"), []byte("secreT"), []byte("x"))
	f.Add(true, []byte(""), []byte(""), []byte(""))
	f.Add(true, []byte("us\x00er"), []byte("sec\x00ret"), []byte(nil))
	f.Fuzz(func(t *testing.T, initial bool, user, password, extra []byte) {
		fa := &fakeAuth{}
		s := NewLoginServer(fa.auth)
		msgs := [][]byte{user, password, extra}
		if !initial {
			msgs = append([][]byte{nil}, msgs...)
		}
		var err error
		var done bool
		var step int
		for step = 0; step < len(msgs) && !done && err == nil; step++ {
			_, done, err = s.Next(msgs[step])
		}
		checkFuzzErr(t, err)
		if err == nil && done {
			name, perr := PrepareUsername(string(user))
			if perr != nil || name != "user" || string(password) != "secret" || s.Username() != "user" {
				t.Fatalf("accepted user %q password %q as %q", user, password, s.Username())
			}
		}
		if len(fa.calls) > 1 {
			t.Fatalf("auth called %d times", len(fa.calls))
		}
	})
}

func FuzzPlain(f *testing.F) {
	f.Add([]byte("\x00user\x00secret"))
	f.Add([]byte("user\x00user\x00secret"))
	f.Add([]byte("admin\x00user\x00secret"))
	f.Add([]byte("\x00user\x00secret\x00"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fa := &fakeAuth{}
		s := NewPlainServer(fa.auth)
		_, done, err := s.Next(msg)
		checkFuzzErr(t, err)
		if !done {
			t.Fatal("not done after the message")
		}
		if err == nil {
			parts := bytes.Split(msg, []byte{0})
			authz, _ := PrepareUsername(string(parts[0]))
			if len(parts) != 3 || (len(parts[0]) != 0 && authz != "user") ||
				string(parts[2]) != "secret" || s.Username() != "user" {
				t.Fatalf("accepted %q as %q", msg, s.Username())
			}
		}
	})
}

// fuzzScramNonce is the fixed server nonce of FuzzScram, so the seed corpus
// can hold a complete, valid exchange.
const fuzzScramNonce = "FUZZNONCE"

func FuzzScram(f *testing.F) {
	creds := rfcCredentials(f)
	// A valid exchange for the seed corpus, from the test client.
	c := &scramClient{username: rfcUser, password: rfcPassword, nonce: "abc"}
	first := c.first()
	serverFirst := "r=abc" + fuzzScramNonce + ",s=" + rfcSalt + ",i=4096"
	final, err := c.final([]byte(serverFirst))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(first, final, []byte{}, true)
	f.Add(first, final, []byte("x"), true)
	f.Add(first, final, []byte{}, false)
	f.Add([]byte(rfcClientFirst), []byte(rfcClientFinal), []byte{}, true)
	f.Add([]byte("y,a=user,n=user,r=abc"), final, []byte{}, true)
	f.Add([]byte("p=tls-unique,,n=user,r=abc"), final, []byte{}, true)
	f.Add([]byte("n,,m=x,n=user,r=abc"), final, []byte{}, true)
	f.Add([]byte("n,,n=u=2Cser,r=abc,x=y"), []byte("c=biws,r=abc"+fuzzScramNonce+",x=1,p=AAAA"), []byte{}, true)
	f.Fuzz(func(t *testing.T, first, final, ack []byte, initial bool) {
		s := NewScramServer(func(name string) (ScramCredentials, error) {
			if name == rfcUser {
				return creds, nil
			}
			return ScramCredentials{}, ErrUnknownUser
		}, nil)
		s.nonce = func() string { return fuzzScramNonce }
		if !initial {
			if _, _, err := s.Next(nil); err != nil {
				t.Fatal(err)
			}
		}
		serverFirst, done, err := s.Next(first)
		checkFuzzErr(t, err)
		if err != nil || done {
			return
		}
		serverFinal, done, err := s.Next(final)
		checkFuzzErr(t, err)
		if err != nil || done {
			return
		}
		// The server accepted the proof: it must be right, computed
		// from the RFC 5802 definitions.
		bare := string(first)
		for i := 0; i < 2; i++ {
			bare = bare[strings.IndexByte(bare, ',')+1:]
		}
		cut := bytes.LastIndex(final, []byte(",p="))
		proof, perr := base64.StdEncoding.DecodeString(string(final[cut+3:]))
		if cut < 0 || perr != nil || len(proof) != sha256.Size {
			t.Fatalf("accepted a final message without a valid proof: %q", final)
		}
		authMessage := bare + "," + string(serverFirst) + "," + string(final[:cut])
		clientKey := make([]byte, sha256.Size)
		subtle.XORBytes(clientKey, proof, rfcHMAC(creds.StoredKey, []byte(authMessage)))
		if sum := sha256.Sum256(clientKey); !bytes.Equal(sum[:], creds.StoredKey) {
			t.Fatalf("accepted a wrong proof: %q then %q", first, final)
		}
		wantFinal := "v=" + base64.StdEncoding.EncodeToString(rfcHMAC(creds.ServerKey, []byte(authMessage)))
		if string(serverFinal) != wantFinal {
			t.Fatalf("server-final %q, want %q", serverFinal, wantFinal)
		}
		_, done, err = s.Next(ack)
		checkFuzzErr(t, err)
		if (err == nil) != (len(ack) == 0) || (err == nil && (!done || s.Username() != rfcUser)) {
			t.Fatalf("acknowledgement %q: (%v, %v), Username %q", ack, done, err, s.Username())
		}
	})
}

func FuzzCramMD5(f *testing.F) {
	f.Add([]byte(rfc2195Response), false)
	f.Add([]byte("tim B913A602C7EDA7A495B4E6E7334D3890"), false)
	f.Add([]byte("tim b913a602c7eda7a495b4e6e7334d3891"), false)
	f.Add([]byte("bob b913a602c7eda7a495b4e6e7334d3890"), false)
	f.Add([]byte("tim"), true)
	f.Add([]byte(" "), false)
	f.Fuzz(func(t *testing.T, response []byte, initial bool) {
		s := newTestCram(t)
		if initial {
			_, done, err := s.Next(response)
			if !done || !errors.Is(err, ErrMalformed) {
				t.Fatalf("initial response: (%v, %v), want ErrMalformed", done, err)
			}
			return
		}
		if _, _, err := s.Next(nil); err != nil {
			t.Fatal(err)
		}
		_, done, err := s.Next(response)
		checkFuzzErr(t, err)
		if !done {
			t.Fatal("not done after the response")
		}
		if err == nil {
			m := hmac.New(md5.New, []byte(rfc2195Password))
			m.Write([]byte(rfc2195Challenge))
			want := "tim " + hex.EncodeToString(m.Sum(nil))
			if !strings.EqualFold(string(response), want) || !strings.HasPrefix(string(response), "tim ") || s.Username() != "tim" {
				t.Fatalf("accepted %q", response)
			}
		}
	})
}

func FuzzPrepareUsername(f *testing.F) {
	for _, s := range []string{"user", "a\u00adb", "a\u00a0b", "\x00", "a\xff", "\U000E0001", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := PrepareUsername(in)
		if err != nil {
			return
		}
		if out == "" || len(out) > MaxUsernameLength {
			t.Fatalf("PrepareUsername(%q) = %q", in, out)
		}
		if again, err := PrepareUsername(out); err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> (%q, %v)", in, out, again, err)
		}
	})
}

func FuzzParseSecrets(f *testing.F) {
	f.Add(rfcCredentials(f).Encode())
	f.Add("{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b")
	f.Add("$argon2id$v=19$m=1024,t=1,p=1$YzI5dFpYTmhiSFF4TWpNMA$IHKFLcckJH7+CfoNARftdQ")
	f.Add("$2y$04$abcdefghijklmnopqrstuu/FyAyuZSl3DbPdvio4KrIBdz2k2yhV2")
	f.Fuzz(func(t *testing.T, in string) {
		if c, err := ParseScramCredentials(in); err == nil {
			if c.Validate() != nil {
				t.Fatalf("parsed invalid credentials from %q", in)
			}
			if back, err := ParseScramCredentials(c.Encode()); err != nil || back.Encode() != c.Encode() {
				t.Fatalf("round trip of %q: %v", in, err)
			}
		}
		if c, err := ParseCRAMSecret(in); err == nil {
			if back, err := ParseCRAMSecret(c.Encode()); err != nil || back != c {
				t.Fatalf("round trip of %q: %v", in, err)
			}
		}
		// Parse only: hashing with fuzzed parameters would be slow.
		if p, salt, key, err := parseArgon2id(in); err == nil {
			if p.validate() != nil || len(salt) != int(p.SaltLength) || len(key) != int(p.KeyLength) {
				t.Fatalf("parsed out-of-bounds parameters from %q", in)
			}
			if encodeArgon2id(p, salt, key) != in {
				t.Fatalf("%q is not in canonical form but parsed", in)
			}
		}
		_ = checkHash(in)
	})
}
