package sasl

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// newTestStore has "user" with every kind of secret for the password
// "tr0ub4dor", "hashonly" with only a password hash and "scramonly" with
// only SCRAM keys.
func newTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := NewStore(map[string]User{
		"user":      {PasswordHash: mustHash(t, "tr0ub4dor"), Scram: mustScram(t, "tr0ub4dor"), CRAM: mustCRAM(t, "tr0ub4dor")},
		"hashonly":  {PasswordHash: mustHash(t, "tr0ub4dor")},
		"scramonly": {Scram: mustScram(t, "tr0ub4dor")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStorePlainAndLogin(t *testing.T) {
	s := newTestStore(t)
	tests := []struct {
		name     string
		mech     string
		msgs     []string // "<nil>" for no initial response
		want     error
		wantUser string
	}{
		{"PLAIN success", "PLAIN", []string{"\x00user\x00tr0ub4dor"}, nil, "user"},
		{"PLAIN lower-case name", "plain", []string{"\x00user\x00tr0ub4dor"}, nil, "user"},
		{"PLAIN without initial response", "PLAIN", []string{"<nil>", "\x00user\x00tr0ub4dor"}, nil, "user"},
		{"PLAIN wrong password", "PLAIN", []string{"\x00user\x00tr0ub4doR"}, ErrAuthFailed, ""},
		{"PLAIN unknown user", "PLAIN", []string{"\x00nobody\x00tr0ub4dor"}, ErrAuthFailed, ""},
		{"PLAIN user without hash", "PLAIN", []string{"\x00scramonly\x00tr0ub4dor"}, ErrAuthFailed, ""},
		{"PLAIN malformed", "PLAIN", []string{"user\x00tr0ub4dor"}, ErrMalformed, ""},
		{"PLAIN authzid refused", "PLAIN", []string{"hashonly\x00user\x00tr0ub4dor"}, ErrAuthFailed, ""},
		{"LOGIN success", "LOGIN", []string{"<nil>", "user", "tr0ub4dor"}, nil, "user"},
		{"LOGIN initial response", "login", []string{"hashonly", "tr0ub4dor"}, nil, "hashonly"},
		{"LOGIN wrong password", "LOGIN", []string{"user", "wrong"}, ErrAuthFailed, ""},
		{"LOGIN unknown user", "LOGIN", []string{"nobody", "tr0ub4dor"}, ErrAuthFailed, ""},
		{"LOGIN malformed", "LOGIN", []string{"us\x00er"}, ErrMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := s.NewServer(tt.mech)
			if err != nil {
				t.Fatal(err)
			}
			var done bool
			for _, m := range tt.msgs {
				var msg []byte
				if m != "<nil>" {
					msg = []byte(m)
				}
				_, done, err = srv.Next(msg)
				if err != nil {
					break
				}
			}
			checkKind(t, err, tt.want)
			checkNoLeak(t, err, "tr0ub4dor", "tr0ub4doR", "wrong", "nobody")
			if tt.want == nil && !done {
				t.Fatal("not done")
			}
			if srv.Username() != tt.wantUser {
				t.Fatalf("Username() = %q, want %q", srv.Username(), tt.wantUser)
			}
		})
	}
}

func TestStoreScramAndCram(t *testing.T) {
	s := newTestStore(t)
	t.Run("SCRAM success", func(t *testing.T) {
		srv, err := s.NewServer("SCRAM-SHA-256")
		if err != nil {
			t.Fatal(err)
		}
		if err := runScram(t, srv.(*ScramServer), &scramClient{username: "user", password: "tr0ub4dor", nonce: "n"}, false, nil, nil); err != nil {
			t.Fatal(err)
		}
		if srv.Username() != "user" {
			t.Fatalf("Username() = %q", srv.Username())
		}
	})
	for _, name := range []string{"hashonly", "nobody"} {
		t.Run("SCRAM without keys: "+name, func(t *testing.T) {
			srv, _ := s.NewServer("SCRAM-SHA-256")
			err := runScram(t, srv.(*ScramServer), &scramClient{username: name, password: "tr0ub4dor", nonce: "n"}, true, nil, nil)
			checkKind(t, err, ErrAuthFailed)
		})
	}
	t.Run("SCRAM authzid refused", func(t *testing.T) {
		srv, _ := s.NewServer("SCRAM-SHA-256")
		err := runScram(t, srv.(*ScramServer), &scramClient{username: "user", authzid: "hashonly", password: "tr0ub4dor", nonce: "n"}, true, nil, nil)
		checkKind(t, err, ErrAuthFailed)
	})
	cram := func(t *testing.T, user, password string) (Server, error) {
		srv, err := s.NewServer("cram-md5")
		if err != nil {
			t.Fatal(err)
		}
		ch, _, err := srv.Next(nil)
		if err != nil {
			t.Fatal(err)
		}
		secret := mustCRAM(t, password)
		d, err := secret.digest(ch)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = srv.Next([]byte(fmt.Sprintf("%s %x", user, d)))
		return srv, err
	}
	t.Run("CRAM-MD5 success", func(t *testing.T) {
		srv, err := cram(t, "user", "tr0ub4dor")
		if err != nil || srv.Username() != "user" {
			t.Fatalf("(%q, %v)", srv.Username(), err)
		}
	})
	t.Run("CRAM-MD5 user without CRAM tr0ub4dor", func(t *testing.T) {
		_, err := cram(t, "hashonly", "tr0ub4dor")
		checkKind(t, err, ErrAuthFailed)
	})
	t.Run("CRAM-MD5 wrong password", func(t *testing.T) {
		_, err := cram(t, "user", "tr0ub4doR")
		checkKind(t, err, ErrAuthFailed)
	})
}

func TestStoreMechanisms(t *testing.T) {
	hash := mustHash(t, "tr0ub4dor")
	tests := []struct {
		name  string
		users map[string]User
		want  []string
	}{
		{"empty", map[string]User{}, nil},
		{"disabled user only", map[string]User{"a": {}}, nil},
		{"hashes only", map[string]User{"a": {PasswordHash: hash}}, []string{"PLAIN", "LOGIN"}},
		{"SCRAM only", map[string]User{"a": {Scram: mustScram(t, "x")}}, []string{"SCRAM-SHA-256"}},
		{"hash and SCRAM", map[string]User{"a": {PasswordHash: hash}, "b": {Scram: mustScram(t, "x")}}, []string{"SCRAM-SHA-256", "PLAIN", "LOGIN"}},
		{"everything", map[string]User{"a": {PasswordHash: hash, Scram: mustScram(t, "x"), CRAM: mustCRAM(t, "x")}}, []string{"SCRAM-SHA-256", "PLAIN", "LOGIN", "CRAM-MD5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStore(tt.users)
			if err != nil {
				t.Fatal(err)
			}
			got := s.Mechanisms()
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Mechanisms() = %q, want %q", got, tt.want)
			}
			for _, mech := range []string{"PLAIN", "LOGIN", "SCRAM-SHA-256", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-256-PLUS", ""} {
				srv, err := s.NewServer(strings.ToLower(mech))
				if slices.Contains(tt.want, mech) {
					if err != nil || srv == nil {
						t.Fatalf("NewServer(%q) = %v", mech, err)
					}
				} else if !errors.Is(err, ErrUnsupportedMechanism) {
					t.Fatalf("NewServer(%q) = %v, want ErrUnsupportedMechanism", mech, err)
				}
			}
			if len(got) == 0 {
				return
			}
			got[0] = "X" // must not alias the store's slice
			if slices.Contains(s.Mechanisms(), "X") {
				t.Fatal("Mechanisms() exposes internal state")
			}
		})
	}
}

func TestIsPlaintext(t *testing.T) {
	for mech, want := range map[string]bool{
		"PLAIN": true, "plain": true, "LOGIN": true, "Login": true,
		"SCRAM-SHA-256": false, "CRAM-MD5": false, "": false, "PLAINX": false,
	} {
		if got := IsPlaintext(mech); got != want {
			t.Errorf("IsPlaintext(%q) = %v, want %v", mech, got, want)
		}
	}
}

func TestStoreReplaceErrors(t *testing.T) {
	good := mustHash(t, "tr0ub4dor")
	tests := []struct {
		name    string
		users   map[string]User
		wantErr error // nil: any error
	}{
		{"empty name", map[string]User{"": {PasswordHash: good}}, errNameEmpty},
		{"prohibited name", map[string]User{"a\tb": {PasswordHash: good}}, errNameProhibited},
		{"same name after SASLprep", map[string]User{"ab": {PasswordHash: good}, "a\u00adb": {PasswordHash: good}}, nil},
		{"unknown hash format", map[string]User{"a": {PasswordHash: "tr0ub4dor"}}, ErrUnknownHashFormat},
		{"bad argon2id hash", map[string]User{"a": {PasswordHash: "$argon2id$v=19$m=1,t=1,p=1$x$y"}}, ErrInvalidSecret},
		{"bad bcrypt hash", map[string]User{"a": {PasswordHash: "$2b$05$short"}}, ErrInvalidSecret},
		{"bad SCRAM keys", map[string]User{"a": {Scram: &ScramCredentials{Iterations: 4096}}}, ErrInvalidSecret},
		{"zero CRAM tr0ub4dor", map[string]User{"a": {CRAM: &CRAMSecret{}}}, ErrInvalidSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			before := s.Mechanisms()
			err := s.Replace(tt.users)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Replace = %v, want %v", err, tt.wantErr)
			}
			checkNoLeak(t, err, "tr0ub4dor", good)
			if _, nerr := NewStore(tt.users); nerr == nil {
				t.Fatal("NewStore accepted what Replace refused")
			}
			// The store is unchanged.
			if !slices.Equal(s.Mechanisms(), before) || s.Authenticate("user", "tr0ub4dor") != nil {
				t.Fatal("failed Replace changed the store")
			}
		})
	}
}

