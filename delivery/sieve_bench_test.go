package delivery

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

// typicalScript is a 30-rule script of the kind users have: mailing lists
// into folders, spam into Junk, a few senders flagged, a vacation reply.
func typicalScript() string {
	var b strings.Builder
	b.WriteString(`require ["fileinto", "mailbox", "imap4flags", "vacation", "variables", "envelope", "subaddress", "regex"];` + "\n")
	b.WriteString(`if header :contains "X-Spam-Flag" "YES" { fileinto :create "Junk"; stop; }` + "\n")
	b.WriteString(`if header :regex "X-Spam-Score" "^[1-9][0-9]" { fileinto :create "Junk"; stop; }` + "\n")
	for i := range 20 {
		fmt.Fprintf(&b, "if header :contains \"List-Id\" \"list%d.lists.example.org\" { fileinto :create \"Lists.list%d\"; stop; }\n", i, i)
	}
	for i := range 5 {
		fmt.Fprintf(&b, "if address :is \"from\" \"boss%d@example.org\" { addflag \"\\\\Flagged\"; }\n", i)
	}
	b.WriteString(`if envelope :detail "to" "shop" { fileinto :create "Shopping"; stop; }` + "\n")
	b.WriteString(`if header :matches "Subject" "*[urgent]*" { addflag "$Urgent"; }` + "\n")
	b.WriteString(`vacation :days 7 :addresses ["bob@example.org"] :subject "Away" "I am away.";` + "\n")
	return b.String()
}

// BenchmarkSieveDelivery delivers one small message per iteration to one
// maildir recipient, without Sieve and with a cached 30-rule script
// (typicalScript; the message matches no list and its sender was answered
// already, so the script ends in an implicit keep after reading the
// vacation state). cpu-ns/op is the process's user and system CPU per
// message (getrusage), the number the 10 % target is about.
func BenchmarkSieveDelivery(b *testing.B) {
	for _, withSieve := range []bool{false, true} {
		name := "none"
		if withSieve {
			name = "30-rules"
		}
		b.Run(name, func(b *testing.B) {
			root := b.TempDir()
			cfg := testConfig(root)
			if withSieve {
				cfg.Sieve = SieveConfig{Enabled: true, Sendmail: []string{"/bin/true"}, StateDir: filepath.Join(b.TempDir(), "state")}
				dir := filepath.Join(root, "example.org", "bob")
				if err := os.MkdirAll(dir, 0o700); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, ".dovecot.sieve"), []byte(typicalScript()), 0o600); err != nil {
					b.Fatal(err)
				}
			}
			r := newRouter(b, cfg, Options{})
			ctx := context.Background()
			rcpts := []string{"bob@example.org"}
			text := "From: someone@remote.test\r\nTo: bob@example.org\r\nSubject: hello\r\nMessage-ID: <x@remote.test>\r\n\r\n" +
				strings.Repeat("some body text for the benchmark\r\n", 100)
			deliver := func() {
				tx, err := r.Mail(ctx, conn(protocol.LMTP), addr("someone@remote.test"), &protocol.MailParams{})
				if err != nil {
					b.Fatal(err)
				}
				if err := tx.Rcpt(ctx, &protocol.Recipient{Address: addr(rcpts[0])}); err != nil {
					b.Fatal(err)
				}
				st := &statuses{}
				if err := tx.Data(ctx, message(b, "someone@remote.test", rcpts, text), st); err != nil {
					b.Fatal(err)
				}
				if e, _ := st.get(0); e != nil {
					b.Fatal(e)
				}
				tx.Close()
			}
			deliver() // compiles the script, sends and records the vacation reply
			b.ReportAllocs()
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				deliver()
			}
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
