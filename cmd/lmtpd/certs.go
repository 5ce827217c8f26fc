package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// certPollInterval is how often the certificate files are checked for
// changes (a renewal by certbot or similar) when lmtpd is not told by
// SIGHUP.
const certPollInterval = 10 * time.Second

// loadCertificate loads a PEM certificate chain and its key and checks
// that the certificate is currently valid.
func loadCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading %s and %s: %w", certFile, keyFile, err)
	}
	if c.Leaf != nil && time.Now().After(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("%s: certificate expired on %s", certFile, c.Leaf.NotAfter.Format(time.DateOnly))
	}
	return &c, nil
}

// certStore serves the current certificate through tls.Config's
// GetCertificate, so that a reload swaps it atomically for new handshakes
// while connections already set up keep theirs.
type certStore struct {
	cert atomic.Pointer[tls.Certificate]

	mu                sync.Mutex
	certFile, keyFile string
	stamp             string // size and mtime of both files when last tried
}

// fileStamp summarises the files' size and modification time.
func fileStamp(files ...string) string {
	s := ""
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			s += "missing;"
			continue
		}
		s += fmt.Sprintf("%d:%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s
}

// load loads the files and, if they are good, makes them current.
func (s *certStore) load(certFile, keyFile string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	stamp := fileStamp(certFile, keyFile)
	c, err := loadCertificate(certFile, keyFile)
	s.certFile, s.keyFile, s.stamp = certFile, keyFile, stamp
	if err != nil {
		return err
	}
	s.cert.Store(c)
	return nil
}

// set makes c current (a certificate loaded while validating a reload).
func (s *certStore) set(c *tls.Certificate, certFile, keyFile string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certFile, s.keyFile, s.stamp = certFile, keyFile, fileStamp(certFile, keyFile)
	s.cert.Store(c)
}

// getCertificate implements tls.Config.GetCertificate.
func (s *certStore) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cert.Load()
	if c == nil {
		return nil, fmt.Errorf("no certificate loaded")
	}
	return c, nil
}

// tlsConfig returns the server configuration of every TLS listener:
// TLS 1.2 at least (RFC 8996, RFC 9325), the certificate from the store.
// onHandshake, if not nil, is called for every completed handshake.
func (s *certStore) tlsConfig(onHello func(), onHandshake func(tls.ConnectionState)) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.getCertificate}
	if onHello != nil {
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			onHello()
			return nil, nil
		}
	}
	if onHandshake != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			onHandshake(cs)
			return nil
		}
	}
	return cfg
}

// changed reports whether the files differ from when they were last
// loaded or tried.
func (s *certStore) changed() (string, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.certFile, s.keyFile, s.certFile != "" && fileStamp(s.certFile, s.keyFile) != s.stamp
}

// watch reloads the certificate when its files change, until ctx ends.
// A failed load is logged once per change; the old certificate stays.
func (s *certStore) watch(ctx context.Context, every time.Duration, log *zerolog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cf, kf, ok := s.changed()
		if !ok {
			continue
		}
		if err := s.load(cf, kf); err != nil {
			log.Error().Err(err).Msg("certificate files changed but cannot be loaded; keeping the old certificate")
			continue
		}
		log.Info().Str("cert_file", cf).Msg("certificate reloaded")
	}
}
