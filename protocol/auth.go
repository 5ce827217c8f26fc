package protocol

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"
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
	// returned. Errors from the returned server's Next that are not
	// *Error are answered 535 5.7.8.
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

// Replies of RFC 4954 section 6.
var (
	errAuthInvalid     = NewError(CodeAuthFailed, EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	errAuthCancelled   = NewError(CodeParamSyntax, EnhancedCode{5, 7, 0}, "Authentication cancelled")
	errAuthBadBase64   = NewError(CodeParamSyntax, EnhancedCode{5, 5, 2}, "Invalid base64 data")
	errAuthUnknownMech = NewError(CodeParamNotImpl, EnhancedCode{5, 5, 4}, "Unrecognized authentication type")
	errAuthLineTooLong = NewError(CodeSyntaxError, EnhancedCode{5, 5, 6}, "Authentication exchange line is too long")
)

func (c *conn) authMechanisms() []string {
	if c.srv.Auth == nil || c.state.AuthIdentity != "" {
		return nil
	}
	return c.srv.Auth.Mechanisms(&c.state)
}

func (c *conn) cmdAuth(arg string) bool {
	switch {
	case c.srv.Auth == nil:
		c.reply(CodeNotImplemented, ecBadCommand, "AUTH not available")
		return c.countError()
	case !c.greeted || !c.state.ESMTP:
		c.reply(CodeBadSequence, ecBadCommand, "Send EHLO first")
		return c.countError()
	case c.state.AuthIdentity != "":
		c.reply(CodeBadSequence, ecBadCommand, "Already authenticated")
		return c.countError()
	case c.tx != nil:
		c.reply(CodeBadSequence, ecBadCommand, "AUTH not allowed during a mail transaction")
		return c.countError()
	}
	mech, ir, _ := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	offered := false
	for _, m := range c.authMechanisms() {
		if strings.EqualFold(m, mech) {
			offered = true
			break
		}
	}
	if !offered {
		c.replyErr(errAuthUnknownMech)
		return c.countError()
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
		challenge, done, err := srv.Next(resp)
		if err != nil {
			return c.authFailed(err)
		}
		if done {
			c.state.AuthIdentity = srv.Username()
			c.log.Info().Str("mech", mech).Str("user", c.state.AuthIdentity).Msg("authenticated")
			c.reply(CodeAuthSucceeded, EnhancedCode{2, 7, 0}, "Authentication successful")
			return true
		}
		c.writeReply(CodeAuthContinue, EnhancedCode{}, false, base64.StdEncoding.EncodeToString(challenge))
		line, err := c.readLine(maxAuthLineLength)
		if errors.Is(err, errLineTooLong) {
			c.replyErr(errAuthLineTooLong)
			return c.countError()
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
func (c *conn) authFailed(err error) bool {
	c.authFailures++
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
	if e := AsError(err); e != nil {
		c.replyErr(e)
	} else {
		c.replyErr(errAuthInvalid)
	}
	if c.authFailures >= orInt(c.srv.MaxAuthFailures, DefaultMaxAuthFailures) {
		c.reply(CodeServiceUnavailable, ecTempPolicy, c.srv.hostname()+" Too many authentication failures, closing connection")
		c.bw.Flush()
		return false
	}
	return true
}
