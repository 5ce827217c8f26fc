package delivery

import (
	"context"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
)

// BenchmarkData delivers one small message per iteration through Rcpt and
// Data to maildirs (three mailboxes, one duplicate) and a pipe command, so
// that a change in the routing or the staging path shows in ns/op and
// allocs/op. The file system is a real temporary directory.
func BenchmarkData(b *testing.B) {
	for _, bc := range []struct {
		name  string
		rcpts []string
	}{
		{"maildir-1", []string{"bob@example.org"}},
		{"maildir-4", []string{"bob@example.org", "Alice@example.org", "zed@example.net", "BOB@example.org"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			root := b.TempDir()
			r := newRouter(b, testConfig(root), Options{})
			ctx := context.Background()
			text := testText + strings.Repeat("some body text for the benchmark\r\n", 100)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tx, err := r.Mail(ctx, conn(protocol.LMTP), addr("s@example.com"), &protocol.MailParams{})
				if err != nil {
					b.Fatal(err)
				}
				for _, rc := range bc.rcpts {
					if err := tx.Rcpt(ctx, &protocol.Recipient{Address: addr(rc)}); err != nil {
						b.Fatal(err)
					}
				}
				st := &statuses{}
				if err := tx.Data(ctx, message(b, "s@example.com", bc.rcpts, text), st); err != nil {
					b.Fatal(err)
				}
				for j := range bc.rcpts {
					if e, _ := st.get(j); e != nil {
						b.Fatal(e)
					}
				}
				tx.Close()
			}
		})
	}
}
