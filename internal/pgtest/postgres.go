package pgtest

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

	"github.com/lmtpd/lmtpd/internal/testproc"
)

// Server is a running private PostgreSQL. Its superuser is "postgres",
// trusted without a password; it is stopped when the test that started
// it ends.
type Server struct {
	t testing.TB
	// Dir holds the data directory and the socket: it is the host to
	// name in a connection string ("host=" + Dir).
	Dir string
	// Cmd is the postmaster; the backends serving connections are its
	// children (see Signal).
	Cmd *exec.Cmd
}

// DSN returns a key=value connection string for dbname as postgres.
func (s *Server) DSN(dbname string) string {
	return "host=" + s.Dir + " user=postgres dbname=" + dbname
}

// CreateDB creates the database name, owned by postgres, and returns a
// pool of connections to it that is closed when the test ends.
func (s *Server) CreateDB(name string) *dbsql.DB {
	s.t.Helper()
	admin, err := dbsql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE DATABASE "` + strings.ReplaceAll(name, `"`, `""`) + `"`); err != nil {
		s.t.Fatalf("CREATE DATABASE %s: %v", name, err)
	}
	db, err := dbsql.Open("pgx", s.DSN(name))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { db.Close() })
	return db
}

// Signal sends sig to the postmaster and its children (the backends
// that serve the connections open now), so that SIGSTOP makes every
// connection hang until SIGCONT. The server is sent SIGCONT before it is
// stopped at the end of the test, in case the test failed while it was
// stopped.
func (s *Server) Signal(sig syscall.Signal) {
	s.t.Helper()
	pid := s.Cmd.Process.Pid
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
	if sig == syscall.SIGSTOP {
		// Signals are asynchronous: Stop waits until all have stopped.
		if err := testproc.Stop(pids...); err != nil {
			s.t.Errorf("stop PostgreSQL: %v", err)
		}
		return
	}
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil {
			s.t.Logf("signal %v to %d: %v", sig, p, err)
		}
	}
}

// Start starts a private PostgreSQL and waits until it answers, or skips
// the test (fails it under CI=true) when PostgreSQL cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	initdb, postgres := bin(t, "initdb"), bin(t, "postgres")
	// Short: a unix socket's path is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("nobody")
		if err != nil {
			need(t, "no user nobody to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	setup := exec.Command(initdb, "-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	setup.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := setup.CombinedOutput(); err != nil {
		need(t, "initdb: %v: %s", err, out)
	}
	cmd := exec.Command(postgres, "-D", filepath.Join(dir, "data"), "-k", dir, "-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=20")
	cmd.SysProcAttr = testproc.DieWithParent(&syscall.SysProcAttr{Credential: cred})
	logFile := filepath.Join(dir, "postgres.log")
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		need(t, "postgres: %v", err)
	}
	s := &Server{t: t, Dir: dir, Cmd: cmd}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
			return
		default:
		}
		s.Signal(syscall.SIGCONT)          // a test that failed while it was stopped
		cmd.Process.Signal(syscall.SIGINT) // fast shutdown
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
			db, err := dbsql.Open("pgx", s.DSN("postgres"))
			if err == nil {
				err = db.Ping()
				db.Close()
				if err == nil {
					return s
				}
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logFile)
			need(t, "postgres exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logFile)
			need(t, "postgres did not answer within 30s: %s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bin finds a PostgreSQL program on PATH or, as Debian installs them, in
// the newest /usr/lib/postgresql/VERSION/bin.
func bin(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) == 0 {
		need(t, "%s is not installed (Debian package postgresql; tests/install-deps.sh installs it)", name)
	}
	sort.Slice(m, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[i]))))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[j]))))
		return a < b
	})
	return m[len(m)-1]
}

// need skips the test loudly, or fails it under CI=true, where the real
// PostgreSQL cannot run.
func need(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL cannot start (CI=true, so this fails): %s", why)
	}
	fmt.Fprintf(os.Stderr, "*** %s: SKIPPED: PostgreSQL cannot start: %s\n", t.Name(), why)
	t.Skipf("SKIPPING: PostgreSQL cannot start: %s", why)
}
