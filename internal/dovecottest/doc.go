// Package dovecottest starts private Dovecot instances for tests. It is
// for tests only; nothing in the product imports it.
//
//   - Start runs Dovecot's master and auth only, no protocols, for tests
//     that check what Dovecot's own tools read from the maildirs lmtpd
//     writes: doveadm quota, expunge and recalculation over a temporary
//     maildir with a "maildir" quota root.
//   - StartLMTP runs Dovecot's LMTP server on a loopback port and a unix
//     socket, for tests of lmtpd's LMTP client and of lmtpd as a proxy in
//     front of Dovecot.
//
// Both need root: Dovecot's master starts as root and its mail processes
// switch to nobody (uid 65534). Under CI=true a Dovecot that cannot start
// fails the test; elsewhere the test is skipped loudly with the reason.
package dovecottest
