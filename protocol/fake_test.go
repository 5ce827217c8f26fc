package protocol

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
)

// fakeBackend records what it received and fails per recipient on demand,
// by the local part of the recipient:
//
//	unknown*   rejected at RCPT with 550 5.1.1
//	rcpttemp*  rejected at RCPT with 451 4.3.0
//	temp*      accepted, then 452 4.2.2 at delivery
//	perm*      accepted, then 554 5.3.0 at delivery
//	internal*  accepted, then a plain (non-*Error) error at delivery
//	early*     status set before the body is read (as a pipe that exits 0 early)
//	slow*      delivery waits for the context or 10 s
//	forward*   handed on to a proxying server, as a forwarding target
//	           would be: ProxyHop decides at RCPT and at delivery, and
//	           the TTL it gives is recorded (fakeMessage.ProxyTTL)
//
// Senders whose local part is "badsender" are rejected with 553 5.7.1.
type fakeBackend struct {
	mu       sync.Mutex
	msgs     []*fakeMessage
	closed   int
	stage    bool // transactions implement Stager
	readBody bool // read the body (default true via newFakeBackend)
	// rereader reads on after a read error, up to EOF or 1000 reads, as
	// bufio.Reader.WriteTo does after an error that came with data.
	rereader bool
	ctxErrs  []error
}

type fakeMessage struct {
	ID     string
	From   string
	Rcpts  []string
	Params MailParams
	Header textproto.Header
	Body   []byte
	Err    error // read error seen
	Conn   ConnState
	// ProxyTTL is the TTL ProxyHop gave the last forward* recipient
	// (-1: none, or it was refused).
	ProxyTTL int
}

// Text returns the header as written plus the body.
func (m *fakeMessage) Text() string {
	var b bytes.Buffer
	textproto.WriteHeader(&b, m.Header)
	b.Write(m.Body)
	return b.String()
}

func newFakeBackend() *fakeBackend { return &fakeBackend{readBody: true} }

func (b *fakeBackend) Mail(ctx context.Context, conn *ConnState, from Address, params *MailParams) (Transaction, error) {
	if from.LocalPart == "badsender" {
		return nil, NewError(553, EnhancedCode{5, 7, 1}, "Sender not allowed")
	}
	t := &fakeTx{b: b, from: from, conn: conn}
	if b.stage {
		return &fakeStagingTx{t}, nil
	}
	return t, nil
}

func (b *fakeBackend) messages() []*fakeMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*fakeMessage(nil), b.msgs...)
}

type fakeTx struct {
	b      *fakeBackend
	conn   *ConnState
	from   Address
	rcpts  []*Recipient
	staged *fakeMessage
	closed bool
}

func (t *fakeTx) Rcpt(ctx context.Context, r *Recipient) error {
	lp := r.Address.DecodedLocalPart()
	switch {
	case strings.HasPrefix(lp, "unknown"):
		return NewError(550, EnhancedCode{5, 1, 1}, "No such user")
	case strings.HasPrefix(lp, "rcpttemp"):
		return NewError(451, EnhancedCode{4, 3, 0}, "Lookup failed")
	case strings.HasPrefix(lp, "forward"):
		if _, err := ProxyHop(t.conn, nil); err != nil {
			return err
		}
	}
	t.rcpts = append(t.rcpts, r)
	return nil
}

func (t *fakeTx) receive(ctx context.Context, msg *Message) (*fakeMessage, error) {
	m := &fakeMessage{ID: msg.ID, From: msg.From.String(), Params: *msg.Params, Header: msg.Header().Copy(), Conn: *msg.Conn, ProxyTTL: -1}
	for _, r := range msg.Recipients {
		m.Rcpts = append(m.Rcpts, r.Address.String())
	}
	var err error
	switch {
	case t.b.rereader:
		var body bytes.Buffer
		p := make([]byte, 7)
		for range 1000 {
			n, rerr := msg.Body.Read(p)
			body.Write(p[:n])
			if rerr == io.EOF {
				break
			}
			if rerr != nil && err == nil {
				err = rerr
			}
		}
		m.Body, m.Err = body.Bytes(), err
	case t.b.readBody:
		m.Body, err = io.ReadAll(msg.Body)
		m.Err = err
	}
	return m, err
}

func (t *fakeTx) Data(ctx context.Context, msg *Message, status StatusSetter) error {
	for i, r := range msg.Recipients {
		if strings.HasPrefix(r.Address.LocalPart, "early") {
			status.Set(i, nil)
		}
	}
	m, err := t.receive(ctx, msg)
	if err != nil {
		return err
	}
	for i, r := range msg.Recipients {
		lp := r.Address.DecodedLocalPart()
		switch {
		case strings.HasPrefix(lp, "temp"):
			status.Set(i, NewError(452, EnhancedCode{4, 2, 2}, "Mailbox full"))
		case strings.HasPrefix(lp, "perm"):
			status.Set(i, NewError(554, EnhancedCode{5, 3, 0}, "Delivery failed"))
		case strings.HasPrefix(lp, "internal"):
			status.Set(i, errors.New("disk exploded at /secret/path"))
		case strings.HasPrefix(lp, "forward"):
			ttl, err := ProxyHop(msg.Conn, msg)
			if err != nil {
				status.Set(i, err)
				m.ProxyTTL = -1
			} else {
				m.ProxyTTL = ttl
			}
		case strings.HasPrefix(lp, "slow"):
			select {
			case <-ctx.Done():
				t.b.mu.Lock()
				t.b.ctxErrs = append(t.b.ctxErrs, context.Cause(ctx))
				t.b.mu.Unlock()
				return context.Cause(ctx)
			case <-time.After(10 * time.Second):
			}
		}
	}
	t.b.mu.Lock()
	t.b.msgs = append(t.b.msgs, m)
	t.b.mu.Unlock()
	return nil
}

func (t *fakeTx) Close() error {
	if t.closed {
		panic("Transaction.Close called twice")
	}
	t.closed = true
	t.b.mu.Lock()
	t.b.closed++
	t.b.mu.Unlock()
	return nil
}

// fakeStagingTx adds Stager: a "perm" or "temp" recipient fails Stage.
type fakeStagingTx struct{ *fakeTx }

func (t *fakeStagingTx) Stage(ctx context.Context, msg *Message) error {
	m, err := t.receive(ctx, msg)
	if err != nil {
		return err
	}
	for _, r := range msg.Recipients {
		if strings.HasPrefix(r.Address.LocalPart, "perm") {
			return NewError(554, EnhancedCode{5, 3, 0}, "Staging failed")
		}
		if strings.HasPrefix(r.Address.LocalPart, "temp") {
			return NewError(452, EnhancedCode{4, 3, 1}, "Disk full")
		}
	}
	t.staged = m
	return nil
}

func (t *fakeStagingTx) Commit(ctx context.Context) error {
	t.b.mu.Lock()
	t.b.msgs = append(t.b.msgs, t.staged)
	t.b.mu.Unlock()
	return nil
}
