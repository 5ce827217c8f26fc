package tests

import (
	dbsql "database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the test's own connection, as postgres
)

// privatePostgres starts a PostgreSQL of its own (initdb and postgres in
// a temporary directory, a unix socket only, as nobody when the tests
// run as root) and returns the socket directory and the server process.
// Without PostgreSQL the test is skipped loudly, or fails under CI=true.
func privatePostgres(t *testing.T) (sockDir string, cmd *exec.Cmd) {
	t.Helper()
	fail := func(err error) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL cannot start (CI=true, so this fails): %v", err)
		}
		t.Skipf("SKIPPING: PostgreSQL cannot start (tests/install-deps.sh installs it): %v", err)
	}
	bin := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
		if len(m) == 0 {
			fail(fmt.Errorf("%s not found (Debian package postgresql)", name))
		}
		sort.Slice(m, func(i, j int) bool {
			a, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[i]))))
			b, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[j]))))
			return a < b
		})
		return m[len(m)-1]
	}
	initdb, postgres := bin("initdb"), bin("postgres")
	dir := tempDir(t) // short: unix socket paths are limited to 107 bytes
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			fail(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	setup := exec.Command(initdb, "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	setup.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := setup.CombinedOutput(); err != nil {
		fail(fmt.Errorf("initdb: %v: %s", err, out))
	}
	cmd = exec.Command(postgres, "-D", filepath.Join(dir, "data"), "-k", dir, "-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=20")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	logFile := filepath.Join(dir, "postgres.log")
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		signalTree(t, cmd.Process.Pid, syscall.SIGCONT) // a test that failed while it was stopped
		cmd.Process.Signal(syscall.SIGINT)              // fast shutdown
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, ".s.PGSQL.5432")); err == nil {
			db, err := dbsql.Open("pgx", "host="+dir+" user=postgres dbname=postgres")
			if err == nil {
				err = db.Ping()
				db.Close()
				if err == nil {
					return dir, cmd
				}
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logFile)
			fail(fmt.Errorf("postgres exited: %s", b))
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logFile)
			fail(fmt.Errorf("postgres did not answer within 30s: %s", b))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readmeBlock returns the first fenced block of lang after heading in
// README.md, so that the test runs what the README tells admins to run.
func readmeBlock(t *testing.T, heading, lang string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```"+lang+"\n")
	if !ok {
		t.Fatalf("README.md has no %s block after %q", lang, heading)
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// TestPostgresDirectoryDaemon runs the README's PostgreSQL schema (in
// the style of Postfix Admin) and its [[directory]] table against a
// private PostgreSQL: AUTH PLAIN against a {SHA512-CRYPT} and a
// {BLF-CRYPT} hash, delivery to a user who exists only in the database;
// PostgreSQL stopped (SIGSTOP: connections hang): 451 4.3.0 at RCPT and
// 454 4.7.0 at AUTH within the timeout; PostgreSQL continuing: lmtpd
// recovers by itself.
func TestPostgresDirectoryDaemon(t *testing.T) {
	sock, pg := privatePostgres(t)
	admin, err := dbsql.Open("pgx", "host="+sock+" user=postgres dbname=postgres")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE mail"); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	mail, err := dbsql.Open("pgx", "host="+sock+" user=postgres dbname=mail")
	if err != nil {
		t.Fatal(err)
	}
	defer mail.Close()
	if _, err := mail.Exec(readmeBlock(t, "### PostgreSQL, in the style of Postfix Admin", "sql")); err != nil {
		t.Fatalf("the README's schema: %v", err)
	}
	for _, u := range []struct{ name, scheme, pw string }{
		{"alice@example.org", "SHA512-CRYPT", "alice-pw"},
		{"bob@example.org", "BLF-CRYPT", "bob-pw"},
	} {
		local, domain, _ := strings.Cut(u.name, "@")
		if _, err := mail.Exec(`INSERT INTO mailbox (username, password, maildir, local_part, domain) VALUES ($1, $2, $3, $4, $5)`,
			u.name, hashed(t, u.scheme, u.pw), domain+"/"+local+"/", local, domain); err != nil {
			t.Fatal(err)
		}
		if _, err := mail.Exec(`INSERT INTO alias (address, goto, domain) VALUES ($1, $2, $3)`, u.name, u.name, domain); err != nil {
			t.Fatal(err)
		}
	}

	dir := tempDir(t)
	smtpAddr := freePort(t)
	// The README's directory table, pointed at the private server, with
	// the cache off and a short timeout so the outage shows at once.
	table := strings.Replace(readmeBlock(t, "### PostgreSQL, in the style of Postfix Admin", "toml"),
		"host=/run/postgresql", "host="+sock, 1)
	table = strings.Replace(table, "[[domain]]", `cache_ttl = "0s"
negative_cache_ttl = "0s"
timeout = "1s"

[[domain]]`, 1)
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

%s`, smtpAddr, dir, table))
	if st, _, stderr := run(t, dir, "", "check-config", "-q", "-config", cfgFile); st != 0 {
		t.Fatalf("check-config: status %d\n%s", st, stderr)
	}
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")

	for _, u := range []struct{ name, pw string }{{"alice@example.org", "alice-pw"}, {"bob@example.org", "bob-pw"}} {
		c := dial(t, "tcp", smtpAddr)
		c.cmd("EHLO client.test", "250 ")
		c.cmd(authPlain(u.name, "wrong"), "535 5.7.8")
		c.cmd(authPlain(u.name, u.pw), "235 ")
		c.cmd("QUIT", "221 ")
	}
	c := dial(t, "tcp", smtpAddr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	// A hostile local part (quoted, as RFC 5321 allows) is a bind
	// parameter, not SQL: no such user.
	c.cmd(`RCPT TO:<"x' OR '1'='1"@example.org>`, "550 5.1.1")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.write(testMessage + ".\r\n")
	c.expect("250 ")
	if got := len(mailFiles(t, filepath.Join(dir, "mail", "example.org", "alice"))); got != 1 {
		t.Errorf("alice has %d messages, want 1", got)
	}

	// The backends serving lmtpd's pooled connections are children of the
	// postmaster: stop them all.
	signalTree(t, pg.Process.Pid, syscall.SIGSTOP)
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "451 4.3.0")
	c.cmd("RSET", "250 ")
	c.cmd(authPlain("bob@example.org", "bob-pw"), "454 4.7.0")
	signalTree(t, pg.Process.Pid, syscall.SIGCONT)
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd(authPlain("bob@example.org", "bob-pw"), "235 ")
	c.cmd("QUIT", "221 ")
}

// signalTree sends sig to pid and its children.
func signalTree(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	pids := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": the fields after the last ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			pids = append(pids, child)
		}
	}
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil {
			t.Logf("signal %v to %d: %v", sig, p, err)
		}
	}
}
