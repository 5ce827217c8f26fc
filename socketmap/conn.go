package socketmap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
)

// conn is one client connection, served by one goroutine.
type conn struct {
	s   *Server
	nc  net.Conn
	br  *bufio.Reader
	id  string
	log zerolog.Logger

	idle bool // waiting for the first byte of a request; guarded by s.mu
}

func newConn(s *Server, nc net.Conn) *conn {
	id := s.newSessionID()
	log := s.logger().With().
		Str("session", id).
		Str("peer", peerName(nc)).
		Str("proto", "socketmap").
		Logger()
	return &conn{s: s, nc: nc, br: bufio.NewReader(nc), id: id, log: log}
}

func peerName(nc net.Conn) string {
	a := nc.RemoteAddr()
	if a == nil {
		return "unknown"
	}
	if s := a.String(); s != "" && s != "@" {
		return s
	}
	return a.Network()
}

// setIdle marks the connection as waiting for a request, or reports false
// when the server is shutting down and the connection should end.
func (c *conn) setIdle() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.inShutdown {
		return false
	}
	c.idle = true
	return true
}

func (c *conn) setBusy() {
	c.s.mu.Lock()
	c.idle = false
	c.s.mu.Unlock()
}

// closeIfIdle closes the connection if it waits for a request. s.mu is held.
func (c *conn) closeIfIdle() {
	if c.idle {
		c.nc.Close()
	}
}

func (c *conn) serve() {
	start := time.Now()
	requests := 0
	pending := false // a request read and not yet answered
	defer func() {
		if v := recover(); v != nil {
			c.log.Error().Interface("panic", v).Bytes("stack", debug.Stack()).Msg("socketmap handler panicked; closing connection")
			if pending {
				c.write(reply{StatusTemp, reasonInternal + " (session " + c.id + ")"})
			}
		}
		c.nc.Close()
		c.s.release(c)
		c.log.Debug().Int("requests", requests).Dur("duration", time.Since(start)).Msg("connection closed")
	}()
	c.log.Debug().Msg("connection opened")

	for {
		if !c.setIdle() {
			return
		}
		c.nc.SetReadDeadline(time.Now().Add(orDur(c.s.IdleTimeout, DefaultIdleTimeout)))
		if _, err := c.br.Peek(1); err != nil {
			c.readFailed(err, true)
			return
		}
		c.setBusy()
		c.nc.SetReadDeadline(time.Now().Add(orDur(c.s.ReadTimeout, DefaultReadTimeout)))
		data, err := ReadNetstring(c.br, c.s.maxRequestBytes())
		if err != nil {
			c.readFailed(err, false)
			if errors.Is(err, ErrNetstring) && !errors.Is(err, ErrTruncated) {
				// The framing is lost: say so in the one way the client
				// can read, then hang up.
				c.write(reply{StatusPerm, reasonMalformed})
			}
			return
		}
		requests++
		pending = true
		r := c.answer(data, requests)
		if err := c.write(r); err != nil {
			c.log.Warn().Err(err).Int("request", requests).Msg("cannot send the reply; closing connection")
			return
		}
		pending = false
	}
}

// readFailed logs why reading a request ended the connection. Between
// requests, end of input, the idle timeout and a shutdown are routine.
func (c *conn) readFailed(err error, between bool) {
	switch {
	case between && errors.Is(err, io.EOF):
		c.log.Debug().Msg("client closed the connection")
	case between && errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Debug().Msg("idle timeout")
	case errors.Is(err, net.ErrClosed) || c.s.shuttingDown() && between:
		c.log.Debug().Msg("connection closed by the server")
	case errors.Is(err, ErrNetstring):
		c.log.Warn().Err(err).Msg("malformed socketmap request; closing the connection")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Warn().Msg("timeout reading a socketmap request; closing the connection")
	default:
		c.log.Warn().Err(err).Msg("reading a socketmap request failed; closing the connection")
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
	c.log.Trace().Int("request", n).Bytes("data", data).Msg("socketmap request")
	name, key, err := parseRequest(data)
	if err != nil {
		c.log.Warn().Int("request", n).Err(err).Msg("bad socketmap request; answered PERM")
		return reply{StatusPerm, reasonBadRequest}
	}
	ctx, cancel := context.WithTimeout(c.s.baseCtx, orDur(c.s.HandlerTimeout, DefaultHandlerTimeout))
	defer cancel()
	t0 := time.Now()
	value, herr := c.s.Handler.Lookup(ctx, name, key)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	r, err := replyFor(value, herr, timedOut, c.id, c.s.maxReplyBytes())
	var ev *zerolog.Event
	var e *Error
	switch {
	case r.status == StatusOK || r.status == StatusNotFound:
		ev = c.log.Debug()
	case herr != nil && (errors.As(herr, &e) || errors.Is(herr, ErrBadRequest) || r.status == StatusTimeout):
		// The handler classified the failure itself.
		ev = c.log.Warn().Err(err)
	default:
		ev = c.log.Error().Err(err)
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
	c.nc.SetWriteDeadline(time.Now().Add(orDur(c.s.ReadTimeout, DefaultReadTimeout)))
	_, err := c.nc.Write(AppendNetstring(nil, r.bytes()))
	c.log.Trace().Str("status", string(r.status)).Str("text", r.text).Err(err).Msg("socketmap reply")
	return err
}
