package reqserver

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// Config is what a protocol package tells the Server on each call: its
// settings with their defaults applied, and how to serve a request. The
// Server keeps no Config between calls.
type Config struct {
	// Proto names the protocol ("policy"): the proto field of every log
	// line, and the first word of the generic log messages.
	Proto string

	// Logger receives the logs; each connection logs through a child
	// logger carrying its session id, peer and protocol. Nil: no logs.
	Logger *zerolog.Logger

	// MaxConnections caps the connections served at once; it must be
	// positive.
	MaxConnections int

	// IdleTimeout bounds the wait for the first byte of a request;
	// ReadTimeout bounds reading the rest of it, and each Conn.Write.
	// Both must be positive.
	IdleTimeout time.Duration
	ReadTimeout time.Duration

	// ReaderSize is the size of a connection's buffered reader; zero or
	// less means bufio's default.
	ReaderSize int

	// Closed is what Serve returns after Shutdown or Close (the protocol
	// package's ErrServerClosed).
	Closed error

	// NewSession makes the Session of a connection just admitted.
	NewSession func(*Conn) Session

	// Unusable, when not nil, says why the server cannot serve (a missing
	// handler): Serve closes its listener and returns it, ServeConn
	// closes the connection and logs it.
	Unusable error
}

// Or is v, or def when v is zero or less: how a setting's documented
// default is applied.
func Or[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Session serves the requests of one connection. All its methods run on
// the connection's goroutine.
type Session interface {
	// ReadRequest reads one request from Conn.Reader; it is called once
	// the request's first byte has arrived, under the read timeout. Any
	// error ends the connection.
	ReadRequest() error

	// Answer answers the request just read (the n-th on the connection)
	// and writes the reply with Conn.Write. An error means the reply
	// could not be sent, and ends the connection.
	Answer(n int) error

	// ReadFailed logs a read error that ended the connection and is none
	// of the routine ends or a timeout (the Server logs those); it may
	// write a last reply.
	ReadFailed(err error)

	// Abort is called after a panic in Answer: it answers the request in
	// flight as a failure, if it can.
	Abort()
}

// Server runs the connections of one request-reply server. Its zero value
// is ready to use; it must not be copied after first use.
type Server struct {
	initOnce   sync.Once
	nop        zerolog.Logger
	ids        protocol.SessionIDs
	baseCtx    context.Context
	cancelBase context.CancelFunc

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*Conn]struct{}
	inShutdown bool
	connWG     sync.WaitGroup
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.nop = zerolog.Nop()
		s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*Conn]struct{})
	})
}

func (s *Server) logger(cfg *Config) *zerolog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return &s.nop
}

// Context is the parent of every handler call's context: it is cancelled
// by Close, when Shutdown's context ends, and once Shutdown has finished.
func (s *Server) Context() context.Context {
	s.init()
	return s.baseCtx
}

// Conns reports how many connections are being served.
func (s *Server) Conns() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Serve accepts connections on l and serves each in its own goroutine
// until Shutdown or Close, then returns cfg.Closed; on another accept
// error, or cfg.Unusable, it returns that error. Serve closes l when it returns.
func (s *Server) Serve(l net.Listener, cfg Config) error {
	if cfg.Unusable != nil {
		l.Close()
		return cfg.Unusable
	}
	s.init()
	s.mu.Lock()
	if s.inShutdown {
		s.mu.Unlock()
		l.Close()
		return cfg.Closed
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
				return cfg.Closed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Back off like net/http when out of descriptors.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger(&cfg).Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.ServeConn(c, cfg)
	}
}

// ServeConn serves one accepted connection in a new goroutine and returns
// at once; the server owns and closes nc from then on.
func (s *Server) ServeConn(nc net.Conn, cfg Config) {
	s.init()
	if cfg.Unusable != nil {
		nc.Close()
		s.logger(&cfg).Error().Msg(cfg.Unusable.Error())
		return
	}
	c := s.newConn(nc, &cfg)
	s.mu.Lock()
	switch {
	case s.inShutdown:
		s.mu.Unlock()
		c.log.Debug().Msg("connection refused: shutting down")
		nc.Close()
		return
	case len(s.conns) >= cfg.MaxConnections:
		s.mu.Unlock()
		c.log.Warn().Msg("connection refused: too many connections")
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	go c.serve(cfg.NewSession(c))
}

func (s *Server) release(c *Conn) {
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
// connections waiting for a request, lets requests being answered finish
// and closes their connections after the reply. If ctx ends first, the
// handler context is cancelled and the remaining connections closed;
// Shutdown then returns ctx.Err() once their goroutines have returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.inShutdown = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		if c.waiting {
			c.nc.Close()
		}
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
// handler context; it returns when the connections' goroutines have.
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

// closeAll closes every connection, then cancels the handler context:
// in that order, so that a handler that returns because of the
// cancellation finds its connection closed and sends nothing (cancelled
// first, its error answer could reach the client before the close).
func (s *Server) closeAll() {
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.cancelBase()
}
