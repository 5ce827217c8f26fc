package directory

import (
	"context"
	"errors"
)

// ErrNotFound is returned when the directory answered and holds no such
// entry. Only this error may become a permanent refusal (550 5.1.1).
var ErrNotFound = errors.New("directory: not found")

// ErrBadPassword is returned by Authenticator.Authenticate when the entry
// exists and the password is wrong.
var ErrBadPassword = errors.New("directory: wrong password")

// Key is what a lookup is asked about. Its fields are the placeholders a
// query or filter may use: {address}, {localpart}, {domain}, {detail}.
type Key struct {
	// Address is the full address (localpart@domain) after alias and
	// detail handling, lower-cased unless the domain is case-sensitive;
	// for AUTH it is the login name as given.
	Address string
	// LocalPart is the part before the last '@', without the detail.
	LocalPart string
	// Domain is the part after the last '@', lower-cased.
	Domain string
	// Detail is the subaddress after the delimiter, or "".
	Detail string
}

// Limit is an optional number: Set is false when the directory gave no
// value (so a configured default applies). A Set Value of 0 means
// unlimited, as in Dovecot.
type Limit struct {
	Value int64
	Set   bool
}

// Record is what a directory knows of one user: the result fields of a
// user lookup, named as in the configuration contract (SQL columns, LDAP
// attributes mapped through `attributes`, passwd-file fields).
type Record struct {
	// Mailbox is the maildir path; relative paths are under the maildir
	// root. "" means the configured template applies.
	Mailbox string
	// Home is the user's home (for Sieve scripts); "" means the mailbox.
	Home string
	// QuotaBytes and QuotaMessages override the configured quota.
	QuotaBytes    Limit
	QuotaMessages Limit
	// Sieve is the path of the user's active Sieve script, or "".
	Sieve string
	// Forward names an LMTP server ("host:port" or "unix:/path") that
	// holds the mailbox, for proxying; "" means deliver here.
	Forward string
	// UID and GID are the owner for deliveries as the user, -1 when unset.
	UID, GID int
	// Trusted is true when the directory is trusted to name paths outside
	// the maildir root (trusted_paths = true).
	Trusted bool
	// Extra holds result fields lmtpd does not know, by name.
	Extra map[string]string
}

// Directory is a source of users and aliases. Implementations are safe
// for concurrent use. Every method honours ctx's deadline: a lookup never
// blocks its caller past it.
type Directory interface {
	// Name is the directory's configured name, for logs and metrics.
	Name() string
	// LookupUser returns the record of the user k names, ErrNotFound if
	// there is none, or another error when the answer is not known now.
	LookupUser(ctx context.Context, k Key) (Record, error)
	// LookupAlias returns the targets of the alias k names, in the
	// directory's order (several rows, or one comma-separated value,
	// split). ErrNotFound means k is not an alias; a directory without
	// aliases always returns it.
	LookupAlias(ctx context.Context, k Key) ([]string, error)
	// LookupPassword returns the stored password of login (a Dovecot
	// scheme-prefixed hash such as "{SHA512-CRYPT}$6$..."), ErrNotFound if
	// there is no such login.
	LookupPassword(ctx context.Context, k Key) (string, error)
	// Check makes one round trip to the directory (connects, binds,
	// queries nothing or something harmless) for check-config.
	Check(ctx context.Context) error
	// Close releases connections. Lookups after Close fail.
	Close() error
}

// Authenticator is implemented by directories that verify a password
// themselves (LDAP with auth = "bind"). Authenticate returns nil when the
// password is right, ErrBadPassword when it is wrong, ErrNotFound for an
// unknown login, or another error when the answer is not known now.
type Authenticator interface {
	Authenticate(ctx context.Context, k Key, password string) error
}
