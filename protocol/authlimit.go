package protocol

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"
)

// DefaultAuthQueueTimeout is how long an AUTH step waits for a free
// verification slot when Server.AuthQueueTimeout is zero.
const DefaultAuthQueueTimeout = 10 * time.Second

// ErrAuthBusy is returned by AuthLimiter.Acquire when no slot came free
// within the queue timeout; the server answers it 454 4.7.0 (RFC 4954
// section 6, temporary authentication failure) and counts no failure.
var ErrAuthBusy = errors.New("protocol: too many authentications in progress")

// AuthLimiter bounds the SASL steps in progress at once: each call of a
// SASLServer's Next, which is where a password hash is verified or a SCRAM
// proof evaluated, holds one slot. Clients beyond the bound wait in line,
// each for at most the queue timeout, and are then told 454 4.7.0.
//
// Why: an argon2id verification allocates the hash's memory parameter
// (m, 64 MiB with the sasl package's default parameters) and keeps a core busy, so
// verifications beyond the number of cores finish no sooner and only add
// memory. With a limit of N slots, the memory of the verifications in
// progress is at most N × m_max, however many clients send AUTH; see
// Server.MaxAuthVerifications for the whole ceiling.
//
// An AuthLimiter is safe for concurrent use and may be shared by several
// Servers (set Server.AuthLimiter), so that the bound holds for the
// process rather than per listener.
type AuthLimiter struct {
	slots   chan struct{}
	wait    time.Duration
	waiting atomic.Int64
}

// NewAuthLimiter returns a limiter with max slots; max <= 0 means
// runtime.GOMAXPROCS(0), the cores the process may use. Acquire waits up
// to wait for a slot; zero means DefaultAuthQueueTimeout, negative not
// waiting at all.
func NewAuthLimiter(max int, wait time.Duration) *AuthLimiter {
	if max <= 0 {
		max = runtime.GOMAXPROCS(0)
	}
	switch {
	case wait == 0:
		wait = DefaultAuthQueueTimeout
	case wait < 0:
		wait = 0
	}
	return &AuthLimiter{slots: make(chan struct{}, max), wait: wait}
}

// Max returns the number of slots.
func (l *AuthLimiter) Max() int { return cap(l.slots) }

// InUse returns the number of slots held now.
func (l *AuthLimiter) InUse() int { return len(l.slots) }

// Waiting returns the number of callers of Acquire waiting for a slot now.
func (l *AuthLimiter) Waiting() int { return int(l.waiting.Load()) }

// Acquire takes a slot, waiting up to the limiter's queue timeout. It
// returns a function that gives the slot back (call it exactly once), or
// ErrAuthBusy when the wait ran out, or ctx's error when ctx ended first.
func (l *AuthLimiter) Acquire(ctx context.Context) (release func(), err error) {
	release = func() { <-l.slots }
	select {
	case l.slots <- struct{}{}:
		return release, nil
	default:
	}
	if l.wait <= 0 {
		return nil, ErrAuthBusy
	}
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, ErrAuthBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
