package sasl

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// cheapArgon2 keeps tests fast; the defaults are tested on their own.
var cheapArgon2 = Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}

// mustHash hashes password with cheapArgon2.
func mustHash(t testing.TB, password string) string {
	t.Helper()
	h, err := HashPasswordParams(password, cheapArgon2)
	if err != nil {
		t.Fatalf("HashPasswordParams: %v", err)
	}
	return h
}

// mustScram derives SCRAM credentials with the RFC minimum iteration count
// and a fixed salt, so tests stay fast and reproducible.
func mustScram(t testing.TB, password string) *ScramCredentials {
	t.Helper()
	c, err := deriveScramCredentials(password, []byte("0123456789abcdef"), MinScramIterations)
	if err != nil {
		t.Fatalf("deriveScramCredentials: %v", err)
	}
	return &c
}

// mustCRAM computes a CRAM-MD5 secret.
func mustCRAM(t testing.TB, password string) *CRAMSecret {
	t.Helper()
	c, err := NewCRAMSecret(password)
	if err != nil {
		t.Fatalf("NewCRAMSecret: %v", err)
	}
	return &c
}

// checkKind fails unless err matches want (nil, ErrMalformed or
// ErrAuthFailed), and never matches the other sentinel.
func checkKind(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("error = %v, want success", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("error = %v, want %v", err, want)
	case want == ErrMalformed && errors.Is(err, ErrAuthFailed),
		want == ErrAuthFailed && errors.Is(err, ErrMalformed):
		t.Fatalf("error %v matches both sentinels", err)
	}
}

// checkNoLeak fails if the error text contains any of the secrets.
func checkNoLeak(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error text %q contains secret or client data %q", err.Error(), s)
		}
	}
}

// scramClient is the client side of SCRAM-SHA-256, written from RFC 5802
// sections 3, 5 and 7 independently of the server code (its Hi is the
// RFC's definition, not crypto/pbkdf2).
type scramClient struct {
	username, password, authzid string
	flag                        string // "n" unless set
	nonce                       string // the c-nonce
	extension                   string // appended to client-first-message-bare

	gs2, bare       string
	serverSignature []byte
}

// saslname escapes "," and "=" (RFC 5802 section 5.1).
func saslname(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

// first returns the client-first-message.
func (c *scramClient) first() []byte {
	flag := c.flag
	if flag == "" {
		flag = "n"
	}
	c.gs2 = flag + ","
	if c.authzid != "" {
		c.gs2 += "a=" + saslname(c.authzid)
	}
	c.gs2 += ","
	c.bare = "n=" + saslname(c.username) + ",r=" + c.nonce
	if c.extension != "" {
		c.bare += "," + c.extension
	}
	return []byte(c.gs2 + c.bare)
}

// final parses the server-first-message and returns the
// client-final-message.
func (c *scramClient) final(serverFirst []byte) ([]byte, error) {
	attrs := strings.Split(string(serverFirst), ",")
	if len(attrs) < 3 || !strings.HasPrefix(attrs[0], "r=") || !strings.HasPrefix(attrs[1], "s=") ||
		!strings.HasPrefix(attrs[2], "i=") {
		return nil, fmt.Errorf("bad server-first-message %q", serverFirst)
	}
	nonce := attrs[0][2:]
	if !strings.HasPrefix(nonce, c.nonce) || len(nonce) == len(c.nonce) {
		return nil, fmt.Errorf("server nonce %q does not extend ours", nonce)
	}
	salt, err := base64.StdEncoding.DecodeString(attrs[1][2:])
	if err != nil {
		return nil, err
	}
	iterations, err := strconv.Atoi(attrs[2][2:])
	if err != nil {
		return nil, err
	}
	salted := rfcHi([]byte(c.password), salt, iterations)
	clientKey := rfcHMAC(salted, []byte("Client Key"))
	storedKey := sha256.Sum256(clientKey)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(c.gs2)) + ",r=" + nonce
	authMessage := []byte(c.bare + "," + string(serverFirst) + "," + withoutProof)
	signature := rfcHMAC(storedKey[:], authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ signature[i]
	}
	c.serverSignature = rfcHMAC(rfcHMAC(salted, []byte("Server Key")), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verifyServer checks the server-final-message.
func (c *scramClient) verifyServer(serverFinal []byte) error {
	want := "v=" + base64.StdEncoding.EncodeToString(c.serverSignature)
	if string(serverFinal) != want {
		return fmt.Errorf("server-final-message %q, want %q", serverFinal, want)
	}
	return nil
}

// rfcHMAC is HMAC-SHA-256.
func rfcHMAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// rfcHi is Hi() of RFC 5802 section 2.2:
//
//	U1 := HMAC(str, salt + INT(1)); Ui := HMAC(str, Ui-1); Hi := U1 XOR ... XOR Ui
func rfcHi(str, salt []byte, i int) []byte {
	m := hmac.New(sha256.New, str)
	m.Write(binary.BigEndian.AppendUint32(bytes.Clone(salt), 1))
	u := m.Sum(nil)
	out := bytes.Clone(u)
	for n := 2; n <= i; n++ {
		m.Reset()
		m.Write(u)
		u = m.Sum(u[:0])
		for k := range out {
			out[k] ^= u[k]
		}
	}
	return out
}
