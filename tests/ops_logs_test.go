//go:build linux

package tests

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDeferralLoggedForTheAdmin: a deferral caused by the file system (a
// file where a domain's directory belongs) is answered 451 4.3.5 and its
// outcome line is at level error, with the cause and what to fix, and the
// durations carry their unit in their names.
func TestDeferralLoggedForTheAdmin(t *testing.T) {
	dir := tempDir(t)
	cfg := writeFile(t, dir, "lmtpd.toml", baseConfig(dir, "[[domain]]\nname = \"example.test\"\nany_user = true\n"))
	if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "mail"), "example.test", "a file where the domain's directory belongs\n")
	p := start(t, dir, nil, "-config", cfg)
	p.waitLog(0, `"message":"listening"`)

	c := dial(t, "unix", filepath.Join(dir, "lmtp.sock"))
	c.cmd("LHLO client.example.test", "250 ")
	c.send("sender@example.org", []string{"bob@example.test"}, testMessage, "451 4.3.5 ")
	c.cmd("QUIT", "221 ")

	i := p.waitLog(0, `"message":"deferred"`)
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.Split(p.log(), "\n")[i]), &line); err != nil {
		t.Fatal(err)
	}
	if line["level"] != "error" {
		t.Errorf("level %v, want error", line["level"])
	}
	if cause, _ := line["cause"].(string); !strings.Contains(cause, "not a directory") {
		t.Errorf("cause %q, want the file system's error", cause)
	}
	if fix, _ := line["fix"].(string); !strings.Contains(fix, "a file stands where the maildir tree needs a directory") {
		t.Errorf("fix %q", fix)
	}
	for _, k := range []string{"duration_ms", "delivery_time_ms"} {
		if _, ok := line[k].(float64); !ok {
			t.Errorf("%s = %v, want a number of milliseconds", k, line[k])
		}
	}
	if _, ok := line["duration"]; ok {
		t.Error("a duration field without its unit")
	}
	p.signal(syscall.SIGTERM)
	if st := p.wait(); st != 0 {
		t.Errorf("exit status %d", st)
	}
	if i := p.waitLog(0, `"message":"shutting down`); !strings.Contains(strings.Split(p.log(), "\n")[i], `"grace_ms":20000`) {
		t.Errorf("shutdown line without grace_ms: %s", strings.Split(p.log(), "\n")[i])
	}
}

// TestSyslogDaemon: with [log] output = "syslog" the daemon's lines go to
// the syslog socket (here one the test listens on) with facility mail and
// their level as severity; SIGHUP's line names what it counts.
func TestSyslogDaemon(t *testing.T) {
	dir := tempDir(t)
	sock := filepath.Join(dir, "log.sock")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	text := strings.Replace(baseConfig(dir, "[[domain]]\nname = \"example.test\"\nusers = [\"alice\", \"bob\"]\n"),
		"[log]\n", "[log]\noutput = \"syslog\"\nsyslog_socket = \""+sock+"\"\n", 1)
	cfg := writeFile(t, dir, "lmtpd.toml", text)
	p := start(t, dir, nil, "-config", cfg)

	line := regexp.MustCompile(`^<(\d+)>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d lmtpd\[(\d+)\]: (\{.*\})\n$`)
	// next reads datagrams until one whose message contains sub, and
	// returns its priority and JSON fields.
	next := func(sub string) (string, map[string]any) {
		t.Helper()
		buf := make([]byte, 64<<10)
		for {
			srv.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, err := srv.Read(buf)
			if err != nil {
				t.Fatalf("waiting for %q over syslog: %v (stderr: %s)", sub, err, p.log())
			}
			m := line.FindStringSubmatch(string(buf[:n]))
			if m == nil {
				t.Fatalf("datagram %q is not <PRI>TIMESTAMP lmtpd[PID]: JSON", buf[:n])
			}
			if !strings.Contains(m[3], sub) {
				continue
			}
			var f map[string]any
			if err := json.Unmarshal([]byte(m[3]), &f); err != nil {
				t.Fatal(err)
			}
			return m[1], f
		}
	}
	const mailInfo, mailWarning = "22", "20" // facility mail (2) × 8 + severity
	if pri, _ := next(`"message":"listening"`); pri != mailInfo {
		t.Errorf("listening: priority %s, want %s (mail.info)", pri, mailInfo)
	}
	p.signal(syscall.SIGHUP)
	pri, f := next(`"message":"configuration reloaded"`)
	if pri != mailInfo || f["auth_users"] != 0.0 || f["domains"] != 1.0 || f["mail_users"] != 2.0 {
		t.Errorf("reload line: priority %s, fields %v; want mail.info, auth_users 0, domains 1, mail_users 2", pri, f)
	}
	if _, ok := f["users"]; ok {
		t.Errorf("reload line has an ambiguous users field: %v", f)
	}
	// A syslog change needs a restart: a warning, at warning severity.
	writeFile(t, dir, "lmtpd.toml", strings.Replace(text, "[log]\n", "[log]\nfacility = \"local1\"\n", 1))
	p.signal(syscall.SIGHUP)
	if pri, f := next(`"changed":"log.output`); pri != mailWarning {
		t.Errorf("restart warning: priority %s, want %s (mail.warning, the facility unchanged): %v", pri, mailWarning, f)
	}
	p.signal(syscall.SIGTERM)
	if st := p.wait(); st != 0 {
		t.Errorf("exit status %d", st)
	}
	if out := p.log(); strings.Contains(out, `"message"`) {
		t.Errorf("log lines on stderr with output = syslog:\n%s", out)
	}
}

// TestCheckConfigSockets: check-config (the binary) refuses a socket the
// service's account could not create, and warns about one the MTA's
// account could not connect to, each at its file, line and key.
func TestCheckConfigSockets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the checks are made for another account (nobody)")
	}
	dir := tempDir(t) // mode 0700, owned by root: nobody cannot enter it
	domains := "[[domain]]\nname = \"example.test\"\nany_user = true\n"
	cfg := writeFile(t, dir, "lmtpd.toml", strings.Replace(baseConfig(dir, domains), "[server]\n", "[server]\nuser = \"nobody\"\n", 1))
	status, _, stderr := run(t, dir, "", "check-config", "-q", "-config", cfg)
	if status != 78 || !strings.Contains(stderr, cfg+":12: listener[0].address: cannot create the socket: ") ||
		!strings.Contains(stderr, "is not writable for user nobody") {
		t.Errorf("service account: exit %d, stderr:\n%s", status, stderr)
	}

	cfg = writeFile(t, dir, "lmtpd.toml", strings.Replace(baseConfig(dir, domains), "[server]\n", "[server]\nmta_user = \"nobody\"\n", 1))
	status, _, stderr = run(t, dir, "", "check-config", "-q", "-config", cfg)
	want := cfg + ":12: listener[0].address: warning: user nobody (uid "
	if status != 0 || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "no search (x) permission on "+dir) {
		t.Errorf("MTA account: exit %d, stderr:\n%s\nwant a warning starting %q", status, stderr, want)
	}
}
