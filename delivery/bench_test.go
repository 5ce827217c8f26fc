package delivery

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
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
		dedup bool
	}{
		{"maildir-1", []string{"bob@example.org"}, false},
		{"maildir-4", []string{"bob@example.org", "Alice@example.org", "zed@example.net", "BOB@example.org"}, false},
		// The dedup path: a journal lookup per recipient and the
		// journal's append (and fsync) before the reply.
		{"maildir-1-dedup", []string{"bob@example.org"}, true},
		{"maildir-4-dedup", []string{"bob@example.org", "Alice@example.org", "zed@example.net", "BOB@example.org"}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			root := b.TempDir()
			cfg := testConfig(root)
			if bc.dedup {
				cfg = dedupConfig(root, filepath.Join(b.TempDir(), "dedup.journal"))
			}
			r := newRouter(b, cfg, Options{})
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
				t := text
				if bc.dedup { // a new message each time, not a resend
					t = fmt.Sprintf("Message-ID: <b%d@example.com>\r\n", i) + text
				}
				if err := tx.Data(ctx, message(b, "s@example.com", bc.rcpts, t), st); err != nil {
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

// BenchmarkDedupParallel delivers new messages from concurrent sessions
// with the dedup journal on, so that the journal's group commit shows:
// concurrent deliveries share the fsync of their journal lines.
func BenchmarkDedupParallel(b *testing.B) {
	root := b.TempDir()
	r := newRouter(b, dedupConfig(root, filepath.Join(b.TempDir(), "dedup.journal")), Options{})
	ctx := context.Background()
	rcpts := []string{"bob@example.org"}
	var n atomic.Int64
	b.SetParallelism(4) // sessions per CPU: deliveries wait on fsyncs
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tx, err := r.Mail(ctx, conn(protocol.LMTP), addr("s@example.com"), &protocol.MailParams{})
			if err != nil {
				b.Error(err)
				return
			}
			if err := tx.Rcpt(ctx, &protocol.Recipient{Address: addr(rcpts[0])}); err != nil {
				b.Error(err)
				return
			}
			text := fmt.Sprintf("Message-ID: <p%d@example.com>\r\n", n.Add(1)) + testText
			st := &statuses{}
			if err := tx.Data(ctx, message(b, "s@example.com", rcpts, text), st); err != nil {
				b.Error(err)
				return
			}
			if e, _ := st.get(0); e != nil {
				b.Error(e)
				return
			}
			tx.Close()
		}
	})
}
