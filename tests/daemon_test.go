//go:build linux

// Package tests holds end-to-end tests of the lmtpd binary: TestMain
// builds it once with coverage, and each test runs it as a process on a
// temporary directory with its own configuration, talking to it over unix
// sockets and loopback ports.
package tests

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/wiretest"
)

// lmtpdBin is the binary TestMain built; coverDir receives coverage
// counters from every lmtpd run (GOCOVERDIR), so that no run warns about
// a missing one on stderr.
var lmtpdBin, coverDir string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "lmtpd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	lmtpdBin = filepath.Join(dir, "lmtpd")
	build := exec.Command(goTool(), "build", "-cover", "-ldflags", "-X main.version=e2e-test", "-o", lmtpdBin, "../cmd/lmtpd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building lmtpd:", err)
		return 1
	}
	coverDir = os.Getenv("LMTPD_E2E_COVERDIR")
	if coverDir == "" {
		coverDir = filepath.Join(dir, "cover")
	}
	if err := os.MkdirAll(coverDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// env is the environment of every lmtpd run: this process's, without
// systemd's variables, with GOCOVERDIR.
func env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "GOCOVERDIR":
			continue
		}
		out = append(out, kv)
	}
	return append(append(out, "GOCOVERDIR="+coverDir), extra...)
}

// tempDir returns a short temporary directory (unix socket paths are
// limited to 107 bytes; t.TempDir's names can be long).
func tempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "lmtpd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// freePort returns a loopback address nobody listens on (a config file
// cannot say port 0).
func freePort(t testing.TB) string {
	t.Helper()
	return wiretest.FreePorts(t, 1)[0]
}

// writeFile writes text into dir/name and returns the path.
func writeFile(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs lmtpd to completion and returns its exit status and output.
func run(t testing.TB, dir, stdin string, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(lmtpdBin, args...)
	cmd.Dir = dir
	cmd.Env = env()
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		status = ee.ExitCode()
	default:
		t.Fatalf("running lmtpd: %v", err)
	}
	return status, o.String(), e.String()
}

// proc is a running lmtpd whose log lines (stderr, JSON) are collected.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	grew   chan struct{} // closed and replaced when a line arrives
	exited chan struct{}
	status int
}

// start starts lmtpd with args in dir; cmd may be prepared (ExtraFiles,
// Env) by the caller through prep.
func start(t testing.TB, dir string, prep func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	cmd := exec.Command(lmtpdBin, args...)
	cmd.Dir = dir
	cmd.Env = env()
	if prep != nil {
		prep(cmd)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, grew: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.grew)
			p.grew = make(chan struct{})
			p.mu.Unlock()
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		p.mu.Lock()
		if errors.As(err, &ee) {
			p.status = ee.ExitCode()
		}
		p.mu.Unlock()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("lmtpd log:\n%s", p.log())
		}
	})
	return p
}

// log returns the log so far.
func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLog waits for a log line, after the first `from` lines, containing
// every one of subs; it returns the line's index.
func (p *proc) waitLog(from int, subs ...string) int {
	p.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(p.lines[i], s)
			}
			if ok {
				p.mu.Unlock()
				return i
			}
		}
		grew := p.grew
		p.mu.Unlock()
		select {
		case <-grew:
		case <-p.exited:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if n == len(p.lines) {
				p.t.Fatalf("lmtpd exited (status %d) before logging %q", p.status, subs)
			}
		case <-deadline:
			p.t.Fatalf("lmtpd did not log %q", subs)
		}
	}
}

// nlines returns the number of log lines so far.
func (p *proc) nlines() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// signal sends sig to lmtpd.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits for lmtpd to exit and returns its status.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("lmtpd did not exit")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// client is a line-level SMTP/LMTP client.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, network, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	cl.expect("220 ")
	return cl
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (c *client) reply() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading a reply: %v (got %q)", err, line)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

// expect reads a reply and checks its start.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	r := c.reply()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("got reply %q, want %q...", r, prefix)
	}
	return r
}

// cmd sends a command and checks the reply's start.
func (c *client) cmd(line, want string) string {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.expect(want)
}

func (c *client) write(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("writing: %v", err)
	}
}

// send runs one LMTP or SMTP transaction and checks the final replies.
func (c *client) send(from string, rcpts []string, msg string, want ...string) {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", "250 ")
	for _, r := range rcpts {
		c.cmd("RCPT TO:<"+r+">", "250 ")
	}
	c.cmd("DATA", "354 ")
	c.write(msg + ".\r\n")
	for _, w := range want {
		c.expect(w)
	}
}

