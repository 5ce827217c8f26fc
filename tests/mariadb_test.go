//go:build linux

package tests

import (
	"context"
	dbsql "database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the test's own connection, as root

	"github.com/lmtpd/lmtpd/internal/readmetest"
	"github.com/lmtpd/lmtpd/internal/testproc"
)

// mariaDB is a private MariaDB server: a data directory and a unix
// socket in a temporary directory, run as nobody when the tests run as
// root. It can be stopped and started again on the same data.
type mariaDB struct {
	t    *testing.T
	dir  string
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{}
}

func (m *mariaDB) sock() string { return filepath.Join(m.dir, "my.sock") }

// dsn is the go-sql-driver DSN of database db as root (no password:
// mariadb-install-db --auth-root-authentication-method=normal).
func (m *mariaDB) dsn(db string) string { return "root@unix(" + m.sock() + ")/" + db }

// privateMariaDB installs and starts a MariaDB of its own. Without
// MariaDB the test is skipped loudly, or fails under CI=true.
func privateMariaDB(t *testing.T) *mariaDB {
	t.Helper()
	fail := func(err error) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("MariaDB cannot start (CI=true, so this fails): %v", err)
		}
		t.Skipf("SKIPPING: MariaDB cannot start (tests/install-deps.sh installs it): %v", err)
	}
	install, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		fail(fmt.Errorf("%w (Debian package mariadb-server)", err))
	}
	m := &mariaDB{t: t, dir: tempDir(t)} // short: unix socket paths are limited to 107 bytes
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			fail(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		m.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		if err := os.Chown(m.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(m.dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	setup := exec.CommandContext(ctx, install, "--no-defaults", "--datadir="+filepath.Join(m.dir, "data"),
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve")
	setup.Dir = m.dir
	setup.SysProcAttr = &syscall.SysProcAttr{Credential: m.cred}
	if out, err := setup.CombinedOutput(); err != nil {
		fail(fmt.Errorf("mariadb-install-db: %v: %s", err, out))
	}
	t.Cleanup(m.stop)
	if err := m.start(); err != nil {
		fail(err)
	}
	return m
}

// start runs mariadbd and waits until it answers.
func (m *mariaDB) start() error {
	bin, err := exec.LookPath("mariadbd")
	if err != nil {
		bin = "/usr/sbin/mariadbd"
	}
	cmd := exec.Command(bin, "--no-defaults", "--datadir="+filepath.Join(m.dir, "data"), "--socket="+m.sock(),
		"--skip-networking", "--pid-file="+filepath.Join(m.dir, "my.pid"), "--log-error="+filepath.Join(m.dir, "error.log"),
		"--innodb-buffer-pool-size=16M", "--skip-log-bin", "--max-connections=30")
	cmd.Dir = m.dir
	cmd.SysProcAttr = testproc.DieWithParent(&syscall.SysProcAttr{Credential: m.cred})
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	db, err := dbsql.Open("mysql", m.dsn(""))
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(m.dir, "error.log"))
			return fmt.Errorf("mariadbd exited at start: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(m.dir, "error.log"))
			return fmt.Errorf("mariadbd did not answer within 30s: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop shuts mariadbd down (SIGTERM: a clean shutdown) and waits for it.
func (m *mariaDB) stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		m.t.Logf("mariadbd did not stop within 20s: killed")
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// mariaDBSchema is the README's Postfix Admin style schema in MariaDB's
// dialect (no roles: the test connects as root).
const mariaDBSchema = `CREATE TABLE mailbox (
    username   varchar(255) PRIMARY KEY,
    password   varchar(255) NOT NULL,
    name       varchar(255) NOT NULL DEFAULT '',
    maildir    varchar(255) NOT NULL,
    quota      bigint       NOT NULL DEFAULT 0,
    local_part varchar(255) NOT NULL,
    domain     varchar(255) NOT NULL,
    active     boolean      NOT NULL DEFAULT true
);
CREATE TABLE alias (
    address varchar(255) PRIMARY KEY,
    goto    text         NOT NULL,
    domain  varchar(255) NOT NULL,
    active  boolean      NOT NULL DEFAULT true
)`

// TestMariaDBDirectoryDaemon runs lmtpd with the README's directory
// queries and sql_driver = "mysql" against a private MariaDB: delivery
// to a user who exists only in the database, AUTH PLAIN against a
// {SHA512-CRYPT} hash there; MariaDB stopped: 451 4.3.0 at RCPT and
// 454 4.7.0 at AUTH; MariaDB started again: lmtpd recovers without a
// restart.
func TestMariaDBDirectoryDaemon(t *testing.T) {
	my := privateMariaDB(t)
	admin, err := dbsql.Open("mysql", my.dsn(""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE mail"); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	mail, err := dbsql.Open("mysql", my.dsn("mail"))
	if err != nil {
		t.Fatal(err)
	}
	defer mail.Close()
	for _, st := range strings.Split(mariaDBSchema, ";") {
		if _, err := mail.Exec(st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	for _, name := range []string{"alice@example.org", "bob@example.org"} {
		local, domain, _ := strings.Cut(name, "@")
		if _, err := mail.Exec(`INSERT INTO mailbox (username, password, maildir, local_part, domain) VALUES (?, ?, ?, ?, ?)`,
			name, hashed(t, "SHA512-CRYPT", local+"-pw"), domain+"/"+local+"/", local, domain); err != nil {
			t.Fatal(err)
		}
		if _, err := mail.Exec(`INSERT INTO alias (address, goto, domain) VALUES (?, ?, ?)`, name, name, domain); err != nil {
			t.Fatal(err)
		}
	}
	mail.Close()

	dir := tempDir(t)
	smtpAddr := freePort(t)
	// The README's directory table with the README's MySQL/MariaDB
	// driver and DSN, pointed at the private server; the cache off and a
	// short timeout so the outage shows at once.
	table := readmetest.Block(t, "### PostgreSQL, in the style of Postfix Admin", "toml")
	table = strings.Replace(table, `sql_driver = "postgres"`, `sql_driver = "mysql"`, 1)
	table = strings.Replace(table, `dsn = "host=/run/postgresql dbname=mail user=lmtpd"`, `dsn = "`+my.dsn("mail")+`"`, 1)
	table = strings.Replace(table, "[[domain]]", `cache_ttl = "0s"
negative_cache_ttl = "0s"
timeout = "1s"

[[domain]]`, 1)
	if !strings.Contains(table, `sql_driver = "mysql"`) || !strings.Contains(table, my.sock()) {
		t.Fatalf("the README's directory table changed; the test's edits did not apply:\n%s", table)
	}
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

	c := dial(t, "tcp", smtpAddr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd(authPlain("alice@example.org", "wrong"), "535 5.7.8")
	c.cmd(authPlain("alice@example.org", "alice-pw"), "235 ")
	c.cmd("QUIT", "221 ")

	c = dial(t, "tcp", smtpAddr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd(`RCPT TO:<"x' OR '1'='1"@example.org>`, "550 5.1.1")
	c.cmd("RCPT TO:<nobody-here@example.org>", "550 5.1.1")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.write(testMessage + ".\r\n")
	c.expect("250 ")
	if got := len(mailFiles(t, filepath.Join(dir, "mail", "example.org", "alice"))); got != 1 {
		t.Errorf("alice has %d messages, want 1", got)
	}

	// MariaDB stopped: lmtpd's pooled connections are gone and new ones
	// are refused. A temporary failure, never a bounce.
	my.stop()
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "451 4.3.0")
	c.cmd("RSET", "250 ")
	c.cmd(authPlain("bob@example.org", "bob-pw"), "454 4.7.0")

	// Started again on the same data: lmtpd recovers by itself.
	if err := my.start(); err != nil {
		t.Fatal(err)
	}
	c.cmd("MAIL FROM:<sender@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.write(testMessage + ".\r\n")
	c.expect("250 ")
	c.cmd(authPlain("bob@example.org", "bob-pw"), "235 ")
	c.cmd("QUIT", "221 ")
	if got := len(mailFiles(t, filepath.Join(dir, "mail", "example.org", "bob"))); got != 1 {
		t.Errorf("bob has %d messages, want 1", got)
	}
}
