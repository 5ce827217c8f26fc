package protocol

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
)

// benchSinkBackend reads each message and accepts it for every recipient.
type benchSinkBackend struct{}

func (benchSinkBackend) Mail(context.Context, *ConnState, Address, *MailParams) (Transaction, error) {
	return benchSinkTx{}, nil
}

type benchSinkTx struct{}

func (benchSinkTx) Rcpt(context.Context, *Recipient) error { return nil }
func (benchSinkTx) Data(_ context.Context, m *Message, _ StatusSetter) error {
	_, err := io.Copy(io.Discard, m.Body)
	return err
}
func (benchSinkTx) Close() error { return nil }

// BenchmarkClientSend: pipelined LMTP transactions of a 10 KB message to
// two recipients over loopback, one connection reused, against lmtpd's
// own server with a backend that discards.
func BenchmarkClientSend(b *testing.B) {
	for _, chunking := range []bool{false, true} {
		name := map[bool]string{false: "DATA", true: "BDAT"}[chunking]
		b.Run(name, func(b *testing.B) {
			s := &Server{Protocol: LMTP, Backend: benchSinkBackend{}, DisableReceived: true}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go s.Serve(l)
			defer s.Close()
			ctx := context.Background()
			c, err := Dial(ctx, l.Addr().String(), &ClientOptions{Protocol: LMTP, Chunking: chunking})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			body := "Subject: bench\n\n" + strings.Repeat(strings.Repeat("x", 99)+"\n", 100)
			rcpts := rcptList(b, "a@example.org", "b@example.org")
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				st, err := c.Send(ctx, Address{}, nil, rcpts, strings.NewReader(body))
				if err != nil || st[0].Err != nil || st[1].Err != nil {
					b.Fatal(err, st)
				}
			}
		})
	}
}
