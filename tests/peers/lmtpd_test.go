//go:build linux

package peers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/wiretest"
)

// daemonOptions shape the configuration file of one lmtpd. The zero value
// serves example.test and tcp.example.test (any user, maildir under
// DIR/mail) on an LMTP unix socket, an LMTP loopback port and an SMTP
// loopback port. The string fields are TOML lines spliced into the named
// table, so a test states only what it changes.
type daemonOptions struct {
	Listeners string // lines added to every [[listener]]
	LMTP      string // lines added to both LMTP listeners
	SMTP      string // lines added to the SMTP listener
	Server    string // lines added to [server]
	Delivery  string // lines added to [delivery]
	Maildir   string // lines added to [delivery.maildir]
	Domains   string // [[domain]] tables replacing the default ones
	Extra     string // further top-level tables: [tls], [auth], ...
	// MaildirRoot is the maildir root; "" is DIR/mail.
	MaildirRoot string
	// LogLevel is the log level; "" is info.
	LogLevel string
}

// defaultDomains accepts any user at the two test domains.
const defaultDomains = `
[[domain]]
name = "example.test"
any_user = true

[[domain]]
name = "tcp.example.test"
any_user = true
`

// daemon is one lmtpd process (restartable) and the directory it works in.
type daemon struct {
	t        testing.TB
	Dir      string // working directory: config, log, maildirs
	Config   string // the configuration file
	Socket   string // LMTP unix socket path
	LMTPAddr string // LMTP loopback host:port
	SMTPAddr string // SMTP loopback host:port
	Maildir  string // maildir root
	Log      string // lmtpd's stderr, appended over restarts

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // from Wait, valid once exited is closed
	starts int
}

// shortTempDir returns a new directory under os.TempDir() with a short
// name (unix socket paths are limited to 107 bytes), mode 0755 so that
// Postfix's unprivileged processes can traverse it, removed at the end of
// the test unless it failed and LMTPD_E2E_KEEP=1.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lp")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("LMTPD_E2E_KEEP") == "1" {
			t.Logf("kept %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// freePort returns a loopback address whose port was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	return wiretest.FreePorts(t, 1)[0]
}

// newDaemon writes the configuration for opts into a new directory and
// starts lmtpd on it. The process is stopped (and its log shown if the
// test failed) when the test ends.
func newDaemon(t testing.TB, opts daemonOptions) *daemon {
	t.Helper()
	d := prepareDaemon(t, opts)
	d.Start()
	return d
}

