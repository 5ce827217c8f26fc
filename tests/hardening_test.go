//go:build linux

package tests

// End-to-end tests of issue 19's daemon defects: deliver's exit status on
// a temporary condition, SIGHUP with a new maildir root, and the shutdown
// grace as a bound whatever the connections do.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// makeReadOnly makes dir refuse new entries for this process, undone at
// the end of the test. Tests run as root, for whom mode bits do not stop
// a write: as root the directory is made immutable (chattr +i), or, where
// the file system cannot, bind-mounted read-only onto itself. Without
// either the test is skipped loudly, or fails under CI=true.
func makeReadOnly(t *testing.T, dir string) {
	t.Helper()
	var how string
	switch {
	case os.Geteuid() != 0:
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		how = "chmod 0555"
	case exec.Command("chattr", "+i", dir).Run() == nil:
		t.Cleanup(func() { exec.Command("chattr", "-i", dir).Run() })
		how = "chattr +i"
	case exec.Command("mount", "--bind", dir, dir).Run() == nil:
		t.Cleanup(func() { exec.Command("umount", dir).Run() })
		if out, err := exec.Command("mount", "-o", "remount,ro,bind", dir).CombinedOutput(); err != nil {
			t.Fatalf("remounting %s read-only: %v\n%s", dir, err, out)
		}
		how = "a read-only bind mount"
	default:
		msg := "cannot make a directory read-only for root here (neither chattr +i nor a read-only bind mount works)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	probe := filepath.Join(dir, "probe")
	if err := os.Mkdir(probe, 0o700); err == nil {
		os.Remove(probe)
		t.Fatalf("%s did not make %s read-only", how, dir)
	}
	t.Logf("%s is read-only (%s)", dir, how)
}

// TestDeliverTemporaryConditions: a condition the daemon answers 451
// 4.3.5 for (a maildir root that is read-only, or cannot be created
// because a file is in the way) makes deliver exit 75 (EX_TEMPFAIL, the
// MTA defers) with a 4.3.5 status line first, never 78 (EX_CONFIG, which
// Postfix bounces as 5.3.5). 78 stays for a file that does not parse.
func TestDeliverTemporaryConditions(t *testing.T) {
	dir := tempDir(t)
	domains := "[[domain]]\nname = \"example.test\"\nany_user = true\n"
	msg := "Subject: x\n\nhi\n"

	t.Run("read-only root", func(t *testing.T) {
		root := filepath.Join(dir, "ro")
		if err := os.Mkdir(root, 0o750); err != nil {
			t.Fatal(err)
		}
		cfg := writeFile(t, dir, "ro.toml", strings.Replace(baseConfig(dir, domains), dir+"/mail", root, 1))
		// The daemon, started while the root was writable, answers the
		// same condition with 451 4.3.5.
		p := start(t, dir, nil, "-config", cfg)
		p.waitLog(0, "listening")
		makeReadOnly(t, root)
		c := dial(t, "unix", filepath.Join(dir, "lmtp.sock"))
		c.cmd("LHLO test", "250 ")
		c.send("a@b.test", []string{"u@example.test"}, testMessage, "451 4.3.5 ")
		c.cmd("QUIT", "221 ")
		p.signal(syscall.SIGTERM)
		p.wait()

		status, _, stderr := run(t, dir, msg, "deliver", "-config", cfg, "-f", "a@b.test", "--", "u@example.test")
		if status != 75 {
			t.Errorf("exit status %d, want 75 (EX_TEMPFAIL)\n%s", status, stderr)
		}
		if want := "4.3.5 cannot deliver: "; !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("stderr %q, want it to start with %q", stderr, want)
		}
		if !strings.Contains(stderr, "delivery.maildir.root: "+root+" is not writable by this process") {
			t.Errorf("stderr does not give the cause:\n%s", stderr)
		}
	})
	t.Run("file in the way", func(t *testing.T) {
		writeFile(t, dir, "plain", "not a directory\n")
		cfg := writeFile(t, dir, "file.toml", strings.Replace(baseConfig(dir, domains), dir+"/mail", dir+"/plain/mail", 1))
		status, _, stderr := run(t, dir, msg, "deliver", "-config", cfg, "--", "u@example.test", "v@example.test")
		if status != 75 {
			t.Errorf("exit status %d, want 75 (EX_TEMPFAIL)\n%s", status, stderr)
		}
		lines := strings.Split(stderr, "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "4.3.5 cannot deliver: ") || !strings.Contains(lines[0], "is not a directory") {
			t.Errorf("stderr:\n%s", stderr)
		}
	})
	t.Run("root cannot be created", func(t *testing.T) {
		// The configuration check passes (a dangling link looks like a
		// missing directory under a writable one); creating the root fails.
		if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling")); err != nil {
			t.Fatal(err)
		}
		cfg := writeFile(t, dir, "dangling.toml", strings.Replace(baseConfig(dir, domains), dir+"/mail", dir+"/dangling/mail", 1))
		status, _, stderr := run(t, dir, msg, "deliver", "-config", cfg, "--", "u@example.test")
		if status != 75 || !strings.HasPrefix(stderr, "4.3.5 cannot deliver: ") || !strings.Contains(stderr, "cannot create the maildir root") {
			t.Errorf("exit status %d, want 75 (EX_TEMPFAIL)\n%s", status, stderr)
		}
	})
	t.Run("unreadable configuration file", func(t *testing.T) {
		status, _, stderr := run(t, dir, msg, "deliver", "-config", filepath.Join(dir, "missing.toml"), "--", "u@example.test")
		if status != 75 || !strings.HasPrefix(stderr, "4.3.5 cannot deliver: ") {
			t.Errorf("exit status %d, want 75 (EX_TEMPFAIL)\n%s", status, stderr)
		}
	})
	t.Run("broken text with a bad root too", func(t *testing.T) {
		// Both problems: the file is wrong as written, which no retry
		// fixes.
		cfg := writeFile(t, dir, "broken.toml", strings.NewReplacer(dir+"/mail", dir+"/plain/mail", `format = "json"`, "format = \"json\"\nlevel = 3").Replace(baseConfig(dir, domains)))
		status, _, stderr := run(t, dir, msg, "deliver", "-config", cfg, "--", "u@example.test")
		if status != 78 {
			t.Errorf("exit status %d, want 78 (EX_CONFIG)\n%s", status, stderr)
		}
	})
}

