package reqserver

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
)

// Conn is one admitted connection, served by one goroutine. A Session uses
// it to read requests and write replies.
type Conn struct {
	s     *Server
	nc    net.Conn
	br    *bufio.Reader
	id    string
	log   zerolog.Logger
	proto string
	idle  time.Duration
	read  time.Duration

	waiting bool // for the first byte of a request; guarded by s.mu
}

func (s *Server) newConn(nc net.Conn, cfg *Config) *Conn {
	id := s.ids.Next()
	log := s.logger(cfg).With().
		Str("session", id).
		Str("peer", peerName(nc)).
		Str("proto", cfg.Proto).
		Logger()
	size := cfg.ReaderSize
	if size <= 0 {
		size = 4096 // bufio's default
	}
	return &Conn{
		s: s, nc: nc, br: bufio.NewReaderSize(nc, size), id: id, log: log,
		proto: cfg.Proto, idle: cfg.IdleTimeout, read: cfg.ReadTimeout,
	}
}

// peerName names the client for the logs: its address, or the network
// for an unnamed unix socket peer.
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

// ID is the connection's session id, unique in the process.
func (c *Conn) ID() string { return c.id }

// Log is the connection's logger; every line carries the session id, the
// peer and the protocol.
func (c *Conn) Log() *zerolog.Logger { return &c.log }

// Reader is the buffered reader of the connection's input.
func (c *Conn) Reader() *bufio.Reader { return c.br }

// Write writes b under the read timeout, in one write.
func (c *Conn) Write(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(c.read))
	_, err := c.nc.Write(b)
	return err
}

// setIdle marks the connection as waiting for a request, or reports false
// when the server is shutting down and the connection should end.
func (c *Conn) setIdle() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.inShutdown {
		return false
	}
	c.waiting = true
	return true
}

func (c *Conn) setBusy() {
	c.s.mu.Lock()
	c.waiting = false
	c.s.mu.Unlock()
}

func (c *Conn) serve(sess Session) {
	start := time.Now()
	requests := 0
	pending := false // a request read and not yet answered
	defer func() {
		if v := recover(); v != nil {
			// A panic is a bug in the handler: answer the request in
			// flight as for any failure, then drop the connection, whose
			// state is unknown.
			c.log.Error().Interface("panic", v).Bytes("stack", debug.Stack()).Msg(c.proto + " handler panicked; closing connection")
			if pending {
				sess.Abort()
			}
		}
		c.nc.Close()
		// Log before the release, so that no line comes after Close or
		// Shutdown has returned.
		c.log.Debug().Int("requests", requests).Dur("duration", time.Since(start)).Msg("connection closed")
		c.s.release(c)
	}()
	c.log.Debug().Msg("connection opened")

	for {
		if !c.setIdle() {
			return
		}
		c.nc.SetReadDeadline(time.Now().Add(c.idle))
		if _, err := c.br.Peek(1); err != nil {
			c.readFailed(sess, err, true)
			return
		}
		c.setBusy()
		c.nc.SetReadDeadline(time.Now().Add(c.read))
		if err := sess.ReadRequest(); err != nil {
			c.readFailed(sess, err, false)
			return
		}
		requests++
		pending = true
		if err := sess.Answer(requests); err != nil {
			ev := c.log.Warn()
			if c.s.shuttingDown() {
				ev = c.log.Debug() // Close cut it off: routine
			}
			ev.Err(err).Int("request", requests).Msg("cannot send the reply; closing connection")
			return
		}
		pending = false
	}
}

// readFailed logs why reading a request ended the connection, or leaves
// it to the Session. Between requests, end of input, the idle timeout and
// a shutdown are routine.
func (c *Conn) readFailed(sess Session, err error, between bool) {
	switch {
	case between && errors.Is(err, io.EOF):
		c.log.Debug().Msg("client closed the connection")
	case between && errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Debug().Msg("idle timeout")
	case errors.Is(err, net.ErrClosed) || c.s.shuttingDown() && between:
		c.log.Debug().Msg("connection closed by the server")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Warn().Msg("timeout reading a " + c.proto + " request; closing the connection")
	default:
		sess.ReadFailed(err)
	}
}
