//go:build linux

package peers

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

// clientDomains: two mailboxes, an unknown user refused at RCPT, and a
// user whose pipe exits 75 (EX_TEMPFAIL), which fails after the message.
const clientDomains = `
[[domain]]
name = "example.test"
users = ["alice", "bob"]

[[domain.user]]
name = "deferred"
[domain.user.route.pipe]
argv = ["/bin/sh", "-c", "cat >/dev/null; exit 75"]
`

func clientRcpts(t *testing.T, addrs ...string) []*protocol.Recipient {
	var rs []*protocol.Recipient
	for _, s := range addrs {
		a, err := protocol.ParseAddress(s)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, &protocol.Recipient{Address: a})
	}
	return rs
}

func statusLine(s protocol.RcptStatus) string {
	if s.Err == nil {
		return "250"
	}
	if e := protocol.AsError(s.Err); e != nil {
		return strings.SplitN(e.Error(), " ", 3)[0] + " " + e.EnhancedCode.String()
	}
	return "error: " + s.Err.Error()
}

// TestClientAgainstLmtpd drives the real lmtpd with protocol.Client: over
// the LMTP unix socket one status per recipient with failures in the
// middle (RCPT and after the message), over SMTP the one folded reply;
// pipelined, with DATA and BDAT, the connection reused.
func TestClientAgainstLmtpd(t *testing.T) {
	d := newDaemon(t, daemonOptions{Domains: clientDomains})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from, _ := protocol.ParseAddress("sender@example.net")
	body := "Subject: client\n\n.dot line\nbody\n"

	for _, chunking := range []bool{false, true} {
		c, err := protocol.Dial(ctx, "unix:"+d.Socket, &protocol.ClientOptions{Protocol: protocol.LMTP, LocalName: "front.test", Chunking: chunking, ChunkSize: 8})
		if err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 2; round++ {
			st, err := c.Send(ctx, from, nil, clientRcpts(t, "alice@example.test", "nobody@example.test", "deferred@example.test", "bob@example.test"), strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range st {
				got = append(got, statusLine(s))
			}
			if g := strings.Join(got, ", "); !strings.HasPrefix(g, "250, 550 5.1.1, 4") || !strings.HasSuffix(g, ", 250") {
				t.Errorf("LMTP chunking=%v: statuses %s", chunking, g)
			}
		}
		if err := c.Quit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	files := waitFiles(t, d.mailbox("alice@example.test"), 4, 10*time.Second)
	for _, f := range files {
		if got := string(readFile(t, f)); !strings.Contains(got, "Subject: client\n\n.dot line\nbody\n") {
			t.Errorf("stored %q", got)
		}
	}

	c, err := protocol.Dial(ctx, d.SMTPAddr, &protocol.ClientOptions{LocalName: "front.test"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Send(ctx, from, nil, clientRcpts(t, "alice@example.test", "nobody@example.test", "bob@example.test"), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if g := statusLine(st[0]) + ", " + statusLine(st[1]) + ", " + statusLine(st[2]); g != "250, 550 5.1.1, 250" {
		t.Errorf("SMTP statuses %s", g)
	}
	st, err = c.Send(ctx, from, nil, clientRcpts(t, "alice@example.test", "deferred@example.test"), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Reply != st[1].Reply || !strings.HasPrefix(statusLine(st[0]), "4") {
		t.Errorf("SMTP with a deferred recipient: %s, %s", statusLine(st[0]), statusLine(st[1]))
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}
