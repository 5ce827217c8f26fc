// Package quota keeps Maildir++ quota: the maildirsize file of Courier's
// README.maildirquota, which Dovecot's "maildir" quota backend reads and
// updates too, so an IMAP server expunging mail and lmtpd delivering it
// keep one counter.
//
// # The file
//
// maildirsize lives at the top of a user's maildir. Its first line holds
// the limits ("<bytes>S,<count>C", written as Dovecot writes it: "0S" when
// there is none); every further line is a "<bytes> <count>" change, added
// by a single O_APPEND write per delivery (Dovecot's expunges append
// negative ones). Usage is the sum of those lines.
//
// The file is recalculated — new/ and cur/ of INBOX and of every Maildir++
// folder scanned (sizes from ",S=" in file names where present, else
// stat), written to a temporary file and renamed over maildirsize — when
// the Maildir++ rules and Dovecot say so: it is missing or unreadable, its
// limits differ from the configured ones, it has reached 5,120 bytes, a
// line does not parse or holds a NUL, a total is negative, or it says the
// user is over quota while it holds more than one change line or is older
// than 15 minutes. A recalculation that sees a directory change while it
// scans does not write its result (a delivery or expunge raced it); the
// next one will.
//
// # Concurrency
//
// Deliveries within one process reserve room through a Tracker before they
// store, so concurrent deliveries to one user at the limit cannot all pass
// the check: what is stored never exceeds limit plus grace, plus what
// another program (an IMAP APPEND) adds meanwhile. Across processes the
// file itself is the only coordination, as in Maildir++.
//
// # Failures
//
// A maildirsize that cannot be read or parsed is recalculated, never
// trusted and never a refusal: a damaged quota file costs a directory
// scan, not a message. An error returned by this package means the usage
// is not known now; callers turn it into a temporary failure.
//
// The package does no path resolution of its own beyond the maildir it is
// given: all access goes through an os.Root opened on that maildir, so a
// symbolic link planted inside it cannot lead the scan or the writes
// outside.
package quota
