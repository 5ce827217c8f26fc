//go:build linux

// Package peers holds end-to-end tests that run the real lmtpd binary as a
// process and drive it with real mail software and misbehaving clients.
// It has no code of its own: everything is in the _test.go files, which
// build on Linux alone, where the peers come from (Debian packages).
//
// TestMain builds cmd/lmtpd once, with coverage instrumentation (and with
// the race detector when the tests themselves run under -race). Each test
// writes a TOML configuration into a temporary directory, starts lmtpd on
// a unix socket and loopback ports, and talks to it with:
//
//   - a private Postfix instance (postfix -c DIR, sendmail -C DIR, postqueue
//     -f, its own maillog), handing mail over LMTP on the unix socket and
//     over TCP, with lmtp_destination_recipient_limit 50 and 1 and XFORWARD;
//   - swaks, Python's smtplib (SMTP and LMTP), Go's net/smtp and
//     github.com/emersion/go-smtp's LMTP client;
//   - hand-written hostile clients (disconnect mid-DATA, endless lines,
//     byte-at-a-time senders, thousands of idle connections, deep
//     pipelining, binary garbage);
//   - SIGKILL at random moments, a full tmpfs, and a load of concurrent
//     clients with digests checked per file.
//
// Peers are found on PATH (and in /usr/sbin). A missing peer skips its test
// with a message saying what to install; when the environment variable CI
// is "true" a missing peer fails the test instead, so CI never passes by
// skipping. tests/install-deps.sh, run by `make test`, installs them as root.
//
// The long load case runs only without -short. Environment knobs:
// LMTPD_E2E_COVERDIR keeps the daemon's coverage data in that directory
// (go tool covdata percent -i DIR); LMTPD_E2E_KEEP=1 keeps the temporary
// directories of failed tests for inspection.
package peers
