package delivery

import (
	"context"
	"strings"

	"github.com/lmtpd/lmtpd/protocol"
)

// Resolve returns where mail for addr would go now, by the Router's
// current plan and with the same rules as RCPT in LMTP (users, the
// Lookup, aliases, any-user, the catch-all; see the package
// documentation, "Routing"), without delivering anything: a read-only
// view for lookups from outside, such as Postfix's socketmap tables.
//
// The error is what RCPT would answer: ErrUnknownUser,
// ErrDomainNotServed, ErrLookupFailed (451 4.3.0, the Lookup failed: the
// answer is not known now) and the other refusals of the package, each a
// *protocol.Error whose class says whether it is temporary.
//
// Each Destination's Target is the plan's, for its Kind only: it must not
// be staged. A destination handed to a remote LMTP server has its
// Forward set to the server's address; a maildir one its Mailbox (the
// path under the maildir root) and Folder. Resolve is safe for
// concurrent use.
func (r *Router) Resolve(ctx context.Context, addr protocol.Address) ([]Destination, error) {
	st := r.state.Load()
	return st.plan.tab.lookup(ctx, addr, protocol.LMTP, st.plan.opts.Lookup)
}

// Serves reports whether the Router's current plan serves domain (case
// does not matter): mail for it is accepted for the users, aliases and
// catch-all the domain has.
func (r *Router) Serves(domain string) bool {
	return r.state.Load().plan.tab.domains[strings.ToLower(domain)] != nil
}
