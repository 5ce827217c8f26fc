package maildir

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSyncerCoverage checks the group-commit rule under contention: every
// caller returns only after an fsync that started after the caller asked,
// and callers share fsyncs.
func TestSyncerCoverage(t *testing.T) {
	var s GroupSync
	var clock atomic.Int64 // logical time
	type run struct{ start, end int64 }
	var mu sync.Mutex
	var runs []run
	do := func() error {
		r := run{start: clock.Add(1)}
		time.Sleep(200 * time.Microsecond)
		r.end = clock.Add(1)
		mu.Lock()
		runs = append(runs, r)
		mu.Unlock()
		return nil
	}
	const callers = 64
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Go(func() {
			for j := 0; j < 20; j++ {
				asked := clock.Add(1)
				if err := s.Sync("d", do); err != nil {
					t.Error(err)
				}
				answered := clock.Add(1)
				mu.Lock()
				ok := false
				for _, r := range runs {
					if r.start > asked && r.end < answered {
						ok = true
						break
					}
				}
				mu.Unlock()
				if !ok {
					t.Errorf("caller asked at %d, answered at %d, without a covering fsync", asked, answered)
				}
			}
		})
	}
	wg.Wait()
	if len(runs) >= callers*20 {
		t.Errorf("%d fsyncs for %d calls: no sharing", len(runs), callers*20)
	}
	t.Logf("%d fsyncs for %d calls", len(runs), callers*20)
	if len(s.dirs) != 0 {
		t.Errorf("idle GroupSync keeps %d entries", len(s.dirs))
	}
}

func TestSyncerError(t *testing.T) {
	var s GroupSync
	boom := errors.New("boom")
	started := make(chan struct{})
	release := make(chan struct{})
	first := make(chan error)
	go func() {
		first <- s.Sync("d", func() error { close(started); <-release; return nil })
	}()
	<-started
	// These callers ask while the first fsync runs: it does not cover
	// them, the next one does, and it fails.
	var wg sync.WaitGroup
	errs := make([]error, 5)
	var calls atomic.Int32
	for i := range errs {
		wg.Go(func() {
			errs[i] = s.Sync("d", func() error { calls.Add(1); time.Sleep(20 * time.Millisecond); return boom })
		})
	}
	time.Sleep(10 * time.Millisecond)
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, boom) {
			t.Errorf("caller %d: %v, want boom", i, err)
		}
	}
	// Normally one fsync serves all five; a slow wake-up may need a second.
	if n := calls.Load(); n > 2 {
		t.Errorf("%d fsyncs for the waiting callers, want 1", n)
	}
	// Different directories do not wait for each other.
	if err := s.Sync("other", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}
