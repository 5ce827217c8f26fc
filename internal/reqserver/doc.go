// Package reqserver is the connection lifecycle shared by lmtpd's small
// Postfix-facing request-reply servers (package policy's delegation server
// and package socketmap's lookup server). Each of those protocols is one
// request, one reply, in turn, over a connection Postfix keeps open; they
// differ only in how a request is framed and answered.
//
// # What it owns
//
// A Server owns the listeners given to Serve, the connections it admits
// (ServeConn), their goroutines, session ids and the base context of every
// handler call. For each connection it runs one loop: wait up to the idle
// timeout for the first byte of a request, then, under the read timeout,
// let the protocol's Session read the request and answer it; it closes the
// connection and releases it when the loop ends. It logs what is the same
// for every protocol: connections opened, closed and refused, routine ends
// (end of input, idle timeout, shutdown), read timeouts, panics, and
// replies that cannot be sent. What a request is, what a failure answers
// and what is logged per request belong to the Session.
//
// # Contract
//
//   - Serve accepts until Shutdown or Close, then returns Config.Closed; it
//     backs off like net/http when accept fails for want of descriptors,
//     and closes its listener when it returns.
//   - ServeConn admits a connection unless the server is shutting down or
//     already serves Config.MaxConnections; a refused connection is closed
//     at once, without a reply.
//   - Requests on one connection are answered one at a time; nothing is
//     read from the connection while a Session answers.
//   - Shutdown closes the listeners and the connections waiting for a
//     request, lets the requests being answered finish and ends their
//     connections after the reply; when its context ends first it cancels
//     the handler context and closes the rest. Close does that at once.
//     Both return only after every connection goroutine has returned and
//     logged its last line.
//   - A panic in a Session is recovered: it is logged with its stack, the
//     Session's Abort answers the request in flight (if one was read), and
//     the connection closes.
//   - Config.Unusable (a protocol package without its handler) makes Serve
//     and ServeConn refuse before anything is served.
//
// The Server keeps no settings: each call takes a Config, so that the
// protocol package's exported fields, with their documented defaults,
// stay the only configuration.
//
// # Goroutine safety
//
// A Server's methods may be called from any goroutine. A Server's zero
// value is ready to use and it must not be copied after first use. A
// Conn and its Session belong to the connection's one goroutine.
package reqserver
