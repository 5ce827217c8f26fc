package ldap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// conn is one LDAP connection and the network connection under it, whose
// deadline bounds every operation (go-ldap's requests take no context).
type conn struct {
	l  *ldap.Conn
	nc net.Conn
	// reused is true when the connection came from the idle list: it may
	// have died since (the server restarted), so a network error on it is
	// worth one retry on a fresh connection.
	reused bool
}

// errClosed is returned by lookups after Close.
var errClosed = errors.New("directory closed")

// pool holds at most size open service connections: idle ones wait in
// idle, and slots has one token per open connection, idle or in use.
type pool struct {
	dial   func(ctx context.Context) (*conn, error)
	idle   chan *conn
	slots  chan struct{}
	closed atomic.Bool
}

func newPool(size int, dial func(ctx context.Context) (*conn, error)) *pool {
	return &pool{dial: dial, idle: make(chan *conn, size), slots: make(chan struct{}, size)}
}

// get returns an idle connection, or dials one when fewer than size are
// open, or waits for one of those until ctx ends.
func (p *pool) get(ctx context.Context) (*conn, error) {
	for {
		if p.closed.Load() {
			return nil, errClosed
		}
		// An idle connection first: a select with the dial case ready
		// too would pick at random and open connections needlessly.
		select {
		case c := <-p.idle:
			if p.reuse(c) {
				return c, nil
			}
			continue
		default:
		}
		select {
		case c := <-p.idle:
			if p.reuse(c) {
				return c, nil
			}
			continue
		case p.slots <- struct{}{}:
			c, err := p.dial(ctx)
			if err != nil {
				<-p.slots
				return nil, err
			}
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// reuse readies a connection taken from the idle list, or drops it and
// reports false when it died while idle (the server closed it).
func (p *pool) reuse(c *conn) bool {
	if c.l.IsClosing() {
		p.drop(c)
		return false
	}
	c.reused = true
	return true
}

// put returns a healthy connection to the idle list.
func (p *pool) put(c *conn) {
	if p.closed.Load() || c.l.IsClosing() {
		p.drop(c)
		return
	}
	select {
	case p.idle <- c:
		if p.closed.Load() { // Close ran meanwhile: do not leave c behind
			p.drain()
		}
	default:
		p.drop(c)
	}
}

// drop closes a connection and frees its slot.
func (p *pool) drop(c *conn) {
	c.close()
	<-p.slots
}

// open returns the number of open connections, idle or in use.
func (p *pool) open() int { return len(p.slots) }

// close closes the idle connections; those in use are closed when they
// are put back.
func (p *pool) close() {
	p.closed.Store(true)
	p.drain()
}

func (p *pool) drain() {
	for {
		select {
		case c := <-p.idle:
			p.drop(c)
		default:
			return
		}
	}
}

// close closes the connection without waiting for anything: the network
// connection first, so go-ldap's Close finds its reader gone.
func (c *conn) close() {
	c.nc.Close()
	// go-ldap's Close waits for its message loop up to the request
	// timeout, forever when that is not positive (it may be, left from
	// a lookup that ran out of time).
	c.l.SetTimeout(time.Second)
	c.l.Close()
}

// run calls fn on the connection with every read and write bounded by
// ctx's deadline, and unblocks it when ctx is cancelled. ok is false when
// the connection must not be reused: ctx ended, or the error is not an
// LDAP result from the server.
func (c *conn) run(ctx context.Context, fn func(l *ldap.Conn) error) (ok bool, err error) {
	deadline, _ := ctx.Deadline() // lookups always have one
	c.nc.SetDeadline(deadline)
	c.l.SetTimeout(time.Until(deadline))
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Now()) })
	err = fn(c.l)
	if err != nil && ctx.Err() == nil && !time.Now().Before(deadline) {
		// go-ldap's request timer or the connection's deadline went off
		// a moment before ctx's own.
		stop()
		return false, fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	if !stop() || ctx.Err() != nil {
		// The deadline or the cancellation is the cause, whatever I/O
		// error it provoked.
		stop()
		if err == nil {
			return false, ctx.Err()
		}
		return false, fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	c.nc.SetDeadline(time.Time{})
	return err == nil || isServerResult(err), err
}

// isServerResult reports whether err is a result code the server sent
// (the connection is still in step), as opposed to go-ldap's own codes
// (200 and above: network errors, timeouts, decoding failures).
func isServerResult(err error) bool {
	var le *ldap.Error
	return errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork
}

// dialConn opens a connection, upgrades it to TLS as configured and, if
// bindDN is not empty, binds; all within ctx.
func dialConn(ctx context.Context, s *settings, bindDN, password string) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, s.network, s.addr)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	raw := nc
	if s.ldaps {
		tc := tls.Client(nc, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	l := ldap.NewConn(nc, s.ldaps)
	l.Start()
	c := &conn{l: l, nc: raw}
	ok, err := c.run(ctx, func(l *ldap.Conn) error {
		if s.startTLS {
			if err := l.StartTLS(s.tls); err != nil {
				return err
			}
		}
		if bindDN != "" {
			return l.Bind(bindDN, password)
		}
		return nil
	})
	if err != nil || !ok {
		c.close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return c, nil
}
