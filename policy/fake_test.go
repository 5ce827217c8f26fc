package policy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// fakeHandler answers by the recipient's local part, the way a quota
// handler would, and records what it was asked:
//
//	full      552 5.2.2 Mailbox full
//	tempfull  452 4.2.2 Mailbox full
//	ok        OK
//	down      an error (a directory that is down)
//	slow      waits for its context to end, returns its error
//	late      waits for its context to end, then answers DUNNO anyway
//	panic     panics
//	newline   an action with a line break in it
//	badcode   652 5.2.2 (no such reply code)
//	mismatch  552 4.2.2 (enhanced code of the wrong class)
//	anything else, and every state but RCPT: DUNNO
type fakeHandler struct {
	mu   sync.Mutex
	reqs []*Request
	// entered receives a value when a slow or late call starts.
	entered chan struct{}
}

func newFakeHandler() *fakeHandler { return &fakeHandler{entered: make(chan struct{}, 16)} }

func (h *fakeHandler) Policy(ctx context.Context, r *Request) (Action, error) {
	h.mu.Lock()
	h.reqs = append(h.reqs, r)
	h.mu.Unlock()
	if r.ProtocolState != "RCPT" {
		return Dunno, nil
	}
	local, _, _ := strings.Cut(r.Recipient, "@")
	switch local {
	case "full":
		return MailboxFull(false), nil
	case "tempfull":
		return MailboxFull(true), nil
	case "ok":
		return OK, nil
	case "down":
		return "", errors.New("directory down: connection refused")
	case "slow":
		h.entered <- struct{}{}
		<-ctx.Done()
		return "", ctx.Err()
	case "late":
		h.entered <- struct{}{}
		<-ctx.Done()
		time.Sleep(5 * time.Millisecond)
		return Dunno, nil
	case "panic":
		panic("fake handler panics for " + r.Recipient)
	case "newline":
		return Action("REJECT one\nline=two"), nil
	case "badcode":
		return Reject(652, "5.2.2", "No such code"), nil
	case "mismatch":
		return Reject(552, "4.2.2", "Wrong class"), nil
	}
	return Dunno, nil
}

func (h *fakeHandler) calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.reqs)
}

func (h *fakeHandler) last() *Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reqs) == 0 {
		return nil
	}
	return h.reqs[len(h.reqs)-1]
}
