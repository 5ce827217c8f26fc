package sasl

import (
	"strings"

	gosasl "github.com/emersion/go-sasl"
)

// Mechanism names as registered with IANA and advertised in EHLO
// (RFC 4954 section 3).
const (
	MechPlain       = "PLAIN"         // RFC 4616
	MechLogin       = "LOGIN"         // draft-murchison-sasl-login
	MechScramSHA256 = "SCRAM-SHA-256" // RFC 7677
	MechCramMD5     = "CRAM-MD5"      // RFC 2195
)

// Server is one server side of one SASL exchange.
//
// Next follows github.com/emersion/go-sasl: response is nil when the
// client gave no initial response (RFC 4954 "AUTH mech" without one) and
// non-nil, possibly empty, otherwise ("=" is an empty initial response).
// Next returns the next challenge to send (raw bytes: the protocol layer
// base64-encodes it) with done false, or done true when the client is
// authenticated. A non-nil error ends the exchange: it matches ErrMalformed
// or ErrAuthFailed, or is an internal error (a credential lookup that
// failed for another reason than ErrUnknownUser) that the protocol layer
// treats as a temporary failure. After done or an error, further calls
// return ErrMalformed.
//
// Username returns the identity the client authenticated as, in the form
// PrepareUsername returns, once Next has returned done true; before that
// it returns "". Where an authorization identity was requested and
// permitted (see ScramOptions.Authorize), Username returns that identity.
//
// A Server is used by one goroutine; it is not safe for concurrent use.
type Server interface {
	gosasl.Server
	Username() string
}

// IsPlaintext reports whether mech (compared case-insensitively) sends the
// password itself over the connection (PLAIN and LOGIN). Such mechanisms
// are offered only under TLS unless a listener explicitly allows insecure
// authentication (RFC 4954 section 4, RFC 4616 section 6).
func IsPlaintext(mech string) bool {
	switch strings.ToUpper(mech) {
	case MechPlain, MechLogin:
		return true
	}
	return false
}

// Server states shared by the mechanism implementations.
const (
	stateStart = iota // nothing received yet
	stateOne          // first client message expected
	stateTwo          // second client message expected
	stateThree        // third client message expected
	stateDone         // exchange over, successfully or not
)

// errAfterEnd is returned for any message after the exchange ended.
var errAfterEnd = malformed("message after the end of the exchange")

// checkPassword applies the bounds every plaintext mechanism enforces on a
// password: no NUL (RFC 4616 section 2) and at most MaxPasswordLength
// bytes.
func checkPassword(password string) error {
	if len(password) > MaxPasswordLength {
		return malformed("password is too long")
	}
	if strings.IndexByte(password, 0) >= 0 {
		return malformed("password contains NUL")
	}
	return nil
}

// prepareClientName prepares a user name sent by a client, turning a
// rejection into ErrMalformed.
func prepareClientName(name string) (string, error) {
	out, err := PrepareUsername(name)
	if err != nil {
		return "", &kindError{kind: ErrMalformed, reason: err.Error()}
	}
	return out, nil
}
