// Package ldap is the LDAP driver of lmtpd's directories
// (github.com/lmtpd/lmtpd/directory), on github.com/go-ldap/ldap/v3: users,
// aliases and passwords from the directory a mail administrator already
// runs, found with the same kind of filters Dovecot and Postfix use.
//
// # What it implements
//
//   - RFC 4511 search and simple bind, over ldap:// (with StartTLS, RFC
//     4513 section 3, when start_tls is set), ldaps:// and ldapi://.
//   - Placeholders {address}, {localpart}, {domain} and {detail} in
//     user_filter and alias_filter are escaped per RFC 4515 section 3 (so
//     "*)(uid=*" or a NUL is a literal value, never filter syntax), and in
//     base_dn per RFC 4514 section 2.4.
//   - auth = "bind" checks a password by binding as the user's DN (found
//     with the service bind) on a connection of its own, never on a pooled
//     service connection; auth = "attribute" reads the attribute mapped to
//     the "password" field and verifies it with sasl.VerifyPassword
//     (Dovecot's {SCHEME}s, OpenLDAP's {SSHA} and {CRYPT}).
//
// # What callers can rely on
//
//   - directory.ErrNotFound only when the server answered that there is
//     no such entry. Every other failure (refused, timed out, broken
//     connection, several entries for one user, an attribute that does not
//     parse) is another error naming the directory: a temporary failure.
//   - Authenticate never sends a bind with an empty password: RFC 4513
//     section 5.1.2 makes that an unauthenticated bind, which servers
//     answer with success. An empty password is ErrBadPassword; LDAP
//     result 49 (invalidCredentials) is ErrBadPassword.
//   - Each lookup, connecting and binding included, ends within the
//     configured timeout (or ctx's deadline, if sooner).
//   - Service connections come from a pool of at most PoolSize; a
//     connection that failed is dropped, and a lookup whose pooled
//     connection turns out dead (the server restarted) is retried once on
//     a fresh one, so the directory recovers by itself when the server
//     comes back.
//   - A Directory is safe for concurrent use. Nothing here caches:
//     caching and single flight wrap any directory.Directory.
//   - Errors and logs never contain passwords.
package ldap
