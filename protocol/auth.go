package protocol

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	gosasl "github.com/emersion/go-sasl"

	"github.com/lmtpd/lmtpd/sasl"
)

// Authenticator provides SASL mechanisms for AUTH (RFC 4954). The sasl
// package of this module implements PLAIN, LOGIN, SCRAM-SHA-256 and
// CRAM-MD5 on top of github.com/emersion/go-sasl; PasswordAuth adapts a
// plain password check.
type Authenticator interface {
	// Mechanisms lists the mechanisms offered on the connection, in order
	// of preference. It may depend on conn.TLS: plaintext mechanisms
	// should be offered only over TLS (RFC 4954 section 4).
	Mechanisms(conn *ConnState) []string
	// NewServer starts an exchange for mech, one of those Mechanisms
	// returned. Errors from the returned server's Next become replies
	// thus: an *Error as it is; sasl.ErrMalformed 501 5.5.2; sasl.
	// ErrAuthFailed and go-sasl's errors 535 5.7.8; anything else (a
	// credential store that failed) 454 4.7.0 (RFC 4954 section 6).
	NewServer(ctx context.Context, conn *ConnState, mech string) (SASLServer, error)
}

// SASLServer is one server side of a SASL exchange: go-sasl's Server plus
// the authenticated identity.
type SASLServer interface {
	// Next takes the client's response (nil before an absent initial
	// response) and returns the next challenge, or done.
	Next(response []byte) (challenge []byte, done bool, err error)
	// Username returns the authenticated user once Next reported done.
	Username() string
}

// Replies of RFC 4954 section 6 that an Authenticator may return itself
// (AuthError maps the sasl package's errors to them).
var (
	// ErrAuthInvalid: the credentials were not proven, 535 5.7.8.
	ErrAuthInvalid = NewError(CodeAuthFailed, ECPermAuthInvalid, "Authentication credentials invalid")
	// ErrAuthMalformed: the client broke the mechanism, 501 5.5.2.
	ErrAuthMalformed = NewError(CodeParamSyntax, ECPermSyntax, "Malformed authentication exchange")
	// ErrAuthTemporary: the credentials could not be checked (a store
	// that failed), 454 4.7.0.
	ErrAuthTemporary = NewError(CodeTempAuthFailure, ECTempSecurity, "Temporary authentication failure")
	// ErrAuthUnknownMechanism: the mechanism is not offered, 504 5.5.4.
	ErrAuthUnknownMechanism = NewError(CodeParamNotImpl, ECPermInvalidArgs, "Unrecognized authentication type")
)

// Replies of RFC 4954 section 6 that only the server sends.
var (
	errAuthCancelled   = NewError(CodeParamSyntax, ECPermSecurity, "Authentication cancelled")
	errAuthBadBase64   = NewError(CodeParamSyntax, ECPermSyntax, "Invalid base64 data")
	errAuthNeedsTLS    = NewError(CodeEncryptionRequired, ECPermEncryptionRequired, "Encryption required for requested authentication mechanism")
	errAuthLineTooLong = NewError(CodeSyntaxError, ECPermAuthLineLong, "Authentication exchange line is too long")
	errAuthBusy        = NewError(CodeTempAuthFailure, ECTempSecurity, "Too many authentications in progress, try again later")
)

// errBudgetUsed ends an exchange whose step could not reserve a failure
// against the client address's budget.
var errBudgetUsed = errors.New("per-address AUTH failure budget used up")

// AuthError returns the reply for an error from a SASL exchange (RFC 4954
// section 6): an *Error in err's chain as it is; sasl.ErrMalformed
// ErrAuthMalformed (501 5.5.2); sasl.ErrAuthFailed and go-sasl's
// ErrUnexpectedClientResponse ErrAuthInvalid (535 5.7.8); anything else (a
// credential store that failed) ErrAuthTemporary (454 4.7.0). The reply
// carries err as its cause, for the log. The server maps what
// SASLServer.Next returns with it; an Authenticator may call it to see
// the reply its error will get (to count outcomes, for example).
func AuthError(err error) *Error {
	if e := AsError(err); e != nil {
		return e
	}
	switch {
	case errors.Is(err, sasl.ErrMalformed):
		return ErrAuthMalformed.Wrap(err)
	case errors.Is(err, sasl.ErrAuthFailed), errors.Is(err, gosasl.ErrUnexpectedClientResponse):
		return ErrAuthInvalid.Wrap(err)
	}
	return ErrAuthTemporary.Wrap(err)
}

