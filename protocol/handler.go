package protocol

import (
	"context"
)

// Handler is the simple way to use this package, for a program that only
// wants each message: it is called once per message with the envelope,
// the connection facts and the message stream, and its error decides the
// reply for every recipient (nil: 250). See HandlerBackend.
type Handler interface {
	ServeMessage(ctx context.Context, msg *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, msg *Message) error

// ServeMessage calls f(ctx, msg).
func (f HandlerFunc) ServeMessage(ctx context.Context, msg *Message) error { return f(ctx, msg) }

// HandlerBackend is a Backend built from a Handler and optional hooks.
// Its zero value with a Handler accepts every sender and recipient.
type HandlerBackend struct {
	// Handler receives each message. Required.
	Handler Handler
	// CheckSender, if set, decides about MAIL FROM.
	CheckSender func(ctx context.Context, conn *ConnState, from Address, params *MailParams) error
	// CheckRecipient, if set, decides about each RCPT TO.
	CheckRecipient func(ctx context.Context, conn *ConnState, from Address, rcpt *Recipient) error
}

// Mail implements Backend.
func (b *HandlerBackend) Mail(ctx context.Context, conn *ConnState, from Address, params *MailParams) (Transaction, error) {
	if b.CheckSender != nil {
		if err := b.CheckSender(ctx, conn, from, params); err != nil {
			return nil, err
		}
	}
	return &handlerTx{b: b, conn: conn, from: from}, nil
}

type handlerTx struct {
	b    *HandlerBackend
	conn *ConnState
	from Address
}

func (t *handlerTx) Rcpt(ctx context.Context, rcpt *Recipient) error {
	if t.b.CheckRecipient != nil {
		return t.b.CheckRecipient(ctx, t.conn, t.from, rcpt)
	}
	return nil
}

func (t *handlerTx) Data(ctx context.Context, msg *Message, _ StatusSetter) error {
	return t.b.Handler.ServeMessage(ctx, msg)
}

func (t *handlerTx) Close() error { return nil }

// ListenAndServe serves SMTP on the TCP address addr ("host:port") or, for
// "unix:/path", on a unix socket, handing every message to h.
func ListenAndServe(addr string, h Handler) error {
	s := &Server{Addr: addr, Backend: &HandlerBackend{Handler: h}}
	return s.ListenAndServe()
}

// ListenAndServeTLS is ListenAndServe on an implicit-TLS listener (RFC
// 8314) with the given certificate and key files.
func ListenAndServeTLS(addr, certFile, keyFile string, h Handler) error {
	s := &Server{Addr: addr, Backend: &HandlerBackend{Handler: h}}
	return s.ListenAndServeTLS(certFile, keyFile)
}
