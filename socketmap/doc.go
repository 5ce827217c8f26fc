// Package socketmap is a server for the Sendmail socket map protocol as
// Postfix's socketmap client speaks it (socketmap_table(5); the client is
// src/util/dict_sockmap.c, the framing src/util/netstring.c). Postfix
// then looks up tables such as virtual_mailbox_domains,
// virtual_mailbox_maps and virtual_alias_maps with
// "socketmap:unix:/path:NAME" or "socketmap:inet:host:port:NAME". Like
// the protocol package it is a library: it knows a Handler interface, not
// lmtpd's directories or configuration.
//
// # The protocol
//
// Requests and replies are netstrings (https://cr.yp.to/proto/netstrings.txt):
// the length in decimal, a colon, the bytes, a comma, as in
// "23:mailbox bob@example.org,". A request is "NAME KEY": the map name, one
// space, the key (everything after the first space, so a key may contain
// spaces, as a quoted local part does). A reply is one of
//
//	OK <value>      found
//	NOTFOUND <empty>
//	TEMP <reason>   a temporary failure: Postfix defers (451 4.3.0)
//	TIMEOUT <reason>
//	PERM <reason>   a permanent failure: Postfix logs a configuration error
//
// with one space after the status word even when nothing follows it.
// Several requests travel over one connection, one at a time; Postfix
// closes an idle connection after 10 s and an old one after 100 s.
//
// # Invariants callers rely on
//
//   - Every well-framed request gets exactly one reply, in order, and the
//     connection stays open. Requests are answered one at a time.
//   - The Handler is called only for a well-formed request: a request with
//     no space, an empty map name or a NUL byte is answered "PERM bad
//     request" without calling it.
//   - A Handler error becomes the reply in one place (replyFor):
//     ErrNotFound is NOTFOUND; an *Error sends its status and its Reason
//     (never its wrapped cause); ErrBadRequest is PERM; the server's
//     HandlerTimeout is TIMEOUT; anything else is TEMP with a generic
//     reason carrying the session id, logged with its cause. A value that
//     would make the reply longer than MaxReplyBytes (Postfix's
//     socketmap_max_reply_size, 100000) or that contains a NUL (Postfix
//     reads replies as C strings) is answered PERM and logged, never
//     truncated. A panic in the Handler is answered TEMP and closes the
//     connection.
//   - Framing is strict: digits without leading zeros ("0" alone for the
//     empty string), a colon, exactly that many bytes, a comma. A length
//     over MaxRequestBytes, a non-digit, a missing comma: the server
//     answers "PERM malformed request" and closes the connection, since
//     its position in the stream is lost. End of input inside a request,
//     and a request that does not arrive within ReadTimeout, close it
//     without a reply.
//
// # Lifetimes
//
// The strings passed to the Handler are its own. The context passed to it
// ends when HandlerTimeout expires, when Close is called or when
// Shutdown's context ends. The server does not read from the connection
// while the Handler runs.
package socketmap
