package sasl

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// RFC 7677 section 3 test vector.
const (
	rfcUser         = "user"
	rfcPassword     = "pencil"
	rfcClientNonce  = "rOprNGfwEbeRWgbNEkqO"
	rfcServerNonce  = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfcSalt         = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfcClientFirst  = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	rfcServerFirst  = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	rfcClientFinal  = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcServerFinal  = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	rfcIterations   = 4096
	testServerNonce = "SERVERNONCE"
)

// rfcCredentials derives the stored keys of the RFC 7677 example.
func rfcCredentials(t testing.TB) ScramCredentials {
	t.Helper()
	salt, err := base64.StdEncoding.DecodeString(rfcSalt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := deriveScramCredentials(rfcPassword, salt, rfcIterations)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newTestScram returns a server whose only user is "user" with the RFC 7677
// credentials and whose server nonce is fixed.
func newTestScram(t testing.TB, opts *ScramOptions, nonce string) *ScramServer {
	creds := rfcCredentials(t)
	s := NewScramServer(func(name string) (ScramCredentials, error) {
		if name == rfcUser {
			return creds, nil
		}
		return ScramCredentials{}, ErrUnknownUser
	}, opts)
	s.nonce = func() string { return nonce }
	return s
}

func TestScramRFC7677Vector(t *testing.T) {
	s := newTestScram(t, nil, rfcServerNonce)
	steps := []struct {
		name     string
		client   []byte
		want     string
		wantDone bool
	}{
		{"no initial response", nil, "", false},
		{"client-first", []byte(rfcClientFirst), rfcServerFirst, false},
		{"client-final", []byte(rfcClientFinal), rfcServerFinal, false},
		{"acknowledgement", []byte{}, "", true},
	}
	for _, step := range steps {
		challenge, done, err := s.Next(step.client)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if string(challenge) != step.want || done != step.wantDone {
			t.Fatalf("%s: got (%q, %v), want (%q, %v)", step.name, challenge, done, step.want, step.wantDone)
		}
		if !done && s.Username() != "" {
			t.Fatalf("%s: Username() = %q before the end", step.name, s.Username())
		}
	}
	if s.Username() != rfcUser {
		t.Fatalf("Username() = %q, want %q", s.Username(), rfcUser)
	}
	if _, _, err := s.Next([]byte{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Next after done: %v, want ErrMalformed", err)
	}
}

// TestScramRFC7677ClientAgrees checks the test client against the same
// vector, so the exchanges below test the server against a known-good
// client.
func TestScramRFC7677ClientAgrees(t *testing.T) {
	c := &scramClient{username: rfcUser, password: rfcPassword, nonce: rfcClientNonce}
	if got := string(c.first()); got != rfcClientFirst {
		t.Fatalf("client-first %q, want %q", got, rfcClientFirst)
	}
	final, err := c.final([]byte(rfcServerFirst))
	if err != nil {
		t.Fatal(err)
	}
	if string(final) != rfcClientFinal {
		t.Fatalf("client-final %q, want %q", final, rfcClientFinal)
	}
	if err := c.verifyServer([]byte(rfcServerFinal)); err != nil {
		t.Fatal(err)
	}
}

// runScram drives a whole exchange with the test client, optionally
// rewriting the client messages, and returns the first error.
func runScram(t *testing.T, s *ScramServer, c *scramClient, initial bool,
	editFirst, editFinal func(string) string) error {
	t.Helper()
	first := c.first()
	if editFirst != nil {
		first = []byte(editFirst(string(first)))
	}
	if !initial {
		ch, done, err := s.Next(nil)
		if err != nil || done || len(ch) != 0 {
			t.Fatalf("Next(nil) = (%q, %v, %v), want an empty challenge", ch, done, err)
		}
	}
	serverFirst, done, err := s.Next(first)
	if err != nil {
		return err
	}
	if done {
		t.Fatal("done after client-first")
	}
	final, err := c.final(serverFirst)
	if err != nil {
		t.Fatalf("client rejected server-first: %v", err)
	}
	if editFinal != nil {
		final = []byte(editFinal(string(final)))
	}
	serverFinal, done, err := s.Next(final)
	if err != nil {
		return err
	}
	if done {
		t.Fatal("done before the acknowledgement")
	}
	if err := c.verifyServer(serverFinal); err != nil {
		t.Fatalf("client rejected server-final: %v", err)
	}
	if _, done, err = s.Next([]byte{}); err != nil {
		return err
	}
	if !done {
		t.Fatal("not done after the acknowledgement")
	}
	return nil
}

func TestScramExchange(t *testing.T) {
	allowAll := &ScramOptions{Authorize: func(authcid, authzid string) bool { return authcid == rfcUser && authzid == "postmaster" }}
	tests := []struct {
		name      string
		client    scramClient
		opts      *ScramOptions
		initial   bool
		editFirst func(string) string
		editFinal func(string) string
		want      error  // nil, ErrMalformed or ErrAuthFailed
		wantValue string // RFC 5802 server-error-value
		wantUser  string
	}{
		{name: "success with initial response", client: scramClient{username: "user", password: "pencil"}, initial: true, wantUser: "user"},
		{name: "success without initial response", client: scramClient{username: "user", password: "pencil"}, wantUser: "user"},
		{name: "flag y accepted", client: scramClient{username: "user", password: "pencil", flag: "y"}, initial: true, wantUser: "user"},
		{name: "authzid equal to user", client: scramClient{username: "user", password: "pencil", authzid: "user"}, initial: true, wantUser: "user"},
		{name: "authzid permitted", client: scramClient{username: "user", password: "pencil", authzid: "postmaster"}, opts: allowAll, initial: true, wantUser: "postmaster"},
		{name: "extensions ignored", client: scramClient{username: "user", password: "pencil", extension: "x=ext"}, initial: true, wantUser: "user"},
		{name: "wrong password", client: scramClient{username: "user", password: "pencil2"}, initial: true, want: ErrAuthFailed, wantValue: "invalid-proof"},
		{name: "unknown user", client: scramClient{username: "nobody", password: "pencil"}, initial: true, want: ErrAuthFailed, wantValue: "invalid-proof"},
		{name: "authzid refused by default", client: scramClient{username: "user", password: "pencil", authzid: "postmaster"}, initial: true, want: ErrAuthFailed, wantValue: "other-error"},
		{name: "authzid refused by Authorize", client: scramClient{username: "user", password: "pencil", authzid: "root"}, opts: allowAll, initial: true, want: ErrAuthFailed, wantValue: "other-error"},
		{name: "tampered nonce", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return strings.Replace(m, testServerNonce, "SERVERNONCF", 1) }, want: ErrAuthFailed, wantValue: "other-error"},
		{name: "channel binding echo differs", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return strings.Replace(m, "c=biws", "c=eSws", 1) }, want: ErrAuthFailed, wantValue: "channel-bindings-dont-match"},
		{name: "proof tampered", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string {
				i := strings.Index(m, ",p=") + 3
				c := "A"
				if m[i] == 'A' {
					c = "B"
				}
				return m[:i] + c + m[i+1:]
			}, want: ErrAuthFailed, wantValue: "invalid-proof"},
		{name: "proof not base64", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return m[:strings.Index(m, ",p=")] + ",p=***" }, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "proof too short", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return m[:strings.Index(m, ",p=")] + ",p=AAAA" }, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "proof missing", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return m[:strings.Index(m, ",p=")] }, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "channel binding not base64", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return strings.Replace(m, "c=biws", "c=b!ws", 1) }, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "channel binding with line break", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return strings.Replace(m, "c=biws", "c=bi\r\nws", 1) }, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "proof with line break", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return strings.Replace(m, ",p=", ",p=\n", 1) }, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "final without commas", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(string) string { return "garbage" }, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "final with only proof", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return m[strings.Index(m, ",r=")+1:] }, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "final attributes out of order", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string {
				a := strings.Split(m, ",")
				return a[1] + "," + a[0] + "," + a[2]
			}, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "final bad extension", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(m string) string { return strings.Replace(m, ",p=", ",1=x,p=", 1) }, want: ErrMalformed, wantValue: "invalid-encoding"},
		{name: "final empty", client: scramClient{username: "user", password: "pencil"}, initial: true,
			editFinal: func(string) string { return "" }, want: ErrMalformed, wantValue: "invalid-encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestScram(t, tt.opts, testServerNonce)
			c := tt.client
			c.nonce = "clientnonce"
			err := runScram(t, s, &c, tt.initial, tt.editFirst, tt.editFinal)
			checkKind(t, err, tt.want)
			leaks := []string{c.password, "clientnonce", testServerNonce}
			if c.username != rfcUser { // "user" is part of fixed texts
				leaks = append(leaks, c.username)
			}
			checkNoLeak(t, err, leaks...)
			if tt.want != nil {
				var se *ScramError
				if !errors.As(err, &se) || se.Value != tt.wantValue {
					t.Fatalf("error %v, want ScramError with e=%s", err, tt.wantValue)
				}
				if s.Username() != "" {
					t.Fatalf("Username() = %q after failure", s.Username())
				}
				if _, _, err := s.Next([]byte{}); !errors.Is(err, ErrMalformed) {
					t.Fatalf("Next after failure: %v, want ErrMalformed", err)
				}
				return
			}
			if s.Username() != tt.wantUser {
				t.Fatalf("Username() = %q, want %q", s.Username(), tt.wantUser)
			}
		})
	}
}

