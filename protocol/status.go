package protocol

import "sync"

// One message, several recipients: RFC 2033 (LMTP) answers once per
// recipient, RFC 5321 (SMTP) once per message. The rule below folds
// per-recipient statuses into the one SMTP reply; every place that folds
// (the SMTP session, a router with several destinations per recipient, a
// local delivery agent's exit status) uses it.

// WorseStatus returns whichever of two statuses decides a folded reply:
// a failure over success (nil), a temporary failure over a permanent one,
// and otherwise a, the earlier one. An error that is not an *Error counts
// as temporary: it is answered with a generic temporary failure.
//
// Temporary wins because the client then retries the whole message, so
// nothing is lost, at the price of a duplicate for the recipients already
// delivered; a permanent reply makes the client return the message to its
// sender, so a recipient that could have had it on a retry would lose it
// for good.
func WorseStatus(a, b error) error {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	if !isTemporary(a) && isTemporary(b) {
		return b
	}
	return a
}

// DecidingStatus returns the index of the status that the one SMTP reply
// for statuses carries (see WorseStatus): the first temporary failure if
// there is one, else the first permanent failure, or -1 when every
// recipient was delivered.
func DecidingStatus(statuses []error) int {
	decisive := -1
	for i, err := range statuses {
		if err == nil {
			continue
		}
		if isTemporary(err) {
			return i
		}
		if decisive < 0 {
			decisive = i
		}
	}
	return decisive
}

// FoldStatuses returns the status at DecidingStatus, or nil when every
// recipient was delivered.
func FoldStatuses(statuses []error) error {
	if i := DecidingStatus(statuses); i >= 0 {
		return statuses[i]
	}
	return nil
}

// isTemporary reports whether err is answered with a 4xx reply.
func isTemporary(err error) bool {
	e := AsError(err)
	return e == nil || e.Temporary()
}

// StatusList collects the statuses of one Transaction.Data call: it is the
// StatusSetter a caller outside a Server hands to Data (the server's own
// sessions use the same rule). Only the first Set for an index counts;
// indexes out of range are ignored. It is safe for concurrent use.
type StatusList struct {
	mu sync.Mutex
	s  statusSlots
}

// NewStatusList returns a StatusList for n recipients.
func NewStatusList(n int) *StatusList {
	l := &StatusList{}
	l.s.reset(n)
	return l
}

// Set implements StatusSetter.
func (l *StatusList) Set(i int, err error) {
	l.mu.Lock()
	l.s.set(i, err)
	l.mu.Unlock()
}

// Finish gives every recipient left without a status dataErr, Data's
// return value (RFC 2033: nil means delivered), and returns the statuses
// in recipient order. Set has no effect afterwards.
func (l *StatusList) Finish(dataErr error) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s.fill(dataErr)
	return l.s.errs
}

// statusSlots is the storage of a status collector: one status per
// recipient and whether it was set. The owner provides the locking.
type statusSlots struct {
	errs []error
	done []bool
}

// reset prepares the slots for n recipients, reusing their memory.
func (s *statusSlots) reset(n int) {
	s.errs = growClear(s.errs, n)
	s.done = growClear(s.done, n)
}

// set records err for recipient i if it has no status yet and reports
// whether it did.
func (s *statusSlots) set(i int, err error) bool {
	if i < 0 || i >= len(s.done) || s.done[i] {
		return false
	}
	s.done[i], s.errs[i] = true, err
	return true
}

// fill gives every recipient without a status err.
func (s *statusSlots) fill(err error) {
	for i, done := range s.done {
		if !done {
			s.done[i], s.errs[i] = true, err
		}
	}
}

// setAll gives every recipient err, whatever it had.
func (s *statusSlots) setAll(err error) {
	for i := range s.done {
		s.done[i], s.errs[i] = true, err
	}
}

func growClear[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}
