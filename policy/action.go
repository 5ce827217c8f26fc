package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Action is the answer to a policy request: the value of the action=
// attribute, anything a Postfix access(5) table may return ("DUNNO",
// "OK", "552 5.2.2 Mailbox full", "DEFER_IF_PERMIT text", "PREPEND
// header: value", ...). Build one with the constants and functions below
// or convert a string; the server checks it with Validate before sending.
type Action string

// Actions without text.
const (
	// Dunno: this policy has no opinion; Postfix goes on with the next
	// restriction. The answer for a recipient within quota, or one lmtpd
	// does not serve.
	Dunno Action = "DUNNO"
	// OK accepts the request, skipping the rest of the restriction list.
	OK Action = "OK"
)

// Reply codes and enhanced status codes of the quota answers (RFC 5321
// section 4.2.3, RFC 3463 section 3.3: X.2.2 "mailbox full").
const (
	CodeMailboxFull     = 552 // RFC 5321: exceeded storage allocation
	CodeInsufficient    = 452 // RFC 5321: insufficient system storage
	EnhancedMailboxFull = "5.2.2"
	EnhancedMailboxBusy = "4.2.2"
)

// Unavailable is the default Server.ErrorAction: Postfix answers 450
// 4.7.1 unless another restriction rejects the request permanently. It is
// what Dovecot's quota-status service answers when its backend fails.
const Unavailable Action = "DEFER_IF_PERMIT Service temporarily unavailable"

// Reject refuses the request with an SMTP reply code (4xx or 5xx), an
// optional RFC 3463 enhanced status code whose class matches the code's
// first digit, and a text: Reject(552, "5.2.2", "Mailbox full") is
// "552 5.2.2 Mailbox full", which Postfix's smtpd sends as "552 5.2.2
// <rcpt>: Recipient address rejected: Mailbox full". Postfix recognises
// the form only with a text, so an empty text becomes "Access denied"
// (Postfix's own default text). Line breaks and NULs in text become
// spaces. A wrong code is not corrected here: Validate reports it and the
// server then sends its ErrorAction.
func Reject(code int, enhanced, text string) Action {
	text = clean(text)
	if text == "" {
		text = "Access denied"
	}
	if enhanced == "" {
		return Action(strconv.Itoa(code) + " " + text)
	}
	return Action(strconv.Itoa(code) + " " + enhanced + " " + text)
}

// MailboxFull is the answer for a recipient over quota:
// "552 5.2.2 Mailbox full", or with temporary true "452 4.2.2 Mailbox
// full" (Dovecot's quota_full_tempfail).
func MailboxFull(temporary bool) Action {
	if temporary {
		return Reject(CodeInsufficient, EnhancedMailboxBusy, "Mailbox full")
	}
	return Reject(CodeMailboxFull, EnhancedMailboxFull, "Mailbox full")
}

// Defer asks the client to try again later: Postfix answers with
// defer_code (450) and 4.7.1 unless text starts with an enhanced status
// code.
func Defer(text string) Action { return withText("DEFER", text) }

// DeferIfPermit defers the request unless a later restriction rejects it
// permanently: the safe answer when the policy cannot decide.
func DeferIfPermit(text string) Action { return withText("DEFER_IF_PERMIT", text) }

// DeferIfReject turns a later permanent rejection into a deferral.
func DeferIfReject(text string) Action { return withText("DEFER_IF_REJECT", text) }

// Warn logs text in Postfix's maillog and otherwise acts like Dunno.
func Warn(text string) Action { return withText("WARN", text) }

func withText(verb, text string) Action {
	text = clean(text)
	if text == "" {
		return Action(verb)
	}
	return Action(verb + " " + text)
}

// clean replaces what cannot travel in an attribute value, and what
// Postfix's smtpd would turn into spaces anyway, by spaces.
func clean(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, s))
}

// ErrInvalidAction is wrapped by the errors of Action.Validate.
var ErrInvalidAction = errors.New("policy: invalid action")

// Validate reports whether Postfix can take a as it is: not empty, no
// newline, carriage return or NUL (the attribute would break), valid
// UTF-8 (Postfix with smtputf8_enable treats anything else as a failed
// request), and for the "NNN text" form a code from 400 to 599 followed by
// a text, with an enhanced status code, if any, of the same class
// (smtpd_check.c, check_table_result and smtpd_check_reject).
func (a Action) Validate() error {
	s := string(a)
	switch {
	case strings.TrimSpace(s) == "":
		return fmt.Errorf("%w: empty", ErrInvalidAction)
	case strings.ContainsAny(s, "\r\n\x00"):
		return fmt.Errorf("%w: contains a line break or NUL: %q", ErrInvalidAction, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not UTF-8: %q", ErrInvalidAction, s)
	}
	verb, text, _ := strings.Cut(s, " ")
	if verb == "" || verb[0] < '0' || verb[0] > '9' {
		return nil
	}
	code, err := strconv.Atoi(verb)
	if err != nil || len(verb) != 3 || code < 400 || code > 599 {
		return fmt.Errorf("%w: reply code %q is not 4xx or 5xx", ErrInvalidAction, verb)
	}
	text = strings.TrimLeft(text, " \t")
	if text == "" {
		return fmt.Errorf("%w: reply code %s without text", ErrInvalidAction, verb)
	}
	first, _, _ := strings.Cut(text, " ")
	if isEnhancedCode(first) && first[0] != verb[0] {
		return fmt.Errorf("%w: enhanced code %s does not match reply code %s", ErrInvalidAction, first, verb)
	}
	return nil
}

// isEnhancedCode reports whether s has the form of an RFC 3463 status
// code: class "." subject "." detail, with 1 to 3 digits each.
func isEnhancedCode(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 || (i == 0 && len(p) != 1) {
			return false
		}
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}
