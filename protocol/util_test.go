package protocol

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/sasl"
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

// testAuthenticator offers PLAIN and LOGIN for user "alice" with password
// "secret"; user "broken" makes the credential store fail.
func testAuthenticator() Authenticator {
	return &PasswordAuth{
		Insecure: true,
		Check: func(ctx context.Context, c *ConnState, username, password string) error {
			switch {
			case username == "broken":
				return errors.New("credential store unreachable")
			case username == "alice" && password == "secret":
				return nil
			}
			return sasl.ErrAuthFailed
		},
	}
}
