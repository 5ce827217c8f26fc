package protocol

import (
	"errors"
	"fmt"
	"strconv"
)

// EnhancedCode is an RFC 3463 enhanced status code: class.subject.detail.
// The zero value means "no enhanced code"; the server then derives one from
// the basic code's class (X.0.0).
type EnhancedCode [3]int

// String formats c as "2.1.5".
func (c EnhancedCode) String() string {
	var b [16]byte
	return string(c.appendTo(b[:0]))
}

func (c EnhancedCode) appendTo(b []byte) []byte {
	b = strconv.AppendInt(b, int64(c[0]), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(c[1]), 10)
	b = append(b, '.')
	return strconv.AppendInt(b, int64(c[2]), 10)
}

// IsZero reports whether c is the zero value.
func (c EnhancedCode) IsZero() bool { return c == EnhancedCode{} }

// ParseEnhancedCode parses "4.2.2" into an EnhancedCode. The class must be
// 2, 4 or 5; subject and detail are 0-999 (RFC 3463 section 2).
func ParseEnhancedCode(s string) (EnhancedCode, error) {
	var c EnhancedCode
	part := 0
	n, digits := 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 || part > 2 {
				return EnhancedCode{}, fmt.Errorf("protocol: malformed enhanced status code %q", s)
			}
			c[part] = n
			part++
			n, digits = 0, 0
			continue
		}
		ch := s[i]
		if ch < '0' || ch > '9' || digits == 3 {
			return EnhancedCode{}, fmt.Errorf("protocol: malformed enhanced status code %q", s)
		}
		n = n*10 + int(ch-'0')
		digits++
	}
	if part != 3 || (c[0] != 2 && c[0] != 4 && c[0] != 5) || (c[0] != 0 && s[1] != '.') {
		return EnhancedCode{}, fmt.Errorf("protocol: malformed enhanced status code %q", s)
	}
	return c, nil
}

// Error is an SMTP reply that ends an operation: a basic reply code
// (RFC 5321 section 4.2), an enhanced status code (RFC 3463), a message
// that is safe to send to the client, and an optional cause that is only
// logged. Temporariness follows from the code class (4xx).
//
// Errors become replies in exactly one place, the session's reply writer,
// which finds an *Error anywhere in a wrapped chain with errors.As. Any other
// error is answered with a generic transient reply naming the session id;
// its text never reaches the client.
type Error struct {
	// Code is the three-digit basic reply code, 400-599.
	Code int
	// EnhancedCode is the RFC 3463 code. A zero value is replaced by
	// class.0.0 when the reply is written.
	EnhancedCode EnhancedCode
	// Message is the client-visible text. It must be a single line of
	// printable US-ASCII; the reply writer replaces anything else.
	Message string
	// Err is the underlying cause. It is logged, never sent.
	Err error
}

// NewError returns an *Error without a cause.
func NewError(code int, ec EnhancedCode, msg string) *Error {
	return &Error{Code: code, EnhancedCode: ec, Message: msg}
}

// WrapError returns an *Error that carries cause for the log.
func WrapError(code int, ec EnhancedCode, msg string, cause error) *Error {
	return &Error{Code: code, EnhancedCode: ec, Message: msg, Err: cause}
}

// Wrap returns a copy of e that carries cause for the log: the same reply,
// with cause attached. e itself is not changed, so a package-level reply
// such as ErrMisconfigured can be wrapped from many goroutines at once.
// The copy is a new *Error: errors.Is(e.Wrap(x), e) is false, so callers
// that branch on a reply compare its codes, or the cause with errors.Is.
func (e *Error) Wrap(cause error) *Error {
	return &Error{Code: e.Code, EnhancedCode: e.EnhancedCode, Message: e.Message, Err: cause}
}

// Error returns the reply as text, followed by the cause if there is one.
func (e *Error) Error() string {
	s := strconv.Itoa(e.Code) + " " + e.Enhanced().String() + " " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the reply is a transient failure (4xx).
func (e *Error) Temporary() bool { return e.Code >= 400 && e.Code < 500 }

// Enhanced returns the enhanced code that is sent: EnhancedCode, or
// class.0.0 derived from the basic code when EnhancedCode is zero.
func (e *Error) Enhanced() EnhancedCode {
	if !e.EnhancedCode.IsZero() {
		return e.EnhancedCode
	}
	return EnhancedCode{e.Code / 100, 0, 0}
}

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// Sentinel errors that callers and backends branch on with errors.Is. They
// are also the replies sent for those conditions.
var (
	// ErrMessageTooBig: the message exceeds Server.MaxMessageBytes
	// (RFC 1870; RFC 3463 X.3.4).
	ErrMessageTooBig = NewError(CodeExceededStorage, ECPermMessageTooBig, "Message too big for system")
	// ErrBareLineEnding: a CR or LF not part of a CRLF pair in DATA while the
	// listener rejects them (RFC 5321 section 2.3.8; the SMTP smuggling class).
	ErrBareLineEnding = NewError(CodeMailboxUnavailable, ECPermMedia, "Bare CR or LF in message text is not allowed; use CRLF line endings")
	// ErrTextLineTooLong: a message text line exceeds Server.MaxTextLineLength
	// (RFC 5321 section 4.5.3.1.6).
	ErrTextLineTooLong = NewError(CodeSyntaxError, ECPermSyntax, "Message text line too long")
	// ErrHeaderTooBig: the message header exceeds Server.MaxHeaderBytes.
	ErrHeaderTooBig = NewError(CodeExceededStorage, ECPermMessageTooBig, "Message header too big")
	// ErrTooManyHops: the message carries more Received fields than
	// Server.MaxReceivedHeaders: a mail loop (RFC 5321 section 6.3).
	ErrTooManyHops = NewError(CodeTransactionFailed, ECPermLoop, "Too many hops (Received headers): mail loop?")
	// ErrDataTimeout: the client stopped sending message text
	// (RFC 5321 section 4.5.3.2.5).
	ErrDataTimeout = NewError(CodeServiceUnavailable, ECTempBadConnection, "Timeout reading message data")
	// ErrConnectionLost: the client went away during the transaction.
	ErrConnectionLost = NewError(CodeLocalError, ECTempBadConnection, "Connection lost")
	// ErrShuttingDown: the server is shutting down (RFC 5321 section 3.8).
	ErrShuttingDown = NewError(CodeServiceUnavailable, ECTempNotAccepting, "Service shutting down, try again later")
	// ErrMisconfigured: the system cannot deliver until an administrator
	// fixes something (permissions, a missing directory, a file that
	// cannot be read): 451 4.3.5, temporary (RFC 3463 X.3.5, system
	// incorrectly configured). Backends wrap it with the cause.
	ErrMisconfigured = NewError(CodeLocalError, ECTempMisconfigured, "Mail system configuration error, try again later")
)

// ErrServerClosed is returned by Server.Serve after Shutdown or Close.
var ErrServerClosed = errors.New("protocol: server closed")
