package peers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

// proxyDovecotConf is a private Dovecot LMTP (after
// /work/shared/recipes/dovecot): passwd-file users alice and bob, full
// with a one-byte quota, 127.0.0.0/8 trusted for XCLIENT.
const proxyDovecotConf = `protocols = lmtp
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
}
`

// startProxyDovecot starts the private Dovecot LMTP on a loopback port
// and returns its address and mail root.
func startProxyDovecot(t *testing.T) (addr, mail string) {
	t.Helper()
	bin := requirePeer(t, "dovecot")
	if !fileExists("/usr/lib/dovecot/lmtp") {
		missingPeer(t, "dovecot-lmtpd is not installed")
	}
	requireRoot(t, "Dovecot's LMTP switches to the mail user")
	dir := shortTempDir(t)
	mail = filepath.Join(dir, "mail")
	for _, d := range []string{"run", "state", "mail"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(mail, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	users := "alice:{PLAIN}x::::::\nbob:{PLAIN}x::::::\nfull:{PLAIN}x::::::userdb_quota_rule=*:storage=1B\n"
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte(users), 0o644); err != nil {
		t.Fatal(err)
	}
	addr = freePort(t)
	_, port, _ := strings.Cut(addr, ":")
	conf := strings.NewReplacer("@ROOT@", dir, "@PORT@", port).Replace(proxyDovecotConf)
	if err := os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(bin, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		missingPeer(t, "dovecot does not start: %v", err)
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
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, mail
		}
		select {
		case <-exited:
			missingPeer(t, "dovecot exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			missingPeer(t, "dovecot does not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProxyToDovecot: lmtpd in front of Dovecot's LMTP. Over the front's
// TCP listener, one transaction to alice, an unknown user and one over
// quota gets Dovecot's own replies per recipient (250, 550 5.1.1, 552
// 5.2.2 with Dovecot's text); Dovecot, which offers XCLIENT to the
// trusted front, records the original client's address in its Received
// field, and the front's Received field is below it.
func TestProxyToDovecot(t *testing.T) {
	dovecot, mail := startProxyDovecot(t)
	front := newDaemon(t, daemonOptions{Domains: fmt.Sprintf(
		"[[domain]]\nname = \"example.org\"\nany_user = true\nroute = { lmtp = { address = %q } }\n", dovecot)})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The original client connects from 127.0.0.2, the front to Dovecot
	// from 127.0.0.1: the address in Dovecot's Received field shows
	// whether XCLIENT passed the original one on.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", front.LMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := protocol.NewClient(ctx, nc, &protocol.ClientOptions{Protocol: protocol.LMTP, LocalName: "orig-client.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit(ctx)
	from, _ := protocol.ParseAddress("sender@example.net")
	m := newMessage("dovecot-1", "sender@example.net", "alice@example.org", 2000)
	st, err := c.Send(ctx, from, nil, clientRcpts(t, "alice@example.org", "nosuch@example.org", "full@example.org"), strings.NewReader(string(m.Stored)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range st {
		got = append(got, statusLine(s))
	}
	if want := "250|550 5.1.1|552 5.2.2"; strings.Join(got, "|") != want {
		t.Fatalf("statuses %q, want %s", got, want)
	}
	if text := st[2].Reply.Text(); !strings.Contains(text, "Quota exceeded") {
		t.Errorf("full@: %q, want Dovecot's text", text)
	}

	md := filepath.Join(mail, "example.org", "alice", "Maildir", "new")
	var stored string
	deadline := time.Now().Add(10 * time.Second)
	for stored == "" {
		names, _ := filepath.Glob(filepath.Join(md, "*"))
		for _, n := range names {
			if b, err := os.ReadFile(n); err == nil && strings.Contains(string(b), m.ID) {
				stored = string(b)
			}
		}
		if stored == "" && time.Now().After(deadline) {
			t.Fatalf("no message in %s", md)
		}
		time.Sleep(20 * time.Millisecond)
	}
	head, _, _ := strings.Cut(stored, "\nFrom: ")
	t.Logf("stored by Dovecot with:\n%s", head)
	dv := strings.Index(head, "by dovecot.test")
	fr := strings.Index(head, "by lmtpd.example.test")
	if dv < 0 || fr < 0 || fr < dv {
		t.Errorf("want Dovecot's Received field above the front's")
	}
	// XCLIENT ADDR: Dovecot names the original client's address, not
	// the front's.
	if dvField := head[strings.LastIndex(head[:dv], "Received: "):dv]; !strings.Contains(dvField, "[127.0.0.2]") {
		t.Errorf("Dovecot's Received field %q does not name the original client's address (XCLIENT not passed on)", dvField)
	}
	if !strings.HasSuffix(stored, string(m.Stored)) {
		t.Errorf("the stored message is not the message sent")
	}
}
