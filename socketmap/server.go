package socketmap

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
	// DefaultMaxRequestBytes bounds a request's payload: Postfix's
	// socketmap_max_query_size (10000, the key alone) with room for the
	// map name.
	DefaultMaxRequestBytes = 10000 + 1024
	// DefaultMaxReplyBytes is Postfix's socketmap_max_reply_size: a
	// longer reply makes Postfix's lookup fail.
	DefaultMaxReplyBytes = 100000
	// DefaultMaxConnections is far above what Postfix opens: one
	// connection per process and socketmap endpoint.
	DefaultMaxConnections = 1000
	// DefaultIdleTimeout: Postfix closes an idle socketmap connection
	// after 10 s itself; this only reclaims connections of clients that
	// do not.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultReadTimeout bounds reading the rest of a request once its
	// first byte arrived, and writing the reply.
	DefaultReadTimeout = time.Minute
	// DefaultHandlerTimeout is below Postfix's 100 s socketmap timeout, so
	// that Postfix gets TIMEOUT from us rather than a timeout of its own.
	DefaultHandlerTimeout = 30 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("socketmap: server closed")

// Server is a socketmap server. Fill in the fields and call Serve; a
// Server must not be copied after first use nor its fields changed while
// it runs. Every field but Handler has a working zero value whose meaning
// is written in its documentation.
type Server struct {
	// Handler answers the lookups. Required.
	Handler Handler

	// Logger receives structured logs; each connection logs through a
	// child logger carrying its session id, peer and protocol. Debug: OK
	// and NOTFOUND answers, connections; warn: TEMP, TIMEOUT and PERM
	// answers, malformed input; error: handler errors the server does not
	// recognise, values it cannot send, panics; trace: the requests and
	// replies. Nil: no logs.
	Logger *zerolog.Logger

	// MaxRequestBytes bounds a request's payload (netstring framing
	// excluded). Default DefaultMaxRequestBytes (11024).
	MaxRequestBytes int

	// MaxReplyBytes bounds a reply's payload; a longer value is answered
	// PERM. Default DefaultMaxReplyBytes (100000, Postfix's limit).
	MaxReplyBytes int

	// MaxConnections caps the connections served at once; a further one
	// is closed at once. Default DefaultMaxConnections.
	MaxConnections int

	// IdleTimeout is how long a connection may wait for its next request.
	// Default DefaultIdleTimeout (5 minutes).
	IdleTimeout time.Duration

	// ReadTimeout bounds reading a request after its first byte, and
	// writing its reply. Default DefaultReadTimeout (1 minute).
	ReadTimeout time.Duration

	// HandlerTimeout bounds one Handler call through its context; when it
	// expires the reply is TIMEOUT. Default DefaultHandlerTimeout (30
	// seconds).
	HandlerTimeout time.Duration

	srv reqserver.Server // the connection lifecycle
}

func (s *Server) maxRequestBytes() int {
	if s.MaxRequestBytes <= 0 {
		return DefaultMaxRequestBytes
	}
	return s.MaxRequestBytes
}

func (s *Server) maxReplyBytes() int {
	if s.MaxReplyBytes <= 0 {
		return DefaultMaxReplyBytes
	}
	return s.MaxReplyBytes
}

// config is the lifecycle's view of the settings, defaults applied.
func (s *Server) config() reqserver.Config {
	cfg := reqserver.Config{
		Proto:          "socketmap",
		Logger:         s.Logger,
		MaxConnections: reqserver.Or(s.MaxConnections, DefaultMaxConnections),
		IdleTimeout:    reqserver.Or(s.IdleTimeout, DefaultIdleTimeout),
		ReadTimeout:    reqserver.Or(s.ReadTimeout, DefaultReadTimeout),
		Closed:         ErrServerClosed,
		NewSession:     func(rc *reqserver.Conn) reqserver.Session { return &conn{s: s, rc: rc} },
	}
	if s.Handler == nil {
		cfg.Unusable = errors.New("socketmap: Server.Handler is nil")
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
// connections waiting for a request, lets lookups in progress finish and
// closes their connections after the reply. If ctx ends first, the
// handlers' contexts are cancelled and the remaining connections closed;
// Shutdown then returns ctx.Err() once their goroutines have returned.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close closes the listeners and every connection at once and cancels the
// handlers' contexts; it returns when the connections' goroutines have.
func (s *Server) Close() error { return s.srv.Close() }
