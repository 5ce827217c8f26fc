//go:build linux

package peers

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestXClient runs XCLIENT against the real daemon: over the LMTP unix
// socket (always trusted) the stored message's Received field and the
// session's log lines name the client the proxy claimed, and the log
// keeps the real peer; the untrusted SMTP listener neither offers nor
// accepts XCLIENT.
func TestXClient(t *testing.T) {
	d := newDaemon(t, daemonOptions{})

	c := dialWire(t, "unix", d.Socket)
	if r := c.Expect("LHLO proxy.example.test", 250); !strings.Contains(r.Text(), "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT TTL") {
		t.Fatalf("XCLIENT not offered on the unix socket: %v", r)
	}
	c.Expect("XCLIENT NAME=client.example.net ADDR=IPV6:2001:db8::77 PORT=40123 PROTO=ESMTP HELO=helo.example.net", 220)
	c.Expect("XCLIENT LOGIN=alice+40example.test TTL=2", 220)
	msg := buildMessage("xclient", "sender@example.org", "bob@example.test", "xclient", []byte("hello\n"), nil)
	rr, dr, err := c.lmtpSend("sender@example.org", []string{"bob@example.test"}, msg.Wire)
	if err != nil || len(rr) != 1 || rr[0].Code != 250 || len(dr) != 1 || dr[0].Code != 250 {
		t.Fatalf("delivery: %v %v %v", rr, dr, err)
	}
	files := waitFiles(t, d.mailbox("bob@example.test"), 1, 10*time.Second)
	stored := string(readFile(t, files[0]))
	want := regexp.MustCompile(`(?m)^Received: from helo\.example\.net \(client\.example\.net \[2001:db8::77\]\)\r?\n\tby lmtpd\.example\.test \(lmtpd\) with LMTPA\r?$`)
	if !want.MatchString(stored) {
		t.Errorf("stored message lacks the client in its Received field:\n%s", clip([]byte(stored), 2000))
	}
	c.Expect("QUIT", 221)
	if !d.logEventually(5*time.Second, `"client":"client.example.net[2001:db8::77]:40123"`, `"peer":"unix:`, `"to":"bob@example.test"`) {
		t.Errorf("the delivery log line lacks the client or the peer:\n%s", d.logTail(30))
	}

	s := dialWire(t, "tcp", d.SMTPAddr)
	if r := s.Expect("EHLO client.example.test", 250); strings.Contains(r.Text(), "XCLIENT") {
		t.Errorf("XCLIENT offered to an untrusted peer: %v", r)
	}
	if r := s.Expect("XCLIENT ADDR=192.0.2.1", 550); !strings.HasPrefix(r.Text(), "5.7.0 ") {
		t.Errorf("untrusted XCLIENT: %v", r)
	}
}
