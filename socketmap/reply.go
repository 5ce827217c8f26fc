package socketmap

import (
	"context"
	"errors"
	"strings"
)

// Status is the first word of a reply (socketmap_table(5), "REPLY FORMAT").
type Status string

// The reply statuses, and what Postfix's dict_sockmap makes of them.
const (
	StatusOK       Status = "OK"       // found; the value follows
	StatusNotFound Status = "NOTFOUND" // not found: not an error
	StatusTemp     Status = "TEMP"     // DICT_ERR_RETRY: the lookup is retried later (SMTP 451 4.3.0)
	StatusTimeout  Status = "TIMEOUT"  // DICT_ERR_RETRY, logged as a timeout
	StatusPerm     Status = "PERM"     // DICT_ERR_CONFIG: logged as a configuration error; smtpd still answers 451
)

// ErrNotFound is what a Handler returns, possibly wrapped, for a key that
// is not in the map; the reply is "NOTFOUND ".
var ErrNotFound = errors.New("socketmap: not found")

// ErrBadRequest is what a Handler returns, possibly wrapped, for a request
// it cannot answer, such as an unknown map name or a key that cannot be an
// address; the reply is "PERM bad request". Return an *Error from
// Permanent to send a reason of your own.
var ErrBadRequest = errors.New("socketmap: bad request")

// Error is a failure with a status and a reason for Postfix. Reason is
// sent (and appears in Postfix's log); Err, the cause, is only logged by
// the server.
type Error struct {
	Status Status // StatusTemp, StatusTimeout or StatusPerm
	Reason string
	Err    error
}

func (e *Error) Error() string {
	s := strings.ToLower(string(e.Status)) + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary returns an error the server answers "TEMP reason": the
// answer for a directory that is down. cause may be nil.
func Temporary(reason string, cause error) error {
	return &Error{Status: StatusTemp, Reason: reason, Err: cause}
}

// Permanent returns an error the server answers "PERM reason". cause may
// be nil.
func Permanent(reason string, cause error) error {
	return &Error{Status: StatusPerm, Reason: reason, Err: cause}
}

// Reasons the server sends on its own.
const (
	reasonBadRequest = "bad request"
	reasonMalformed  = "malformed request"
	reasonTimeout    = "lookup timed out"
	reasonTooLarge   = "reply too large"
	reasonNUL        = "value contains a NUL byte"
	reasonInternal   = "internal error"
)

// reply is an answer before encoding.
type reply struct {
	status Status
	text   string // the value for OK, else the reason
}

func (r reply) bytes() []byte {
	return append([]byte(r.status+" "), r.text...)
}

// replyFor turns a Handler's result into the reply: the one place where
// errors become replies (see the package documentation). sessionID goes
// into the reason of an unrecognised error, so that Postfix's log line
// points at lmtpd's. timedOut says the server's HandlerTimeout expired.
// maxReply bounds the encoded payload.
func replyFor(value string, err error, timedOut bool, sessionID string, maxReply int) (reply, error) {
	var e *Error
	switch {
	case err == nil:
		if strings.IndexByte(value, 0) >= 0 {
			return reply{StatusPerm, reasonNUL}, errors.New("socketmap: the handler's value contains a NUL byte")
		}
		if len(StatusOK)+1+len(value) > maxReply {
			return reply{StatusPerm, reasonTooLarge}, errors.New("socketmap: the handler's value is longer than MaxReplyBytes")
		}
		return reply{StatusOK, value}, nil
	case errors.Is(err, ErrNotFound):
		return reply{StatusNotFound, ""}, nil
	case errors.As(err, &e) && (e.Status == StatusTemp || e.Status == StatusTimeout || e.Status == StatusPerm):
		return reply{e.Status, clean(e.Reason, maxReply-len(e.Status)-1)}, err
	case errors.Is(err, ErrBadRequest):
		return reply{StatusPerm, reasonBadRequest}, err
	case timedOut && errors.Is(err, context.DeadlineExceeded):
		return reply{StatusTimeout, reasonTimeout}, err
	}
	return reply{StatusTemp, "temporary lookup failure (session " + sessionID + ")"}, err
}

// clean makes a reason printable on one line, as Postfix's own
// printable() would when logging it, and bounds it.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "")
	}
	return s
}
