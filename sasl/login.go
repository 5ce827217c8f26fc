package sasl

// LOGIN challenges, sent verbatim (the protocol layer base64-encodes them:
// "VXNlcm5hbWU6" and "UGFzc3dvcmQ6"), as in draft-murchison-sasl-login-00
// section 2.1. Some old clients match on these exact strings.
const (
	loginUsernameChallenge = "Username:"
	loginPasswordChallenge = "Password:"
)

// NewLoginServer returns a server for the LOGIN mechanism
// (draft-murchison-sasl-login): the server asks "Username:" and then
// "Password:", and the client answers each with the bare value. An initial
// response is taken as the user name (draft section 2.1), so the exchange
// continues with "Password:".
//
// auth is called once with the prepared user name (PrepareUsername) and
// the password exactly as sent; it returns nil to accept, ErrAuthFailed to
// reject, or another error for an internal failure, and its error is
// returned from Next unchanged. A user name SASLprep rejects (including an
// empty one) or one longer than MaxUsernameLength, and a password with NUL
// or longer than MaxPasswordLength, give ErrMalformed without calling auth.
func NewLoginServer(auth func(username, password string) error) Server {
	return &loginServer{auth: auth}
}

// loginServer is the LOGIN state machine: stateStart, stateOne (user name
// expected), stateTwo (password expected), stateDone.
type loginServer struct {
	auth     func(username, password string) error
	state    int
	name     string // prepared user name, once received
	username string // set on success
}

// Next implements Server.
func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case stateStart:
		if response == nil {
			s.state = stateOne
			return []byte(loginUsernameChallenge), false, nil
		}
		return s.takeName(response)
	case stateOne:
		if response == nil {
			return s.fail(malformed("LOGIN: missing user name"))
		}
		return s.takeName(response)
	case stateTwo:
		if response == nil {
			return s.fail(malformed("LOGIN: missing password"))
		}
		s.state = stateDone
		password := string(response)
		if err := checkPassword(password); err != nil {
			return nil, true, err
		}
		if err := s.auth(s.name, password); err != nil {
			return nil, true, err
		}
		s.username = s.name
		return nil, true, nil
	}
	return nil, true, errAfterEnd
}

// takeName accepts the user name and asks for the password.
func (s *loginServer) takeName(response []byte) ([]byte, bool, error) {
	name, err := prepareClientName(string(response))
	if err != nil {
		return s.fail(err)
	}
	s.name = name
	s.state = stateTwo
	return []byte(loginPasswordChallenge), false, nil
}

// fail ends the exchange with err.
func (s *loginServer) fail(err error) ([]byte, bool, error) {
	s.state = stateDone
	return nil, true, err
}

// Username implements Server.
func (s *loginServer) Username() string { return s.username }
