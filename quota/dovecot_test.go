package quota

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dovecot is a private Dovecot (master and auth only, no protocols) whose
// doveadm reads and updates maildir quota on a temporary maildir.
type dovecot struct {
	t    *testing.T
	conf string
	mail string // the user's maildir
}

const dovecotUser = "alice"

// startDovecot starts the private instance, or skips (fails under CI).
func startDovecot(t *testing.T, l Limits) *dovecot {
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
	mail := filepath.Join(root, "mail", dovecotUser)
	for _, d := range []string{"run", "mail/" + dovecotUser + "/new", "mail/" + dovecotUser + "/cur", "mail/" + dovecotUser + "/tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rule := fmt.Sprintf("*:storage=%dB", l.Bytes)
	if l.Messages > 0 {
		rule += fmt.Sprintf(":messages=%d", l.Messages)
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
  args = uid=65534 gid=65534 home=%[1]s/mail/%%u
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
`, root, rule)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, filepath.Join(root, "mail"))
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
	d := &dovecot{t: t, conf: conf, mail: mail}
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
func need(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI: %s", why)
	}
	t.Skipf("SKIP (not under CI): %s", why)
}

// chownTree gives the maildir to the uid Dovecot runs the user as.
func chownTree(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, 65534, 65534)
		}
		return nil
	})
}

func (d *dovecot) doveadm(args ...string) string {
	d.t.Helper()
	chownTree(d.t, d.mail)
	cmd := exec.Command("doveadm", append([]string{"-c", d.conf}, args...)...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("doveadm %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// quota returns doveadm's STORAGE (KiB) and MESSAGE values.
func (d *dovecot) quota() (kib, messages int64) {
	out := d.doveadm("-f", "tab", "quota", "get", "-u", dovecotUser)
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

// TestDovecotAgrees: lmtpd's deliveries and Dovecot's IMAP side keep one
// counter in maildirsize. lmtpd delivers and appends; doveadm reports the
// same usage; doveadm expunges; lmtpd sees the lower usage; Dovecot
// reads the file lmtpd recalculated and lmtpd reads Dovecot's.
func TestDovecotAgrees(t *testing.T) {
	l := Limits{Bytes: 1 << 20, Messages: 100}
	d := startDovecot(t, l)
	var tr Tracker
	sizes := []int64{1000, 2500, 40000, 7}
	var total int64
	for i, size := range sizes {
		r, err := tr.Reserve(d.mail, l, Grace{}, size)
		if err != nil || r.Verdict != Fits {
			t.Fatalf("reserve %d: %+v %v", i, r, err)
		}
		msg := bytes.Repeat([]byte("y"), int(size))
		if hdr := "Subject: quota test\n\n"; size > int64(len(hdr)) {
			copy(msg, hdr)
		}
		name := fmt.Sprintf("17000000%02d.M%dP1Q1.host,S=%d", i, i, size)
		if err := os.WriteFile(filepath.Join(d.mail, "new", name), msg, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := r.Commit(size); err != nil {
			t.Fatal(err)
		}
		total += size
	}
	// lmtpd wrote maildirsize (recalculated once, then appended): Dovecot
	// reads the same figure.
	kib, msgs := d.quota()
	if msgs != int64(len(sizes)) || kib != (total+1023)/1024 {
		t.Fatalf("doveadm: %d KiB %d messages; lmtpd stored %d bytes in %d", kib, msgs, total, len(sizes))
	}
	u, err := tr.Usage(d.mail, l)
	if err != nil || u != (Usage{total, int64(len(sizes))}) {
		t.Fatalf("lmtpd usage %+v %v, want %d/%d", u, err, total, len(sizes))
	}
	// Dovecot expunges the largest message and appends its change.
	d.doveadm("expunge", "-u", dovecotUser, "mailbox", "INBOX", "larger", "10000")
	u, err = tr.Usage(d.mail, l)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{total - 40000, int64(len(sizes) - 1)}); u != want {
		t.Fatalf("after doveadm expunge lmtpd sees %+v, want %+v (maildirsize %q)", u, want, readFile(t, d.mail))
	}
	// Both agree after Dovecot recalculates too.
	d.doveadm("quota", "recalc", "-u", dovecotUser)
	kib, msgs = d.quota()
	if msgs != u.Messages || kib != (u.Bytes+1023)/1024 {
		t.Fatalf("after recalc doveadm says %d KiB %d messages, lmtpd %+v", kib, msgs, u)
	}
	if u2, err := tr.Usage(d.mail, l); err != nil || u2 != u {
		t.Fatalf("lmtpd after Dovecot's recalc: %+v %v, want %+v", u2, err, u)
	}
}
