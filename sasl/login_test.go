package sasl

import (
	"errors"
	"strings"
	"testing"
)

// fakeAuth accepts only user/secret and records its calls.
type fakeAuth struct {
	calls []string
	err   error // returned instead of the check when set
}

func (f *fakeAuth) auth(username, password string) error {
	f.calls = append(f.calls, username)
	if f.err != nil {
		return f.err
	}
	if username == "user" && password == "secret" {
		return nil
	}
	return ErrAuthFailed
}

func TestLogin(t *testing.T) {
	nilMsg := []byte(nil)
	tests := []struct {
		name       string
		msgs       [][]byte // client messages; nilMsg is "no initial response"
		challenges []string // expected challenges before the last step
		want       error
		wantUser   string
		wantCalls  int
	}{
		{name: "success", msgs: [][]byte{nilMsg, []byte("user"), []byte("secret")},
			challenges: []string{"Username:", "Password:"}, wantUser: "user", wantCalls: 1},
		{name: "success with initial response", msgs: [][]byte{[]byte("user"), []byte("secret")},
			challenges: []string{"Password:"}, wantUser: "user", wantCalls: 1},
		{name: "user name prepared", msgs: [][]byte{[]byte("us\u00ader"), []byte("secret")},
			challenges: []string{"Password:"}, wantUser: "user", wantCalls: 1},
		{name: "wrong password", msgs: [][]byte{nilMsg, []byte("user"), []byte("wrong")},
			challenges: []string{"Username:", "Password:"}, want: ErrAuthFailed, wantCalls: 1},
		{name: "unknown user", msgs: [][]byte{[]byte("nobody"), []byte("secret")},
			challenges: []string{"Password:"}, want: ErrAuthFailed, wantCalls: 1},
		{name: "empty initial response", msgs: [][]byte{{}},
			want: ErrMalformed},
		{name: "empty user name", msgs: [][]byte{nilMsg, {}},
			challenges: []string{"Username:"}, want: ErrMalformed},
		{name: "NUL in user name", msgs: [][]byte{nilMsg, []byte("us\x00er")},
			challenges: []string{"Username:"}, want: ErrMalformed},
		{name: "invalid UTF-8 user name", msgs: [][]byte{[]byte("us\xffer")},
			want: ErrMalformed},
		{name: "user name too long", msgs: [][]byte{[]byte(strings.Repeat("u", MaxUsernameLength+1))},
			want: ErrMalformed},
		{name: "NUL in password", msgs: [][]byte{[]byte("user"), []byte("sec\x00ret")},
			challenges: []string{"Password:"}, want: ErrMalformed},
		{name: "password too long", msgs: [][]byte{[]byte("user"), []byte(strings.Repeat("p", MaxPasswordLength+1))},
			challenges: []string{"Password:"}, want: ErrMalformed},
		{name: "missing user name", msgs: [][]byte{nilMsg, nilMsg},
			challenges: []string{"Username:"}, want: ErrMalformed},
		{name: "missing password", msgs: [][]byte{[]byte("user"), nilMsg},
			challenges: []string{"Password:"}, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := &fakeAuth{}
			s := NewLoginServer(fa.auth)
			var err error
			for i, msg := range tt.msgs {
				var ch []byte
				var done bool
				ch, done, err = s.Next(msg)
				if i < len(tt.challenges) {
					if err != nil || done || string(ch) != tt.challenges[i] {
						t.Fatalf("step %d: (%q, %v, %v), want challenge %q", i, ch, done, err, tt.challenges[i])
					}
					continue
				}
				if !done {
					t.Fatalf("step %d: not done, challenge %q", i, ch)
				}
			}
			checkKind(t, err, tt.want)
			checkNoLeak(t, err, "secret", "wrong", "nobody", "sec\x00ret")
			if len(fa.calls) != tt.wantCalls {
				t.Fatalf("auth called %d times, want %d", len(fa.calls), tt.wantCalls)
			}
			if s.Username() != tt.wantUser {
				t.Fatalf("Username() = %q, want %q", s.Username(), tt.wantUser)
			}
			if _, _, err := s.Next([]byte("more")); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Next after the end: %v, want ErrMalformed", err)
			}
		})
	}
}

