package delivery

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// remotePools are a Router's connection pools, one per server and
// settings, kept across reloads so that a reload neither drops idle
// connections nor lifts the per-server limit.
type remotePools struct {
	mu     sync.Mutex
	m      map[LMTP]*remotePool
	closed bool
	name   string // our LHLO name
}

// remotePools returns the Router's pools, made on first use.
func (r *Router) remotePools() *remotePools {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.remotes == nil {
		name, err := os.Hostname()
		if err != nil || name == "" {
			name = "localhost"
		}
		r.remotes = &remotePools{m: make(map[LMTP]*remotePool), name: name}
	}
	return r.remotes
}

// pool returns the pool of the server with settings l (defaults applied).
func (ps *remotePools) pool(l LMTP) *remotePool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.m[l]
	if p == nil {
		p = &remotePool{set: l, slots: make(chan struct{}, l.MaxConnections), ps: ps}
		ps.m[l] = p
	}
	return p
}

// close closes every idle connection; busy ones are closed when they come
// back.
func (ps *remotePools) close() {
	ps.mu.Lock()
	ps.closed = true
	pools := make([]*remotePool, 0, len(ps.m))
	for _, p := range ps.m {
		pools = append(pools, p)
	}
	ps.mu.Unlock()
	for _, p := range pools {
		p.mu.Lock()
		idle := p.idle
		p.idle = nil
		p.mu.Unlock()
		for _, pc := range idle {
			pc.c.Close()
		}
	}
}

func (ps *remotePools) isClosed() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.closed
}

// remotePool holds the connections to one server. A slot is taken for
// each transaction in flight, so at most set.MaxConnections run at once;
// between transactions a connection waits in the idle list (at most
// MaxConnections of them), holding no slot.
type remotePool struct {
	set   LMTP
	ps    *remotePools
	slots chan struct{} // one token per connection in use

	mu   sync.Mutex
	idle []*pooledConn // most recently used last
}

// pooledConn is a connection with what the pool needs to reuse it.
type pooledConn struct {
	c       *protocol.Client
	used    time.Time  // when it was last given back
	xclient xclientKey // the attributes the session has, after XCLIENT
	p       *remotePool
	slot    bool // holds a slot: in use
}

// get returns a connection ready for a transaction for a client with
// attributes x: an idle one (reset with RSET, so that one the server
// closed meanwhile is found out and replaced) or a new one. The caller
// gives it back with put. Errors are *protocol.Error: 451 4.4.5 when no
// slot came free within MaxWait, 451 4.4.1 when the server cannot be
// reached.
func (p *remotePool) get(ctx context.Context, x protocol.XClientAttrs, l *zerolog.Logger) (*pooledConn, error) {
	wait := time.NewTimer(p.set.MaxWait)
	defer wait.Stop()
	select {
	case p.slots <- struct{}{}:
	case <-wait.C:
		return nil, ErrRemoteBusy.Wrap(errors.New("delivery: every connection to the server stayed busy"))
	case <-ctx.Done():
		return nil, ErrRemoteUnreachable.Wrap(context.Cause(ctx))
	}
	for {
		p.mu.Lock()
		n := len(p.idle)
		var pc *pooledConn
		if n > 0 {
			pc = p.idle[n-1]
			p.idle = p.idle[:n-1]
		}
		p.mu.Unlock()
		if pc == nil {
			break
		}
		pc.slot = true // the slot taken above
		if time.Since(pc.used) > p.set.IdleTimeout {
			pc.c.Close()
			continue
		}
		if err := pc.c.Reset(ctx); err != nil {
			l.Debug().Err(err).Msg("remote delivery: idle connection is gone; connecting again")
			pc.c.Close()
			continue
		}
		if err := pc.forward(ctx, x); err != nil {
			l.Debug().Err(err).Msg("remote delivery: reused connection refused the client attributes; connecting again")
			pc.c.Close()
			continue
		}
		return pc, nil
	}
	pc := &pooledConn{p: p, slot: true}
	dctx, cancel := context.WithTimeout(ctx, p.set.ConnectTimeout)
	c, err := protocol.Dial(dctx, p.set.Address, &protocol.ClientOptions{
		Protocol:          protocol.LMTP,
		LocalName:         p.ps.name,
		ConnectTimeout:    p.set.ConnectTimeout,
		GreetingTimeout:   p.set.ConnectTimeout,
		CommandTimeout:    p.set.Timeout,
		DataInitTimeout:   p.set.Timeout,
		DataBlockTimeout:  p.set.Timeout,
		FinalReplyTimeout: p.set.Timeout,
		Logger:            l,
	})
	cancel()
	if err != nil {
		pc.discard()
		return nil, ErrRemoteUnreachable.Wrap(err)
	}
	pc.c = c
	if err := pc.forward(ctx, x); err != nil {
		pc.discard()
		return nil, ErrRemoteUnreachable.Wrap(err)
	}
	return pc, nil
}

