package protocol_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/lmtpd/lmtpd/protocol"
)

// An LMTP server on a unix socket in a few lines: every message is handed
// to a function; its error (nil here) is the reply for every recipient.
func ExampleServer_lmtp() {
	dir, _ := os.MkdirTemp("", "lmtp")
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "lmtp.sock")

	srv := &protocol.Server{
		Protocol: protocol.LMTP,
		Hostname: "lda.example.test",
		Backend: &protocol.HandlerBackend{Handler: protocol.HandlerFunc(
			func(ctx context.Context, m *protocol.Message) error {
				body, err := io.ReadAll(m.Body)
				fmt.Printf("%s for %d recipient(s): %q\n", m.Header().Get("Subject"), len(m.Recipients), body)
				return err
			})},
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	// Any LMTP client will do; this one is github.com/emersion/go-smtp's.
	conn, _ := net.Dial("unix", socket)
	c := gosmtp.NewClientLMTP(conn)
	msg := "Subject: Hello\r\n\r\nHi Bob.\r\n"
	if err := c.SendMail("alice@example.org", []string{"bob@example.test"}, strings.NewReader(msg)); err != nil {
		log.Fatal(err)
	}
	c.Quit()
	// Output: Hello for 1 recipient(s): "Hi Bob.\r\n"
}

// An SMTP handler that logs the subject of each message and refuses
// recipients outside one domain.
func ExampleHandlerFunc() {
	backend := &protocol.HandlerBackend{
		Handler: protocol.HandlerFunc(func(ctx context.Context, m *protocol.Message) error {
			fmt.Printf("from %s: %s\n", m.From, m.Header().Get("Subject"))
			_, err := io.Copy(io.Discard, m.Body)
			return err
		}),
		CheckRecipient: func(ctx context.Context, c *protocol.ConnState, from protocol.Address, r *protocol.Recipient) error {
			if !strings.EqualFold(r.Address.Domain, "example.test") {
				return protocol.NewError(550, protocol.EnhancedCode{5, 7, 1}, "Relay access denied")
			}
			return nil
		},
	}
	srv := &protocol.Server{Hostname: "mx.example.test", Backend: backend}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()

	// The standard library's client.
	err := smtp.SendMail(l.Addr().String(), nil, "alice@example.org",
		[]string{"bob@example.test"}, []byte("Subject: Greetings\r\n\r\nHello.\r\n"))
	fmt.Println("sent:", err)
	err = smtp.SendMail(l.Addr().String(), nil, "alice@example.org",
		[]string{"carol@elsewhere.example"}, []byte("Subject: Nope\r\n\r\n.\r\n"))
	fmt.Println("refused:", err)
	// Output:
	// from alice@example.org: Greetings
	// sent: <nil>
	// refused: 550 "5.7.1 Relay access denied"
}