// authReply maps an error from a SASL exchange to its reply (AuthError)
// and says whether it counts as a failed attempt: a permanent reply does.
func authReply(err error) (*Error, bool) {
	e := AuthError(err)
	return e, !e.Temporary()
}

func (c *conn) authMechanisms() []string {
	if c.srv.Auth == nil || c.state.AuthIdentity != "" {
		return nil
	}
	return c.srv.Auth.Mechanisms(&c.state)
}

// offeredUnderTLS reports whether mech, not offered on this plain
// connection, would be after STARTTLS.
func (c *conn) offeredUnderTLS(mech string) bool {
	if c.state.TLS != nil || c.srv.TLSConfig == nil {
		return false
	}
	st := c.state
	st.TLS = &tls.ConnectionState{}
	for _, m := range c.srv.Auth.Mechanisms(&st) {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

func (c *conn) cmdAuth(arg string) bool {
	switch {
	case c.srv.Auth == nil:
		c.reply(CodeNotImplemented, ECPermInvalidCommand, "AUTH not available")
		return c.countError()
	case !c.greeted || !c.state.ESMTP:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "Send EHLO first")
		return c.countError()
	case c.state.AuthIdentity != "":
		c.reply(CodeBadSequence, ECPermInvalidCommand, "Already authenticated")
		return c.countError()
	case c.tx != nil:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "AUTH not allowed during a mail transaction")
		return c.countError()
	}
	mech, ir, _ := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	if mech == "" {
		c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: AUTH mechanism [initial-response]")
		return c.countError()
	}
	offered := false
	for _, m := range c.authMechanisms() {
		if strings.EqualFold(m, mech) {
			offered = true
			break
		}
	}
	if !offered {
		if c.offeredUnderTLS(mech) {
			// RFC 4954 section 6: the mechanism exists but only on an
			// encrypted connection.
			c.replyErr(errAuthNeedsTLS)
		} else {
			c.replyErr(ErrAuthUnknownMechanism)
		}
		return c.countError()
	}
	if c.srv.authBudgetExhausted(c.ip) {
		return c.authBudgetSpent()
	}
	srv, err := c.srv.Auth.NewServer(c.ctx, &c.state, mech)
	if err != nil {
		c.replyErr(err)
		return true
	}
	var resp []byte
	if ir != "" {
		if resp, err = decodeAuthLine(ir); err != nil {
			c.replyErr(err)
			return c.countError()
		}
	}
	for {
		challenge, done, err := c.authStep(srv, resp)
		switch {
		case errors.Is(err, errBudgetUsed):
			return c.authBudgetSpent()
		case errors.Is(err, ErrAuthBusy):
			c.log.Warn().Msg("AUTH refused: too many authentications in progress")
			c.replyErr(errAuthBusy)
			return true
		case err != nil && c.ctx.Err() != nil:
			return false
		}
		if err != nil {
			e, counts := authReply(err)
			if !counts {
				c.log.Warn().Err(err).Msg("authentication could not be checked")
				c.replyErr(e)
				return true
			}
			return c.authFailed(e)
		}
		if done {
			c.state.AuthIdentity = srv.Username()
			c.log.Info().Str("mech", mech).Str("user", c.state.AuthIdentity).Msg("authenticated")
			c.reply(CodeAuthSucceeded, ECSecurityOK, "Authentication successful")
			return true
		}
		c.writeReply(CodeAuthContinue, EnhancedCode{}, false, base64.StdEncoding.EncodeToString(challenge))
		line, err := c.readLine(maxAuthLineLength)
		if errors.Is(err, errLineTooLong) {
			c.replyErr(errAuthLineTooLong)
			return c.countError()
		}
		if isTimeout(err) {
			// As for a command (conn.nextCommand): the close is
			// announced with 421 (RFC 5321 sections 3.8 and 4.5.3.2.7).
			c.log.Info().Msg("AUTH response timeout")
			c.reply(CodeServiceUnavailable, ECTempBadConnection, c.srv.hostname()+" Timeout waiting for AUTH response, closing connection")
			c.bw.Flush()
			return false
		}
		if err != nil {
			return false
		}
		if len(line) == 1 && line[0] == '*' {
			c.replyErr(errAuthCancelled)
			return c.countError()
		}
		if resp, err = decodeAuthLine(string(line)); err != nil {
			c.replyErr(err)
			return c.countError()
		}
	}
}

