package protocol

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/sasl"
)

// storeAuth adapts a sasl.Store to Authenticator, as the daemon does.
type storeAuth struct{ s *sasl.Store }

func (a storeAuth) Mechanisms(*ConnState) []string { return a.s.Mechanisms() }
func (a storeAuth) NewServer(_ context.Context, _ *ConnState, mech string) (SASLServer, error) {
	return a.s.NewServer(mech)
}

// scramClient is the client side of SCRAM-SHA-256 written from RFC 5802
// section 3, for driving the server over the wire.
type scramClient struct {
	user, pass, nonce, first string
	serverSig                []byte
}

func (c *scramClient) start() string {
	b := make([]byte, 18)
	rand.Read(b)
	c.nonce = base64.RawStdEncoding.EncodeToString(b)
	c.first = "n=" + c.user + ",r=" + c.nonce
	return "n,," + c.first
}

func (c *scramClient) final(t *testing.T, serverFirst string) string {
	attrs := map[string]string{}
	for _, kv := range strings.Split(serverFirst, ",") {
		k, v, _ := strings.Cut(kv, "=")
		attrs[k] = v
	}
	if !strings.HasPrefix(attrs["r"], c.nonce) {
		t.Fatalf("server nonce %q does not extend ours", attrs["r"])
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil {
		t.Fatal(err)
	}
	iter, _ := strconv.Atoi(attrs["i"])
	salted, err := pbkdf2.Key(sha256.New, c.pass, salt, iter, 32)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, s string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(s))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	withoutProof := "c=biws,r=" + attrs["r"]
	authMsg := c.first + "," + serverFirst + "," + withoutProof
	sig := mac(stored[:], authMsg)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	c.serverSig = mac(mac(salted, "Server Key"), authMsg)
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

// TestScramOverTheWire runs SCRAM-SHA-256 (RFC 7677) through the AUTH
// command: two 334 challenges, the server's signature checked by the
// client, then 235; a wrong password gets 535 5.7.8 at the last step.
func TestScramOverTheWire(t *testing.T) {
	creds, err := sasl.NewScramCredentials("pencil")
	if err != nil {
		t.Fatal(err)
	}
	store, err := sasl.NewStore(map[string]sasl.User{"user": {Scram: &creds}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		pass string
		ok   bool
	}{{"pencil", true}, {"wrong", false}} {
		t.Run(tt.pass, func(t *testing.T) {
			s := &Server{Hostname: "mx.test", Backend: newFakeBackend(), Auth: storeAuth{store}, AuthFailureDelay: -1}
			c1, c2 := net.Pipe()
			s.ServeConn(c1)
			defer s.Close()
			c := newClient(t, c2)
			c.expect("220")
			c.send("EHLO x")
			if r := c.expect("250"); !strings.Contains(r, "AUTH SCRAM-SHA-256") {
				t.Fatalf("SCRAM not offered: %q", r)
			}
			sc := &scramClient{user: "user", pass: tt.pass}
			c.send("AUTH SCRAM-SHA-256 " + base64.StdEncoding.EncodeToString([]byte(sc.start())))
			r := c.expect("334 ")
			serverFirst, err := base64.StdEncoding.DecodeString(r[4:])
			if err != nil {
				t.Fatal(err)
			}
			c.send(base64.StdEncoding.EncodeToString([]byte(sc.final(t, string(serverFirst)))))
			if !tt.ok {
				c.expect("535 5.7.8")
				return
			}
			r = c.expect("334 ")
			serverFinal, _ := base64.StdEncoding.DecodeString(r[4:])
			if want := "v=" + base64.StdEncoding.EncodeToString(sc.serverSig); string(serverFinal) != want {
				t.Fatalf("server signature %q, want %q", serverFinal, want)
			}
			c.send("")
			c.expect("235 2.7.0")
			c.send("MAIL FROM:<a@example.org>", "AUTH PLAIN AGFsaWNlAHNlY3JldA==")
			c.expect("250")
			c.expect("503 5.5.1 Already authenticated")
		})
	}
}
