package protocol

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	gosasl "github.com/emersion/go-sasl"
)

var (
	testCertOnce sync.Once
	testCert     tls.Certificate
)

// testTLSConfig returns a server config with a fresh self-signed
// certificate for mx.test.
func testTLSConfig(t testing.TB) *tls.Config {
	testCertOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "mx.test"},
			DNSNames:     []string{"mx.test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return &tls.Config{Certificates: []tls.Certificate{testCert}, MinVersion: tls.VersionTLS12}
}

// testAuth offers PLAIN for user "alice" with password "secret".
type testAuth struct{}

func testAuthenticator() Authenticator { return testAuth{} }

func (testAuth) Mechanisms(*ConnState) []string { return []string{"PLAIN"} }

func (testAuth) NewServer(ctx context.Context, c *ConnState, mech string) (SASLServer, error) {
	s := &plainTestServer{}
	s.Server = gosasl.NewPlainServer(func(identity, username, password string) error {
		if username != "alice" || password != "secret" || (identity != "" && identity != username) {
			return gosasl.ErrUnexpectedClientResponse
		}
		s.user = username
		return nil
	})
	return s, nil
}

type plainTestServer struct {
	gosasl.Server
	user string
}

func (s *plainTestServer) Username() string { return s.user }
