package quota

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestTrackerConcurrentAtLimit: 8 deliverers race into one maildir near
// its limit; what is stored never exceeds limit + grace, and maildirsize
// agrees with a recalculation afterwards.
func TestTrackerConcurrentAtLimit(t *testing.T) {
	dir := newMaildir(t)
	l := Limits{Bytes: 100_000}
	g := Grace{Percent: 10}
	var tr Tracker
	const size = 3000
	var n atomic.Int64
	var stored, refused atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				r, err := tr.Reserve(dir, l, g, size)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Verdict != Fits {
					refused.Add(1)
					continue
				}
				k := n.Add(1)
				name := fmt.Sprintf("1700000000.M%dP1Q1.host,S=%d", k, size)
				if err := os.WriteFile(filepath.Join(dir, "new", name), make([]byte, size), 0o600); err != nil {
					r.Release()
					t.Error(err)
					return
				}
				if err := r.Commit(size); err != nil {
					t.Error(err)
				}
				stored.Add(size)
			}
		}()
	}
	wg.Wait()
	if refused.Load() == 0 {
		t.Fatal("nothing was refused: the test did not reach the limit")
	}
	if max := l.Bytes + g.of(l.Bytes); stored.Load() > max {
		t.Fatalf("stored %d bytes, more than limit + grace %d", stored.Load(), max)
	}
	m := open(t, dir, l, timeNow())
	u, err := m.Usage()
	if err != nil {
		t.Fatal(err)
	}
	re, err := m.Recalculate()
	if err != nil {
		t.Fatal(err)
	}
	if u != re || u.Bytes != stored.Load() {
		t.Fatalf("maildirsize says %+v, a recalculation %+v, stored %d", u, re, stored.Load())
	}
	if len(tr.dirs) != 0 {
		t.Fatalf("tracker keeps %d entries after all deliveries ended", len(tr.dirs))
	}
}

func TestReservationRelease(t *testing.T) {
	dir := newMaildir(t)
	l := Limits{Messages: 1}
	var tr Tracker
	r1, err := tr.Reserve(dir, l, Grace{}, 10)
	if err != nil || r1.Verdict != Fits {
		t.Fatalf("first: %+v %v", r1, err)
	}
	r2, err := tr.Reserve(dir, l, Grace{}, 10)
	if err != nil || r2.Verdict != OverQuota {
		t.Fatalf("second while the first is in flight: %+v %v", r2, err)
	}
	r2.Release() // no-op on a refused reservation
	r1.Release()
	r3, err := tr.Reserve(dir, l, Grace{}, 10)
	if err != nil || r3.Verdict != Fits {
		t.Fatalf("after release: %+v %v", r3, err)
	}
	r3.Release()
	u, err := tr.Usage(dir, l)
	if err != nil || u != (Usage{}) {
		t.Fatalf("usage after releases %+v %v", u, err)
	}
}

func TestReserveMissingMaildir(t *testing.T) {
	// A user's first delivery creates the maildir: it counts as empty.
	var tr Tracker
	r, err := tr.Reserve(filepath.Join(t.TempDir(), "nope"), Limits{Bytes: 10}, Grace{}, 5)
	if err != nil || r.Verdict != Fits || r.Before != (Usage{}) {
		t.Fatalf("missing maildir: %+v %v", r, err)
	}
	r.Release()
}

// TestTrackerAddPastLimit: Add records a message stored whatever the
// quota (a warning), even at the limit, and the count then matches a
// recalculation.
func TestTrackerAddPastLimit(t *testing.T) {
	dir := newMaildir(t)
	l := Limits{Bytes: 1000}
	var tr Tracker
	put(t, dir, "new", 1, 1000, true)
	if r, err := tr.Reserve(dir, l, Grace{}, 10); err != nil || r.Verdict != OverQuota {
		t.Fatalf("reserve at the limit: %+v %v", r, err)
	}
	put(t, dir, "new", 2, 300, true)
	if err := tr.Add(dir, l, Usage{Bytes: 300, Messages: 1}); err != nil {
		t.Fatal(err)
	}
	u, err := tr.Usage(dir, l)
	if err != nil || u != (Usage{1300, 2}) {
		t.Fatalf("usage %+v %v, want 1300 bytes in 2", u, err)
	}
	if got, err := open(t, dir, l, timeNow()).Recalculate(); err != nil || got != u {
		t.Fatalf("recalculation %+v %v, maildirsize said %+v", got, err, u)
	}
}
