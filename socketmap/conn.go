package socketmap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/internal/reqserver"
)

// conn is the socketmap side of one client connection: the lifecycle,
// the reader and the logger are rc's.
type conn struct {
	s    *Server
	rc   *reqserver.Conn
	data []byte // the request read and not yet answered
}

// ReadRequest reads the next request; see reqserver.Session.
func (c *conn) ReadRequest() error {
	data, err := ReadNetstring(c.rc.Reader(), c.s.maxRequestBytes())
	c.data = data
	return err
}

// Answer asks the Handler and sends the reply; see reqserver.Session.
func (c *conn) Answer(n int) error {
	return c.write(c.answer(c.data, n))
}

// Abort answers the request a panicking Handler left with TEMP.
func (c *conn) Abort() {
	c.write(reply{StatusTemp, reasonInternal + " (session " + c.rc.ID() + ")"})
}

// ReadFailed logs why a request could not be read and, when the framing
// is lost, says so in the one way the client can read before the
// connection closes.
func (c *conn) ReadFailed(err error) {
	if !errors.Is(err, ErrNetstring) {
		c.rc.Log().Warn().Err(err).Msg("reading a socketmap request failed; closing the connection")
		return
	}
	c.rc.Log().Warn().Err(err).Msg("malformed socketmap request; closing the connection")
	if !errors.Is(err, ErrTruncated) {
		c.write(reply{StatusPerm, reasonMalformed})
	}
}

// parseRequest splits "NAME KEY" at the first space.
func parseRequest(data []byte) (name, key string, err error) {
	if bytes.IndexByte(data, 0) >= 0 {
		return "", "", fmt.Errorf("%w: NUL byte in the request", ErrBadRequest)
	}
	n, k, ok := bytes.Cut(data, []byte{' '})
	if !ok {
		return "", "", fmt.Errorf("%w: no space between map name and key", ErrBadRequest)
	}
	if len(n) == 0 {
		return "", "", fmt.Errorf("%w: empty map name", ErrBadRequest)
	}
	return string(n), string(k), nil
}

// answer parses a request, asks the Handler and returns the reply.
func (c *conn) answer(data []byte, n int) reply {
	c.rc.Log().Trace().Int("request", n).Bytes("data", data).Msg("socketmap request")
	name, key, err := parseRequest(data)
	if err != nil {
		c.rc.Log().Warn().Int("request", n).Err(err).Msg("bad socketmap request; answered PERM")
		return reply{StatusPerm, reasonBadRequest}
	}
	ctx, cancel := context.WithTimeout(c.s.srv.Context(), reqserver.Or(c.s.HandlerTimeout, DefaultHandlerTimeout))
	defer cancel()
	t0 := time.Now()
	value, herr := c.s.Handler.Lookup(ctx, name, key)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	r, err := replyFor(value, herr, timedOut, c.rc.ID(), c.s.maxReplyBytes())
	var ev *zerolog.Event
	var e *Error
	switch {
	case r.status == StatusOK || r.status == StatusNotFound:
		ev = c.rc.Log().Debug()
	case herr != nil && (errors.As(herr, &e) || errors.Is(herr, ErrBadRequest) || r.status == StatusTimeout):
		// The handler classified the failure itself.
		ev = c.rc.Log().Warn().Err(err)
	default:
		ev = c.rc.Log().Error().Err(err)
	}
	ev.Int("request", n).
		Str("map", name).
		Str("key", key).
		Str("status", string(r.status)).
		Dur("duration", time.Since(t0))
	if r.status != StatusOK {
		ev.Str("reason", r.text)
	} else {
		ev.Int("value_bytes", len(r.text))
	}
	ev.Msg("socketmap lookup")
	return r
}

// write sends the reply as one netstring in one write.
func (c *conn) write(r reply) error {
	err := c.rc.Write(AppendNetstring(nil, r.bytes()))
	c.rc.Log().Trace().Str("status", string(r.status)).Str("text", r.text).Err(err).Msg("socketmap reply")
	return err
}
