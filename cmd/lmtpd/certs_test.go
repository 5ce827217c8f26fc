package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/internal/wiretest"
)

// writeCert writes a self-signed certificate for name, valid until
// notAfter, to dir/cert.pem and dir/key.pem.
func writeCert(t *testing.T, dir, name string, notAfter time.Time) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cf, kf
}

func servedName(t *testing.T, s *certStore) string {
	t.Helper()
	c, err := s.getCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.Subject.CommonName
}

func TestCertStore(t *testing.T) {
	dir := t.TempDir()
	s := &certStore{}
	if _, err := s.getCertificate(nil); err == nil {
		t.Error("an empty store serves a certificate")
	}
	cf, kf := writeCert(t, dir, "one.example.test", time.Now().Add(time.Hour))
	if err := s.load(cf, kf); err != nil {
		t.Fatal(err)
	}
	if got := servedName(t, s); got != "one.example.test" {
		t.Errorf("serving %s", got)
	}
	if _, _, changed := s.changed(); changed {
		t.Error("unchanged files reported as changed")
	}
	cfg := s.tlsConfig(nil, nil)
	if cfg.MinVersion != tls.VersionTLS12 || cfg.GetCertificate == nil {
		t.Errorf("tls.Config %+v", cfg)
	}

	// A renewal on disk is picked up by watch; a broken one is not.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs wiretest.LogBuffer
	log := zerolog.New(&logs)
	go s.watch(ctx, 10*time.Millisecond, &log)
	// The renewal may have the first one's size: let the clock move past
	// the file system's timestamp granularity so that its mtime differs.
	time.Sleep(20 * time.Millisecond)
	writeCert(t, dir, "two.example.test", time.Now().Add(2*time.Hour))
	waitFor(t, func() bool { return servedName(t, s) == "two.example.test" })
	os.WriteFile(cf, []byte("garbage"), 0o644)
	// Once watch has tried the broken files (not after a guessed sleep,
	// which a busy machine can outlast before watch looks).
	waitFor(t, func() bool { return strings.Contains(logs.String(), "cannot be loaded") })
	if got := servedName(t, s); got != "two.example.test" {
		t.Errorf("a broken renewal replaced the certificate: %s", got)
	}

	expired := t.TempDir()
	ecf, ekf := writeCert(t, expired, "old.example.test", time.Now().Add(-time.Hour))
	if _, err := loadCertificate(ecf, ekf); err == nil || !strings.Contains(err.Error(), "certificate expired on") {
		t.Errorf("expired certificate: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
	}
}
