package sasl

import (
	"errors"

	gosasl "github.com/emersion/go-sasl"
)

// NewPlainServer returns a server for the PLAIN mechanism (RFC 4616) built
// on github.com/emersion/go-sasl's parser. auth is called once with the
// prepared user name (PrepareUsername) and the password exactly as sent;
// it returns nil to accept, ErrAuthFailed to reject, or another error for
// an internal failure. Its error is returned from Next unchanged.
//
// The message must have the form authzid NUL authcid NUL passwd. An
// authorization identity is accepted only when it is empty or prepares to
// the same name as the authentication identity (otherwise ErrAuthFailed,
// before auth is called, RFC 4616 section 2). Anything else the client
// sends wrongly (a wrong field count, names or passwords over the length
// bounds, a name SASLprep rejects) gives ErrMalformed.
func NewPlainServer(auth func(username, password string) error) Server {
	s := &plainServer{}
	s.inner = gosasl.NewPlainServer(func(identity, username, password string) error {
		name, err := checkPlain(identity, username, password)
		if err != nil {
			return passThrough{err}
		}
		if err := auth(name, password); err != nil {
			return passThrough{err}
		}
		s.username = name
		return nil
	})
	return s
}

// plainServer adapts go-sasl's PLAIN server to this package's errors and
// adds Username.
type plainServer struct {
	inner    gosasl.Server
	state    int
	username string
}

// passThrough marks an error produced by our own checks or by the auth
// callback, as opposed to one from go-sasl's parser.
type passThrough struct{ err error }

func (p passThrough) Error() string { return p.err.Error() }

// Next implements Server.
func (s *plainServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case stateStart:
		if response == nil {
			// RFC 4422 section 5: no initial response, send an
			// empty challenge and expect the message next.
			s.state = stateOne
			return []byte{}, false, nil
		}
	case stateOne:
		if response == nil {
			s.state = stateDone
			return nil, true, malformed("PLAIN: missing message")
		}
	default:
		return nil, true, errAfterEnd
	}
	s.state = stateDone
	// Bound the input before go-sasl splits it: two names and a password.
	if len(response) > 2*MaxUsernameLength+MaxPasswordLength+2 {
		return nil, true, malformed("PLAIN: message is too long")
	}
	if _, _, err := s.inner.Next(response); err != nil {
		var p passThrough
		if errors.As(err, &p) {
			return nil, true, p.err
		}
		// go-sasl's own parse error carries no sentinel.
		return nil, true, malformed("PLAIN: message is not authzid NUL authcid NUL passwd")
	}
	return nil, true, nil
}

// Username implements Server.
func (s *plainServer) Username() string { return s.username }

// checkPlain validates the three PLAIN fields and returns the prepared
// authentication identity.
func checkPlain(identity, username, password string) (string, error) {
	name, err := prepareClientName(username)
	if err != nil {
		return "", err
	}
	if err := checkPassword(password); err != nil {
		return "", err
	}
	if identity != "" {
		authz, err := prepareClientName(identity)
		if err != nil {
			return "", err
		}
		if authz != name {
			return "", authFailed("PLAIN: authorization identity differs from the user name")
		}
	}
	return name, nil
}