func TestLoginAuthErrorPassedThrough(t *testing.T) {
	internal := errors.New("backend down")
	s := NewLoginServer((&fakeAuth{err: internal}).auth)
	if _, _, err := s.Next([]byte("user")); err != nil {
		t.Fatal(err)
	}
	if _, done, err := s.Next([]byte("secret")); !done || err != internal {
		t.Fatalf("got (%v, %v), want the auth error unchanged", done, err)
	}
	if s.Username() != "" {
		t.Fatalf("Username() = %q after failure", s.Username())
	}
}

func TestPlain(t *testing.T) {
	fa := &fakeAuth{}
	tests := []struct {
		name      string
		initial   bool
		msg       string
		want      error
		wantUser  string
		wantCalls int
	}{
		{name: "success", initial: true, msg: "\x00user\x00secret", wantUser: "user", wantCalls: 1},
		{name: "success after empty challenge", msg: "\x00user\x00secret", wantUser: "user", wantCalls: 1},
		{name: "authzid equal", initial: true, msg: "user\x00user\x00secret", wantUser: "user", wantCalls: 1},
		{name: "authzid equal after preparation", initial: true, msg: "us\u00ader\x00user\x00secret", wantUser: "user", wantCalls: 1},
		{name: "authzid different", initial: true, msg: "admin\x00user\x00secret", want: ErrAuthFailed},
		{name: "authzid invalid", initial: true, msg: "ad\x01min\x00user\x00secret", want: ErrMalformed},
		{name: "wrong password", initial: true, msg: "\x00user\x00wrong", want: ErrAuthFailed, wantCalls: 1},
		{name: "unknown user", initial: true, msg: "\x00nobody\x00secret", want: ErrAuthFailed, wantCalls: 1},
		{name: "empty", initial: true, msg: "", want: ErrMalformed},
		{name: "two fields", initial: true, msg: "user\x00secret", want: ErrMalformed},
		{name: "four fields", initial: true, msg: "\x00user\x00sec\x00ret", want: ErrMalformed},
		{name: "empty user name", initial: true, msg: "\x00\x00secret", want: ErrMalformed},
		{name: "invalid UTF-8 user name", initial: true, msg: "\x00us\xffer\x00secret", want: ErrMalformed},
		{name: "password too long", initial: true, msg: "\x00user\x00" + strings.Repeat("p", MaxPasswordLength+1), want: ErrMalformed},
		{name: "message too long", initial: true, msg: strings.Repeat("x", 2*MaxUsernameLength+MaxPasswordLength+3), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa.calls = nil
			s := NewPlainServer(fa.auth)
			if !tt.initial {
				ch, done, err := s.Next(nil)
				if err != nil || done || len(ch) != 0 {
					t.Fatalf("Next(nil) = (%q, %v, %v), want an empty challenge", ch, done, err)
				}
			}
			_, done, err := s.Next([]byte(tt.msg))
			if !done {
				t.Fatal("not done after the message")
			}
			checkKind(t, err, tt.want)
			checkNoLeak(t, err, "secret", "wrong", "nobody", "admin")
			if len(fa.calls) != tt.wantCalls {
				t.Fatalf("auth called %d times, want %d", len(fa.calls), tt.wantCalls)
			}
			if s.Username() != tt.wantUser {
				t.Fatalf("Username() = %q, want %q", s.Username(), tt.wantUser)
			}
			if _, _, err := s.Next([]byte("\x00user\x00secret")); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Next after the end: %v, want ErrMalformed", err)
			}
		})
	}
	t.Run("nil twice", func(t *testing.T) {
		s := NewPlainServer(fa.auth)
		if _, _, err := s.Next(nil); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Next(nil)
		checkKind(t, err, ErrMalformed)
	})
	t.Run("auth error passed through", func(t *testing.T) {
		internal := errors.New("backend down")
		s := NewPlainServer((&fakeAuth{err: internal}).auth)
		if _, _, err := s.Next([]byte("\x00user\x00secret")); err != internal {
			t.Fatalf("error %v, want the auth error unchanged", err)
		}
	})
}
