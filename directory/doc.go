// Package directory answers who a recipient is and what AUTH may check,
// from the user databases mail administrators already run: a Dovecot
// passwd-file, SQL (PostgreSQL, MySQL/MariaDB, SQLite), LDAP and the
// system's accounts.
//
// A Directory is a small interface: a key in, a Record, a list of alias
// targets or a password hash out, or ErrNotFound when the directory
// answered that there is no such entry. Any other error means the answer
// is not known now (the directory is down, slow or broken): callers turn
// it into a temporary failure (451 4.3.0, 454 4.7.0), never a bounce.
//
// Drivers know their storage only (subpackages passwdfile, sql, ldap,
// passwd). What they share lives here:
//
//   - Template: queries, filters and DNs with the placeholders {address}
//     {localpart} {domain} {detail}, parsed at load. How a value enters
//     is the driver's business: a bind parameter in SQL, RFC 4515/4514
//     escaping in LDAP; never plain splicing.
//   - NewRecord: result fields by name (mailbox, home, quota_bytes,
//     quota_messages, sieve, forward, uid, gid, and Dovecot's mail and
//     quota_rule with its variables and size units), unknown ones kept
//     in Record.Extra and reported once through FieldWarner.
//   - NewCache: caching and single flight as a wrapper around any
//     Directory: positive and negative TTLs, a bounded LRU, a timeout per
//     lookup, errors never cached (entries within their TTL are served
//     during an outage, expired ones never), identical lookups in flight
//     made once. Each answered lookup is reported to an Observer (Stats
//     counts them), so metrics need no Prometheus import here.
//   - SplitAliasTargets, IsSelfAlias and ExpandAliases: alias values as
//     rows or comma-separated lists, Postfix Admin's alice → alice rows,
//     and recursive expansion across directories with loop detection
//     and a depth bound (MaxAliasDepth, 20).
//
// The package knows nothing of the wire protocol or of lmtpd's
// configuration file.
package directory
