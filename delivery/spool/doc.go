// Package spool holds one message body while it is delivered to several
// recipients, so that the body is read from the client exactly once.
//
// A Spool keeps up to Options.Threshold bytes in memory; past that it moves
// everything to one temporary file that has no name in the file system
// (O_TMPFILE on Linux, or created and unlinked at once elsewhere), so a
// message of any size costs a fixed amount of memory and leaves nothing
// behind when the process dies. Put the spool directory on the same file
// system as the maildirs: copies from the spool file then go through
// copy_file_range(2) without passing through user space.
//
// LFWriter converts the CRLF line endings of SMTP (RFC 5321 section 2.3.8)
// to the LF that maildir files and local commands expect.
package spool