// authBudgetSpent refuses AUTH when the client address's failure budget
// is used up, and ends the session: 421 with the server's domain first,
// as RFC 5321 section 4.2.3 writes every 421.
func (c *conn) authBudgetSpent() bool {
	c.log.Warn().Msg("AUTH refused: per-address failure budget exhausted")
	c.reply(CodeServiceUnavailable, ECTempSecurity, c.srv.hostname()+" Too many authentication failures from your address, try again later")
	c.bw.Flush()
	return false
}

// authStep runs one step of an exchange under the server's limits. A
// failure is first reserved against the client address's budget, so that
// a step that verifies counts as failed until it is known not to have
// (errBudgetUsed if none is left); then a slot of the AuthLimiter is taken
// (ErrAuthBusy past the queue timeout, or the context's error); then Next
// runs. The reservation is kept when Next fails in a way that counts as a
// failure (authReply), and given back otherwise. Every step goes through
// this, not only the last, because only the mechanism knows which step
// verifies: the proof of SCRAM-SHA-256 is its second, the password of
// PLAIN with an initial response its first.
func (c *conn) authStep(srv SASLServer, resp []byte) (challenge []byte, done bool, err error) {
	res, ok := c.srv.reserveAuthFailure(c.ip)
	if !ok {
		return nil, false, errBudgetUsed
	}
	release, err := c.srv.authLimiter().Acquire(c.ctx)
	if err != nil {
		c.srv.refundAuthFailure(c.ip, res)
		return nil, false, err
	}
	func() {
		// A panicking Authenticator must not keep the slot: the
		// connection's recover answers 421, the server goes on.
		defer release()
		challenge, done, err = srv.Next(resp)
	}()
	if err == nil {
		c.srv.refundAuthFailure(c.ip, res)
	} else if _, counts := authReply(err); !counts {
		c.srv.refundAuthFailure(c.ip, res)
	}
	return challenge, done, err
}

// decodeAuthLine decodes a base64 response; "=" is the empty response
// (RFC 4954 section 4).
func decodeAuthLine(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errAuthBadBase64
	}
	return b, nil
}

// authFailed answers a failed exchange after a delay that doubles with
// each failure on the connection, and closes the connection after
// MaxAuthFailures (slowing down password guessing).
func (c *conn) authFailed(e *Error) bool {
	c.authFailures++ // the address's budget was charged by authStep
	c.log.Info().Int("failures", c.authFailures).Msg("authentication failed")
	if delay := c.srv.authFailureDelay(); delay > 0 {
		delay <<= min(c.authFailures-1, 4)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return false
		}
	}
	c.replyErr(e)
	if c.authFailures >= orInt(c.srv.MaxAuthFailures, DefaultMaxAuthFailures) {
		c.reply(CodeServiceUnavailable, ECTempSecurity, c.srv.hostname()+" Too many authentication failures, closing connection")
		c.bw.Flush()
		return false
	}
	return true
}

// authBudget tracks failed AUTH attempts per client address over
// Server.AuthFailureWindow, and holds the server's own AuthLimiter.
type authBudget struct {
	mu sync.Mutex
	m  map[netip.Addr]*authCount

	limOnce sync.Once
	lim     *AuthLimiter
}

