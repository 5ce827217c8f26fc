package tests

// End-to-end tests of issue 19's daemon defects: deliver's exit status on
// a temporary condition, SIGHUP with a new maildir root, and the shutdown
// grace as a bound whatever the connections do.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
		if want := "4.3.5 <u@example.test>: Mail system configuration error, try again later\n"; !strings.HasPrefix(stderr, want) {
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
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "4.3.5 <u@example.test>: ") || !strings.HasPrefix(lines[1], "4.3.5 <v@example.test>: ") ||
			!strings.Contains(lines[2], "is not a directory") {
			t.Errorf("stderr:\n%s", stderr)
		}
	})
	t.Run("unreadable configuration file", func(t *testing.T) {
		status, _, stderr := run(t, dir, msg, "deliver", "-config", filepath.Join(dir, "missing.toml"), "--", "u@example.test")
		if status != 75 || !strings.HasPrefix(stderr, "4.3.5 <u@example.test>: ") {
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
	c.cmd("QUIT", "221 ")
}