// TestReloadNewMaildirRoot: SIGHUP with a configuration whose maildir
// root does not exist yet creates it, as start-up does, and delivery goes
// there at once; a root that cannot be created refuses the reload, and
// the running root stays.
func TestReloadNewMaildirRoot(t *testing.T) {
	dir := tempDir(t)
	domains := "[[domain]]\nname = \"example.test\"\nany_user = true\n"
	cfgFile := writeFile(t, dir, "lmtpd.toml", baseConfig(dir, domains))
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")
	c := dial(t, "unix", filepath.Join(dir, "lmtp.sock"))
	c.cmd("LHLO test", "250 ")
	c.send("a@example.org", []string{"bob@example.test"}, testMessage, "250 2.0.0 <bob@example.test>")

	newRoot := filepath.Join(dir, "new", "mail", "root")
	writeFile(t, dir, "lmtpd.toml", strings.Replace(baseConfig(dir, domains), dir+"/mail", newRoot, 1))
	n := p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, "configuration reloaded")
	if fi, err := os.Stat(newRoot); err != nil || !fi.IsDir() {
		t.Fatalf("the new root was not created by the reload: %v", err)
	}
	c.send("a@example.org", []string{"bob@example.test"}, testMessage, "250 2.0.0 <bob@example.test>")
	if got := len(mailFiles(t, filepath.Join(newRoot, "example.test", "bob"))); got != 1 {
		t.Errorf("%d messages under the new root, want 1", got)
	}

	// A root that cannot be created: the reload is refused with the
	// reason, and mail keeps going to the running root.
	writeFile(t, dir, "plain", "not a directory\n")
	writeFile(t, dir, "lmtpd.toml", strings.Replace(baseConfig(dir, domains), dir+"/mail", dir+"/plain/mail", 1))
	n = p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, "reload failed")
	p.waitLog(n, "delivery.maildir.root", "is not a directory")
	c.send("a@example.org", []string{"bob@example.test"}, testMessage, "250 2.0.0 <bob@example.test>")
	if got := len(mailFiles(t, filepath.Join(newRoot, "example.test", "bob"))); got != 2 {
		t.Errorf("%d messages under the running root, want 2", got)
	}

	// A root the configuration check lets through (its parent, a dangling
	// symbolic link, looks missing, under a writable directory) but that
	// cannot be created: preparing it fails, and the reload is refused.
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "lmtpd.toml", strings.Replace(baseConfig(dir, domains), dir+"/mail", dir+"/dangling/mail", 1))
	n = p.nlines()
	p.signal(syscall.SIGHUP)
	p.waitLog(n, "reload failed: the maildir root cannot be prepared", "cannot create the maildir root")
	c.send("a@example.org", []string{"bob@example.test"}, testMessage, "250 2.0.0 <bob@example.test>")
	if got := len(mailFiles(t, filepath.Join(newRoot, "example.test", "bob"))); got != 3 {
		t.Errorf("%d messages under the running root, want 3", got)
	}
	c.cmd("QUIT", "221 ")
}

