package ldap

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/internal/testproc"
)

// One private slapd serves the whole package test run: started by the
// first test that needs it, from testdata/slapd.conf in a temporary
// directory, on a loopback port, loaded with testdata/data.ldif through
// ldapadd. Under CI=true a slapd that cannot start fails the tests;
// otherwise they are skipped, loudly.

const (
	slapdBin   = "/usr/sbin/slapd"
	rootDN     = "cn=admin,dc=example,dc=org"
	rootPW     = "admin-secret"
	serviceDN  = "cn=lmtpd,dc=example,dc=org"
	servicePW  = "service-secret"
	peopleBase = "ou=people,dc=example,dc=org"
)

// slapd is the running server.
type slapd struct {
	dir      string
	url      string // ldap://127.0.0.1:port
	ldapsURL string // ldaps://127.0.0.1:port
	caFile   string // the server's self-signed certificate
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited
	log      *bytes.Buffer
}

var (
	slapdOnce   sync.Once
	theSlapd    *slapd
	slapdErr    error
	slapdTmpDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theSlapd != nil {
		theSlapd.stop()
	}
	if slapdTmpDir != "" {
		os.RemoveAll(slapdTmpDir)
	}
	os.Exit(code)
}

// needSlapd returns the package's slapd, starting it on first use.
func needSlapd(t *testing.T) *slapd {
	t.Helper()
	slapdOnce.Do(func() { theSlapd, slapdErr = startSlapd() })
	if slapdErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("slapd cannot start (CI=true, so this fails): %v", slapdErr)
		}
		t.Skipf("SKIPPING: slapd cannot start (install slapd and ldap-utils; tests/install-deps.sh does): %v", slapdErr)
	}
	return theSlapd
}

func startSlapd() (*slapd, error) {
	for _, bin := range []string{slapdBin, "ldapadd"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "lmtpd-slapd-")
	if err != nil {
		return nil, err
	}
	slapdTmpDir = dir
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	conf, err := os.ReadFile("testdata/slapd.conf")
	if err != nil {
		return nil, err
	}
	conf = bytes.ReplaceAll(conf, []byte("@DIR@"), []byte(dir))
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), conf, 0o600); err != nil {
		return nil, err
	}
	schema, err := os.ReadFile("testdata/test.schema")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "test.schema"), schema, 0o600); err != nil {
		return nil, err
	}
	if err := writeCert(dir); err != nil {
		return nil, err
	}
	// Free loopback ports; slapd binds them with SO_REUSEADDR, also after
	// a restart.
	var addrs [2]string
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs[i] = l.Addr().String()
		l.Close() // a second Listen cannot get the same port meanwhile: the kernel does not reuse at once
	}
	s := &slapd{dir: dir, url: "ldap://" + addrs[0], ldapsURL: "ldaps://" + addrs[1], caFile: filepath.Join(dir, "cert.pem")}
	if err := s.start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ldapadd", "-x", "-H", s.url, "-D", rootDN, "-w", rootPW,
		"-f", "testdata/data.ldif").CombinedOutput()
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("ldapadd: %v: %s", err, out)
	}
	return s, nil
}

// start runs slapd in the foreground (-d 0 keeps it from forking) and
// waits until it answers.
func (s *slapd) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = &bytes.Buffer{}
	cmd := exec.Command(slapdBin, "-f", filepath.Join(s.dir, "slapd.conf"), "-h", s.url+"/ "+s.ldapsURL+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = testproc.DieWithParent(nil)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			return fmt.Errorf("slapd exited: %s", s.log)
		default:
		}
		if c, err := ldap.DialURL(s.url, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second})); err == nil {
			c.Close()
			return nil
		}
	}
	cmd.Process.Kill()
	<-done
	return fmt.Errorf("slapd did not answer within 15s: %s", s.log)
}

// stop ends slapd (SIGTERM, then SIGKILL) and waits for it.
func (s *slapd) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// signal sends sig to the running slapd.
func (s *slapd) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		t.Fatal("slapd is not running")
	}
	if sig == syscall.SIGSTOP {
		// Signals are asynchronous: Stop waits until it has stopped.
		if err := testproc.Stop(s.cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key
// (cert.pem, key.pem) into dir.
func writeCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// config returns the directory configuration the tests start from.
func (s *slapd) config() Config {
	return Config{
		Name:           "ldaptest",
		URL:            s.url,
		BindDN:         serviceDN,
		BindPassword:   servicePW,
		BaseDN:         "dc=example,dc=org",
		UserFilter:     "(&(objectClass=inetOrgPerson)(mail={address}))",
		AliasFilter:    "(&(objectClass=nisMailAlias)(cn={address}))",
		AliasAttribute: "rfc822MailMember",
		Attributes:     map[string]string{"mailbox": "mailMessageStore", "quota_bytes": "mailQuota", "display_name": "cn"},
		Auth:           "bind",
		Timeout:        2 * time.Second,
		PoolSize:       2,
	}
}

// newDir returns a Directory for c, closed at the end of the test.
func newDir(t *testing.T, c Config) *Directory {
	t.Helper()
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// key builds a lookup key from an address.
func keyOf(addr string) directory.Key {
	k := directory.Key{Address: addr, LocalPart: addr}
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		k.LocalPart, k.Domain = addr[:i], addr[i+1:]
	}
	return k
}