// mailFiles returns the messages in the maildir's new/ directory.
func mailFiles(t testing.TB, maildir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(maildir, "new"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(maildir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// baseConfig is a configuration with one LMTP unix socket at
// DIR/lmtp.sock and maildirs under DIR/mail, for the given domains.
func baseConfig(dir, domains string) string {
	return fmt.Sprintf(`[log]
format = "json"

[server]
hostname = "mx.example.test"
shutdown_grace = "20s"

[[listener]]
name = "lmtp"
protocol = "lmtp"
address = "unix:%s/lmtp.sock"

[delivery.maildir]
root = "%s/mail"

%s`, dir, dir, domains)
}

const testMessage = "Subject: test\r\nMessage-ID: <1@example.org>\r\n\r\nHello.\r\n"

// TestBadConfigs runs check-config (and serve, for what only shows when
// listening) on broken files from testdata/configs: each names the file,
// the line and the key, and the exit status is 78 (EX_CONFIG).
//
// In the files, @DIR@ is the test's directory and @BUSY@ an address
// another socket listens on; in the expected lines, @FILE@ is the file.
func TestBadConfigs(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notWritable := "/proc/1/mail"
	notWritableMsg := "/proc/1/mail does not exist and cannot be created: /proc/1 is not writable"
	if os.Geteuid() != 0 {
		notWritable, notWritableMsg = "@DIR@/ro/mail", "@DIR@/ro/mail does not exist and cannot be created: @DIR@/ro is not writable"
	}
	tests := []struct {
		file string
		cmd  string // check-config or serve
		want []string
	}{
		{"syntax.toml", "check-config", []string{"@FILE@:4: listener: unexpected '=': key name appears blank"}},
		{"unknown_key.toml", "check-config", []string{
			"@FILE@:9: listener[0].colour: unknown key",
			"@FILE@:17: domain[0].nmae: unknown key; did you mean name?",
		}},
		{"wrong_type.toml", "check-config", []string{
			"@FILE@:9: listener[1].max_recipients: expected an integer, found a string",
			"@FILE@:13: delivery.case_sensitive: expected a boolean (true or false), found an integer",
		}},
		{"bad_duration.toml", "check-config", []string{
			`@FILE@:4: server.shutdown_grace: invalid duration "5": use a number with a unit (ms, s, m, h), such as "30s" or "5m"`,
			`@FILE@:10: listener[0].command_timeout: invalid duration "fast": use a number with a unit (ms, s, m, h), such as "30s" or "5m"`,
		}},
		{"bad_size.toml", "check-config", []string{
			`@FILE@:6: listener[0].max_message_size: invalid size "50XB": use bytes or a number with a unit, such as "512KiB", "50MiB" or "1G"`,
			`@FILE@:7: listener[0].socket_mode: invalid mode "0999": use octal digits such as "0660"`,
			`@FILE@:11: delivery.maildir.max_message_size: invalid size -1: must not be negative`,
		}},
		{"bad_values.toml", "check-config", []string{
			`@FILE@:2: log.level: "loud" is not one of "trace", "debug", "info", "warn", "error"`,
			`@FILE@:6: listener[0].protocol: "http" is not one of "lmtp", "smtp", "policy", "socketmap"`,
			`@FILE@:7: listener[0].address: "localhost" is not host:port or unix:/path (missing port in address)`,
			`@FILE@:8: listener[0].tls: "yes" is not one of "none", "starttls", "implicit"`,
			`@FILE@:9: listener[0].trusted_networks[1]: "10.0.0.0/33" is not a network such as 192.0.2.0/24 or 2001:db8::/32`,
			`@FILE@:10: listener[0].max_line_length: 100 is below the 512 octets RFC 5321 section 4.5.3.1.4 requires`,
			`@FILE@:13: delivery.delivered_to: "sometimes" is not one of "single", "always", "never"`,
		}},
		{"no_listener.toml", "check-config", []string{
			"@FILE@: listener: at least one [[listener]] is required",
			"@FILE@ has no [[listener]], which serve needs; lmtpd deliver needs none and can use the file: give -deliver to check it as deliver loads it",
		}},
		{"pipe_missing.toml", "check-config", []string{
			"@FILE@:13: domain[0].user[0].route.pipe: pipe: program: stat /nonexistent/deliver-mail: no such file or directory",
		}},
		{"maildir_not_writable.toml", "check-config", []string{
			"@FILE@:9: delivery.maildir.root: " + notWritableMsg,
		}},
		{"tls_missing.toml", "check-config", []string{
			"@FILE@:7: tls.cert_file: loading @DIR@/nope.pem and @DIR@/nope.key: open @DIR@/nope.pem: no such file or directory",
		}},
		{"auth_no_users.toml", "check-config", []string{
			`@FILE@:8: listener[0].auth: auth = "required" needs users: add [[auth.user]] or auth.users_file (or set auth.directory)`,
		}},
		{"bad_user.toml", "check-config", []string{
			`@FILE@:14: auth.user[0].scram: sasl: invalid stored secret: SCRAM: want <iterations>:<salt>$<StoredKey>:<ServerKey> (make one with lmtpd hash-password)`,
		}},
		{"address_in_use.toml", "serve", []string{
			"@FILE@:7: listener[0].address: cannot listen on @BUSY@: listen tcp @BUSY@: bind: address already in use",
		}},
	}
	for _, tc := range tests {
		t.Run(strings.TrimSuffix(tc.file, ".toml"), func(t *testing.T) {
			dir := tempDir(t)
			if os.Geteuid() != 0 {
				if err := os.Mkdir(filepath.Join(dir, "ro"), 0o555); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(filepath.Join("testdata", "configs", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			text := strings.NewReplacer("@BUSY@", busy.Addr().String(), "@NOTWRITABLE@", notWritable, "@DIR@", dir).Replace(string(b))
			file := writeFile(t, dir, tc.file, text)
			status, stdout, stderr := run(t, dir, "", tc.cmd, "-config", file)
			if status != 78 {
				t.Errorf("exit status %d, want 78 (EX_CONFIG)", status)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if tc.cmd == "serve" {
					// serve logs JSON; the message holds the error.
					if m := regexp.MustCompile(`"message":"cannot start: (.*)"`).FindStringSubmatch(l); m != nil {
						got = append(got, "lmtpd: "+m[1])
					}
					continue
				}
				got = append(got, l)
			}
			var want []string
			for _, w := range tc.want {
				w = strings.NewReplacer("@FILE@", file, "@DIR@", dir, "@BUSY@", busy.Addr().String()).Replace(w)
				want = append(want, "lmtpd: "+w)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("stderr:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestExampleConfig checks the documented example: it is valid, and the
// effective configuration check-config prints is itself valid and prints
// the same again.
func TestExampleConfig(t *testing.T) {
	dir := tempDir(t)
	example, err := filepath.Abs("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	status, out, stderr := run(t, dir, "", "check-config", "-config", example)
	if status != 0 {
		t.Fatalf("check-config on config.example.toml: status %d\n%s", status, stderr)
	}
	for _, key := range []string{"shutdown_grace = ", "max_connections_per_ip = ", "auth_failure_delay = ", "[delivery.dedup]", "per_message = ", "[metrics]"} {
		if !strings.Contains(out, key) {
			t.Errorf("effective configuration lacks %q", key)
		}
	}
	eff := writeFile(t, dir, "effective.toml", out)
	status, out2, stderr := run(t, dir, "", "check-config", "-config", eff)
	if status != 0 {
		t.Fatalf("check-config on its own output: status %d\n%s", status, stderr)
	}
	strip := func(s string) string { _, rest, _ := strings.Cut(s, "\n"); return rest }
	if strip(out) != strip(out2) {
		t.Errorf("the effective configuration changes when read back:\n%s\n---\n%s", out, out2)
	}
}

// TestEmbeddedDefault runs the embedded default configuration
// (cmd/lmtpd/default.toml, which the binary embeds) in an empty directory,
// with its fixed SMTP address 127.0.0.1:2525 replaced by a free port so
// that the test does not depend on that port (a "make run" may hold it):
// it must serve LMTP on ./run/lmtp.sock and SMTP, say so in its first
// line, and deliver into ./mail/{domain}/{user}. The lines only the
// embedded default prints (how to try it) are checked by cmd/lmtpd's
// TestLogStartEmbedded.
func TestEmbeddedDefault(t *testing.T) {
	dir := tempDir(t)
	text, err := os.ReadFile("../cmd/lmtpd/default.toml")
	if err != nil {
		t.Fatal(err)
	}
	const fixed = `address = "127.0.0.1:2525"`
	if !strings.Contains(string(text), fixed) {
		t.Fatalf("default.toml no longer has %s: update this test", fixed)
	}
	smtpAddr := freePort(t)
	cfg := writeFile(t, dir, "default.toml", strings.Replace(string(text), fixed, `address = "`+smtpAddr+`"`, 1))
	p := start(t, dir, nil, "-config", cfg)
	sock := filepath.Join(dir, "run", "lmtp.sock")
	first := p.waitLog(0, "serving LMTP on unix:"+sock+" and SMTP on "+smtpAddr)
	if first != 0 {
		t.Errorf("the serving line is line %d, want the first", first+1)
	}
	p.waitLog(0, `"listener":"smtp"`, "listening")

	lc := dial(t, "unix", sock)
	lc.cmd("LHLO test", "250 ")
	lc.send("you@example.org", []string{"bob@example.test"}, testMessage, "250 2.0.0 <bob@example.test>")
	lc.cmd("QUIT", "221 ")

	sc := dial(t, "tcp", smtpAddr)
	sc.cmd("EHLO test", "250 ")
	sc.send("you@example.org", []string{"alice@localhost"}, testMessage, "250 2.0.0 ")
	sc.cmd("QUIT", "221 ")

	for _, box := range []string{"example.test/bob", "localhost/alice"} {
		files := mailFiles(t, filepath.Join(dir, "mail", box))
		if len(files) != 1 || !strings.Contains(files[0], "Hello.") {
			t.Errorf("mail/%s: %d messages, want 1 with the text", box, len(files))
		}
	}
	p.signal(syscall.SIGTERM)
	if st := p.wait(); st != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", st)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is left behind after a clean stop: %v", err)
	}
}

// TestGracefulShutdown sends SIGTERM while a large message is being
// transferred: the transfer completes, the message is delivered whole and
// acknowledged, new connections are refused, and lmtpd exits 0.
func TestGracefulShutdown(t *testing.T) {
	dir := tempDir(t)
	cfg := writeFile(t, dir, "lmtpd.toml", baseConfig(dir, "[[domain]]\nname = \"example.test\"\nany_user = true\n"))
	p := start(t, dir, nil, "-config", cfg)
	p.waitLog(0, "listening")
	sock := filepath.Join(dir, "lmtp.sock")

	c := dial(t, "unix", sock)
	c.cmd("LHLO test", "250 ")
	c.cmd("MAIL FROM:<a@example.org>", "250 ")
	c.cmd("RCPT TO:<big@example.test>", "250 ")
	c.cmd("DATA", "354 ")
	line := strings.Repeat("x", 76) + "\r\n"
	const lines = 200000 // about 15 MiB
	c.write("Subject: big\r\n\r\n")
	for i := 0; i < lines/2; i++ {
		c.write(line)
	}
	n := p.nlines()
	p.signal(syscall.SIGTERM)
	p.waitLog(n, "shutting down")
	// The listener closes once shutdown began (the log line comes just
	// before): new connections are refused.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		nc, err := net.Dial("unix", sock)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections are still accepted during shutdown")
		}
	}
	for i := 0; i < lines/2; i++ {
		c.write(line)
	}
	c.write(".\r\n")
	c.expect("250 2.0.0 <big@example.test>")
	// The session is idle now: lmtpd answers 421 at once and closes, so
	// this command may find the socket closed already; the reply is there
	// either way.
	io.WriteString(c.c, "NOOP\r\n")
	c.expect("421 4.3.2")
	if st := p.wait(); st != 0 {
		t.Errorf("exit status %d, want 0", st)
	}
	files := mailFiles(t, filepath.Join(dir, "mail", "example.test", "big"))
	if len(files) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(files))
	}
	if got := strings.Count(files[0], strings.Repeat("x", 76)+"\n"); got != lines {
		t.Errorf("delivered message has %d body lines, want %d", got, lines)
	}
}

// TestSecondSignal: a second SIGTERM during the grace period exits at
// once, without waiting for the transaction in flight.
func TestSecondSignal(t *testing.T) {
	dir := tempDir(t)
	cfg := writeFile(t, dir, "lmtpd.toml", baseConfig(dir, "[[domain]]\nname = \"example.test\"\nany_user = true\n"))
	p := start(t, dir, nil, "-config", cfg)
	p.waitLog(0, "listening")
	c := dial(t, "unix", filepath.Join(dir, "lmtp.sock"))
	c.cmd("LHLO test", "250 ")
	c.cmd("MAIL FROM:<a@example.org>", "250 ")
	c.cmd("RCPT TO:<b@example.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.write("Subject: never ends\r\n\r\n")
	n := p.nlines()
	p.signal(syscall.SIGTERM)
	p.waitLog(n, "shutting down")
	began := time.Now()
	p.signal(syscall.SIGTERM)
	if st := p.wait(); st != 1 {
		t.Errorf("exit status %d after a second SIGTERM, want 1", st)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("exit took %v after the second signal", d)
	}
	p.waitLog(n, "second signal: exiting now")
}

// reloadDomains is the routing of the reload tests: alice, and carol when
// withCarol.
func reloadDomains(withCarol bool) string {
	users := `"alice"`
	if withCarol {
		users += `, "carol"`
	}
	return "[[domain]]\nname = \"example.test\"\nusers = [" + users + "]\n"
}

// TestReloadAddsUser: SIGHUP with a file that adds a user; a session
// opened before the reload delivers to the new user at its next MAIL.
func TestReloadAddsUser(t *testing.T) {
	dir := tempDir(t)
	cfgFile := writeFile(t, dir, "lmtpd.toml", baseConfig(dir, reloadDomains(false)))
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")

	c := dial(t, "unix", filepath.Join(dir, "lmtp.sock"))
	c.cmd("LHLO test", "250 ")
	c.cmd("MAIL FROM:<a@example.org>", "250 ")
	c.cmd("RCPT TO:<carol@example.test>", "550 5.1.1")
	c.cmd("RSET", "250 ")

	writeFile(t, dir, "lmtpd.toml", baseConfig(dir, reloadDomains(true)))
	n := p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, "configuration reloaded")

	c.send("a@example.org", []string{"carol@example.test", "alice@example.test"}, testMessage,
		"250 2.0.0 <carol@example.test>", "250 2.0.0 <alice@example.test>")
	if got := len(mailFiles(t, filepath.Join(dir, "mail", "example.test", "carol"))); got != 1 {
		t.Errorf("carol has %d messages, want 1", got)
	}
}

// TestReloadBrokenKeepsOld: SIGHUP with a file that does not validate is
// logged with file, line and key, and the running configuration stays.
func TestReloadBrokenKeepsOld(t *testing.T) {
	dir := tempDir(t)
	cfgFile := writeFile(t, dir, "lmtpd.toml", baseConfig(dir, reloadDomains(false)))
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")

	// carol is added, but the file is broken further down: nothing of it
	// may take effect.
	writeFile(t, dir, "lmtpd.toml", baseConfig(dir, reloadDomains(true))+"any_user = \"yes\"\n")
	n := p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, cfgFile+":19: domain[0].any_user: expected a boolean (true or false), found a string")
	p.waitLog(n, "reload failed")

	c := dial(t, "unix", filepath.Join(dir, "lmtp.sock"))
	c.cmd("LHLO test", "250 ")
	c.cmd("MAIL FROM:<a@example.org>", "250 ")
	c.cmd("RCPT TO:<carol@example.test>", "550 5.1.1")
	c.cmd("RCPT TO:<alice@example.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.write(testMessage + ".\r\n")
	c.expect("250 2.0.0 <alice@example.test>")

	// A pipe command that does not exist is refused the same way.
	writeFile(t, dir, "lmtpd.toml", baseConfig(dir, reloadDomains(true)+"[[domain.user]]\nname = \"dave\"\nroute = { pipe = { argv = [\"/nonexistent/cmd\"] } }\n"))
	n = p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, "domain[0].user[0].route.pipe: pipe: program: stat /nonexistent/cmd")
	p.waitLog(n, "reload failed")
	c.cmd("MAIL FROM:<a@example.org>", "250 ")
	c.cmd("RCPT TO:<carol@example.test>", "550 5.1.1")
	c.cmd("QUIT", "221 ")
}

// TestSocketActivation passes a listening socket on fd 3 the way systemd
// does (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) and checks that it
// replaces the configured address, and that READY, RELOADING and STOPPING
// reach NOTIFY_SOCKET.
func TestSocketActivation(t *testing.T) {
	dir := tempDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // the duplicate in f keeps the socket listening
	defer f.Close()

	notifyPath := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := notify.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	expectNotify := func(prefix string) {
		t.Helper()
		select {
		case m := <-msgs:
			if !strings.HasPrefix(m, prefix) {
				t.Fatalf("sd_notify message %q, want %q...", m, prefix)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no sd_notify %q", prefix)
		}
	}

	// The configured address is never listened on: the passed socket
	// replaces it.
	unused := freePort(t)
	cfg := fmt.Sprintf(`[log]
format = "json"

[[listener]]
name = "activated"
protocol = "lmtp"
address = %q

[delivery.maildir]
root = "%s/mail"

[[domain]]
name = "example.test"
any_user = true
`, unused, dir)
	cfgFile := writeFile(t, dir, "lmtpd.toml", cfg)
	// LISTEN_PID must be lmtpd's own pid, known only once it runs: a
	// shell sets it to its pid and execs lmtpd, which keeps the pid.
	p := start(t, dir, func(cmd *exec.Cmd) {
		cmd.Path = "/bin/sh"
		cmd.Args = []string{"/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=activated exec "$0" "$@"`, lmtpdBin, "-config", cfgFile}
		cmd.ExtraFiles = []*os.File{f}
		cmd.Env = env("NOTIFY_SOCKET=" + notifyPath)
	})
	p.waitLog(0, "listening", `"systemd":true`)
	expectNotify("READY=1")

	c := dial(t, "tcp", ln.Addr().String())
	c.cmd("LHLO test", "250 ")
	c.send("a@example.org", []string{"bob@example.test"}, testMessage, "250 2.0.0 <bob@example.test>")
	if nc, err := net.Dial("tcp", unused); err == nil {
		nc.Close()
		t.Errorf("lmtpd listens on the configured address %s too", unused)
	}

	p.signal(syscall.SIGHUP)
	expectNotify("RELOADING=1\nMONOTONIC_USEC=")
	expectNotify("READY=1")
	p.signal(syscall.SIGTERM)
	expectNotify("STOPPING=1")
	if st := p.wait(); st != 0 {
		t.Errorf("exit status %d, want 0", st)
	}
}

// TestStaleSocket: a socket file left by a crashed process is replaced;
// one a live process listens on is not.
func TestStaleSocket(t *testing.T) {
	dir := tempDir(t)
	sock := filepath.Join(dir, "lmtp.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	cfgFile := writeFile(t, dir, "lmtpd.toml", baseConfig(dir, "[[domain]]\nname = \"example.test\"\nany_user = true\n"))
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")
	c := dial(t, "unix", sock)
	c.cmd("LHLO test", "250 ")

	// A second lmtpd on the same socket refuses to start.
	status, _, stderr := run(t, dir, "", "-config", cfgFile)
	if status != 78 {
		t.Errorf("second lmtpd: exit status %d, want 78", status)
	}
	want := cfgFile + ":11: listener[0].address: cannot listen on unix:" + sock + ": " + sock + ": another process is listening on this socket (is lmtpd already running?)"
	if !strings.Contains(stderr, want) {
		t.Errorf("second lmtpd: stderr\n%s\nwant it to contain\n%s", stderr, want)
	}
	c.cmd("NOOP", "250 ")
	p.signal(syscall.SIGTERM)
	if st := p.wait(); st != 0 {
		t.Errorf("exit status %d, want 0", st)
	}
}

// writeScript writes an executable shell script.
func writeScript(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+text), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDeliver checks the deliver subcommand's exit statuses (sysexits, as
// Postfix's mailbox_command reads them) and status lines.
func TestDeliver(t *testing.T) {
	dir := tempDir(t)
	tempfail := writeScript(t, dir, "tempfail", "cat >/dev/null; exit 75\n")
	noperm := writeScript(t, dir, "noperm", "cat >/dev/null; echo 'not allowed'; exit 77\n")
	cantcreat := writeScript(t, dir, "cantcreat", "cat >/dev/null; exit 73\n")
	domains := fmt.Sprintf(`[[domain]]
name = "example.test"
users = ["alice", "bob"]
aliases = { info = ["alice", "bob"] }
[[domain.user]]
name = "busy"
route = { pipe = { argv = [%q] } }
[[domain.user]]
name = "denied"
route = { pipe = { argv = [%q] } }
[[domain.user]]
name = "full"
route = { pipe = { argv = [%q] } }
`, tempfail, noperm, cantcreat)
	cfg := writeFile(t, dir, "lmtpd.toml", baseConfig(dir, domains))
	badCfg := writeFile(t, dir, "bad.toml", "[log]\nlevel = 3\n")
	msg := "From sender@example.org Sat Nov 21 12:00:00 2026\nSubject: local\n\nHello.\n"

	tests := []struct {
		name   string
		args   []string
		stdin  string
		status int
		lines  []string // stderr lines that must appear, in order, first
		files  map[string]int
	}{
		{"delivered", []string{"-f", "a@example.org", "alice@example.test"}, msg, 0, nil, map[string]int{"alice": 1}},
		{"alias to two", []string{"--", "info@example.test"}, msg, 0, nil, map[string]int{"alice": 2, "bob": 1}},
		{"unknown user", []string{"-f", "a@example.org", "nobody@example.test"}, msg, 67,
			[]string{"5.1.1 No such user here"}, nil},
		{"domain not served", []string{"nobody@elsewhere.test"}, msg, 68,
			[]string{"5.1.2 Domain not served here"}, nil},
		{"temporary", []string{"busy@example.test"}, msg, 75, []string{"4.3.0 "}, nil},
		{"temporary wins over permanent", []string{"nobody@example.test", "busy@example.test", "bob@example.test"}, msg, 75,
			[]string{"4.3.0 <busy@example.test>: ", "5.1.1 <nobody@example.test>: No such user here"}, map[string]int{"bob": 2}},
		{"first permanent decides", []string{"denied@example.test", "nobody@example.test"}, msg, 77,
			[]string{"5.7.0 <denied@example.test>: ", "5.1.1 <nobody@example.test>"}, nil},
		{"cannot create", []string{"full@example.test"}, msg, 73, []string{"5.2.0 "}, nil},
		{"bad recipient", []string{"not an address"}, msg, 67, []string{"5.1.3 "}, nil},
		{"no recipient", nil, msg, 64, []string{"lmtpd deliver: no recipient given"}, nil},
		{"bad sender", []string{"-f", "a b", "alice@example.test"}, msg, 64, []string{`5.1.7 bad sender address "a b"`}, map[string]int{"alice": 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"deliver", "-config", cfg}, tc.args...)
			status, _, stderr := run(t, dir, tc.stdin, args...)
			if status != tc.status {
				t.Errorf("exit status %d, want %d\n%s", status, tc.status, stderr)
			}
			got := strings.Split(stderr, "\n")
			for i, w := range tc.lines {
				if i >= len(got) || !strings.HasPrefix(got[i], w) {
					t.Errorf("stderr line %d: want %q...\n%s", i+1, w, stderr)
				}
			}
			for user, n := range tc.files {
				if got := len(mailFiles(t, filepath.Join(dir, "mail", "example.test", user))); got != n {
					t.Errorf("%s has %d messages, want %d", user, got, n)
				}
			}
		})
	}
	t.Run("config error", func(t *testing.T) {
		status, _, stderr := run(t, dir, msg, "deliver", "-config", badCfg, "alice@example.test")
		if status != 78 {
			t.Errorf("exit status %d, want 78", status)
		}
		if want := "lmtpd: " + badCfg + ":2: log.level: expected a string, found an integer\n"; stderr != want {
			t.Errorf("stderr %q, want %q", stderr, want)
		}
	})
	t.Run("message as delivered", func(t *testing.T) {
		// alice has two messages (this one and the alias's); file names
		// do not sort by delivery time, so find the one sent with -f.
		files := mailFiles(t, filepath.Join(dir, "mail", "example.test", "alice"))
		m := ""
		for _, f := range files {
			if strings.Contains(f, "Return-Path: <a@example.org>\n") {
				m = f
			}
		}
		if m == "" {
			t.Fatalf("no message for alice from a@example.org among %d", len(files))
		}
		for _, want := range []string{"Return-Path: <a@example.org>\n", "Delivered-To: alice@example.test\n", "Received: by mx.example.test (lmtpd deliver, from ", "\tfor <alice@example.test>;", "Subject: local\n\nHello.\n"} {
			if !strings.Contains(m, want) {
				t.Errorf("message lacks %q:\n%s", want, m)
			}
		}
		if strings.Contains(m, "From sender@example.org") {
			t.Errorf("the mbox From line was kept:\n%s", m)
		}
	})
}

// TestHashPassword checks that hash-password reads standard input, never
// arguments, and prints lines a users file accepts.
func TestHashPassword(t *testing.T) {
	dir := tempDir(t)
	status, out, stderr := run(t, dir, "s3cret\n", "hash-password", "-user", "alice@example.test")
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	if !regexp.MustCompile(`^\[\[auth\.user\]\]\nname = "alice@example.test"\npassword_hash = "\$argon2id\$[^"]+"\nscram = "SCRAM-SHA-256\$[^"]+"\n$`).MatchString(out) {
		t.Errorf("output:\n%s", out)
	}
	if status, _, _ := run(t, dir, "", "hash-password", "s3cret"); status != 64 {
		t.Errorf("a password argument: status %d, want 64", status)
	}
	if status, _, _ := run(t, dir, "\n", "hash-password"); status != 65 {
		t.Errorf("an empty password: status %d, want 65", status)
	}
}

// TestUsage: -h on every command prints its usage and exits 0; an
// unknown command or flag exits 64.
func TestUsage(t *testing.T) {
	dir := tempDir(t)
	for _, cmd := range []string{"serve", "check-config", "deliver", "hash-password", "version"} {
		status, _, stderr := run(t, dir, "", cmd, "-h")
		if status != 0 || !strings.HasPrefix(stderr, "Usage: lmtpd ") {
			t.Errorf("%s -h: status %d, stderr %q", cmd, status, stderr)
		}
	}
	if status, out, _ := run(t, dir, "", "version"); status != 0 || !regexp.MustCompile(`^lmtpd e2e-test\ncommit \S+\nbuilt with go\S+ \S+/\S+\n$`).MatchString(out) {
		t.Errorf("version: status %d, output %q", status, out)
	}
	if status, _, _ := run(t, dir, "", "frobnicate"); status != 64 {
		t.Errorf("unknown command: status %d, want 64", status)
	}
	if status, _, _ := run(t, dir, "", "check-config", "-nope"); status != 64 {
		t.Errorf("unknown flag: status %d, want 64", status)
	}
}

// selfSigned writes a certificate and key for cn (and 127.0.0.1) and
// returns the pool that trusts it.
func selfSigned(t testing.TB, dir, cn string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, dir, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

// TestSubmissionTLSAuthMetrics runs an SMTP listener with STARTTLS,
// required AUTH and restrict_sender, with metrics on: it checks what is
// offered before and after TLS, a failed and a successful login, the
// sender restriction, a delivery, and what /metrics and /healthz report.
func TestSubmissionTLSAuthMetrics(t *testing.T) {
	dir := tempDir(t)
	certFile, keyFile, pool := selfSigned(t, dir, "mx.example.test")
	_, user, _ := run(t, dir, "s3cret\n", "hash-password", "-user", "alice@example.test")
	ports := wiretest.FreePorts(t, 2)
	smtpAddr, metricsAddr := ports[0], ports[1]
	cfg := fmt.Sprintf(`[log]
format = "json"

[server]
hostname = "mx.example.test"

[[listener]]
name = "submission"
protocol = "smtp"
address = %q
tls = "starttls"
auth = "required"
auth_failure_delay = "0s"

[tls]
cert_file = %q
key_file = %q

[auth]
restrict_sender = true
%s
[delivery.maildir]
root = "%s/mail"

[[domain]]
name = "example.test"
any_user = true

[metrics]
address = %q
`, smtpAddr, certFile, keyFile, user, dir, metricsAddr)
	cfgFile := writeFile(t, dir, "lmtpd.toml", cfg)
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")

	c := dial(t, "tcp", smtpAddr)
	c.write("EHLO test\r\n")
	var ehlo []string
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		ehlo = append(ehlo, strings.TrimSpace(line[4:]))
		if line[3] == ' ' {
			break
		}
	}
	if !contains(ehlo, "AUTH SCRAM-SHA-256") || !contains(ehlo, "STARTTLS") {
		t.Errorf("EHLO before TLS: %q, want AUTH SCRAM-SHA-256 only, and STARTTLS", ehlo)
	}
	c.cmd("MAIL FROM:<alice@example.test>", "530 5.7.0")
	c.cmd("QUIT", "221")

	tlsClient := func() *smtp.Client {
		t.Helper()
		sc, err := smtp.Dial(smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		if err := sc.Hello("client.example.org"); err != nil {
			t.Fatal(err)
		}
		if err := sc.StartTLS(&tls.Config{ServerName: "mx.example.test", RootCAs: pool}); err != nil {
			t.Fatalf("STARTTLS: %v", err)
		}
		return sc
	}
	sc := tlsClient()
	if ok, mechs := sc.Extension("AUTH"); !ok || mechs != "SCRAM-SHA-256 PLAIN LOGIN" {
		t.Errorf("AUTH after TLS: %q, want SCRAM-SHA-256 PLAIN LOGIN", mechs)
	}
	// net/smtp quits after a failed AUTH: log in on a new connection.
	if err := sc.Auth(smtp.PlainAuth("", "alice@example.test", "wrong", "127.0.0.1")); err == nil || !strings.Contains(err.Error(), "535") || !strings.Contains(err.Error(), "5.7.8") {
		t.Errorf("wrong password: %v, want 535 5.7.8", err)
	}
	sc = tlsClient()
	if err := sc.Auth(smtp.PlainAuth("", "alice@example.test", "s3cret", "127.0.0.1")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := sc.Mail("mallory@example.test"); err == nil || !strings.Contains(err.Error(), "553") || !strings.Contains(err.Error(), "5.7.1") {
		t.Errorf("MAIL FROM another user's address: %v, want 553 5.7.1", err)
	}
	if err := sc.Mail("alice@example.test"); err != nil {
		t.Fatal(err)
	}
	if err := sc.Rcpt("bob@example.test"); err != nil {
		t.Fatal(err)
	}
	w, err := sc.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, testMessage)
	if err := w.Close(); err != nil {
		t.Fatalf("end of data: %v", err)
	}
	sc.Quit()
	files := mailFiles(t, filepath.Join(dir, "mail", "example.test", "bob"))
	if len(files) != 1 || !strings.Contains(files[0], "SMTPSA (TLS 1.3 with cipher") {
		t.Errorf("bob's maildir: %d messages, want 1 received with (UTF8)ESMTPSA over TLS:\n%s", len(files), files)
	}

	resp, err := http.Get("http://" + metricsAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
	metrics := scrape(t, metricsAddr)
	for name, want := range map[string]float64{
		`lmtpd_recipients_total{class="2xx"}`:                                                1,
		`lmtpd_transactions_total{protocol="SMTP"}`:                                          1,
		`lmtpd_connections_total{listener="submission"}`:                                     3,
		`lmtpd_delivery_duration_seconds_count{backend="maildir"}`:                           1,
		`lmtpd_tls_handshakes_completed_total{listener="submission",version="TLS 1.3"}`:      2,
		`lmtpd_auth_attempts_total{listener="submission",mechanism="PLAIN",result="ok"}`:     1,
		`lmtpd_auth_attempts_total{listener="submission",mechanism="PLAIN",result="failed"}`: 1,
	} {
		if got, ok := metrics[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if got := metrics["lmtpd_received_bytes_total"]; got < float64(len("Hello.\r\n")) {
		t.Errorf("lmtpd_received_bytes_total = %v", got)
	}
	p.signal(syscall.SIGTERM)
	if st := p.wait(); st != 0 {
		t.Errorf("exit status %d, want 0", st)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// scrape reads /metrics into a map from series (name with labels) to
// value.
func scrape(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// TestImplicitTLSReload runs an implicit-TLS SMTP listener with users from
// auth.users_file; SIGHUP brings in a new user and a new certificate for
// new connections.
func TestImplicitTLSReload(t *testing.T) {
	dir := tempDir(t)
	certFile, keyFile, _ := selfSigned(t, dir, "first.example.test")
	_, alice, _ := run(t, dir, "alice-pw\n", "hash-password", "-user", "alice")
	_, bob, _ := run(t, dir, "bob-pw\n", "hash-password", "-user", "bob")
	users := func(s string) string { return strings.ReplaceAll(s, "[[auth.user]]", "[[user]]") }
	writeFile(t, dir, "users.toml", users(alice))
	addr := freePort(t)
	cfgFile := writeFile(t, dir, "lmtpd.toml", fmt.Sprintf(`[log]
format = "json"

[[listener]]
name = "smtps"
protocol = "smtp"
address = %q
tls = "implicit"
auth = "optional"

[tls]
cert_file = %q
key_file = %q

[auth]
users_file = "users.toml"

[delivery.maildir]
root = "mail"

[[domain]]
name = "example.test"
any_user = true
`, addr, certFile, keyFile))
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening", `"tls":"implicit"`)

	// login connects over TLS and tries AUTH PLAIN; it returns the
	// certificate's name.
	login := func(user, pw string) (string, error) {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName
		c, err := smtp.NewClient(conn, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") {
			t.Errorf("AUTH over implicit TLS: %q", mechs)
		}
		return cn, c.Auth(smtp.PlainAuth("", user, pw, "127.0.0.1"))
	}
	if cn, err := login("alice", "alice-pw"); err != nil || cn != "first.example.test" {
		t.Errorf("alice: %v, certificate %s", err, cn)
	}
	if _, err := login("bob", "bob-pw"); err == nil {
		t.Error("bob logged in before he was added")
	}

	writeFile(t, dir, "users.toml", users(alice)+"\n"+users(bob))
	selfSigned(t, dir, "second.example.test")
	n := p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, "configuration reloaded", `"auth_users":2`)
	if cn, err := login("bob", "bob-pw"); err != nil || cn != "second.example.test" {
		t.Errorf("bob after SIGHUP: %v, certificate %s", err, cn)
	}

	// A users file that does not parse keeps the old users.
	writeFile(t, dir, "users.toml", "[[user]]\nname = \"carol\"\npassword = \"plain text\"\n")
	n = p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, filepath.Join(dir, "users.toml")+":3: user[0].password: unknown key")
	p.waitLog(n, "reload failed")
	if _, err := login("bob", "bob-pw"); err != nil {
		t.Errorf("bob after a failed reload: %v", err)
	}
}

// goTool returns the go command: $GOROOT/bin/go when GOROOT is set, else
// go from PATH (runtime.GOROOT is deprecated).
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}