// TestShutdownGraceBounds: with connections that would keep lmtpd busy
// for minutes (a client stuck in the middle of DATA, a pipe command that
// sleeps, a BDAT chunk the client never finishes), SIGTERM with a short
// shutdown_grace still ends the process: past the grace the connections
// are closed and their deliveries cancelled (the pipe's process killed),
// and the unfinished message is nowhere in new/.
func TestShutdownGraceBounds(t *testing.T) {
	dir := tempDir(t)
	slow := writeScript(t, dir, "slow", fmt.Sprintf("echo $$ > %s/slow.pid\ncat >/dev/null\nexec sleep 300\n", dir))
	cfg := fmt.Sprintf(`[log]
format = "json"

[server]
shutdown_grace = "1s"

[[listener]]
name = "lmtp"
protocol = "lmtp"
address = "unix:%s/lmtp.sock"
max_message_size = "1MiB"

[delivery.maildir]
root = "%s/mail"

[[domain]]
name = "example.test"
any_user = true
[[domain.user]]
name = "slow"
route = { pipe = { argv = [%q] } }
`, dir, dir, slow)
	cfgFile := writeFile(t, dir, "lmtpd.toml", cfg)
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")
	sock := filepath.Join(dir, "lmtp.sock")

	// A client stuck in the middle of DATA: part of the message is sent
	// (and spooled), the end never comes.
	stuck := dial(t, "unix", sock)
	stuck.cmd("LHLO test", "250 ")
	stuck.cmd("MAIL FROM:<a@example.org>", "250 ")
	stuck.cmd("RCPT TO:<stuck@example.test>", "250 ")
	stuck.cmd("DATA", "354 ")
	stuck.write("Subject: never finished\r\n\r\n" + strings.Repeat("half a message\r\n", 1000))

	// A pipe delivery that would take 5 minutes.
	piped := dial(t, "unix", sock)
	piped.cmd("LHLO test", "250 ")
	piped.send("a@example.org", []string{"slow@example.test"}, testMessage)
	var pid int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(dir, "slow.pid"))
		if pid, _ = strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pipe command did not start")
		}
	}

	// A BDAT chunk just over the size limit, sent whole, then the client
	// waits: such a session hung (issue 19 item 5), deaf to its closed
	// socket and cancelled context, and with it the shutdown. Whether or
	// not that hang is fixed, shutdown must end.
	bdat := dial(t, "unix", sock)
	bdat.cmd("LHLO test", "250 ")
	bdat.cmd("MAIL FROM:<a@example.org>", "250 ")
	bdat.cmd("RCPT TO:<bdat@example.test>", "250 ")
	const chunk = 1<<20 + 42
	bdat.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	// The write may stop short once lmtpd stops reading: that is fine.
	bdat.c.Write([]byte(fmt.Sprintf("BDAT %d LAST\r\n", chunk) + strings.Repeat("x", chunk-2) + "\r\n"))

	n := p.nlines()
	p.signal(syscall.SIGTERM)
	p.waitLog(n, "shutting down")
	status := p.wait() // fails the test unless lmtpd exits within 30 s
	if status != 0 {
		// Only a connection that ignored its closed socket and cancelled
		// context may make lmtpd give up on it; that is said in the log.
		p.waitLog(n, "exiting without them")
		t.Logf("exit status %d: a connection was left behind", status)
	}

	// The pipe command was killed with its delivery context.
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the pipe command (pid %d) still runs after lmtpd exited", pid)
		}
	}
	// The unfinished messages are nowhere a reader of new/ or cur/ sees
	// them; whatever is left is in tmp/.
	for _, user := range []string{"stuck", "bdat"} {
		md := filepath.Join(dir, "mail", "example.test", user)
		for _, sub := range []string{"new", "cur"} {
			ents, err := os.ReadDir(filepath.Join(md, sub))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			if len(ents) != 0 {
				t.Errorf("%s/%s holds %d files of an unfinished message", md, sub, len(ents))
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(md, "tmp")); len(ents) > 0 {
			t.Logf("%s/tmp holds %d files (allowed)", md, len(ents))
		}
	}
	// Every client sees its connection end.
	for _, c := range []*client{stuck, piped, bdat} {
		c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c.br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("connection not closed: %v", err)
		}
	}
}