// authCount is one address's failures in its current window, reserved
// ones included.
type authCount struct {
	n     int
	since time.Time
}

// authLimiter returns Server.AuthLimiter or the server's own.
func (s *Server) authLimiter() *AuthLimiter {
	if s.AuthLimiter != nil {
		return s.AuthLimiter
	}
	b := &s.authFails
	b.limOnce.Do(func() { b.lim = NewAuthLimiter(s.MaxAuthVerifications, s.AuthQueueTimeout) })
	return b.lim
}

func (s *Server) authFailureWindow() time.Duration {
	return orDur(s.AuthFailureWindow, DefaultAuthFailureWindow)
}

func (s *Server) maxAuthFailuresPerIP() int {
	return orInt(s.MaxAuthFailuresPerIP, DefaultMaxAuthFailuresPerIP)
}

// authBudgetExhausted reports whether ip used up its failures in the
// current window. Connections without an IP address (unix sockets) have no
// budget.
func (s *Server) authBudgetExhausted(ip netip.Addr) bool {
	if !ip.IsValid() || s.maxAuthFailuresPerIP() < 0 {
		return false
	}
	b := &s.authFails
	b.mu.Lock()
	defer b.mu.Unlock()
	ac := b.m[ip]
	if ac == nil {
		return false
	}
	if time.Since(ac.since) > s.authFailureWindow() {
		delete(b.m, ip)
		return false
	}
	return ac.n >= s.maxAuthFailuresPerIP()
}

// reserveAuthFailure counts a failure for ip in advance, unless its
// budget is used up (false). The returned count is what
// refundAuthFailure gives the failure back to; it is nil when ip has no
// budget.
func (s *Server) reserveAuthFailure(ip netip.Addr) (*authCount, bool) {
	if !ip.IsValid() || s.maxAuthFailuresPerIP() < 0 {
		return nil, true
	}
	b := &s.authFails
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[netip.Addr]*authCount)
	}
	now := time.Now()
	if len(b.m) > 100000 {
		// Bound the table: drop expired entries.
		for k, v := range b.m {
			if now.Sub(v.since) > s.authFailureWindow() {
				delete(b.m, k)
			}
		}
	}
	ac := b.m[ip]
	if ac == nil || now.Sub(ac.since) > s.authFailureWindow() {
		ac = &authCount{since: now}
		b.m[ip] = ac
	}
	if ac.n >= s.maxAuthFailuresPerIP() {
		return nil, false
	}
	ac.n++
	return ac, true
}

// refundAuthFailure gives back a failure reserved by reserveAuthFailure.
// A reservation from a window that has since been replaced is dropped
// with its window.
func (s *Server) refundAuthFailure(ip netip.Addr, ac *authCount) {
	if ac == nil {
		return
	}
	b := &s.authFails
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m[ip] == ac && ac.n > 0 {
		ac.n--
	}
}

// PasswordAuth is an Authenticator from a password check: the auth hook of
// the simple API. It offers PLAIN (RFC 4616) and LOGIN over TLS, and over
// plain connections too when Insecure is set. The function returns nil to
// accept; sasl.ErrAuthFailed (or any *Error) to refuse.
type PasswordAuth struct {
	Check    func(ctx context.Context, conn *ConnState, username, password string) error
	Insecure bool
}

// Mechanisms implements Authenticator.
func (a *PasswordAuth) Mechanisms(conn *ConnState) []string {
	if conn.TLS == nil && !a.Insecure {
		return nil
	}
	return []string{sasl.MechPlain, sasl.MechLogin}
}

// NewServer implements Authenticator.
func (a *PasswordAuth) NewServer(ctx context.Context, conn *ConnState, mech string) (SASLServer, error) {
	check := func(username, password string) error { return a.Check(ctx, conn, username, password) }
	switch mech {
	case sasl.MechPlain:
		return sasl.NewPlainServer(check), nil
	case sasl.MechLogin:
		return sasl.NewLoginServer(check), nil
	}
	return nil, ErrAuthUnknownMechanism
}
