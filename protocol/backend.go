package protocol

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"

	"github.com/emersion/go-message/textproto"
)

// Backend accepts transactions. It is the one thing a Server needs to be
// given; everything else has working defaults.
//
// Methods are called from the connection's goroutine, many connections at
// once, so a Backend must be safe for concurrent use. Every call receives a
// context that is cancelled when the client goes away or the server shuts
// down; zerolog.Ctx(ctx) returns the session's logger, which carries the
// session id on every line.
type Backend interface {
	// Mail starts a transaction for MAIL FROM. conn describes the
	// connection and stays valid until the connection closes; backends
	// must not modify it. A non-nil error rejects the sender: an *Error is
	// sent as it is, anything else as a generic temporary failure.
	Mail(ctx context.Context, conn *ConnState, from Address, params *MailParams) (Transaction, error)
}

// Transaction is one mail transaction, MAIL FROM to the end of DATA or the
// last BDAT, or to RSET, a new MAIL or the end of the connection.
//
// The server calls Close exactly once, whatever happens, and calls no other
// method after it. A Transaction is used from one goroutine at a time.
type Transaction interface {
	// Rcpt decides about one recipient. A nil error accepts it; the
	// recipient then takes the next index in Message.Recipients. Duplicate
	// recipients are passed again: LMTP replies once per accepted RCPT,
	// duplicates included (RFC 2033 section 4.2). After refusing a
	// recipient the backend must not keep rcpt: the server reuses it, so
	// that refusals cost no memory.
	Rcpt(ctx context.Context, rcpt *Recipient) error

	// Data delivers msg to every accepted recipient. It is called once, with
	// at least one recipient. The backend reports the outcome of recipient i
	// (an index into msg.Recipients) with status.Set(i, err) as soon as it
	// is known: in LMTP mode that reply is written at once (in RCPT order).
	// Every recipient left without a status when Data returns gets Data's
	// return value: nil means delivered.
	//
	// msg.Body is valid only until Data returns. A read error from it (size
	// limit, bare line ending, timeout, lost connection) means the message
	// is incomplete: the backend must not deliver it and should return the
	// error; the server answers for it in any case.
	Data(ctx context.Context, msg *Message, status StatusSetter) error

	// Close ends the transaction and releases what it holds. After Stage
	// without Commit it discards the staged message.
	Close() error
}

// Stager is implemented by a Transaction that can deliver in two phases.
// In SMTP mode the server prefers it to Data: it stages the message for
// every recipient, and commits only if all were staged, which makes the one
// SMTP reply all-or-nothing. LMTP mode always uses Data, since it answers
// per recipient anyway.
type Stager interface {
	// Stage reads msg and prepares delivery to every accepted recipient
	// without making the message visible to anyone. A non-nil error means
	// nothing will be delivered; the server then calls Close.
	Stage(ctx context.Context, msg *Message) error
	// Commit makes the staged message visible for every recipient. A
	// backend should make this step as small as it can (a rename per
	// recipient); if Commit fails part way, the server answers with a
	// temporary failure so that nothing is lost, at the cost of a possible
	// duplicate for the recipients already committed.
	Commit(ctx context.Context) error
}

// StatusSetter receives per-recipient outcomes from Transaction.Data.
// It is safe for concurrent use.
type StatusSetter interface {
	// Set records the outcome for recipient i: nil for delivered, an
	// *Error for a specific reply, any other error for a generic temporary
	// failure. Only the first call for an index counts.
	Set(i int, err error)
}

// ConnChecker may be implemented by a Backend to refuse a connection
// before the greeting (for example by client address). A non-nil error is
// sent instead of the greeting (as 554 if it is not an *Error with a code).
// After a 4xx (421) the connection is closed; after a 5xx the session
// waits for QUIT and answers every other command 503 5.5.1 (RFC 5321
// section 3.1), within the command timeout and the error budget.
type ConnChecker interface {
	CheckConn(ctx context.Context, conn *ConnState) error
}

// Protocol is the dialect a Server speaks.
type Protocol int

const (
	// SMTP is RFC 5321 SMTP with EHLO and HELO, one reply per message.
	SMTP Protocol = iota
	// LMTP is RFC 2033 LMTP with LHLO, one reply per recipient.
	LMTP
)

// String returns "SMTP" or "LMTP".
func (p Protocol) String() string {
	if p == LMTP {
		return "LMTP"
	}
	return "SMTP"
}

// XForward holds the attributes a trusted proxy (Postfix) sent with
// XFORWARD, describing the original client. Empty fields were not sent or
// were [UNAVAILABLE]. See Postfix's XFORWARD_README.
type XForward struct {
	Name   string // client host name, verified by the proxy
	Addr   string // client address (IPv4, or IPv6 without the IPV6: prefix)
	Port   string // client port
	Helo   string // HELO/EHLO name the client sent
	Proto  string // SMTP or ESMTP
	Ident  string // proxy's queue id for the message
	Source string // LOCAL or REMOTE
}

// IsZero reports whether nothing was forwarded.
func (x *XForward) IsZero() bool { return *x == XForward{} }

