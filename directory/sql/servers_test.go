package sql

// Real database servers for the tests: a private PostgreSQL and a
// private MariaDB, each started once per package test run (on first use)
// in a temporary directory, listening on a unix socket only, run as an
// unprivileged user when the tests run as root. Under CI=true a server
// that cannot start fails the tests that need it; otherwise they skip
// loudly.

import (
	"context"
	dbsql "database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/testproc"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Start both servers at once, in the background, when the tests to
	// run may need them: need() waits for its server's start.
	if run := flag.Lookup("test.run").Value.String(); run == "" || strings.ContainsAny(run, ".*") ||
		strings.Contains(run, "Postgres") || strings.Contains(run, "MariaDB") || strings.Contains(run, "Outage") {
		for _, s := range []*server{pgServer, myServer} {
			go s.once.Do(func() { s.err = s.init() })
		}
	}
	code := m.Run()
	for _, s := range []*server{pgServer, myServer} {
		s.shutdown()
	}
	os.Exit(code)
}

// server is one private database server.
type server struct {
	name string
	// setup prepares s.dir (initdb, mariadb-install-db) once.
	setup func(s *server) error
	// command returns the server's command line.
	command func(s *server) *exec.Cmd
	// dsn is the DSN of database "mail" (admin: of the server's own
	// database, to create "mail").
	dsn, adminDSN func(s *server) string
	driver        string // the database/sql driver name
	stopSignal    syscall.Signal

	once sync.Once
	err  error // why it could not start

	mu   sync.Mutex
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
	cred *syscall.Credential
}

var pgServer = &server{
	name:   "PostgreSQL",
	driver: "pgx",
	// SIGINT is PostgreSQL's fast shutdown: clients are disconnected.
	stopSignal: syscall.SIGINT,
	setup: func(s *server) error {
		initdb, err := pgBin("initdb")
		if err != nil {
			return err
		}
		return s.run(initdb, "-D", filepath.Join(s.dir, "data"), "-U", "lmtpd", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	},
	command: func(s *server) *exec.Cmd {
		bin, _ := pgBin("postgres")
		return exec.Command(bin, "-D", filepath.Join(s.dir, "data"), "-k", s.dir, "-c", "listen_addresses=",
			"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=30")
	},
	dsn:      func(s *server) string { return "host=" + s.dir + " user=lmtpd dbname=mail" },
	adminDSN: func(s *server) string { return "host=" + s.dir + " user=lmtpd dbname=postgres" },
}

var myServer = &server{
	name:       "MariaDB",
	driver:     "mysql",
	stopSignal: syscall.SIGTERM,
	setup: func(s *server) error {
		bin, err := exec.LookPath("mariadb-install-db")
		if err != nil {
			return fmt.Errorf("%w (Debian package mariadb-server)", err)
		}
		return s.run(bin, "--no-defaults", "--datadir="+filepath.Join(s.dir, "data"), "--auth-root-authentication-method=normal",
			"--skip-test-db", "--skip-name-resolve")
	},
	command: func(s *server) *exec.Cmd {
		bin, err := exec.LookPath("mariadbd")
		if err != nil {
			bin = "/usr/sbin/mariadbd"
		}
		return exec.Command(bin, "--no-defaults", "--datadir="+filepath.Join(s.dir, "data"), "--socket="+filepath.Join(s.dir, "my.sock"),
			"--skip-networking", "--pid-file="+filepath.Join(s.dir, "my.pid"), "--log-error="+filepath.Join(s.dir, "error.log"),
			"--innodb-buffer-pool-size=16M", "--skip-log-bin", "--max-connections=30")
	},
	dsn:      func(s *server) string { return "root@unix(" + filepath.Join(s.dir, "my.sock") + ")/mail" },
	adminDSN: func(s *server) string { return "root@unix(" + filepath.Join(s.dir, "my.sock") + ")/" },
}

// pgBin finds a PostgreSQL server program: on PATH, or in Debian's
// versioned directory.
func pgBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) == 0 {
		return "", fmt.Errorf("%s not found on PATH or in /usr/lib/postgresql/*/bin (Debian package postgresql)", name)
	}
	sort.Slice(m, func(i, j int) bool { return pgVersion(m[i]) < pgVersion(m[j]) })
	return m[len(m)-1], nil
}

