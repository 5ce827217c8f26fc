package pipe

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

func TestLimiter(t *testing.T) {
	l := NewLimiter(2, 50*time.Millisecond)
	if l.Max() != 2 || l.Wait() != 50*time.Millisecond {
		t.Fatalf("Max %d Wait %v", l.Max(), l.Wait())
	}
	ctx := context.Background()
	r1, err := l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.InUse() != 2 {
		t.Errorf("InUse = %d, want 2", l.InUse())
	}
	// Full: the third waits its 50ms and is deferred with 451 4.3.2.
	_, err = l.Acquire(ctx)
	wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 2}, "Too many delivery commands running")
	if !errors.Is(err, ErrBusy) {
		t.Errorf("error %v does not wrap ErrBusy", err)
	}
	// A slot freed while waiting is taken.
	got := make(chan error, 1)
	go func() {
		r, err := (&Limiter{slots: l.slots, wait: 10 * time.Second}).Acquire(ctx)
		if err == nil {
			r()
		}
		got <- err
	}()
	time.Sleep(10 * time.Millisecond)
	r1()
	if err := <-got; err != nil {
		t.Errorf("waiting Acquire after a release: %v", err)
	}
	// The context ending while waiting: 451 4.3.0, the cause wrapped.
	r1, _ = l.Acquire(ctx)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = (&Limiter{slots: l.slots, wait: 10 * time.Second}).Acquire(cctx)
	wantReply(t, err, 451, protocol.EnhancedCode{4, 3, 0}, msgInterrupted)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	r1()
	r2()
	if l.InUse() != 0 {
		t.Errorf("InUse = %d after every release", l.InUse())
	}

	var none *Limiter
	r, err := none.Acquire(ctx)
	if err != nil || none.Max() != 0 {
		t.Fatalf("nil Limiter: %v", err)
	}
	r()

	d := NewLimiter(0, 0)
	if d.Max() != DefaultMaxProcesses || d.Wait() != DefaultMaxWait {
		t.Errorf("defaults: %d %v", d.Max(), d.Wait())
	}
}

// BenchmarkReapScan measures one full scan of /proc for a run's
// leftovers (no fork count, so no pid window): the reaper's cost when the
// window cannot be used. BenchmarkRunTrue shows the common case.
func BenchmarkReapScan(b *testing.B) {
	// As after a run that just started: only processes as young as this
	// one are looked at closely.
	tr := tracked{pgid: 1 << 30, uid: geteuid(), token: newRunToken(), start: startTime(os.Getpid())}
	for b.Loop() {
		reap(tr)
	}
}
