// Package wiretest is the harness for the wire tests of lmtpd's servers
// (package protocol's SMTP/LMTP server, package policy's delegation server,
// package socketmap's lookup server and the connection lifecycle they
// share, internal/reqserver): scripted dialogues in golden
// files, connecting a client to a server over the transports the scripts
// name, checking that the server closed a connection, a net.Conn that
// feeds fixed bytes to a fuzzed server, and a test logger. It is for tests
// only; nothing in the product imports it, and it imports none of lmtpd's
// packages, so their in-package tests can use it.
//
// # Dialogue files
//
// A dialogue file scripts one connection, a line a step:
//
//	# comment
//	@opt name=value ...       settings for the server (the test applies them)
//	@transports pipe,unix     where to run (the default is the test's)
//	@name text                another directive the test allows (Syntax)
//	C: text                   the client sends text as one request unit
//	                          (a line, a netstring: the Framing's)
//	C! "go quoted"            the client sends raw bytes
//	S: text                   the next reply unit is exactly text
//	S~ regexp                 the next reply unit matches regexp entirely
//	CLOSED                    the server closes the connection, sending
//	                          nothing more
//	X: text                   a step of the test's own (Syntax.Kinds),
//	                          run by its Hook
//
// Consecutive C lines go out in one write (pipelining), after the writes
// before them and without blocking the script, so a server that stops
// reading cannot hang the test. A kind alone on its line ("C:") has an
// empty argument. Each read has a 5 s deadline, each write 10 s. On
// failure the test stops with the file's line number and the transcript
// so far.
//
// # Transports
//
// "pipe" is net.Pipe, "bytewise" the same with every byte written on its
// own (the server sees the shortest reads), "unix" and "tcp" a real
// listener in a temporary directory or on 127.0.0.1 port 0.
package wiretest