func TestStoreReplace(t *testing.T) {
	s := newTestStore(t)
	users := map[string]User{"other": {PasswordHash: mustHash(t, "pw2"), Scram: mustScram(t, "pw2")}}
	if err := s.Replace(users); err != nil {
		t.Fatal(err)
	}
	checkKind(t, s.Authenticate("user", "tr0ub4dor"), ErrAuthFailed)
	if err := s.Authenticate("other", "pw2"); err != nil {
		t.Fatal(err)
	}
	// The store copied the map and the keys.
	users["other"].Scram.StoredKey[0] ^= 0xff
	delete(users, "other")
	if err := s.Authenticate("other", "pw2"); err != nil {
		t.Fatalf("store shares the caller's map: %v", err)
	}
	srv, _ := s.NewServer("SCRAM-SHA-256")
	if err := runScram(t, srv.(*ScramServer), &scramClient{username: "other", password: "pw2", nonce: "n"}, true, nil, nil); err != nil {
		t.Fatalf("store shares the caller's keys: %v", err)
	}
}

func TestStoreLookupPreparesNames(t *testing.T) {
	s, err := NewStore(map[string]User{"J\u00fcrgen Doe": {PasswordHash: mustHash(t, "pw"), Scram: mustScram(t, "pw"), CRAM: mustCRAM(t, "pw")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"J\u00fcrgen Doe", "J\u00fcrgen\u00a0Doe", "J\u00fcr\u00adgen Doe"} {
		if err := s.Authenticate(name, "pw"); err != nil {
			t.Errorf("Authenticate(%q): %v", name, err)
		}
		if _, err := s.LookupScram(name); err != nil {
			t.Errorf("LookupScram(%q): %v", name, err)
		}
		if _, err := s.LookupCRAM(name); err != nil {
			t.Errorf("LookupCRAM(%q): %v", name, err)
		}
	}
	for _, name := range []string{"jürgen doe", "J\x00rgen", ""} {
		if _, err := s.LookupScram(name); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("LookupScram(%q) = %v, want ErrUnknownUser", name, err)
		}
		if _, err := s.LookupCRAM(name); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("LookupCRAM(%q) = %v, want ErrUnknownUser", name, err)
		}
	}
}

