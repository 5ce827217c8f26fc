//go:build linux

package tests

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/testproc"
)

// privateSlapd starts a slapd of its own on a loopback port, with the
// schema and entries of directory/ldap's tests (testdata/slapd.conf,
// test.schema, data.ldif: alice has an {SSHA} password, bob a {CRYPT}$6$
// one, both checked by slapd on bind), and stops it at the end of the
// test. Without slapd the test is skipped loudly, or fails under CI=true.
func privateSlapd(t *testing.T, dir string) (url string, cmd *exec.Cmd) {
	t.Helper()
	fail := func(err error) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("slapd cannot start (CI=true, so this fails): %v", err)
		}
		t.Skipf("SKIPPING: slapd cannot start (install slapd and ldap-utils; tests/install-deps.sh does): %v", err)
	}
	for _, bin := range []string{"/usr/sbin/slapd", "ldapadd"} {
		if _, err := exec.LookPath(bin); err != nil {
			fail(err)
		}
	}
	src := "../directory/ldap/testdata"
	conf, err := os.ReadFile(filepath.Join(src, "slapd.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// No TLS here: the driver's TLS is directory/ldap's business.
	var out []byte
	for _, l := range bytes.SplitAfter(conf, []byte("\n")) {
		if !bytes.HasPrefix(l, []byte("TLSCertificate")) {
			out = append(out, l...)
		}
	}
	sd := filepath.Join(dir, "slapd")
	if err := os.MkdirAll(filepath.Join(sd, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, sd, "slapd.conf", string(bytes.ReplaceAll(out, []byte("@DIR@"), []byte(sd))))
	schema, err := os.ReadFile(filepath.Join(src, "test.schema"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, sd, "test.schema", string(schema))
	url = "ldap://" + freePort(t)
	var log bytes.Buffer
	cmd = exec.Command("/usr/sbin/slapd", "-f", filepath.Join(sd, "slapd.conf"), "-h", url+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = testproc.DieWithParent(nil)
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		// ldapadd retries nothing: wait until slapd listens.
		c, err := net.DialTimeout("tcp", url[len("ldap://"):], time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			fail(fmt.Errorf("slapd exited: %s", log.String()))
		case <-ctx.Done():
			fail(fmt.Errorf("slapd did not listen: %s", log.String()))
		case <-time.After(50 * time.Millisecond):
		}
	}
	if b, err := exec.CommandContext(ctx, "ldapadd", "-x", "-H", url, "-D", "cn=admin,dc=example,dc=org", "-w", "admin-secret",
		"-f", filepath.Join(src, "data.ldif")).CombinedOutput(); err != nil {
		t.Fatalf("ldapadd: %v: %s", err, b)
	}
	return url, cmd
}

// TestLDAPDirectoryDaemon runs the binary against a private slapd:
// AUTH PLAIN by LDAP bind ({SSHA} and {CRYPT}$6$ entries: 235; a wrong
// password and an unknown user: 535 5.7.8), delivery to a user who
// exists only in LDAP; then slapd stopped (SIGSTOP: it accepts nothing
// and answers nothing): AUTH 454 4.7.0 and RCPT 451 4.3.0 within the
// timeout; and slapd back: lmtpd recovers without a restart or reload.
// Then auth = "attribute": AUTH PLAIN against the {SHA512-CRYPT} and
// {BLF-CRYPT} userPassword values doveadm wrote.
func TestLDAPDirectoryDaemon(t *testing.T) {
	dir := tempDir(t)
	url, slapd := privateSlapd(t, dir)
	writeFile(t, dir, "ldap.secret", "service-secret\n")
	smtpAddr := freePort(t)
	cfgFile := writeFile(t, dir, "lmtpd.toml", fmt.Sprintf(`[log]
format = "json"

[[listener]]
name = "smtp"
protocol = "smtp"
address = "%s"
auth = "optional"
insecure_auth = true
auth_failure_delay = "0s"

[delivery.maildir]
root = "%s/mail"

[[domain]]
name = "example.org"
users = ["postmaster"]
directory = "ldap"

[auth]
directory = "ldap"

[[directory]]
name = "ldap"
driver = "ldap"
url = "%s"
bind_dn = "cn=lmtpd,dc=example,dc=org"
bind_password_file = "ldap.secret"
base_dn = "ou=people,dc=example,dc=org"
user_filter = "(&(objectClass=inetOrgPerson)(mail={address}))"
attributes = { mailbox = "mailMessageStore" }
auth = "bind"
timeout = "1s"
cache_ttl = "0s"
negative_cache_ttl = "0s"
`, smtpAddr, dir, url))
	if st, _, stderr := run(t, dir, "", "check-config", "-q", "-config", cfgFile); st != 0 {
		t.Fatalf("check-config: status %d\n%s", st, stderr)
	}
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")

	for _, u := range []struct{ name, pw string }{{"alice@example.org", "alice pw"}, {"bob@example.org", "bob secret"}} {
		c := dial(t, "tcp", smtpAddr)
		c.cmd("EHLO client.test", "250 ")
		c.cmd(authPlain(u.name, "wrong"), "535 5.7.8")
		c.cmd(authPlain("nobody@example.org", u.pw), "535 5.7.8")
		c.cmd(authPlain(u.name, u.pw), "235 ")
		c.cmd("QUIT", "221 ")
	}
	c := dial(t, "tcp", smtpAddr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1")
	c.cmd("RCPT TO:<carol@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.write(testMessage + ".\r\n")
	c.expect("250 ")
	if got := len(mailFiles(t, filepath.Join(dir, "mail", "example.org", "carol"))); got != 1 {
		t.Errorf("carol has %d messages, want 1", got)
	}

	if err := testproc.Stop(slapd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<carol@example.org>", "451 4.3.0")
	c.cmd("RSET", "250 ")
	c.cmd(authPlain("alice@example.org", "alice pw"), "454 4.7.0")
	p.waitLog(0, "directory ldap")

	if err := slapd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<carol@example.org>", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd(authPlain("alice@example.org", "alice pw"), "235 ")
	c.cmd("QUIT", "221 ")

	// auth = "attribute" (SIGHUP): lmtpd reads userPassword as the
	// service account and verifies the {SHA512-CRYPT} and {BLF-CRYPT}
	// hashes Dovecot wrote itself.
	text, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "lmtpd.toml", strings.Replace(string(text), `auth = "bind"`, `auth = "attribute"`, 1))
	n := p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, "configuration reloaded")
	for _, u := range []struct{ name, pw string }{{"carol@example.org", "carol pw"}, {"erin@example.org", "erin pw"}} {
		c := dial(t, "tcp", smtpAddr)
		c.cmd("EHLO client.test", "250 ")
		c.cmd(authPlain(u.name, "wrong"), "535 5.7.8")
		c.cmd(authPlain(u.name, u.pw), "235 ")
		c.cmd("QUIT", "221 ")
	}
}
