package main

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/sasl"
)

// authenticator is the protocol.Authenticator of a listener with auth
// enabled, on the shared credential store (which SIGHUP replaces).
type authenticator struct {
	store    *sasl.Store
	insecure bool // offer PLAIN and LOGIN without TLS
	tlsOnly  bool // offer nothing without TLS, SCRAM-SHA-256 included
	// outcome, if not nil, counts each finished exchange by mechanism
	// and result ("ok", "failed", "malformed", "error").
	outcome func(mech, result string)
	// dirs, if not nil, holds the [auth] directory (dirauth.go): PLAIN
	// and LOGIN check its passwords after the store's users.
	dirs *dirAuth
}

// Mechanisms offers what the store's users can use: SCRAM-SHA-256 on any
// connection, PLAIN and LOGIN only under TLS unless insecure_auth is set
// (RFC 4954 section 4: the password itself crosses the connection), and
// nothing without TLS when require_tls_for_auth is set. See the sasl
// package documentation ("Mechanisms without TLS") for why SCRAM is
// offered on plaintext connections by default.
func (a *authenticator) Mechanisms(c *protocol.ConnState) []string {
	if a.tlsOnly && c.TLS == nil {
		return nil
	}
	var out []string
	for _, m := range a.mechanisms() {
		if sasl.IsPlaintext(m) && c.TLS == nil && !a.insecure {
			continue
		}
		out = append(out, m)
	}
	return out
}

// NewServer starts an exchange.
func (a *authenticator) NewServer(ctx context.Context, c *protocol.ConnState, mech string) (protocol.SASLServer, error) {
	if a.dirs != nil {
		switch auth, cram := a.dirs.reg.hasAuth(); {
		case !auth:
		case strings.EqualFold(mech, sasl.MechPlain):
			return &saslServer{s: sasl.NewPlainServer(a.dirs.check(ctx, a.store)), mech: sasl.MechPlain, outcome: a.outcome}, nil
		case strings.EqualFold(mech, sasl.MechLogin):
			return &saslServer{s: sasl.NewLoginServer(a.dirs.check(ctx, a.store)), mech: sasl.MechLogin, outcome: a.outcome}, nil
		case cram && strings.EqualFold(mech, sasl.MechCramMD5):
			return &saslServer{s: sasl.NewCramMD5Server(a.dirs.cramLookup(ctx, a.store), ""), mech: sasl.MechCramMD5, outcome: a.outcome}, nil
		}
	}
	s, err := a.store.NewServer(mech)
	if err != nil {
		if errors.Is(err, sasl.ErrUnsupportedMechanism) {
			return nil, protocol.ErrAuthUnknownMechanism
		}
		return nil, protocol.ErrAuthTemporary.Wrap(err)
	}
	return &saslServer{s: s, mech: strings.ToUpper(mech), outcome: a.outcome}, nil
}

// saslServer maps the sasl package's errors to AUTH replies.
type saslServer struct {
	s       sasl.Server
	mech    string
	outcome func(mech, result string)
}

func (s *saslServer) Next(resp []byte) ([]byte, bool, error) {
	ch, done, err := s.s.Next(resp)
	if err != nil {
		err = protocol.AuthError(err)
		if s.outcome != nil {
			s.outcome(s.mech, authResult(err))
		}
		return nil, false, err
	}
	if done && s.outcome != nil {
		s.outcome(s.mech, "ok")
	}
	return ch, done, nil
}

func (s *saslServer) Username() string { return s.s.Username() }

func authResult(err error) string {
	switch protocol.AsError(err).Code {
	case protocol.CodeAuthFailed:
		return "failed"
	case protocol.CodeParamSyntax:
		return "malformed"
	}
	return "error"
}

// errSenderNotOwned refuses MAIL FROM an address the authenticated user
// does not own (RFC 3463 X.7.1: delivery not authorized).
var errSenderNotOwned = protocol.NewError(protocol.CodeMailboxNameInvalid, protocol.ECPermNotAuthorized, "Sender address rejected: not owned by the authenticated user")

// senderPolicy holds which addresses each user may send as, for
// auth.restrict_sender; SIGHUP swaps it.
type senderPolicy struct {
	// byUser maps a prepared user name to its addresses: "local@domain"
	// or "@domain" for the whole domain.
	byUser map[string][]string
	on     bool
}

// restrictSender is a protocol.Backend that refuses, when the policy is
// on and the session is authenticated, a sender the user does not own.
// The null sender is allowed: bounces carry no sender to own.
type restrictSender struct {
	next   protocol.Backend
	policy atomic.Pointer[senderPolicy]
}

func (r *restrictSender) Mail(ctx context.Context, c *protocol.ConnState, from protocol.Address, p *protocol.MailParams) (protocol.Transaction, error) {
	if pol := r.policy.Load(); pol != nil && pol.on && c.AuthIdentity != "" && !from.IsNull() {
		if !owns(pol.byUser[c.AuthIdentity], from) {
			return nil, errSenderNotOwned
		}
	}
	return r.next.Mail(ctx, c, from, p)
}

// CheckConn passes the check on when the wrapped backend has one.
func (r *restrictSender) CheckConn(ctx context.Context, c *protocol.ConnState) error {
	if cc, ok := r.next.(protocol.ConnChecker); ok {
		return cc.CheckConn(ctx, c)
	}
	return nil
}

// owns reports whether addrs includes from: the domain compared without
// regard to case (RFC 5321 section 2.4), the local part exactly as the
// configuration spells it, except that "@domain" covers the domain.
func owns(addrs []string, from protocol.Address) bool {
	local, domain := from.DecodedLocalPart(), from.Domain
	for _, a := range addrs {
		i := strings.LastIndexByte(a, '@')
		if i < 0 || !strings.EqualFold(a[i+1:], domain) {
			continue
		}
		if i == 0 || a[:i] == local {
			return true
		}
	}
	return false
}
