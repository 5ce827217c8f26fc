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
//   - Postfix's XFORWARD from trusted peers
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
//   - Client-given text written into a header field (the HELO/EHLO/LHLO
//     name, XFORWARD attributes, the recipient address in the Received
//     field) is printable ASCII, or under SMTPUTF8 valid UTF-8 without
//     controls, line or paragraph separators, non-ASCII spaces or format
//     characters: one rule (isHeaderWord), checked when the value is
//     received (501 5.5.4, or the address grammar's 501/553) and again
//     when the field is written.
//   - What a client can make the server hold or write is bounded: nothing
//     is kept per refused recipient; refused recipients and bad commands
//     share one error budget (MaxErrors, then 421 4.7.0); a transaction
//     takes at most MaxRecipients accepted and MaxRefusedRecipients
//     refused RCPTs; a command line must arrive within CommandTimeout and
//     message text at MinDataRate; SMTP listeners limit connections per
//     client address by default (MaxConnectionsPerIP).
//   - Each session logs through a zerolog child logger with the session id,
//     peer and protocol; zerolog.Ctx(ctx) gives it to backends. Wire traces
//     (trace level) never contain AUTH exchanges or message text.
package protocol
