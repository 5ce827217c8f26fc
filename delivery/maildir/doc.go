// Package maildir delivers messages into maildirs (the maildir(5) format of
// qmail, with the Maildir++ folders of Courier and Dovecot) under one root
// directory, durably and without ever touching anything outside the root.
//
// # Write path
//
// A delivery creates a uniquely named file in tmp/ with O_EXCL, writes it,
// fsyncs it, renames it into new/ and fsyncs new/; only then does it report
// success. Concurrent deliveries into the same new/ share one directory
// fsync (group commit): a caller is told of success only after an fsync
// that started after its rename has returned. A failed delivery removes its
// tmp/ file and leaves nothing in new/. Staging (write and fsync into tmp/)
// and committing (rename and directory fsync) are separate steps, so a
// caller can stage a message for every recipient and commit only when all
// succeeded. Further recipients of identical bytes get hard links of the
// first file, as Dovecot does.
//
// File names follow the maildir specification
// (https://cr.yp.to/proto/maildir.html):
// <sec>.M<usec>P<pid>Q<counter>.<host>,S=<size>, with "/" and ":" in the
// host name written as \057 and \072 (Courier's convention). tmp/ files
// older than 36 hours are removed the first time the process uses a
// maildir, as the specification asks.
//
// # Path safety
//
// Paths come from a Template such as "{domain}/{user}". Every placeholder
// value becomes exactly one path element: bytes outside a small safe set
// are percent-encoded, a leading "." is encoded, so no value can add a
// separator, name "." or "..", or smuggle control characters. The expanded
// path is then checked with filepath.IsLocal, and all file system access
// goes through an os.Root, which refuses any path (symbolic links
// included) that leads outside the root.
//
// # Errors
//
// Store methods return *protocol.Error values (see Classify): ENOSPC is 452
// 4.3.1, EDQUOT 552 5.2.2, a message over the size limit 552 5.3.4,
// permission problems and a missing root 451 4.3.5, any other I/O error
// 451 4.3.0.
package maildir