// TestStoreSameVerifyPath checks the timing equivalence structurally:
// every failure verifies exactly one hash, and unknown users verify a
// dummy with the same parameters as the real users' hashes.
func TestStoreSameVerifyPath(t *testing.T) {
	s := newTestStore(t)
	var calls []string
	s.verify = func(encoded, password string) (bool, error) {
		calls = append(calls, encoded)
		return VerifyPassword(encoded, password)
	}
	userHash := s.load().users["user"].PasswordHash
	dummy := s.load().dummy()
	tests := []struct {
		name, user, password string
		wantHash             string
		want                 error
	}{
		{"success", "user", "tr0ub4dor", userHash, nil},
		{"wrong password", "user", "wrong", userHash, ErrAuthFailed},
		{"unknown user", "nobody", "tr0ub4dor", dummy, ErrAuthFailed},
		{"user without hash", "scramonly", "tr0ub4dor", dummy, ErrAuthFailed},
		{"name that does not prepare", "us\x00er", "tr0ub4dor", dummy, ErrAuthFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls = nil
			err := s.Authenticate(tt.user, tt.password)
			if err != tt.want {
				t.Fatalf("Authenticate = %v, want exactly %v", err, tt.want)
			}
			if len(calls) != 1 || calls[0] != tt.wantHash {
				t.Fatalf("verified %d hashes %q, want exactly %q", len(calls), calls, tt.wantHash)
			}
		})
	}
	userParams, _, _, err := parseArgon2id(userHash)
	if err != nil {
		t.Fatal(err)
	}
	dummyParams, _, _, err := parseArgon2id(dummy)
	if err != nil {
		t.Fatal(err)
	}
	if userParams != dummyParams {
		t.Fatalf("dummy parameters %+v differ from the users' %+v", dummyParams, userParams)
	}
	if ok, _ := VerifyPassword(dummy, ""); ok {
		t.Fatal("the dummy hash matches the empty password")
	}
}

