package quota

import (
	"errors"
	"io/fs"
	"sync"
)

// Tracker coordinates the deliveries of one process: a delivery reserves
// room for its message before storing it, and concurrent deliveries to one
// maildir see each other's reservations, so they cannot all pass the check
// at once. The zero value is ready to use; a Tracker is safe for
// concurrent use.
type Tracker struct {
	// Options are passed to Open for every maildir.
	Options Options

	mu   sync.Mutex
	dirs map[string]*dirState
}

// dirState is one maildir's in-process state.
type dirState struct {
	mu      sync.Mutex // serialises reading and appending for the maildir
	pending Usage      // reserved by deliveries not yet committed
	users   int        // reservations and callers holding the entry
}

// Reservation is room reserved for one message in one maildir. Exactly one
// of Commit or Release must be called when Verdict is Fits; both are
// no-ops otherwise.
type Reservation struct {
	// Verdict says whether the message fits.
	Verdict Verdict
	// Before is the usage before this message, counting other
	// deliveries in flight.
	Before Usage
	// Limits are the limits the check used.
	Limits Limits

	t    *Tracker
	dir  string
	size int64
	st   *dirState
}

// entry returns the state of dir, holding a use.
func (t *Tracker) entry(dir string) *dirState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dirs == nil {
		t.dirs = make(map[string]*dirState)
	}
	st := t.dirs[dir]
	if st == nil {
		st = &dirState{}
		t.dirs[dir] = st
	}
	st.users++
	return st
}

// put drops a use of dir's state.
func (t *Tracker) put(dir string, st *dirState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st.users--; st.users == 0 {
		delete(t.dirs, dir)
	}
}

// Usage returns the usage of the maildir at dir under limits l, counting
// the deliveries in flight.
func (t *Tracker) Usage(dir string, l Limits) (Usage, error) {
	st := t.entry(dir)
	defer t.put(dir, st)
	st.mu.Lock()
	defer st.mu.Unlock()
	u, err := t.usage(dir, l)
	if err != nil {
		return Usage{}, err
	}
	return u.Add(st.pending), nil
}

func (t *Tracker) usage(dir string, l Limits) (Usage, error) {
	m, err := Open(dir, l, t.Options)
	if errors.Is(err, fs.ErrNotExist) {
		// The user's first delivery creates the maildir.
		return Usage{}, nil
	}
	if err != nil {
		return Usage{}, err
	}
	defer m.Close()
	return m.Usage()
}

// Reserve checks whether a message of size bytes fits the maildir at dir
// under limits l with grace g and, if it does, reserves the room. An error
// means the usage is not known now (the caller defers the message).
func (t *Tracker) Reserve(dir string, l Limits, g Grace, size int64) (*Reservation, error) {
	st := t.entry(dir)
	st.mu.Lock()
	u, err := t.usage(dir, l)
	if err != nil {
		st.mu.Unlock()
		t.put(dir, st)
		return nil, err
	}
	r := &Reservation{Before: u.Add(st.pending), Limits: l}
	r.Verdict = Check(l, r.Before, size, g)
	if r.Verdict != Fits {
		st.mu.Unlock()
		t.put(dir, st)
		return r, nil
	}
	st.pending = st.pending.Add(Usage{Bytes: size, Messages: 1})
	st.mu.Unlock()
	r.t, r.dir, r.size, r.st = t, dir, size, st
	return r, nil
}

// Commit records the stored message (of stored bytes, which may differ
// from the size reserved) in maildirsize and ends the reservation. Call it
// after the message is durable in the maildir. An error does not undo the
// delivery: the count is mended by the next recalculation, so the caller
// logs it and still reports the message delivered.
func (r *Reservation) Commit(stored int64) error {
	if r.st == nil {
		return nil
	}
	st := r.st
	r.st.mu.Lock()
	defer func() {
		st.mu.Unlock()
		r.t.put(r.dir, st)
	}()
	r.release()
	m, err := Open(r.dir, r.Limits, r.t.Options)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Add(Usage{Bytes: stored, Messages: 1})
}

// Release ends a reservation whose message was not stored.
func (r *Reservation) Release() {
	if r.st == nil {
		return
	}
	st := r.st
	st.mu.Lock()
	r.release()
	st.mu.Unlock()
	r.t.put(r.dir, st)
}

// release drops the pending room; st.mu is held.
func (r *Reservation) release() {
	r.st.pending = r.st.pending.Add(Usage{Bytes: -r.size, Messages: -1})
	r.st = nil
}

// Add records d in the maildirsize of the maildir at dir under limits l,
// outside any reservation and whatever the limits say: for a message that
// is stored regardless of the quota, such as a quota warning, so that the
// file stays consistent with a recalculation. Like Reservation.Commit it
// is called once the message is in the maildir, and an error leaves the
// count to the next recalculation.
func (t *Tracker) Add(dir string, l Limits, d Usage) error {
	st := t.entry(dir)
	defer t.put(dir, st)
	st.mu.Lock()
	defer st.mu.Unlock()
	m, err := Open(dir, l, t.Options)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Add(d)
}