func TestScramClientFirstMalformed(t *testing.T) {
	long := strings.Repeat("a", maxScramMessage)
	tests := []struct {
		name      string
		msg       string
		wantValue string
	}{
		{"empty", "", "invalid-encoding"},
		{"no comma", "n", "invalid-encoding"},
		{"one comma", "n,", "invalid-encoding"},
		{"channel binding required", "p=tls-unique,,n=zorro,r=qwe", "channel-binding-not-supported"},
		{"unknown flag", "x,,n=zorro,r=qwe", "invalid-encoding"},
		{"bad authzid attribute", "n,b=zorro,n=zorro,r=qwe", "invalid-encoding"},
		{"bad authzid escape", "n,a=zo=rro,n=zorro,r=qwe", "invalid-username-encoding"},
		{"mandatory extension", "n,,m=ext,n=zorro,r=qwe", "extensions-not-supported"},
		{"no nonce", "n,,n=zorro", "invalid-encoding"},
		{"no username", "n,,r=qwe,n=zorro", "invalid-encoding"},
		{"empty username", "n,,n=,r=qwe", "invalid-username-encoding"},
		{"bad escape", "n,,n=zo=2Xer,r=qwe", "invalid-username-encoding"},
		{"truncated escape", "n,,n=zorro=2,r=qwe", "invalid-username-encoding"},
		{"lone equals", "n,,n=zorro=,r=qwe", "invalid-username-encoding"},
		{"prohibited character", "n,,n=zo\x7fer,r=qwe", "invalid-username-encoding"},
		{"username too long", "n,,n=" + strings.Repeat("u", MaxUsernameLength+1) + ",r=qwe", "invalid-username-encoding"},
		{"empty nonce", "n,,n=zorro,r=", "invalid-encoding"},
		{"nonce not printable", "n,,n=zorro,r=a\x01b", "invalid-encoding"},
		{"nonce too long", "n,,n=zorro,r=" + strings.Repeat("r", maxScramNonce+1), "invalid-encoding"},
		{"nonce attribute missing", "n,,n=zorro,x=abc", "invalid-encoding"},
		{"bad extension", "n,,n=zorro,r=qwe,extension", "invalid-encoding"},
		{"invalid UTF-8", "n,,n=zo\xffer,r=qwe", "invalid-encoding"},
		{"NUL", "n,,n=zo\x00er,r=qwe", "invalid-encoding"},
		{"too long", "n,,n=zorro,r=qwe,x=" + long, "invalid-encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestScram(t, nil, testServerNonce)
			ch, done, err := s.Next([]byte(tt.msg))
			checkKind(t, err, ErrMalformed)
			checkNoLeak(t, err, "zorro", "qwe")
			var se *ScramError
			if !errors.As(err, &se) || se.Value != tt.wantValue {
				t.Fatalf("error %v, want ScramError with e=%s", err, tt.wantValue)
			}
			if ch != nil || !done {
				t.Fatalf("got (%q, %v) with the error, want (nil, true)", ch, done)
			}
		})
	}
}

