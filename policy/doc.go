// Package policy is a server for Postfix's SMTP access policy delegation
// protocol, the protocol of check_policy_service (Postfix's
// SMTPD_POLICY_README, "Protocol description"; the client is
// check_policy_service in src/smtpd/smtpd_check.c, the attribute syntax
// attr_scan_plain(3)). Like the protocol package it is a library: it knows
// a Handler interface, not lmtpd's quota, directories or configuration.
//
// # The protocol
//
// Postfix sends a request as name=value lines, each ended by a newline,
// and ends the request with an empty line:
//
//	request=smtpd_access_policy
//	protocol_state=RCPT
//	recipient=bob@example.org
//	size=12345
//	...
//	(empty line)
//
// The server answers with one attribute and an empty line:
//
//	action=552 5.2.2 Mailbox full
//	(empty line)
//
// and keeps the connection open for the next request; Postfix closes it
// when idle (smtpd_policy_service_max_idle, 300s) or old
// (smtpd_policy_service_max_ttl, 1000s). The action is anything an access(5)
// table may return: DUNNO, OK, "4NN text", "5NN text", DEFER_IF_PERMIT
// text, and so on (see Action).
//
// # Invariants callers rely on
//
//   - Every well-formed request gets exactly one reply, in order; the
//     connection stays open after it.
//   - The Handler is called once per well-formed request, never for a
//     malformed one, and never concurrently on one connection (requests on
//     one connection are answered one at a time, as Postfix sends them).
//   - A Handler error, a panic in the Handler, an expired per-request
//     timeout or an action that would not survive the trip (a newline in it,
//     invalid UTF-8, a reply code outside 4xx/5xx) are answered with
//     Server.ErrorAction, by default "DEFER_IF_PERMIT Service temporarily
//     unavailable" (what Dovecot's quota-status answers when its backend
//     fails), and logged with the session id. Postfix then answers 450
//     4.7.1 if nothing else rejects the recipient permanently; no mail is
//     refused for good because lmtpd was unable to decide.
//   - Malformed input (a line without '=', an empty attribute name, a NUL
//     byte, a malformed number, a request without the request attribute,
//     a line, attribute count or request beyond the limits, end of input
//     inside a request) gets no reply: the server logs a warning and closes
//     the connection, which is what SMTPD_POLICY_README asks of a policy
//     server "in case of trouble". Postfix retries on a new connection
//     (smtpd_policy_service_try_limit) and then applies
//     smtpd_policy_service_default_action (451 4.3.5).
//   - Attribute syntax follows attr_scan_plain(3): a name is everything
//     before the first '=', the value everything after it up to the
//     newline, so a value may contain '='. When a name repeats, the first
//     value is kept, as Postfix's own attribute tables do. Unknown
//     attributes are kept in Request.Attrs and otherwise ignored. One
//     carriage return before the newline is removed (Postfix sends bare
//     newlines; the leniency only helps people typing requests by hand).
//   - Reading is bounded: Server.MaxLineLength, MaxAttributes and
//     MaxRequestBytes, with defaults far above what Postfix sends.
//
// # Lifetimes
//
// A Request and its Attrs map belong to the Handler during the call and
// are not touched by the server afterwards. The context passed to the
// Handler ends when the request's HandlerTimeout expires, when Close is
// called, or when Shutdown's context ends. The server does not read from
// the connection while a Handler runs (Postfix sends nothing until it has
// its answer), so a client that goes away is noticed only when the reply
// is written; HandlerTimeout bounds the work done for it.
package policy