func TestStoreDummyMirrorsHashes(t *testing.T) {
	bc := func(cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	other := cheapArgon2
	other.Time = 2
	otherHash, err := HashPasswordParams("pw", other)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		users      map[string]User
		wantBcrypt int          // bcrypt cost expected, 0 for argon2id
		wantArgon2 Argon2Params // when wantBcrypt is 0
	}{
		{"all bcrypt", map[string]User{"a": {PasswordHash: bc(5)}, "b": {PasswordHash: bc(5)}}, 5, Argon2Params{}},
		{"bcrypt majority", map[string]User{"a": {PasswordHash: bc(4)}, "b": {PasswordHash: bc(4)}, "c": {PasswordHash: mustHash(t, "pw")}}, 4, Argon2Params{}},
		{"argon2id majority", map[string]User{"a": {PasswordHash: bc(4)}, "b": {PasswordHash: otherHash}, "c": {PasswordHash: otherHash}}, 0, other},
		{"tie goes to the first name", map[string]User{"a": {PasswordHash: mustHash(t, "pw")}, "b": {PasswordHash: bc(4)}}, 0, cheapArgon2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStore(tt.users)
			if err != nil {
				t.Fatal(err)
			}
			dummy := s.load().dummy()
			if tt.wantBcrypt != 0 {
				cost, err := bcrypt.Cost([]byte(dummy))
				if err != nil || cost != tt.wantBcrypt {
					t.Fatalf("dummy %q: cost %d, %v; want bcrypt cost %d", dummy, cost, err, tt.wantBcrypt)
				}
				return
			}
			p, _, _, err := parseArgon2id(dummy)
			if err != nil || p != tt.wantArgon2 {
				t.Fatalf("dummy parameters %+v, %v; want %+v", p, err, tt.wantArgon2)
			}
		})
	}
}

