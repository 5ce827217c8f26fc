package main

import (
	"context"
	"errors"
	"strings"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/policy"
	"github.com/lmtpd/lmtpd/protocol"
)

// quotaPolicy answers Postfix's policy requests (a [[listener]] with
// protocol = "policy", check_policy_service in smtpd_recipient_restrictions)
// from the same quota the deliveries check, so that Postfix refuses
// over-quota mail in the SMTP dialogue instead of bouncing it later, as
// Dovecot's quota-status service does.
//
// For protocol_state=RCPT: DUNNO within quota, for a user without quota,
// for an address lmtpd does not serve or does not know (Postfix's own
// recipient checks decide), and whenever quota is off; "552 5.2.2 Mailbox
// full" over quota, or "452 4.2.2 Mailbox full" with over_quota = "defer",
// counting size= when Postfix sends it (MAIL FROM's SIZE). A directory or
// maildir that cannot be read is an error: the policy server answers
// DEFER_IF_PERMIT. Other protocol states get DUNNO.
type quotaPolicy struct {
	router  *delivery.Router
	onQuota func(delivery.QuotaEvent) // metrics; may be nil
}

// Policy implements policy.Handler.
func (q *quotaPolicy) Policy(ctx context.Context, req *policy.Request) (policy.Action, error) {
	if req.Request != "smtpd_access_policy" || !strings.EqualFold(req.ProtocolState, "RCPT") || req.Recipient == "" {
		return policy.Dunno, nil
	}
	a, ok := policyAddress(req.Recipient)
	if !ok {
		return policy.Dunno, nil
	}
	sts, err := q.router.Quota(ctx, a, int64(min(req.Size, 1<<62)), false)
	if err != nil {
		if errors.Is(err, delivery.ErrQuotaOff) {
			return policy.Dunno, nil
		}
		if pe := protocol.AsError(err); pe != nil && !pe.Temporary() {
			// Not served, unknown user, a name lmtpd cannot store:
			// Postfix's own restrictions are the place for those.
			return policy.Dunno, nil
		}
		return "", err
	}
	for _, st := range sts {
		if st.Err == nil {
			continue
		}
		// The policy server logs the answer with the request; the
		// figures behind it go to debug.
		temp := protocol.AsError(st.Err).Temporary()
		zerolog.Ctx(ctx).Debug().Str("to", req.Recipient).Str("maildir", st.Maildir).
			Int64("usage_bytes", st.Usage.Bytes).Int64("limit_bytes", st.Limits.Bytes).
			Int64("usage_messages", st.Usage.Messages).Int64("limit_messages", st.Limits.Messages).
			Uint64("size", req.Size).Str("verdict", st.Verdict.String()).Msg("policy: recipient over quota")
		if q.onQuota != nil {
			q.onQuota(delivery.QuotaEvent{Kind: "refused", Stage: "policy", Temporary: temp})
		}
		return policy.MailboxFull(temp), nil
	}
	return policy.Dunno, nil
}

// policyAddress splits a recipient as Postfix sends it (unquoted, at the
// last '@') into an address; a local part that needs quoting is quoted
// the way RFC 5321 writes it.
func policyAddress(s string) (protocol.Address, bool) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return protocol.Address{}, false
	}
	local, domain := s[:i], s[i+1:]
	if !dotAtom(local) {
		local = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(local) + `"`
	}
	return protocol.Address{LocalPart: local, Domain: domain}, true
}

// dotAtom reports whether s is an RFC 5321 Dot-string (UTF-8 allowed, RFC
// 6531), which needs no quoting.
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		if r < 0x80 && !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r)) {
			return false
		}
	}
	return true
}

// openPolicy makes ls, a policy listener, a policy server answering from
// the daemon's router.
func (d *daemon) openPolicy(ls *listenerServer) {
	logger := d.log.With().Str("listener", ls.cfg.Name).Logger()
	h := &quotaPolicy{router: d.router}
	if d.metrics != nil {
		h.onQuota = d.metrics.quotaEvent
	}
	ls.srv = &policy.Server{Handler: h, Logger: &logger}
	d.servers = append(d.servers, ls)
}
