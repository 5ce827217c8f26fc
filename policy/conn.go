package policy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// conn is one client connection, served by one goroutine.
type conn struct {
	s   *Server
	nc  net.Conn
	br  *bufio.Reader
	lim Limits
	log zerolog.Logger

	idle bool // waiting for the first byte of a request; guarded by s.mu
}

func newConn(s *Server, nc net.Conn) *conn {
	lim := s.limits()
	log := s.logger().With().
		Str("session", s.newSessionID()).
		Str("peer", peerName(nc)).
		Str("proto", "policy").
		Logger()
	return &conn{s: s, nc: nc, br: bufio.NewReaderSize(nc, lim.MaxLineLength), lim: lim, log: log}
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
	var pending *Request // read and not yet answered
	defer func() {
		if v := recover(); v != nil {
			// A panic is a bug in the Handler: answer the request in
			// flight as for any failure, then drop the connection, whose
			// state is unknown.
			c.log.Error().Interface("panic", v).Bytes("stack", debug.Stack()).Msg("policy handler panicked; closing connection")
			if pending != nil {
				c.write(c.s.errorAction())
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
		req, err := ReadRequest(c.br, c.lim)
		if err != nil {
			c.readFailed(err, false)
			return
		}
		requests++
		pending = req
		action := c.decide(req, requests)
		if err := c.write(action); err != nil {
			c.log.Warn().Err(err).Int("request", requests).Msg("cannot send the reply; closing connection")
			return
		}
		pending = nil
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
	case errors.Is(err, ErrMalformed):
		// SMTPD_POLICY_README: "In case of trouble the policy server must
		// not send a reply. Instead the server must log a warning and
		// disconnect."
		c.log.Warn().Err(err).Msg("malformed policy request; closing the connection without a reply")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Warn().Msg("timeout reading a policy request; closing the connection")
	default:
		c.log.Warn().Err(err).Msg("reading a policy request failed; closing the connection")
	}
}

// decide asks the Handler and checks its answer.
func (c *conn) decide(req *Request, n int) Action {
	c.log.Trace().Int("request", n).Interface("attrs", req.Attrs).Msg("policy request")
	ctx, cancel := context.WithTimeout(c.s.baseCtx, orDur(c.s.HandlerTimeout, DefaultHandlerTimeout))
	defer cancel()
	t0 := time.Now()
	action, err := c.s.Handler.Policy(ctx, req)
	if err == nil {
		err = action.Validate()
	}
	if err == nil && ctx.Err() != nil {
		// The answer came after the deadline: it may rest on a lookup
		// that was cut short. Treat it as a failure, as documented.
		err = context.Cause(ctx)
	}
	var ev *zerolog.Event
	if err != nil {
		action = c.s.errorAction()
		ev = c.log.Error().Err(err)
	} else if isDunno(action) {
		ev = c.log.Debug()
	} else {
		ev = c.log.Info()
	}
	ev.Int("request", n).
		Str("state", req.ProtocolState).
		Str("client", req.ClientAddress).
		Str("sender", req.Sender).
		Str("recipient", req.Recipient).
		Uint64("size", req.Size).
		Str("queue_id", req.QueueID).
		Str("instance", req.Instance).
		Str("action", string(action)).
		Dur("duration", time.Since(t0))
	if err != nil {
		ev.Msg("policy handler failed; answered with the error action")
	} else {
		ev.Msg("policy answer")
	}
	return action
}

func isDunno(a Action) bool {
	verb, _, _ := strings.Cut(string(a), " ")
	return strings.EqualFold(verb, string(Dunno))
}

// write sends "action=..." and the empty line in one write.
func (c *conn) write(a Action) error {
	c.nc.SetWriteDeadline(time.Now().Add(orDur(c.s.ReadTimeout, DefaultReadTimeout)))
	_, err := io.WriteString(c.nc, "action="+string(a)+"\n\n")
	c.log.Trace().Str("reply", string(a)).Err(err).Msg("policy reply")
	return err
}