func TestStoreDefaultDummy(t *testing.T) {
	var zero Store
	if got := zero.Mechanisms(); len(got) != 0 {
		t.Fatalf("zero Store offers %q", got)
	}
	if _, err := zero.NewServer("PLAIN"); !errors.Is(err, ErrUnsupportedMechanism) {
		t.Fatalf("zero Store NewServer: %v", err)
	}
	var calls []string
	zero.verify = func(encoded, password string) (bool, error) {
		calls = append(calls, encoded)
		return VerifyPassword(encoded, password)
	}
	checkKind(t, zero.Authenticate("user", "pw"), ErrAuthFailed)
	if len(calls) != 1 || calls[0] != defaultDummyHash() {
		t.Fatalf("zero Store verified %q, want the default dummy", calls)
	}
	p, _, _, err := parseArgon2id(defaultDummyHash())
	if err != nil || p != DefaultArgon2Params() {
		t.Fatalf("default dummy parameters %+v, %v", p, err)
	}
}

func TestStoreVerifyError(t *testing.T) {
	s := newTestStore(t)
	broken := errors.New("broken verifier")
	s.verify = func(string, string) (bool, error) { return true, broken }
	err := s.Authenticate("user", "tr0ub4dor")
	if !errors.Is(err, broken) || errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Authenticate = %v, want the internal error", err)
	}
}

// TestStoreConcurrent runs logins during reloads (meaningful with -race).
func TestStoreConcurrent(t *testing.T) {
	s := newTestStore(t)
	users := map[string]User{"user": {PasswordHash: mustHash(t, "tr0ub4dor")}}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if err := s.Authenticate("user", "tr0ub4dor"); err != nil {
					t.Error(err)
					return
				}
				_ = s.Mechanisms()
			}
		}()
	}
	for j := 0; j < 5; j++ {
		if err := s.Replace(users); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// BenchmarkAuthPlainArgon2id measures one AUTH PLAIN exchange against a
// Store holding an argon2id hash with the default parameters: the cost of
// one login.
func BenchmarkAuthPlainArgon2id(b *testing.B) {
	hash, err := HashPassword("correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewStore(map[string]User{"user@example.org": {PasswordHash: hash}})
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("\x00user@example.org\x00correct horse battery staple")
	b.ReportAllocs()
	for b.Loop() {
		srv, err := s.NewServer(MechPlain)
		if err != nil {
			b.Fatal(err)
		}
		if _, done, err := srv.Next(msg); err != nil || !done {
			b.Fatalf("(%v, %v)", done, err)
		}
	}
}

func TestStoreMaxVerifyMemory(t *testing.T) {
	bigger := cheapArgon2
	bigger.Memory *= 4
	bigHash, err := HashPasswordParams("pw", bigger)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	kib := func(p Argon2Params) int64 { return int64(p.Memory) << 10 }
	tests := []struct {
		name  string
		users map[string]User
		want  int64
	}{
		{"no users", nil, 0},
		{"SCRAM only: no password check", map[string]User{"a": {Scram: mustScram(t, "pw")}}, 0},
		{"one argon2id hash", map[string]User{"a": {PasswordHash: mustHash(t, "pw")}}, kib(cheapArgon2)},
		// The dummy follows the majority (cheap), the largest user wins.
		{"the largest hash", map[string]User{"a": {PasswordHash: mustHash(t, "pw")}, "b": {PasswordHash: mustHash(t, "pw")}, "c": {PasswordHash: bigHash}}, kib(bigger)},
		{"bcrypt counts nothing", map[string]User{"a": {PasswordHash: string(bc)}, "b": {PasswordHash: string(bc)}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStore(tt.users)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.MaxVerifyMemory(); got != tt.want {
				t.Errorf("MaxVerifyMemory = %d, want %d", got, tt.want)
			}
		})
	}
	if got := (&Store{}).MaxVerifyMemory(); got != 0 {
		t.Errorf("zero Store: %d", got)
	}
}