func TestScramSaslnameDecoding(t *testing.T) {
	tests := []struct {
		name, encoded, want string
	}{
		{"plain", "user", "user"},
		{"comma", "a=2Cb", "a,b"},
		{"equals", "a=3Db", "a=b"},
		{"lower-case hex", "a=2cb=3db", "a,b=b"},
		{"escaped escape", "=3D2C", "=2C"},
		{"non-ASCII space mapped", "a\u00a0b", "a b"},
		{"soft hyphen removed", "a\u00adb", "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var looked string
			s := NewScramServer(func(name string) (ScramCredentials, error) {
				looked = name
				return ScramCredentials{}, ErrUnknownUser
			}, nil)
			if _, _, err := s.Next([]byte("n,,n=" + tt.encoded + ",r=abc")); err != nil {
				t.Fatal(err)
			}
			if looked != tt.want {
				t.Fatalf("lookup(%q), want lookup(%q)", looked, tt.want)
			}
		})
	}
}

// TestScramUnknownUserIndistinguishable checks that the server-first
// message for an unknown user has the shape of a real one and a stable
// salt, and differs between names.
func TestScramUnknownUserIndistinguishable(t *testing.T) {
	first := func(name string) []string {
		s := newTestScram(t, nil, testServerNonce)
		sf, done, err := s.Next([]byte("n,,n=" + name + ",r=abc"))
		if err != nil || done {
			t.Fatalf("Next: (%v, %v)", done, err)
		}
		return strings.Split(string(sf), ",")
	}
	known, unknown, again, other := first("user"), first("nobody"), first("nobody"), first("somebody")
	if len(unknown) != len(known) {
		t.Fatalf("unknown user's server-first %q has another shape than %q", unknown, known)
	}
	salt, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(unknown[1], "s="))
	if err != nil || len(salt) != scramSaltLength {
		t.Fatalf("fake salt %q: %d bytes, %v", unknown[1], len(salt), err)
	}
	if unknown[2] != "i="+strconv.Itoa(DefaultScramIterations) {
		t.Fatalf("fake iteration count %q, want DefaultScramIterations", unknown[2])
	}
	if again[1] != unknown[1] {
		t.Fatalf("fake salt not stable: %q then %q", unknown[1], again[1])
	}
	if other[1] == unknown[1] {
		t.Fatal("two unknown users got the same salt")
	}
}

