package socketmap

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
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

	initOnce   sync.Once
	nop        zerolog.Logger
	idPrefix   string
	nextID     atomic.Uint64
	baseCtx    context.Context
	cancelBase context.CancelFunc

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*conn]struct{}
	inShutdown bool
	connWG     sync.WaitGroup
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.nop = zerolog.Nop()
		s.idPrefix = newIDPrefix()
		s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
	})
}

func (s *Server) logger() *zerolog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return &s.nop
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

func (s *Server) maxConnections() int {
	if s.MaxConnections <= 0 {
		return DefaultMaxConnections
	}
	return s.MaxConnections
}

func orDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// Serve accepts connections on l and serves each in its own goroutine
// until Shutdown or Close, then returns ErrServerClosed; on another accept
// error it returns that error. Serve closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	if s.Handler == nil {
		l.Close()
		return errors.New("socketmap: Server.Handler is nil")
	}
	s.init()
	s.mu.Lock()
	if s.inShutdown {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()

	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Back off like net/http when out of descriptors.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.ServeConn(c)
	}
}

// ServeConn serves one accepted connection in a new goroutine and returns
// at once; the server owns and closes c from then on.
func (s *Server) ServeConn(c net.Conn) {
	s.init()
	if s.Handler == nil {
		c.Close()
		s.logger().Error().Msg("socketmap: Server.Handler is nil")
		return
	}
	cn := newConn(s, c)
	s.mu.Lock()
	switch {
	case s.inShutdown:
		s.mu.Unlock()
		cn.log.Debug().Msg("connection refused: shutting down")
		c.Close()
		return
	case len(s.conns) >= s.maxConnections():
		s.mu.Unlock()
		cn.log.Warn().Msg("connection refused: too many connections")
		c.Close()
		return
	}
	s.conns[cn] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	go cn.serve()
}

func (s *Server) release(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connWG.Done()
}

func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inShutdown
}

// Shutdown stops the server gracefully: it closes the listeners and the
// connections waiting for a request, lets lookups in progress finish and
// closes their connections after the reply. If ctx ends first, the
// handlers' contexts are cancelled and the remaining connections closed;
// Shutdown then returns ctx.Err() once their goroutines have returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.inShutdown = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
		s.cancelBase()
		return nil
	case <-ctx.Done():
		s.closeAll()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once and cancels the
// handlers' contexts; it returns when the connections' goroutines have.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.inShutdown = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.closeAll()
	s.connWG.Wait()
	return nil
}

func (s *Server) closeAll() {
	s.cancelBase()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
	}
}

// idEncoding is lower-case base32 without padding: short,
// case-insensitive ids, the same alphabet as the protocol package's.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

func newIDPrefix() string {
	var b [5]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

func (s *Server) newSessionID() string {
	return s.idPrefix + strconv.FormatUint(s.nextID.Add(1), 36)
}
