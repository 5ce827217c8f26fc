// Package protocol is an SMTP and LMTP server core, used the way net/http
// is: fill in a Server, give it a Backend, call Serve.
//
// One core speaks both dialects. In LMTP mode (RFC 2033) the client greets
// with LHLO and, after the message, gets one reply per accepted recipient,
// in RCPT order, duplicates included, each written as soon as that
// recipient's outcome is known. In SMTP mode (RFC 5321) the client greets
// with EHLO or HELO and gets one reply for the message; the rule that folds
// per-recipient outcomes into it is documented on FoldStatuses (exported, so that
// every caller that folds uses the same rule) and below.
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
//   - Postfix's XFORWARD and XCLIENT from trusted peers, with Dovecot's
//     XCLIENT TTL hop count; both also as a client (Client) (see "XCLIENT" and "Proxy loops" below)
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
//     text is never taken for commands. A message refused for good while
//     it streamed (5xx: too big, a text rule) still gets that reply, per
//     recipient in LMTP, before the closing 421, so that the client
//     bounces it instead of retrying it.
//   - A reply of 250 for a recipient is sent only after the backend said
//     so for that recipient and the whole message was received intact.
//   - Errors become replies in one place: an *Error anywhere in a wrapped
//     chain is sent as it is; any other error, or an *Error whose basic
//     code is not 4xx or 5xx, becomes 451 4.3.0 naming the session id,
//     and its text is only logged. An enhanced code of another class than
//     the basic code's is sent with the basic code's class (550 4.2.2
//     goes out as 550 5.2.2, RFC 3463 section 2).
//   - SMTP folding (FoldStatuses): all delivered gives 250; else the first
//     temporary failure, if any (the client retries; already delivered recipients may
//     see a duplicate, none is lost); else the first permanent failure. A
//     Transaction that implements Stager makes SMTP replies all-or-nothing.
//   - Every backend call gets a context cancelled when the client goes
//     away (also detected while the backend delivers) or the server stops.
//   - Message text follows one set of rules whatever the command: the
//     size limit (Server.MaxMessageBytes), the text line length
//     (Server.MaxTextLineLength) and the bare line ending policy
//     (Server.BareLineEndings) apply to BDAT chunks exactly as to DATA,
//     through the same checking reader. BDAT text has no dot-stuffing and
//     no terminator: a line "." is text, and a CR that ends the message is
//     a bare CR. A CRLF split across two chunks is a CRLF.
//   - BODY=BINARYMIME (RFC 3030 section 3, accepted only with BDAT) lifts
//     the line rules and nothing else: bare CR and LF and lines of any
//     length pass unchanged (never normalised), since binary content has
//     no lines; the size limit still applies.
//   - BDAT and the size limit: a chunk whose announced size takes the
//     message past the limit is never given to the backend. The backend's
//     read fails with ErrMessageTooBig (its context is cancelled too), so
//     nothing of the message is delivered; the chunk is then read and
//     dropped if the message's announced total stays within the drain
//     bound (the limit plus half of it, the bound DATA drains to), and
//     answered 552 5.3.4; past that bound the 552 5.3.4 is followed by
//     421 4.3.4 and the connection is closed rather than read an absurd
//     chunk. A refused chunk (no
//     MAIL, no recipient) obeys the same bound.
//   - A BDAT chunk that fails the message (size, or a text rule broken
//     inside it) gets one reply and ends the transaction; chunks the
//     client pipelined after it get 503 and are consumed (RFC 3030 section
//     2). Only the reply to BDAT LAST is per recipient in LMTP (RFC 2033
//     section 4.3), as after DATA.
//   - LMTP BDAT LAST when no RCPT was accepted gets zero replies: RFC 2033
//     section 4.3 gives BDAT LAST one reply per accepted recipient. Its
//     chunk is consumed and the transaction ends (the next RCPT needs a
//     new MAIL). A BDAT that is not LAST gets 503 5.5.1 in that case, and
//     in SMTP any BDAT does (one reply per command, RFC 3030 section 2);
//     DATA answers 503 before any data in both dialects.
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
//
// # XCLIENT
//
// XCLIENT (Postfix's XCLIENT_README) lets a trusted proxy, such as an
// lmtpd front or Dovecot's LMTP proxy, say who the original client is:
//
//   - It is offered in the EHLO/LHLO reply, with its attribute list (NAME
//     ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT TTL), and accepted,
//     only from trusted peers: unix-socket clients and
//     Server.TrustedNetworks, as XFORWARD. Others get 550 5.7.0, as from
//     Postfix. Trust belongs to the socket's peer: an address XCLIENT
//     claims neither gives nor takes it, so a proxy may send XCLIENT again
//     before each transaction on a reused connection.
//   - It is refused inside a transaction (503 5.5.1). Values are xtext;
//     [UNAVAILABLE] (and [TEMPUNAVAIL] for NAME), in any case, mean
//     unknown; ADDR and DESTADDR take IPv4, or IPv6 with the IPV6: prefix
//     or without it (as Dovecot sends it); names and the HELO follow the
//     rule for header text above. A command with one bad attribute gets
//     501 5.5.4 and changes nothing.
//   - Success answers 220 with a new greeting: the session is back at the
//     greeting stage (no transaction, no HELO, no XFORWARD; TLS stays) and
//     the client must send EHLO or LHLO again. Attributes accumulate over
//     XCLIENT commands of a session; STARTTLS forgets them.
//   - From then on the session acts for the claimed client: ConnState's
//     RemoteAddr (ADDR, PORT), Hostname (HELO, which the proxy's own EHLO
//     or LHLO after it does not replace; without HELO the next EHLO/LHLO
//     is taken) and AuthIdentity (LOGIN, or none) hold the client's
//     values, ConnState.XClient all attributes, and the Received field
//     names the client (XFORWARD, which describes one transaction, still
//     wins for that transaction). PROTO is recorded but the Received "with"
//     keyword and the parameters allowed follow this hop's own greeting.
//     Every later log line of the session carries "client"
//     (name[addr]:port) next to "peer", the socket's peer.
//   - Limits per client address (MaxConnectionsPerIP, MaxAuthFailuresPerIP)
//     keep applying to the socket's peer (ConnState.PeerAddr): the proxy's
//     connection is counted where it is, and a claimed address cannot
//     spend another client's budget.
//
// # Proxy loops
//
// A recipient forwarded from one proxying server to another that forwards
// it back would loop (Dovecot 2.3's LMTP proxy did, 100 connections in
// 12.5 s). Two counters stop it within a few hops; ProxyHop applies both
// and a forwarding target calls it before handing a recipient on
// (ErrProxyLoop, 554 5.4.6, refuses that recipient only: local delivery
// is not affected).
//
//   - A hop count carried on the connection: XCLIENT's TTL attribute, an
//     extension of Postfix's grammar that Dovecot defined and uses between
//     its proxies. A server that received TTL=n hands a message on with
//     TTL=n-1; one that received none sends DefaultProxyTTL (5, Dovecot's
//     default); one that received TTL=0 forwards nothing. Since Postfix's
//     grammar has no TTL, a client sends it only to a server whose XCLIENT
//     keyword lists it, as lmtpd's does. lmtpd and Dovecot fronts so
//     count alike, in either order.
//   - The message itself: each server writes a Received field with its
//     Server.Software name as a comment after its "by" host ("(lmtpd)" in
//     the daemon; with no Software this count is off), and the run of
//     fields with this server's comment at the top
//     of the header (not counting this server's own, and ending at the
//     first Received field another MTA wrote, so lmtpd hops elsewhere on
//     the message's path do not count) is the number of lmtpd servers it
//     just passed. More than DefaultProxyTTL is a loop, and the TTL sent
//     is never more than what remains. This works when the TTL cannot
//     travel: a backend that is not told the front is trusted, one that
//     does not offer XCLIENT, or a path through another MTA. A loop
//     through another MTA's queue breaks the run and is left to
//     Server.MaxReceivedHeaders (ErrTooManyHops).
//
// A proxy chain of fronts that all pass TTL and one of fronts that cannot
// both refuse at the seventh server.
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
// the process stays under R + 4 × MaxAuthVerifications × m_max +
// connections × 64 KiB (formula and terms on Server.MaxAuthVerifications).
//
// Which mechanisms are offered without TLS is the Authenticator's choice
// (Mechanisms gets the ConnState); a mechanism refused on a plaintext
// connection that would be offered after STARTTLS gets 538 5.7.11. The
// sasl package documents why offering SCRAM-SHA-256 without TLS and PLAIN
// and LOGIN only under TLS is a sound default.
//
// # Reply vocabulary
//
// Replies are *Error values: a basic code (the Code constants, RFC 5321
// section 4.2), an enhanced code (the EC variables, named after RFC 3463
// and the RFC 5248 registry, Temp or Perm for class 4 or 5), a text safe
// to send and a cause that is only logged. Replies built in several places
// are named (ErrMisconfigured, ErrAuthInvalid, ...); a package-level reply
// is sent with its cause through Wrap, which copies it. The same
// vocabulary serves everything that turns outcomes into something else:
// FoldStatuses (with WorseStatus and DecidingStatus) folds per-recipient
// statuses into one SMTP reply, StatusList collects them outside a
// session, ExitStatusError and ExitStatus map sysexits(3) statuses to
// replies and back for delivery programs and local delivery agents, and
// BasicCode derives a basic code from an enhanced one.
//
// # Shape
//
// One role per file: server.go (Server: settings, Serve, Shutdown),
// conn.go (a session's command loop), deadline.go (a connection's read
// deadlines), data.go and bdat.go (message text), header.go and
// received.go (the header section and the Received field), deliver.go (one
// message through the backend, replies per recipient or folded),
// status.go (the fold rule, the status collector), outcome.go (Outcome and
// Server.OnOutcome, the one record per recipient), local.go
// (Server.DeliverLocal: a message handed over by a local program runs
// through the same header reader, id, Received field and statuses),
// errors.go and codes.go (the reply vocabulary), sysexits.go, auth.go and
// authlimit.go (AUTH), backend.go (the interfaces a backend implements).
// The package knows no product: the software's name in the greeting and
// Received field is Server.Software.
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