// ConnState describes a connection. The server updates it as the session
// progresses (HELO, STARTTLS, AUTH, XFORWARD, XCLIENT); a backend receives a pointer
// and may read it, but must not keep it past the connection.
type ConnState struct {
	// ID is the session id, unique per process run; it appears on every log
	// line of the connection and in generic error replies.
	ID string
	// Protocol is the listener's dialect.
	Protocol Protocol
	// RemoteAddr is the client's address: the socket's peer, or after
	// XCLIENT the address and port the trusted proxy gave (nil when it
	// said the address is [UNAVAILABLE]). LocalAddr is the socket's local
	// address (a proxy's DESTADDR and DESTPORT are in XClient).
	RemoteAddr, LocalAddr net.Addr
	// PeerAddr is the socket's remote address, which XCLIENT does not
	// change: the proxy's after XCLIENT. The trust decision and the limits
	// per client address (MaxConnectionsPerIP, MaxAuthFailuresPerIP) use
	// the socket's peer.
	PeerAddr net.Addr
	// Hostname is the client's HELO name: the argument of the last HELO,
	// EHLO or LHLO, or the HELO an XCLIENT gave, which the EHLO or LHLO
	// after it (the proxy's own greeting) does not replace.
	Hostname string
	// ESMTP is true after EHLO or LHLO, false after HELO.
	ESMTP bool
	// TLS is the TLS state after STARTTLS or on an implicit-TLS listener;
	// nil on a plain connection.
	TLS *tls.ConnectionState
	// AuthIdentity is the authenticated user after a successful AUTH, or
	// the LOGIN an XCLIENT gave.
	AuthIdentity string
	// XForward holds the XFORWARD attributes of the current transaction.
	XForward XForward
	// XClient holds the XCLIENT attributes of the session: who the client
	// is, as a trusted proxy said; zero without XCLIENT.
	XClient XClient
}

// Message is what a backend receives after DATA or the last BDAT.
//
// The Message and everything it points to belong to the server and stay
// valid until the transaction's Close; a backend that keeps any of it
// longer copies it (Header().Copy(), for example).
type Message struct {
	// ID is the transaction id, the session id with a sequence number; it
	// is used as the queue id in logs and in the Received header.
	ID string
	// Conn is the connection the message came in on.
	Conn *ConnState
	// From is the reverse-path and Params its MAIL parameters.
	From   Address
	Params *MailParams
	// Recipients are the accepted recipients in RCPT order, duplicates
	// included. Status indexes refer to this slice.
	Recipients []*Recipient
	// Body is the rest of the message after the header's blank line, with
	// CRLF line endings, dot-unstuffed, streamed from the client: reading
	// it reads the connection. It is valid only during Data or Stage. Its
	// read errors are *Error values (ErrMessageTooBig, ErrBareLineEnding,
	// ErrDataTimeout, ErrConnectionLost, ...).
	Body io.Reader

	// hdr is shared by copies of the Message, so that a wrapper that
	// copies it to replace Body sees the same header.
	hdr *headerState
}

// headerState is a message's header section and, once parsed, its
// go-message form.
type headerState struct {
	raw    []byte // the header section, Received on top, blank line last
	top    int    // length of the server's own Received field at the start of raw
	own    []byte // the "(Software)" comment of the server's Received fields, for ProxyHop
	once   sync.Once
	header textproto.Header
}

// Header returns the message header parsed by go-message, with the
// server's Received field on top. The server reads the header section
// (under Server.MaxHeaderBytes) before the backend is called, but parses
// it only on the first call of Header, so a backend that never looks at
// the header does not pay for it; later calls, also on copies of the
// Message, return the same header.
//
// The backend may change it (delete Return-Path, add Delivered-To) and
// write it out with textproto.WriteHeader; fields it does not touch keep
// their raw bytes, so a DKIM signature stays valid. Header is safe to call
// from several goroutines; the header it returns is not safe to change
// concurrently.
func (m *Message) Header() *textproto.Header {
	if m.hdr == nil {
		m.hdr = new(headerState)
	}
	h := m.hdr
	h.once.Do(func() { h.header = parseHeader(h.raw) })
	return &h.header
}

// RawHeader returns the header section byte for byte as the client sent
// it, with the server's Received field on top and the empty line that ends
// the section last if the client sent one (see HasBlankLine): what a
// backend writes before Body to store the message unchanged. It does not
// follow changes made through Header. The slice must not be modified.
func (m *Message) RawHeader() []byte {
	if m.hdr == nil {
		return nil
	}
	return m.hdr.raw
}

// HasBlankLine reports whether the client ended the header section with
// the empty line that separates it from the body (RFC 5322 section 2.1).
// It is false for a message of header fields only (no empty line, no
// body) and for one whose first body line followed the fields directly.
// textproto.WriteHeader always writes the empty line, so a backend that
// stores the message as it came leaves it out when this is false. A
// Message without a header read by a Server (zero, or built with
// SetHeader) reports true.
func (m *Message) HasBlankLine() bool {
	if m.hdr == nil || m.hdr.raw == nil {
		return true
	}
	return hasBlankLine(m.hdr.raw)
}

// SetHeader sets the header of a Message built outside a Server, such as a
// local delivery command or a test; Header then returns h and RawHeader
// its serialization (nil if h has a field, added with Add, that cannot be
// written). A Server's backends do not need it.
func (m *Message) SetHeader(h textproto.Header) {
	st := &headerState{header: h}
	st.once.Do(func() {})
	var b bytes.Buffer
	if textproto.WriteHeader(&b, h) == nil {
		st.raw = b.Bytes()
	}
	m.hdr = st
}
