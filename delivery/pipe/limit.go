package pipe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

// Defaults of a Limiter's zero settings.
const (
	// DefaultMaxProcesses is how many runs of one route's command may be
	// in flight at once when the route does not say. Postfix's
	// default_process_limit is 100 for a whole transport; a delivery
	// command (a filter, an MDA) usually costs a process and some memory
	// per run, and 150 parallel LMTP sessions must not mean 150 of them.
	DefaultMaxProcesses = 20
	// DefaultMaxWait is how long a run waits for a free slot before its
	// recipient is deferred with 451 4.3.2: long enough to ride out a burst
	// (a run takes well under a second normally), short enough that the
	// client, which waits for our reply, does not time out first (Postfix
	// waits 600 s for the reply to the end of data).
	DefaultMaxWait = 30 * time.Second
)

// ErrBusy is in the cause chain (errors.Is) of the error Limiter.Acquire
// returns when no slot became free within the wait.
var ErrBusy = errors.New("pipe: too many delivery commands running")

// Limiter bounds how many runs of a command are in flight: Acquire takes
// a slot, waiting in line (first come, first served) for at most the
// Limiter's wait, and the returned release gives it back. A nil *Limiter
// admits everyone at once. A Limiter is safe for concurrent use.
type Limiter struct {
	slots chan struct{}
	wait  time.Duration
}

// NewLimiter returns a Limiter for at most n concurrent runs, each
// waiting at most wait for a slot. n <= 0 means DefaultMaxProcesses, wait
// <= 0 DefaultMaxWait.
func NewLimiter(n int, wait time.Duration) *Limiter {
	if n <= 0 {
		n = DefaultMaxProcesses
	}
	if wait <= 0 {
		wait = DefaultMaxWait
	}
	return &Limiter{slots: make(chan struct{}, n), wait: wait}
}

// Max returns the number of slots; 0 for a nil Limiter (no limit).
func (l *Limiter) Max() int {
	if l == nil {
		return 0
	}
	return cap(l.slots)
}

// Wait returns how long Acquire waits for a slot; 0 for a nil Limiter.
func (l *Limiter) Wait() time.Duration {
	if l == nil {
		return 0
	}
	return l.wait
}

// InUse returns the number of slots taken now.
func (l *Limiter) InUse() int {
	if l == nil {
		return 0
	}
	return len(l.slots)
}

// Acquire takes a slot. It returns a release function, to be called once
// the command has ended, or, when no slot became free within the wait, a
// *protocol.Error 451 4.3.2 (RFC 3463: system not accepting messages, a
// temporary condition) wrapping ErrBusy, and 451 4.3.0 wrapping the cause
// when ctx ended first. Blocked runs are served in arrival order (Go
// channels queue blocked senders FIFO).
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	case <-t.C:
		return nil, protocol.WrapError(protocol.CodeLocalError, protocol.ECTempNotAccepting,
			"Too many delivery commands running, try again later",
			fmt.Errorf("%w: all %d slots busy for %v", ErrBusy, cap(l.slots), l.wait))
	case <-ctx.Done():
		return nil, errInterrupted.Wrap(fmt.Errorf("pipe: waiting for a free slot: %w", context.Cause(ctx)))
	}
}

func (l *Limiter) release() { <-l.slots }