// forward passes the original client's attributes on, with XCLIENT
// (once per session: it changes the session until the next XCLIENT) or
// else XFORWARD (per transaction), when the server offers either. A
// server that offers neither learns nothing, and nothing is invented.
func (pc *pooledConn) forward(ctx context.Context, x protocol.XClientAttrs) error {
	c := pc.c
	if ttl, ok := x.Other["TTL"]; ok {
		// TTL, the hop count, goes only to a server that lists it.
		x.Other = nil
		if slices.Contains(c.XClientAttributes(), "TTL") {
			x.Other = map[string]string{"TTL": ttl}
		}
	}
	if xkey(x) == (xclientKey{}) {
		return nil
	}
	switch {
	case c.XClientAttributes() != nil:
		if pc.xclient == xkey(x) {
			return nil
		}
		if err := c.XClient(ctx, &x); err != nil {
			return err
		}
		pc.xclient = xkey(x)
	case c.XForwardAttributes() != nil:
		return c.XForward(ctx, &protocol.XForward{Addr: x.Addr, Name: x.Name, Port: x.Port, Helo: x.Helo, Proto: x.Proto})
	}
	return nil
}

// put gives pc back: into the idle list when it is still usable and the
// list has room, else closed. Its slot is freed either way.
func (p *remotePool) put(pc *pooledConn) {
	if pc.c.Err() != nil || p.ps.isClosed() {
		pc.discard()
		return
	}
	pc.used = time.Now()
	pc.release() // before another get can take pc from the idle list
	p.mu.Lock()
	keep := len(p.idle) < p.set.MaxConnections
	if keep {
		p.idle = append(p.idle, pc)
	}
	p.mu.Unlock()
	if !keep {
		pc.c.Close()
		return
	}
	// Closes pc once it has been idle too long, unless it is reused.
	time.AfterFunc(p.set.IdleTimeout+time.Millisecond, p.sweep)
}

// sweep closes the idle connections unused for longer than IdleTimeout,
// so that connections the server will drop anyway are not kept open.
func (p *remotePool) sweep() {
	var old []*pooledConn
	p.mu.Lock()
	kept := p.idle[:0]
	for _, pc := range p.idle {
		if time.Since(pc.used) > p.set.IdleTimeout {
			old = append(old, pc)
		} else {
			kept = append(kept, pc)
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	p.mu.Unlock()
	for _, pc := range old {
		pc.c.Close()
	}
}

// discard closes pc and frees its slot.
func (pc *pooledConn) discard() {
	if pc.c != nil {
		pc.c.Close()
	}
	pc.release()
}

// release frees pc's slot, if it holds one.
func (pc *pooledConn) release() {
	if pc.slot {
		pc.slot = false
		<-pc.p.slots
	}
}

// xclientKey is the comparable part of the attributes lmtpd passes on.
type xclientKey struct{ addr, name, port, helo, proto, ttl string }

func xkey(x protocol.XClientAttrs) xclientKey {
	return xclientKey{x.Addr, x.Name, x.Port, x.Helo, x.Proto, x.Other["TTL"]}
}