func TestScramLookupErrors(t *testing.T) {
	internal := errors.New("database down")
	tests := []struct {
		name   string
		lookup func(string) (ScramCredentials, error)
	}{
		{"lookup fails", func(string) (ScramCredentials, error) { return ScramCredentials{}, internal }},
		{"stored credentials invalid", func(string) (ScramCredentials, error) { return ScramCredentials{Iterations: 1}, nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScramServer(tt.lookup, nil)
			_, done, err := s.Next([]byte("n,,n=user,r=abc"))
			if err == nil || !done || errors.Is(err, ErrMalformed) || errors.Is(err, ErrAuthFailed) {
				t.Fatalf("got (%v, %v), want an internal error", done, err)
			}
		})
	}
	s := NewScramServer(func(string) (ScramCredentials, error) { return ScramCredentials{}, internal }, nil)
	if _, _, err := s.Next([]byte("n,,n=user,r=abc")); !errors.Is(err, internal) {
		t.Fatalf("error %v does not wrap the lookup error", err)
	}
}

func TestScramProtocolOrder(t *testing.T) {
	t.Run("nil twice", func(t *testing.T) {
		s := newTestScram(t, nil, testServerNonce)
		if _, _, err := s.Next(nil); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Next(nil)
		checkKind(t, err, ErrMalformed)
	})
	t.Run("non-empty acknowledgement", func(t *testing.T) {
		s := newTestScram(t, nil, rfcServerNonce)
		for _, m := range []string{rfcClientFirst, rfcClientFinal} {
			if _, _, err := s.Next([]byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		_, done, err := s.Next([]byte("x"))
		checkKind(t, err, ErrMalformed)
		if !done || s.Username() != "" {
			t.Fatalf("done %v, Username %q after a bad acknowledgement", done, s.Username())
		}
	})
	t.Run("replayed client-final", func(t *testing.T) {
		// A recorded exchange replayed against a fresh server nonce
		// fails at the nonce check.
		s := newTestScram(t, nil, testServerNonce)
		if _, _, err := s.Next([]byte(rfcClientFirst)); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Next([]byte(rfcClientFinal))
		checkKind(t, err, ErrAuthFailed)
	})
}

func TestScramRealNonce(t *testing.T) {
	s := NewScramServer(func(string) (ScramCredentials, error) { return rfcCredentials(t), nil }, nil)
	c := &scramClient{username: "user", password: "pencil", nonce: "abc"}
	if err := runScram(t, s, c, true, nil, nil); err != nil {
		t.Fatal(err)
	}
	a, b := randomNonce(), randomNonce()
	if len(a) != 24 || a == b || strings.Contains(a, ",") {
		t.Fatalf("server nonces %q, %q: want 24 distinct characters without ','", a, b)
	}
}
