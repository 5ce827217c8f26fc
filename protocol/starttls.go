package protocol

import (
	"context"
	"crypto/tls"
	"time"
)

func (c *conn) cmdStartTLS(arg string) bool {
	switch {
	case c.srv.TLSConfig == nil:
		c.reply(CodeNotImplemented, ECPermInvalidCommand, "STARTTLS not available")
		return c.countError()
	case c.state.TLS != nil:
		// RFC 3207 section 4.2: STARTTLS is not offered again.
		c.reply(CodeBadSequence, ECPermInvalidCommand, "TLS already active")
		return c.countError()
	case arg != "":
		c.reply(CodeParamSyntax, ECPermInvalidArgs, "Syntax: STARTTLS")
		return c.countError()
	case c.tx != nil:
		c.reply(CodeBadSequence, ECPermInvalidCommand, "STARTTLS not allowed during a mail transaction")
		return c.countError()
	}
	c.reply(CodeReady, ECOK, "Ready to start TLS")
	if err := c.bw.Flush(); err != nil {
		return false
	}
	// Input pipelined after STARTTLS was sent in plaintext: it must not be
	// executed inside the TLS session (the STARTTLS command injection class,
	// CVE-2011-0411). Discard it.
	if n := c.br.Buffered(); n > 0 {
		c.log.Warn().Int("bytes", n).Msg("discarding plaintext pipelined after STARTTLS")
		c.br.Discard(n)
	}
	tc := tls.Server(c.nc, c.srv.TLSConfig)
	c.nc = tc
	c.bw.Reset(tc)
	if err := c.handshake(tc); err != nil {
		return false
	}
	// RFC 3207 section 4.2: forget everything learned before TLS.
	c.greeted = false
	c.state.Hostname = ""
	c.state.ESMTP = false
	c.state.AuthIdentity = ""
	c.state.XForward = XForward{}
	c.resetXClient()
	return true
}

// handshake runs the TLS handshake under the handshake timeout and records
// the TLS state.
func (c *conn) handshake(tc *tls.Conn) error {
	ctx, cancel := context.WithTimeout(c.ctx, orDur(c.srv.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout))
	defer cancel()
	tc.SetDeadline(time.Now().Add(orDur(c.srv.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout)))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.log.Info().Err(err).Msg("TLS handshake failed")
		return err
	}
	tc.SetDeadline(time.Time{})
	c.dl.markDirty() // connReader sets the read deadline again
	cs := tc.ConnectionState()
	c.state.TLS = &cs
	c.log.Info().Str("tls_version", tls.VersionName(cs.Version)).
		Str("cipher", tls.CipherSuiteName(cs.CipherSuite)).Msg("TLS established")
	return nil
}
