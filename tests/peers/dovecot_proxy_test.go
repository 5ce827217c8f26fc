//go:build linux

package peers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dovecotProxyConf is a Dovecot 2.3 LMTP proxy (lmtp_proxy with a static
// passdb that sends every recipient to one backend): the front of issue
// 16's "lmtpd as a backend of Dovecot's lmtp_proxy".
const dovecotProxyConf = `protocols = lmtp
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
ssl = no
hostname = proxy.example.test
lmtp_proxy = yes
passdb {
  driver = static
  args = proxy=y host=%[2]s port=%[3]s nopassword=y
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[1]s allow_all_users=yes
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[4]s
  }
  unix_listener lmtp {
    mode = 0666
  }
}
`

// startDovecotProxy starts a private Dovecot LMTP proxy in front of the
// LMTP server at backend (host:port) and returns its address.
func startDovecotProxy(t *testing.T, backend string) string {
	t.Helper()
	bin := requirePeer(t, "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/lmtp"); err != nil {
		missingPeer(t, "Dovecot's LMTP server is not installed (apt-get install dovecot-lmtpd)")
	}
	requireRoot(t, "a private Dovecot instance")
	dir := shortTempDir(t)
	for _, d := range []string{"run", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := net.SplitHostPort(backend)
	front := freePort(t)
	_, fport, _ := net.SplitHostPort(front)
	conf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(dovecotProxyConf, dir, host, port, fport)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Dovecot's master goes to the background with its children holding
	// stdout and stderr: a file, not a pipe, so that starting it returns.
	out, err := os.Create(filepath.Join(dir, "start.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	start := exec.Command(bin, "-c", conf)
	start.Stdout, start.Stderr = out, out
	if err := start.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("dovecot: %v: %s", err, b)
	}
	t.Cleanup(func() {
		exec.Command(bin, "-c", conf, "stop").Run()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot.log:\n%s", b)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", front, time.Second)
		if err == nil {
			c.Close()
			return front
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot proxy does not listen on %s: %v", front, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDovecotProxyXClient puts lmtpd behind Dovecot's LMTP proxy: Dovecot
// sees XCLIENT (with its TTL) in lmtpd's LHLO reply and sends the
// original client's HELO, address, port and TTL; lmtpd's Received field
// names the original client by the HELO it gave Dovecot (not Dovecot's
// own LHLO), and its log lines carry the client's port next to Dovecot's
// connection as the peer.
func TestDovecotProxyXClient(t *testing.T) {
	d := newDaemon(t, daemonOptions{LogLevel: "debug"})
	front := startDovecotProxy(t, d.LMTPAddr)

	c := dialWire(t, "tcp", front)
	msg := buildMessage("dovecot-proxy", "sender@example.org", "bob@tcp.example.test", "via dovecot", []byte("hello\n"), nil)
	rr, dr, err := c.lmtpSend("sender@example.org", []string{"bob@tcp.example.test", "carol@tcp.example.test"}, msg.Wire)
	if err != nil || len(rr) != 2 || len(dr) != 2 {
		t.Fatalf("through Dovecot: %v %v %v", rr, dr, err)
	}
	for i := range rr {
		if rr[i].Code != 250 || dr[i].Code != 250 {
			t.Fatalf("through Dovecot: RCPT %v, DATA %v", rr[i], dr[i])
		}
	}
	clientPort := c.conn.LocalAddr().(*net.TCPAddr).Port
	c.Expect("QUIT", 221)

	for _, rcpt := range []string{"bob@tcp.example.test", "carol@tcp.example.test"} {
		stored := string(readFile(t, waitFiles(t, d.mailbox(rcpt), 1, 10*time.Second)[0]))
		// lmtpd's field (under Return-Path) names the client as Dovecot's XCLIENT
		// described it; Dovecot's own field follows.
		top := regexp.MustCompile(`(?m)^Received: from client\.example\.test \(\[127\.0\.0\.1\]\)\r?\n\tby lmtpd\.example\.test \(lmtpd\) with LMTP\r?\n`)
		if !top.MatchString(stored) {
			t.Errorf("%s: lmtpd's Received field does not name the original client:\n%s", rcpt, clip([]byte(stored), 1500))
		}
		if !strings.Contains(stored, "\tby proxy.example.test with LMTP") {
			t.Errorf("%s: Dovecot's Received field is missing:\n%s", rcpt, clip([]byte(stored), 1500))
		}
	}
	client := fmt.Sprintf(`"client":"unknown[127.0.0.1]:%d"`, clientPort)
	if !d.logEventually(5*time.Second, `"message":"XCLIENT"`, client, `"client_helo":"client.example.test"`, `"client_proto":"LMTP"`, `"ttl_sent":true`, `"ttl":5`) {
		t.Errorf("no XCLIENT line with Dovecot's attributes (client port %d):\n%s", clientPort, d.logTail(40))
	}
	if !d.logEventually(5*time.Second, client, `"to":"carol@tcp.example.test"`) {
		t.Errorf("delivery log line without the original client:\n%s", d.logTail(40))
	}
	if d.logContains(client, fmt.Sprintf(`"peer":"127.0.0.1:%d"`, clientPort)) {
		t.Errorf("the peer logged is the original client, not Dovecot's connection")
	}
}
