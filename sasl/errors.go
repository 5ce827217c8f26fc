package sasl

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the texts are
// fixed and never contain anything the client sent (a user name may be a
// mistyped password), nor any secret.
var (
	// ErrMalformed means the client did not follow the mechanism: a
	// message that does not parse, a field that is too long or not valid
	// UTF-8, a user name SASLprep rejects, a message after the exchange
	// ended, or an option this package does not offer (SCRAM channel
	// binding "p=", the reserved "m=" extension). The SMTP layer answers
	// 501 (RFC 4954 section 4).
	ErrMalformed = errors.New("sasl: malformed exchange")

	// ErrAuthFailed means the exchange was well formed but did not prove
	// the identity: wrong password or proof, unknown user, a user without
	// a secret for this mechanism, a SCRAM nonce or channel-binding echo
	// that does not match, or an authorization identity that is not
	// permitted. Unknown users and wrong passwords are deliberately not
	// told apart. The SMTP layer answers 535 5.7.8 (RFC 4954 section 6).
	ErrAuthFailed = errors.New("sasl: authentication failed")

	// ErrUnknownUser is what a credential lookup function (for SCRAM or
	// CRAM-MD5) returns when the user does not exist or has no secret for
	// that mechanism. The mechanism servers turn it into a full exchange
	// that fails with ErrAuthFailed at the last step; it is never returned
	// by a Server's Next.
	ErrUnknownUser = errors.New("sasl: unknown user")

	// ErrUnsupportedMechanism is returned by Store.NewServer for a
	// mechanism name it does not know or that no user can use. The SMTP
	// layer answers 504 5.5.4 (RFC 4954 section 4).
	ErrUnsupportedMechanism = errors.New("sasl: unsupported mechanism")

	// ErrUnknownHashFormat is returned by VerifyPassword for an encoded
	// hash that is neither argon2id (PHC string) nor bcrypt.
	ErrUnknownHashFormat = errors.New("sasl: unknown password hash format")

	// ErrInvalidSecret is returned when a stored secret (password hash,
	// SCRAM keys, CRAM-MD5 context) of a known format does not parse or
	// has parameters out of the accepted range. It describes
	// configuration, not the client.
	ErrInvalidSecret = errors.New("sasl: invalid stored secret")
)

// malformed returns an error matching ErrMalformed with a fixed reason.
// reason must never include client data.
func malformed(reason string) error {
	return &kindError{kind: ErrMalformed, reason: reason}
}

// authFailed returns an error matching ErrAuthFailed with a fixed reason.
// reason must never include client data.
func authFailed(reason string) error {
	return &kindError{kind: ErrAuthFailed, reason: reason}
}

// kindError is a sentinel plus a fixed, client-data-free explanation.
type kindError struct {
	kind   error
	reason string
}

func (e *kindError) Error() string { return e.kind.Error() + ": " + e.reason }
func (e *kindError) Unwrap() error { return e.kind }

// ScramError is the error a ScramServer returns when the exchange fails.
// Value is the RFC 5802 section 7 server-error-value that describes the
// failure (for example "channel-binding-not-supported" or
// "invalid-proof"); a protocol that can carry a server-final-message
// with an error may send "e=" + Value. Unknown users and wrong passwords
// both give "invalid-proof", never "unknown-user". ScramError unwraps to
// ErrMalformed or ErrAuthFailed.
type ScramError struct {
	// Value is the server-error-value of RFC 5802 section 7.
	Value string
	// Err is ErrMalformed or ErrAuthFailed.
	Err error
	// reason is a fixed explanation for logs, free of client data.
	reason string
}

// Error implements error. The text contains no client data.
func (e *ScramError) Error() string {
	return e.Err.Error() + ": SCRAM-SHA-256: " + e.reason + " (e=" + e.Value + ")"
}

// Unwrap returns ErrMalformed or ErrAuthFailed.
func (e *ScramError) Unwrap() error { return e.Err }