func pgVersion(p string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
	return n
}

// need returns the running server, starting it on first use; when it
// cannot start the test fails under CI=true and skips loudly otherwise.
func (s *server) need(t *testing.T) *server {
	t.Helper()
	s.once.Do(func() { s.err = s.init() })
	if s.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s could not start (CI=true, so this fails): %v", s.name, s.err)
		}
		t.Skipf("SKIPPED: %s could not start: %v (tests/install-deps.sh installs it; under CI=true this fails)", s.name, s.err)
	}
	return s
}

func (s *server) init() error {
	dir, err := os.MkdirTemp("", "lmtpd-db") // short: unix socket paths are limited to 107 bytes
	if err != nil {
		return err
	}
	s.dir = dir
	if os.Geteuid() == 0 {
		// Neither server runs as root: use nobody.
		u, err := user.Lookup("nobody")
		if err != nil {
			return fmt.Errorf("running as root and no user nobody to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false, Groups: []uint32{}}
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	if err := s.setup(s); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := s.start(); err != nil {
		return err
	}
	admin, err := dbsql.Open(s.driver, s.adminDSN(s))
	if err != nil {
		return err
	}
	defer admin.Close()
	_, err = admin.Exec("CREATE DATABASE mail")
	return err
}

// run runs a setup program as the server's user, with a bound.
func (s *server) run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, tail(out))
	}
	return nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// start starts the server and waits until it answers.
func (s *server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := s.command(s)
	cmd.Dir = s.dir
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so pause and stop reach every process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	db, err := dbsql.Open(s.driver, s.adminDSN(s))
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
			elog, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
			return fmt.Errorf("%s exited at start: %s\n%s%s", s.name, cmd.ProcessState, tail(log), tail(elog))
		default:
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("%s did not answer within 60s: %v", s.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop shuts the server down cleanly and waits for it.
func (s *server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGCONT)
	s.cmd.Process.Signal(s.stopSignal)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.kill()
		return errors.New(s.name + " did not stop within 60s; killed")
	}
	s.cmd = nil
	return nil
}

// kill kills the process group; s.mu held.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// pause stops every process of the server (SIGSTOP): connections and
// queries hang, as with a server that stopped answering.
func (s *server) pause() error { return s.signalTree(syscall.SIGSTOP) }

func (s *server) resume() error { return s.signalTree(syscall.SIGCONT) }

// signalTree signals the server's process group and every descendant:
// PostgreSQL's backends each start a session of their own (setsid), so
// the group alone would leave them answering.
func (s *server) signalTree(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New(s.name + " is not running")
	}
	if sig == syscall.SIGSTOP {
		// The parent first, so it forks no new child meanwhile; then
		// each descendant, waiting until all have stopped (signals are
		// asynchronous).
		if err := syscall.Kill(-s.cmd.Process.Pid, sig); err != nil {
			return err
		}
		return testproc.Stop(append([]int{s.cmd.Process.Pid}, descendants(s.cmd.Process.Pid)...)...)
	}
	for _, pid := range descendants(s.cmd.Process.Pid) {
		syscall.Kill(pid, sig)
	}
	return syscall.Kill(-s.cmd.Process.Pid, sig)
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	parent := make(map[int][]int)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[pp] = append(parent[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range parent[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

func (s *server) shutdown() {
	s.once.Do(func() {}) // waits for a start still under way
	if s.dir == "" {
		return
	}
	if err := s.stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.RemoveAll(s.dir)
}

// exec runs statements on the mail database.
func (s *server) exec(t *testing.T, stmts ...string) {
	t.Helper()
	db, err := dbsql.Open(s.driver, s.dsn(s))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, st := range stmts {
		if _, err := db.Exec(st); err != nil {
			t.Fatalf("%s: %v", strings.TrimSpace(st), err)
		}
	}
}
