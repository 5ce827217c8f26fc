package dovecottest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LMTP is a running private Dovecot LMTP server (after
// /work/shared/recipes/dovecot) with a passwd-file user database: users
// alice and bob, and full whose quota is one byte (so a delivery to full
// fails after the message with 552 5.2.2); anyone else is unknown (550
// 5.1.1). Its hostname is dovecot.test, the mail user is nobody, and it
// trusts 127.0.0.0/8 for XCLIENT. It is stopped when the test ends, and
// its log is printed if the test failed.
type LMTP struct {
	// Addr is the TCP listener's address on 127.0.0.1, and Socket the
	// path of the unix socket (mode 0666).
	Addr, Socket string
	// Mail is the mail root: user@domain's maildir is
	// Mail/domain/user/Maildir.
	Mail string
}

// StartLMTP starts a private Dovecot LMTP server and waits until it
// listens, or skips the test (fails it under CI=true) when Dovecot's LMTP
// is not installed, the test does not run as root, or Dovecot cannot
// start.
func StartLMTP(t testing.TB) *LMTP {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/dovecot"); err != nil {
			need(t, "dovecot (dovecot-core) is not installed (tests/install-deps.sh installs it)")
		}
		bin = "/usr/sbin/dovecot"
	}
	if _, err := os.Stat("/usr/lib/dovecot/lmtp"); err != nil {
		need(t, "Dovecot's LMTP server (dovecot-lmtpd) is not installed (tests/install-deps.sh installs it)")
	}
	if os.Geteuid() != 0 {
		need(t, "Dovecot's LMTP needs root to switch to the mail user")
	}
	// Short: a unix socket's path is limited to 107 bytes. Dovecot's
	// unprivileged processes must reach it.
	dir, err := os.MkdirTemp("", "dl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &LMTP{Socket: filepath.Join(dir, "run", "lmtp"), Mail: filepath.Join(dir, "mail")}
	for _, sub := range []string{"run", "state", "mail"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(d.Mail, uid, uid); err != nil {
		t.Fatal(err)
	}
	users := "alice:{PLAIN}x::::::\nbob:{PLAIN}x::::::\nfull:{PLAIN}x::::::userdb_quota_rule=*:storage=1B\n"
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(users), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.Addr = l.Addr().String()
	l.Close() // a port that was free a moment ago: the config must name one
	_, port, _ := strings.Cut(d.Addr, ":")
	conf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(strings.NewReplacer("@ROOT@", dir, "@PORT@", port).Replace(lmtpConf)), 0o644); err != nil {
		t.Fatal(err)
	}

	var out strings.Builder
	cmd := exec.Command(bin, "-F", "-c", conf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		need(t, fmt.Sprintf("dovecot does not start: %v", err))
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot.log:\n%s", b)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.Addr, time.Second)
		if err == nil {
			c.Close()
			return d
		}
		select {
		case <-exited:
			need(t, fmt.Sprintf("dovecot exited: %s", out.String()))
		default:
		}
		if time.Now().After(deadline) {
			need(t, fmt.Sprintf("dovecot does not listen on %s: %v\n%s", d.Addr, err, out.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lmtpConf is the recipe's configuration with a passwd-file user
// database (so that unknown users exist), a quota, the unprivileged
// "nobody" as the mail user, and 127.0.0.0/8 trusted for XCLIENT.
const lmtpConf = `protocols = lmtp
listen = 127.0.0.1
base_dir = @ROOT@/run
state_dir = @ROOT@/state
log_path = @ROOT@/dovecot.log
info_log_path = @ROOT@/dovecot.log
ssl = no
hostname = dovecot.test
mail_uid = 65534
mail_gid = 65534
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:@ROOT@/mail/%d/%n/Maildir
mail_plugins = quota
plugin {
  quota = maildir:User quota
}
quota_full_tempfail = no
login_trusted_networks = 127.0.0.0/8
passdb {
  driver = passwd-file
  args = username_format=%n @ROOT@/users
}
userdb {
  driver = passwd-file
  args = username_format=%n @ROOT@/users
  default_fields = uid=65534 gid=65534 home=@ROOT@/mail/%d/%n
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = @PORT@
  }
  unix_listener lmtp {
    mode = 0666
  }
}
service auth {
  unix_listener auth-userdb {
    mode = 0666
  }
}
`