// prepareDaemon writes the configuration without starting lmtpd.
func prepareDaemon(t testing.TB, opts daemonOptions) *daemon {
	t.Helper()
	dir := shortTempDir(t)
	d := &daemon{
		t:       t,
		Dir:     dir,
		Config:  filepath.Join(dir, "lmtpd.toml"),
		Socket:  filepath.Join(dir, "lmtp.sock"),
		Maildir: opts.MaildirRoot,
		Log:     filepath.Join(dir, "lmtpd.log"),
	}
	// Two picks in a row may return the same port (CI once started a
	// daemon whose two listeners had one address).
	ports := wiretest.FreePorts(t, 2)
	d.LMTPAddr, d.SMTPAddr = ports[0], ports[1]
	if d.Maildir == "" {
		d.Maildir = filepath.Join(dir, "mail")
	}
	if err := os.WriteFile(d.Config, []byte(d.configText(opts)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cleanup)
	return d
}

// configText renders the TOML configuration.
func (d *daemon) configText(o daemonOptions) string {
	level := o.LogLevel
	if level == "" {
		level = "info"
	}
	domains := o.Domains
	if domains == "" {
		domains = defaultDomains
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[log]\nlevel = %q\nformat = \"json\"\n\n", level)
	fmt.Fprintf(&b, "[server]\nhostname = \"lmtpd.example.test\"\nshutdown_grace = \"5s\"\n%s\n", o.Server)
	listener := func(name, proto, addr, extra string) {
		fmt.Fprintf(&b, "[[listener]]\nname = %q\nprotocol = %q\naddress = %q\n", name, proto, addr)
		fmt.Fprintf(&b, "%s\n%s\n\n", o.Listeners, extra)
	}
	// Postfix's lmtp client runs as user postfix: the socket must be
	// writable by it. XFORWARD is accepted over unix sockets always and
	// from the trusted networks over TCP.
	listener("lmtp-unix", "lmtp", "unix:"+d.Socket, "socket_mode = \"0666\"\n"+o.LMTP)
	listener("lmtp-tcp", "lmtp", d.LMTPAddr, "trusted_networks = [\"127.0.0.0/8\"]\n"+o.LMTP)
	listener("smtp", "smtp", d.SMTPAddr, o.SMTP)
	fmt.Fprintf(&b, "[delivery]\n%s\n\n", o.Delivery)
	fmt.Fprintf(&b, "[delivery.maildir]\nroot = %q\n%s\n\n", d.Maildir, o.Maildir)
	b.WriteString(o.Extra)
	b.WriteString("\n")
	b.WriteString(domains)
	return b.String()
}

// Start starts lmtpd and waits until every listener accepts connections.
func (d *daemon) Start() {
	d.t.Helper()
	if d.running() {
		d.t.Fatal("lmtpd is already running")
	}
	logf, err := os.OpenFile(d.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	d.starts++
	fmt.Fprintf(logf, "--- start %d at %s\n", d.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(lmtpdBin, "serve", "-config", d.Config)
	cmd.Dir = d.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(cleanEnv(), "GOCOVERDIR="+coverDir)
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.cmd, d.exited, d.err = cmd, make(chan struct{}), nil
	go func(exited chan struct{}) {
		d.err = cmd.Wait()
		close(exited)
	}(d.exited)
	d.waitReady(30 * time.Second)
}

// cleanEnv is this process's environment without what would change how
// lmtpd starts (systemd activation and notification).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "GOCOVERDIR":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// waitReady polls every listener until it accepts, failing the test if
// lmtpd exits or the timeout passes.
func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	targets := [][2]string{{"unix", d.Socket}, {"tcp", d.LMTPAddr}, {"tcp", d.SMTPAddr}}
	for _, tg := range targets {
		for {
			c, err := net.DialTimeout(tg[0], tg[1], time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-d.exited:
				d.t.Fatalf("lmtpd exited while starting: %v\n%s", d.err, d.logTail(40))
			default:
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("lmtpd does not accept on %s %s after %v: %v\n%s", tg[0], tg[1], timeout, err, d.logTail(40))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// running reports whether the process is alive.
func (d *daemon) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Pid returns the process id of the running lmtpd.
func (d *daemon) Pid() int { return d.cmd.Process.Pid }

// Stop sends SIGTERM and requires a graceful exit with status 0.
func (d *daemon) Stop() {
	d.t.Helper()
	if !d.running() {
		return
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		d.t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Fatalf("lmtpd did not exit within 30s of SIGTERM\n%s", d.logTail(40))
	}
	if d.err != nil {
		d.t.Errorf("lmtpd exited after SIGTERM with %v\n%s", d.err, d.logTail(40))
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) Kill() {
	d.t.Helper()
	if !d.running() {
		return
	}
	d.cmd.Process.Kill()
	<-d.exited
}

func (d *daemon) cleanup() {
	if d.running() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	d.checkLog()
	if d.t.Failed() {
		d.t.Logf("lmtpd log (%s), last lines:\n%s", d.Log, d.logTail(60))
	}
}

// checkLog fails the test if lmtpd's log shows a data race (the binary
// has the race detector when the tests do), a Go panic or fatal error, or
// a session that panicked and was recovered.
func (d *daemon) checkLog() {
	b, err := os.ReadFile(d.Log)
	if err != nil {
		return
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "WARNING: DATA RACE") || strings.HasPrefix(line, "panic: ") ||
			strings.HasPrefix(line, "fatal error: ") || strings.Contains(line, `"panic":`) {
			d.t.Errorf("lmtpd log: %s", clip([]byte(line), 2000))
		}
	}
}

// logTail returns the last n lines of lmtpd's log.
func (d *daemon) logTail(n int) string {
	b, err := os.ReadFile(d.Log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logEventually waits up to timeout for a line of lmtpd's log that holds
// every one of the strings (a recipient's line may be written just after
// its reply, which the test may already have acted on).
func (d *daemon) logEventually(timeout time.Duration, all ...string) bool {
	deadline := time.Now().Add(timeout)
	for {
		if d.logContains(all...) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logContains reports whether lmtpd's log has a line containing every
// one of the strings.
func (d *daemon) logContains(all ...string) bool {
	b, err := os.ReadFile(d.Log)
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		ok := true
		for _, s := range all {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// memory reads the resident set size and its peak, in KiB, from
// /proc/PID/status.
func (d *daemon) memory() (rss, hwm int64) {
	d.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.Pid()))
	if err != nil {
		d.t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm
}

// openFiles counts lmtpd's open file descriptors.
func (d *daemon) openFiles() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.Pid()))
	if err != nil {
		d.t.Fatal(err)
	}
	return len(ents)
}

// mailbox returns the maildir of user@domain under the default template.
func (d *daemon) mailbox(addr string) string {
	local, domain, ok := strings.Cut(addr, "@")
	if !ok {
		d.t.Fatalf("mailbox: %q is not an address", addr)
	}
	return filepath.Join(d.Maildir, strings.ToLower(domain), strings.ToLower(local))
}

// newFiles lists the files in dir/new (none if it does not exist).
func newFiles(t testing.TB, dir string) []string {
	t.Helper()
	return listFiles(t, filepath.Join(dir, "new"))
}

// listFiles lists the regular files in dir by full path, or none if dir
// does not exist.
func listFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// waitFiles waits until dir/new holds at least n files and returns them.
func waitFiles(t testing.TB, dir string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		fs := newFiles(t, dir)
		if len(fs) >= n {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/new has %d files after %v, want %d", dir, len(fs), timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readFile reads a file, failing the test on error.
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
