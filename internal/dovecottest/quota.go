package dovecottest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// uid is the one Dovecot runs the user's mail access as (nobody).
const uid = 65534

// Dovecot is a running private instance serving one user.
type Dovecot struct {
	t    testing.TB
	conf string
	// User is the one user, and Mail its maildir.
	User, Mail string
}

// Start starts an instance whose user has a maildir quota of bytes and
// messages (0: no message limit), or skips (fails under CI).
func Start(t testing.TB, user string, bytes, messages int64) *Dovecot {
	t.Helper()
	if _, err := exec.LookPath("doveadm"); err != nil {
		need(t, "doveadm (dovecot-core) is not installed")
	}
	if os.Geteuid() != 0 {
		need(t, "Dovecot's master needs root to start")
	}
	root := t.TempDir()
	// The user's uid must reach the maildir through t.TempDir's parents.
	os.Chmod(root, 0o755)
	os.Chmod(filepath.Dir(root), 0o755)
	mail := filepath.Join(root, "mail", user)
	for _, d := range []string{"run", "mail/" + user + "/new", "mail/" + user + "/cur", "mail/" + user + "/tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rule := fmt.Sprintf("*:storage=%dB", bytes)
	if messages > 0 {
		rule += fmt.Sprintf(":messages=%d", messages)
	}
	conf := filepath.Join(root, "dovecot.conf")
	cfg := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/run
log_path = %[1]s/dovecot.log
protocols =
ssl = no
mail_location = maildir:%[1]s/mail/%%u
userdb {
  driver = static
  args = uid=%[3]d gid=%[3]d home=%[1]s/mail/%%u
}
passdb {
  driver = static
  args = nopassword=y
}
service anvil {
  chroot =
}
service auth {
  chroot =
}
mail_plugins = quota
plugin {
  quota = maildir:User quota
  quota_rule = %[2]s
}
`, root, rule, uid)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(filepath.Join(root, "mail"))
	// The master daemonises and its child keeps stdout and stderr: give
	// it a file, not a pipe that would never reach EOF.
	out, err := os.Create(filepath.Join(root, "start.log"))
	if err != nil {
		t.Fatal(err)
	}
	start := exec.Command("dovecot", "-c", conf)
	start.Stdout, start.Stderr = out, out
	err = start.Run()
	out.Close()
	if err != nil {
		b, _ := os.ReadFile(out.Name())
		need(t, fmt.Sprintf("dovecot did not start: %v: %s", err, b))
	}
	d := &Dovecot{t: t, conf: conf, User: user, Mail: mail}
	t.Cleanup(func() {
		exec.Command("dovecot", "-c", conf, "stop").Run()
		// The master removes its pid file when it is gone.
		for i := 0; i < 50; i++ {
			if _, err := os.Stat(filepath.Join(root, "run", "master.pid")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Wait for the auth socket doveadm needs.
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(filepath.Join(root, "run", "auth-userdb")); err == nil {
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	need(t, "dovecot's auth-userdb socket did not appear")
	return nil
}

// need skips, or fails under CI, where the real Dovecot cannot run.
func need(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI: %s", why)
	}
	fmt.Fprintf(os.Stderr, "*** %s: SKIPPED: %s\n", t.Name(), why)
	t.Skipf("SKIP (not under CI): %s", why)
}

// chownTree gives the maildir to the uid Dovecot runs the user as.
func chownTree(dir string) {
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, uid, uid)
		}
		return nil
	})
}

// Doveadm runs doveadm with args against the instance, after giving the
// maildir (and what lmtpd wrote into it) to the user's uid; a failure
// fails the test.
func (d *Dovecot) Doveadm(args ...string) string {
	d.t.Helper()
	chownTree(d.Mail)
	cmd := exec.Command("doveadm", append([]string{"-c", d.conf}, args...)...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("doveadm %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// Quota returns doveadm's STORAGE (KiB) and MESSAGE values for the user.
func (d *Dovecot) Quota() (kib, messages int64) {
	d.t.Helper()
	out := d.Doveadm("-f", "tab", "quota", "get", "-u", d.User)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "STORAGE":
			kib = v
		case "MESSAGE":
			messages = v
		}
	}
	return kib, messages
}
