package protocol_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/lmtpd/lmtpd/protocol"
)

// quotaBackend is a tiny LMTP backend for the example: it refuses
// "nobody" at RCPT and finds "full"'s mailbox full after the message.
type quotaBackend struct{}

func (quotaBackend) Mail(context.Context, *protocol.ConnState, protocol.Address, *protocol.MailParams) (protocol.Transaction, error) {
	return quotaTx{}, nil
}

type quotaTx struct{}

func (quotaTx) Rcpt(ctx context.Context, r *protocol.Recipient) error {
	if r.Address.LocalPart == "nobody" {
		return protocol.NewError(550, protocol.EnhancedCode{5, 1, 1}, "No such user")
	}
	return nil
}

func (quotaTx) Data(ctx context.Context, m *protocol.Message, st protocol.StatusSetter) error {
	if _, err := io.Copy(io.Discard, m.Body); err != nil {
		return err
	}
	for i, r := range m.Recipients {
		if r.Address.LocalPart == "full" {
			st.Set(i, protocol.NewError(552, protocol.EnhancedCode{5, 2, 2}, "Mailbox full"))
		}
	}
	return nil
}

func (quotaTx) Close() error { return nil }

// Send one message over LMTP and get one status per recipient (RFC 2033):
// refused at RCPT, refused after the message, or delivered. A proxy
// relays each status's *Error as that recipient's reply.
func ExampleClient_Send() {
	srv := &protocol.Server{Protocol: protocol.LMTP, Hostname: "backend.test", Backend: quotaBackend{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := protocol.Dial(ctx, l.Addr().String(), &protocol.ClientOptions{Protocol: protocol.LMTP, LocalName: "front.test"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Quit(ctx)

	from, _ := protocol.ParseAddress("alice@example.org")
	var rcpts []*protocol.Recipient
	for _, s := range []string{"bob@example.test", "nobody@example.test", "full@example.test", "carol@example.test"} {
		a, _ := protocol.ParseAddress(s)
		rcpts = append(rcpts, &protocol.Recipient{Address: a})
	}
	// LF line endings are sent as CRLF; the body is streamed, not buffered.
	body := strings.NewReader("Subject: Hello\n\nHi all.\n")
	statuses, err := c.Send(ctx, from, &protocol.MailParams{Body: protocol.Body8BitMIME}, rcpts, body)
	if err != nil {
		log.Fatal(err)
	}
	for i, st := range statuses {
		if e := protocol.AsError(st.Err); e != nil {
			fmt.Printf("%s: %d %s %s\n", rcpts[i].Address, e.Code, e.EnhancedCode, e.Message)
			continue
		}
		fmt.Printf("%s: delivered (%s)\n", rcpts[i].Address, st.Reply.EnhancedCode)
	}
	// Output:
	// bob@example.test: delivered (2.0.0)
	// nobody@example.test: 550 5.1.1 No such user
	// full@example.test: 552 5.2.2 <full@example.test> Mailbox full
	// carol@example.test: delivered (2.0.0)
}

// Submit over SMTP with STARTTLS and AUTH PLAIN, step by step.
func ExampleDial() {
	ctx := context.Background()
	c, err := protocol.Dial(ctx, "mail.example.org:587", &protocol.ClientOptions{
		LocalName:  "client.example.org",
		TLSConfig:  &tls.Config{}, // STARTTLS; ServerName comes from the address
		RequireTLS: true,          // fail rather than send in plain text
		Chunking:   true,          // BDAT when the server offers CHUNKING
		Logger:     nil,           // a *zerolog.Logger to trace the wire
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(ctx, sasl.NewPlainClient("", "alice", "secret")); err != nil {
		log.Fatal(err) // a refusal is a *protocol.Error: 535 5.7.8 ...
	}
	from, _ := protocol.ParseAddress("alice@example.org")
	to, _ := protocol.ParseAddress("bob@example.net")
	if err := c.Mail(ctx, from, &protocol.MailParams{Return: protocol.DSNReturnHeaders}); err != nil {
		log.Fatal(err)
	}
	if err := c.Rcpt(ctx, to, &protocol.RcptParams{Notify: []protocol.DSNNotify{protocol.DSNNotifyFailure}}); err != nil {
		log.Fatal(err)
	}
	st, err := c.Data(ctx, strings.NewReader("Subject: hi\n\nHello Bob.\n"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st[0].Reply)
	c.Quit(ctx)
}

// A proxy passes the original client on with XCLIENT (Dovecot's LMTP and
// Postfix's smtpd offer it), or XFORWARD, before the transaction.
func ExampleClient_XClient() {
	ctx := context.Background()
	c, err := protocol.Dial(ctx, "unix:/run/dovecot/lmtp", &protocol.ClientOptions{Protocol: protocol.LMTP})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Quit(ctx)
	switch {
	case c.XClientAttributes() != nil:
		// Only the attributes the server offered are sent; the server
		// greets again and the client repeats LHLO.
		err = c.XClient(ctx, &protocol.XClientAttrs{Addr: "192.0.2.10", Port: "52114", Helo: "client.example", Proto: "ESMTP"})
	case c.XForwardAttributes() != nil:
		err = c.XForward(ctx, &protocol.XForward{Addr: "192.0.2.10", Helo: "client.example", Proto: "ESMTP"})
	}
	if err != nil {
		log.Fatal(err)
	}
	// ... c.Send(...)
}
