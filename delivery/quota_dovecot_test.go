package delivery

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

	"github.com/lmtpd/lmtpd/quota"
)

// The private Dovecot below is quota/dovecot_test.go's, with the user
// lmtpd delivers to.

// dovecot is a private Dovecot (master and auth only, no protocols) whose
// doveadm reads and updates maildir quota on a temporary maildir.
type dovecot struct {
	t    *testing.T
	conf string
	mail string // the user's maildir
}

const dovecotUser = "bob"

// startDovecot starts the private instance, or skips (fails under CI).
func startDovecot(t *testing.T, l quota.Limits) *dovecot {
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

// TestQuotaDovecotAgrees: lmtpd delivers over LMTP into a maildir that a
// private Dovecot serves with "quota = maildir:User quota" and the same
// limit. doveadm quota get reports what lmtpd stored, byte for byte (in
// its KiB) and message for message; once the user is over quota lmtpd
// refuses at RCPT; doveadm expunge appends its negative change and
// lmtpd's next RCPT sees the lower usage and accepts; after doveadm's own
// recalculation both still agree.
func TestQuotaDovecotAgrees(t *testing.T) {
	l := quota.Limits{Bytes: 15000}
	d := startDovecot(t, l)
	root := filepath.Dir(d.mail)
	cfg := quotaTestConfig(root, l.Bytes, quota.Grace{Percent: 50})
	cfg.Maildir.Template = "{user}"
	r := newRouter(t, cfg, Options{})
	w := startWire(t, r)
	for range 3 {
		w.deliver("s@example.test", []string{"bob@example.org"}, body(6000))
	}
	stored := sizeOf(t, d.mail)
	kib, msgs := d.quota()
	if msgs != stored.Messages || kib != (stored.Bytes+1023)/1024 {
		t.Fatalf("doveadm: %d KiB in %d messages; lmtpd stored %+v (maildirsize %q)", kib, msgs, stored, readMaildirsize(t, d.mail))
	}
	if stored.Bytes < l.Bytes {
		t.Fatalf("setup: bob holds %+v, want him over %d", stored, l.Bytes)
	}
	rcpt, _ := w.try("", []string{"bob@example.org"}, body(10))
	wantReplies(t, "RCPT over quota", rcpt, "552 5.2.2 ")

	d.doveadm("expunge", "-u", dovecotUser, "mailbox", "INBOX", "uid", "1")
	after := sizeOf(t, d.mail)
	if after.Messages != 2 {
		t.Fatalf("after doveadm expunge bob holds %+v", after)
	}
	rcpt, data := w.try("", []string{"bob@example.org"}, "Subject: small\r\n\r\nhi\r\n")
	wantReplies(t, "RCPT after expunge", rcpt, "250 ")
	wantReplies(t, "DATA after expunge", data, "250 ")
	final := sizeOf(t, d.mail)
	if _, sum := maildirsizeSum(t, d.mail); sum != final {
		t.Fatalf("maildirsize says %+v, the maildir holds %+v (%q)", sum, final, readMaildirsize(t, d.mail))
	}
	kib, msgs = d.quota()
	if msgs != final.Messages || kib != (final.Bytes+1023)/1024 {
		t.Fatalf("doveadm: %d KiB in %d messages; the maildir holds %+v", kib, msgs, final)
	}
	d.doveadm("quota", "recalc", "-u", dovecotUser)
	if kib2, msgs2 := d.quota(); kib2 != kib || msgs2 != msgs {
		t.Fatalf("after doveadm's recalculation: %d KiB %d messages, before %d %d", kib2, msgs2, kib, msgs)
	}
	if u, err := r.quota.Usage(d.mail, l); err != nil || u != final {
		t.Fatalf("lmtpd after Dovecot's recalculation: %+v %v, want %+v", u, err, final)
	}
}

func readMaildirsize(t *testing.T, dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, quota.FileName))
	return string(b)
}
