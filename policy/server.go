package policy

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/internal/reqserver"
)

// Default settings of a Server; a zero field means the value here.
const (
	// DefaultMaxConnections is far above what Postfix opens: one
	// connection per smtpd process (default_process_limit 100) and
	// policy service.
	DefaultMaxConnections = 1000
	// DefaultIdleTimeout is longer than Postfix's own idle limit
	// (smtpd_policy_service_max_idle, 300s), so that it is Postfix that
	// closes an idle connection and no request of its meets a connection
	// the server is just closing.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultReadTimeout bounds reading the rest of a request once its
	// first byte arrived, and writing the reply. Postfix writes a request
	// at once.
	DefaultReadTimeout = time.Minute
	// DefaultHandlerTimeout is below Postfix's smtpd_policy_service_timeout
	// (100s), so that Postfix gets ErrorAction rather than a timeout of
	// its own.
	DefaultHandlerTimeout = 30 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("policy: server closed")

// Server is a policy delegation server. Fill in the fields and call
// Serve; a Server must not be copied after first use nor its fields
// changed while it runs. Every field but Handler has a working zero value
// whose meaning is written in its documentation.
type Server struct {
	// Handler answers the requests. Required.
	Handler Handler

	// Logger receives structured logs; each connection logs through a
	// child logger carrying its session id, peer and protocol. Info: one
	// line per request answered with anything but DUNNO; warn: malformed
	// input, refused connections; error: handler failures and panics;
	// debug: DUNNO answers and connections; trace: the attributes and the
	// reply. Nil: no logs.
	Logger *zerolog.Logger

	// ErrorAction is the answer when the Handler fails (an error, a
	// panic, HandlerTimeout, an invalid action). Default Unavailable,
	// "DEFER_IF_PERMIT Service temporarily unavailable". It must itself
	// pass Action.Validate, or Unavailable is sent instead.
	ErrorAction Action

	// MaxLineLength, MaxAttributes and MaxRequestBytes bound one request
	// (see Limits). Defaults DefaultMaxLineLength (8192),
	// DefaultMaxAttributes (1024), DefaultMaxRequestBytes (64 KiB).
	MaxLineLength   int
	MaxAttributes   int
	MaxRequestBytes int

	// MaxConnections caps the connections served at once; a further one
	// is closed at once, without a reply, and Postfix falls back to
	// smtpd_policy_service_default_action. Default DefaultMaxConnections.
	MaxConnections int

	// IdleTimeout is how long a connection may wait for its next request.
	// Default DefaultIdleTimeout (10 minutes).
	IdleTimeout time.Duration

	// ReadTimeout bounds reading a request after its first byte, and
	// writing its reply. Default DefaultReadTimeout (1 minute).
	ReadTimeout time.Duration

	// HandlerTimeout bounds one Handler call through its context.
	// Default DefaultHandlerTimeout (30 seconds).
	HandlerTimeout time.Duration

	srv reqserver.Server // the connection lifecycle
}

func (s *Server) limits() Limits {
	return Limits{MaxLineLength: s.MaxLineLength, MaxAttributes: s.MaxAttributes, MaxRequestBytes: s.MaxRequestBytes}.withDefaults()
}

func (s *Server) errorAction() Action {
	if s.ErrorAction == "" || s.ErrorAction.Validate() != nil {
		return Unavailable
	}
	return s.ErrorAction
}

// config is the lifecycle's view of the settings, defaults applied.
func (s *Server) config() reqserver.Config {
	lim := s.limits()
	cfg := reqserver.Config{
		Proto:          "policy",
		Logger:         s.Logger,
		MaxConnections: reqserver.Or(s.MaxConnections, DefaultMaxConnections),
		IdleTimeout:    reqserver.Or(s.IdleTimeout, DefaultIdleTimeout),
		ReadTimeout:    reqserver.Or(s.ReadTimeout, DefaultReadTimeout),
		// ReadRequest needs room for a whole line.
		ReaderSize: lim.MaxLineLength,
		Closed:     ErrServerClosed,
		NewSession: func(rc *reqserver.Conn) reqserver.Session { return &conn{s: s, rc: rc, lim: lim} },
	}
	if s.Handler == nil {
		cfg.Unusable = errors.New("policy: Server.Handler is nil")
	}
	return cfg
}

// Serve accepts connections on l and serves each in its own goroutine
// until Shutdown or Close, then returns ErrServerClosed; on another accept
// error it returns that error. Serve closes l when it returns.
func (s *Server) Serve(l net.Listener) error { return s.srv.Serve(l, s.config()) }

// ServeConn serves one accepted connection in a new goroutine and returns
// at once; the server owns and closes c from then on.
func (s *Server) ServeConn(c net.Conn) { s.srv.ServeConn(c, s.config()) }

// Shutdown stops the server gracefully: it closes the listeners and the
// connections waiting for a request, lets requests being answered finish
// and closes their connections after the reply. If ctx ends first, the
// handlers' contexts are cancelled and the remaining connections closed;
// Shutdown then returns ctx.Err() once their goroutines have returned.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close closes the listeners and every connection at once and cancels the
// handlers' contexts; it returns when the connections' goroutines have.
func (s *Server) Close() error { return s.srv.Close() }
