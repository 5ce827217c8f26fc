//go:build linux

package peers

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/internal/dovecottest"
	"github.com/lmtpd/lmtpd/protocol"
)

// TestProxyToDovecot: lmtpd in front of Dovecot's LMTP. Over the front's
// TCP listener, one transaction to alice, an unknown user and one over
// quota gets Dovecot's own replies per recipient (250, 550 5.1.1, 552
// 5.2.2 with Dovecot's text); Dovecot, which offers XCLIENT to the
// trusted front, records the original client's address in its Received
// field, and the front's Received field is below it.
func TestProxyToDovecot(t *testing.T) {
	dl := dovecottest.StartLMTP(t)
	dovecot, mail := dl.Addr, dl.Mail
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
