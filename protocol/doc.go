// Package protocol is an SMTP and LMTP server core, used the way net/http
// is: fill in a Server, give it a Backend, call Serve.
//
// One core speaks both dialects. In LMTP mode (RFC 2033) the client greets
// with LHLO and, after the message, gets one reply per accepted recipient,
// in RCPT order, duplicates included, each written as soon as that
// recipient's outcome is known. In SMTP mode (RFC 5321) the client greets
// with EHLO or HELO and gets one reply for the message; the rule that folds
// per-recipient outcomes into it is documented on foldStatuses and below.
//
// # Standards
//
//   - RFC 5321 SMTP, RFC 2033 LMTP
//   - RFC 1870 SIZE, RFC 2920 PIPELINING, RFC 3030 CHUNKING and BINARYMIME,
//     RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 3461 DSN parameters (parsed
//     and passed on; no notifications are generated here), RFC 9422 LIMITS
//   - RFC 2034 and RFC 3463 enhanced status codes on every reply but the
//     greeting and the EHLO/LHLO reply
//   - RFC 3207 STARTTLS, RFC 4954 AUTH (mechanisms from an Authenticator)
//   - RFC 3848 and RFC 6531 "with" keywords in the Received field
//   - Postfix's XFORWARD from trusted peers; as a client (Client), also XCLIENT
//
// # Invariants callers rely on
//
//   - The message is streamed: Message.Body reads the connection; nothing
//     holds the whole message in memory. The header section is read under
//     its own bound (and its Received fields counted) before the backend
//     is called; Message.Header parses it with
//     github.com/emersion/go-message/textproto on first use, and
//     Message.RawHeader has its exact bytes.
//   - The message ends only at CRLF "." CRLF. A bare CR or LF never ends it
//     and never starts a command (the 2023 SMTP smuggling class); by default
//     a message containing one is refused with 550 5.6.0 after it has been
//     read to its real end.
//   - After any early stop (size, backend error) the rest of the message is
//     read and dropped, within a bound, or the connection is closed: message
//     text is never taken for commands.
//   - A reply of 250 for a recipient is sent only after the backend said
//     so for that recipient and the whole message was received intact.
//   - Errors become replies in one place: an *Error anywhere in a wrapped
//     chain is sent as it is; any other error becomes 451 4.3.0 naming the
//     session id, and its text is only logged.
//   - SMTP folding: all delivered gives 250; else the first temporary
//     failure, if any (the client retries; already delivered recipients may
//     see a duplicate, none is lost); else the first permanent failure. A
//     Transaction that implements Stager makes SMTP replies all-or-nothing.
//   - Every backend call gets a context cancelled when the client goes
//     away (also detected while the backend delivers) or the server stops.
//   - Each session logs through a zerolog child logger with the session id,
//     peer and protocol; zerolog.Ctx(ctx) gives it to backends. Wire traces
//     (trace level) never contain AUTH exchanges or message text.
//
// # AUTH under load
//
// Every step of an AUTH exchange (a call of SASLServer.Next: where a
// password hash is verified or a SCRAM proof evaluated) runs under two
// bounds, in this order:
//
//   - the client address's failure budget (Server.MaxAuthFailuresPerIP):
//     a failure is reserved before the step runs and given back when the
//     step did not fail, so N clients from one address at once never get
//     more steps verified than the budget has left; one that finds it used
//     up gets 421 4.7.0 and is closed;
//   - a server-wide limit on steps in progress (Server.AuthLimiter, or
//     Server.MaxAuthVerifications, default the number of cores): the
//     others wait in line up to Server.AuthQueueTimeout and then get 454
//     4.7.0 (RFC 4954 section 6), which charges no failure.
//
// So the memory AUTH can take is bounded whatever the number of clients:
// 2 × MaxAuthVerifications × m_max + connections × 64 KiB (formula and
// terms on Server.MaxAuthVerifications).
//
// Which mechanisms are offered without TLS is the Authenticator's choice
// (Mechanisms gets the ConnState); a mechanism refused on a plaintext
// connection that would be offered after STARTTLS gets 538 5.7.11. The
// lmtpd daemon offers SCRAM-SHA-256 without TLS and PLAIN and LOGIN only
// under TLS, unless configured otherwise; the sasl package documents why.
//
// # Client
//
// Client is the other side: it dials TCP or "unix:/path" (or takes a
// net.Conn), speaks SMTP (EHLO, HELO fallback) or LMTP (LHLO), and offers
// STARTTLS, AUTH through go-sasl clients, Postfix's XCLIENT and XFORWARD,
// the MAIL and RCPT parameters of SIZE, 8BITMIME, BINARYMIME, SMTPUTF8 and
// DSN (what is sent when the server did not offer one is on Client), and
// the message by DATA or BDAT, streamed. Client.Send pipelines MAIL, the
// RCPTs and DATA when the server offers PIPELINING and returns one
// RcptStatus per recipient: in LMTP each recipient's own reply after the
// message (RFC 2033 section 4.2), in SMTP the one reply. A negative reply
// is an *Error with the server's codes and text, so a proxy relays it as
// it came; any other error means the outcome is unknown. Each phase has
// the timeout RFC 5321 section 4.5.3.2 gives it, and every call a context.
package protocol
