package socketmap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// fakeHandler serves three maps the way lmtpd's directory-backed handler
// will, and fails on demand by the key's local part:
//
//	domain   example.org → "example.org"
//	mailbox  bob@example.org → "example.org/bob/"; "john doe"@example.org too
//	alias    postmaster@example.org → "bob@example.org,carol@example.org"
//	empty@   OK with an empty value
//	down@    a plain error (a directory that is down)
//	temp@    Temporary("directory unavailable", cause)
//	perm@    Permanent("bad directory entry\nline two", cause)
//	bad@     ErrBadRequest, wrapped
//	slow@    waits for its context to end, returns its error
//	big@     a value one byte too long for the reply limit
//	nul@     a value with a NUL byte
//	panic@   panics
//
// Other maps: ErrBadRequest ("unknown map"). Other keys: ErrNotFound.
type fakeHandler struct {
	mu      sync.Mutex
	calls   []string
	entered chan struct{}
}

func newFakeHandler() *fakeHandler { return &fakeHandler{entered: make(chan struct{}, 16)} }

func (h *fakeHandler) Lookup(ctx context.Context, name, key string) (string, error) {
	h.mu.Lock()
	h.calls = append(h.calls, name+" "+key)
	h.mu.Unlock()
	local, _, _ := strings.Cut(key, "@")
	switch local {
	case "empty":
		return "", nil
	case "down":
		return "", errors.New("dial tcp 10.0.0.9:5432: connection refused")
	case "temp":
		return "", Temporary("directory unavailable", errors.New("ldap: result code 51 busy"))
	case "perm":
		return "", Permanent("bad directory entry\nline two", errors.New("field maildir is empty"))
	case "bad":
		return "", fmt.Errorf("cannot parse %q: %w", key, ErrBadRequest)
	case "slow":
		h.entered <- struct{}{}
		<-ctx.Done()
		return "", ctx.Err()
	case "big":
		return strings.Repeat("x", DefaultMaxReplyBytes-len("OK ")+1), nil
	case "nul":
		return "a\x00b", nil
	case "panic":
		panic("fake handler panics for " + key)
	}
	switch name {
	case "domain":
		if key == "example.org" {
			return "example.org", nil
		}
	case "mailbox":
		switch key {
		case "bob@example.org":
			return "example.org/bob/", nil
		case `"john doe"@example.org`:
			return "example.org/john.doe/", nil
		}
	case "alias":
		if key == "postmaster@example.org" {
			return "bob@example.org,carol@example.org", nil
		}
	default:
		return "", fmt.Errorf("%w: unknown map %q", ErrBadRequest, name)
	}
	return "", ErrNotFound
}

func (h *fakeHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}
