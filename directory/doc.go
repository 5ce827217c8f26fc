// Package directory answers who a recipient is and what AUTH may check,
// from the user databases mail administrators already run: a Dovecot
// passwd-file, SQL (PostgreSQL, MySQL/MariaDB, SQLite) and LDAP.
//
// A Directory is a small interface: a key in, a Record, a list of alias
// targets or a password hash out, or ErrNotFound when the directory
// answered that there is no such entry. Any other error means the answer
// is not known now (the directory is down, slow or broken): callers turn
// it into a temporary failure (451 4.3.0, 454 4.7.0), never a bounce.
//
// Drivers know their storage only; caching and single flight are
// wrappers around any Directory. The package knows nothing of the wire
// protocol or of lmtpd's configuration file.
package directory
