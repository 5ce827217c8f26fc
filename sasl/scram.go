package sasl

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Bounds on SCRAM client messages. A client-first-message holds a GS2
// header, two names of at most MaxUsernameLength bytes each (up to three
// times longer with "=2C" escapes), a nonce and extensions; a
// client-final-message holds the channel binding echo, the nonce, the
// proof and extensions. 4096 bytes is plenty for either.
const (
	maxScramMessage     = 4096
	maxScramNonce       = 256
	scramServerNonceLen = 18 // random bytes, 24 base64 characters
)

// ScramOptions adjust a SCRAM-SHA-256 server. The zero value (or a nil
// pointer) is the strict default.
type ScramOptions struct {
	// Authorize reports whether the authenticated user authcid may act as
	// authzid, when the client sent an authorization identity ("a=",
	// RFC 5802 section 5.1) that prepares to a different name. It is
	// called only after the proof has been verified. When nil, a
	// different authorization identity fails with ErrAuthFailed.
	Authorize func(authcid, authzid string) bool
}

// ScramServer is the server side of one SCRAM-SHA-256 exchange (RFC 5802,
// RFC 7677) without channel binding: advertise "SCRAM-SHA-256", never
// "SCRAM-SHA-256-PLUS". Create one with NewScramServer for each AUTH
// command; it is not safe for concurrent use.
//
// The exchange, as Next sees it (RFC 5802 section 5, RFC 4954 section 4):
//
//	Next(nil)                  -> "" (no initial response: ask for it)
//	Next(client-first-message) -> server-first-message
//	Next(client-final-message) -> server-final-message "v=..."
//	Next("")                   -> done
//
// The last round trip exists because SMTP cannot carry data with a
// success reply: the server signature travels in a 334 challenge and the
// client answers with an empty line (RFC 4422 section 5).
//
// Username returns the authenticated identity once Next has returned done.
type ScramServer struct {
	lookup    func(username string) (ScramCredentials, error)
	authorize func(authcid, authzid string) bool
	nonce     func() string // server nonce source; a test seam

	state           int
	gs2Header       string // "n,," or "y,a=...," as the client sent it
	clientFirstBare string
	serverFirst     string
	fullNonce       string
	authcid         string // prepared
	authzid         string // prepared, "" when absent
	creds           ScramCredentials
	known           bool   // creds belong to a real user
	username        string // set when done
}

// NewScramServer returns a SCRAM-SHA-256 server. lookup is called once per
// exchange with the prepared user name; it returns the user's stored
// credentials, ErrUnknownUser when there are none (unknown user, or a user
// without SCRAM keys), or another error for an internal failure, which
// Next returns wrapped. opts may be nil.
//
// Unknown users cannot be told from known ones: for ErrUnknownUser the
// server answers with a salt derived by HMAC-SHA-256 from a per-process
// random secret and the user name (the same salt every time within the
// process) and DefaultScramIterations, and the exchange fails only at the
// proof, with the same ScramError ("invalid-proof") a wrong password gives.
// Two giveaways remain, as in other servers: a fake salt changes when the
// process restarts while a real user's salt does not, and a real user whose
// keys were made with another iteration count than DefaultScramIterations
// shows that count.
func NewScramServer(lookup func(username string) (ScramCredentials, error), opts *ScramOptions) *ScramServer {
	s := &ScramServer{lookup: lookup, nonce: randomNonce}
	if opts != nil {
		s.authorize = opts.Authorize
	}
	return s
}

// Username implements Server: the authorization identity when one was sent
// and permitted, otherwise the authentication identity; "" until done.
func (s *ScramServer) Username() string { return s.username }

// Next implements Server. Errors are *ScramError (matching ErrMalformed or
// ErrAuthFailed) or, for a failed credential lookup, an internal error.
func (s *ScramServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case stateStart:
		if response == nil {
			s.state = stateOne
			return []byte{}, false, nil
		}
		return s.finish(stateTwo)(s.clientFirst(response))
	case stateOne:
		return s.finish(stateTwo)(s.clientFirst(response))
	case stateTwo:
		return s.finish(stateThree)(s.clientFinal(response))
	case stateThree:
		s.state = stateDone
		// RFC 4422 section 5: the client acknowledges the
		// additional data with an empty response.
		if len(response) != 0 {
			return nil, true, scramErr(ErrMalformed, "other-error", "non-empty response after server-final-message")
		}
		s.username = s.authcid
		if s.authzid != "" {
			s.username = s.authzid
		}
		return nil, true, nil
	}
	return nil, true, scramErr(ErrMalformed, "other-error", "message after the end of the exchange")
}

// finish returns a function that moves to state next after a client
// message was handled, or ends the exchange on error.
func (s *ScramServer) finish(next int) func([]byte, error) ([]byte, bool, error) {
	return func(challenge []byte, err error) ([]byte, bool, error) {
		if err != nil {
			s.state = stateDone
			return nil, true, err
		}
		s.state = next
		return challenge, false, nil
	}
}

// clientFirst handles the client-first-message (RFC 5802 section 7):
//
//	client-first-message = gs2-header client-first-message-bare
//	gs2-header = gs2-cbind-flag "," [ authzid ] ","
//	gs2-cbind-flag = ("p=" cb-name) / "n" / "y"
//	client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
func (s *ScramServer) clientFirst(msg []byte) ([]byte, error) {
	if err := checkScramMessage(msg); err != nil {
		return nil, err
	}
	text := string(msg)
	flag, rest, ok := strings.Cut(text, ",")
	if !ok {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "missing GS2 header")
	}
	switch {
	case flag == "n", flag == "y":
		// "y": the client supports channel binding but thinks we do
		// not, which is true: we never advertise -PLUS, so this is no
		// downgrade (RFC 5802 section 6).
	case strings.HasPrefix(flag, "p="):
		return nil, scramErr(ErrMalformed, "channel-binding-not-supported", "client requires channel binding")
	default:
		return nil, scramErr(ErrMalformed, "invalid-encoding", "bad channel binding flag")
	}
	authzText, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "missing GS2 header")
	}
	if authzText != "" {
		encoded, ok := strings.CutPrefix(authzText, "a=")
		if !ok {
			return nil, scramErr(ErrMalformed, "invalid-encoding", "bad authorization identity")
		}
		name, err := decodeSaslname(encoded)
		if err != nil {
			return nil, err
		}
		s.authzid = name
	}
	s.gs2Header = text[:len(text)-len(bare)]
	s.clientFirstBare = bare

	attrs := strings.Split(bare, ",")
	if strings.HasPrefix(attrs[0], "m=") {
		// RFC 5802 section 5.1: a server that does not support the
		// mandatory extension MUST fail.
		return nil, scramErr(ErrMalformed, "extensions-not-supported", "mandatory extension")
	}
	if len(attrs) < 2 {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "want n=username,r=nonce")
	}
	encodedName, ok := strings.CutPrefix(attrs[0], "n=")
	if !ok {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "missing user name")
	}
	name, err := decodeSaslname(encodedName)
	if err != nil {
		return nil, err
	}
	s.authcid = name
	clientNonce, ok := strings.CutPrefix(attrs[1], "r=")
	if !ok || !validNonce(clientNonce) {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "missing or bad client nonce")
	}
	if err := checkExtensions(attrs[2:]); err != nil {
		return nil, err
	}

	creds, err := s.lookup(s.authcid)
	switch {
	case err == nil:
		if verr := creds.Validate(); verr != nil {
			return nil, fmt.Errorf("sasl: SCRAM-SHA-256: stored credentials: %w", verr)
		}
		s.creds, s.known = creds, true
	case errors.Is(err, ErrUnknownUser):
		s.creds, s.known = fakeScramCredentials(s.authcid), false
	default:
		return nil, fmt.Errorf("sasl: SCRAM-SHA-256: credential lookup: %w", err)
	}

	s.fullNonce = clientNonce + s.nonce()
	s.serverFirst = "r=" + s.fullNonce + ",s=" + base64.StdEncoding.EncodeToString(s.creds.Salt) +
		",i=" + strconv.Itoa(s.creds.Iterations)
	return []byte(s.serverFirst), nil
}

// clientFinal handles the client-final-message (RFC 5802 section 7):
//
//	client-final-message-without-proof = channel-binding "," nonce ["," extensions]
//	client-final-message = client-final-message-without-proof "," proof
//
// and checks the proof (section 3):
//
//	AuthMessage     := client-first-message-bare + "," + server-first-message + "," + client-final-message-without-proof
//	ClientSignature := HMAC(StoredKey, AuthMessage)
//	ClientKey       := ClientProof XOR ClientSignature
//	verified        := H(ClientKey) == StoredKey
func (s *ScramServer) clientFinal(msg []byte) ([]byte, error) {
	if err := checkScramMessage(msg); err != nil {
		return nil, err
	}
	text := string(msg)
	cut := strings.LastIndexByte(text, ',')
	if cut < 0 {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "want c=...,r=...,p=...")
	}
	withoutProof, proofAttr := text[:cut], text[cut+1:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "want c=...,r=...,p=...")
	}
	cbind, ok1 := strings.CutPrefix(attrs[0], "c=")
	nonce, ok2 := strings.CutPrefix(attrs[1], "r=")
	proofText, ok3 := strings.CutPrefix(proofAttr, "p=")
	if !ok1 || !ok2 || !ok3 {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "want c=...,r=...,p=...")
	}
	if err := checkExtensions(attrs[2:]); err != nil {
		return nil, err
	}
	cbindInput, err := decodeBase64(base64.StdEncoding, cbind)
	if err != nil {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "channel binding is not base64")
	}
	proof, err := decodeBase64(base64.StdEncoding, proofText)
	if err != nil || len(proof) != sha256.Size {
		return nil, scramErr(ErrMalformed, "invalid-encoding", "proof is not 32 bytes of base64")
	}
	// Without channel binding, cbind-input is just the GS2 header
	// (RFC 5802 section 7); echoing it protects the header (and so the
	// "y" flag) from tampering.
	if !bytes.Equal(cbindInput, []byte(s.gs2Header)) {
		return nil, scramErr(ErrAuthFailed, "channel-bindings-dont-match", "channel binding echo differs from the GS2 header")
	}
	if nonce != s.fullNonce {
		return nil, scramErr(ErrAuthFailed, "other-error", "nonce differs from the one sent")
	}

	authMessage := []byte(s.clientFirstBare + "," + s.serverFirst + "," + withoutProof)
	clientSignature := hmacSHA256(s.creds.StoredKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	subtle.XORBytes(clientKey, proof, clientSignature)
	storedKey := sha256.Sum256(clientKey)
	// Constant-time comparison, and a fake user's keys can never verify
	// even if the comparison matched.
	verified := subtle.ConstantTimeCompare(storedKey[:], s.creds.StoredKey) == 1
	if !verified || !s.known {
		return nil, scramErr(ErrAuthFailed, "invalid-proof", "proof does not verify")
	}
	if s.authzid == s.authcid {
		s.authzid = ""
	}
	if s.authzid != "" && (s.authorize == nil || !s.authorize(s.authcid, s.authzid)) {
		return nil, scramErr(ErrAuthFailed, "other-error", "authorization identity not permitted")
	}
	serverSignature := hmacSHA256(s.creds.ServerKey, authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSignature)), nil
}

// scramErr builds a *ScramError.
func scramErr(kind error, value, reason string) *ScramError {
	return &ScramError{Value: value, Err: kind, reason: reason}
}

// checkScramMessage applies the checks common to both client messages:
// a length bound, valid UTF-8 and no NUL (RFC 5802 section 7: value-char
// excludes NUL; the messages are UTF-8).
func checkScramMessage(msg []byte) error {
	switch {
	case len(msg) == 0:
		return scramErr(ErrMalformed, "invalid-encoding", "empty message")
	case len(msg) > maxScramMessage:
		return scramErr(ErrMalformed, "invalid-encoding", "message is too long")
	case !utf8.Valid(msg), bytes.IndexByte(msg, 0) >= 0:
		return scramErr(ErrMalformed, "invalid-encoding", "message is not UTF-8 without NUL")
	}
	return nil
}

// decodeSaslname decodes a saslname (RFC 5802 section 5.1: "=2C" is ",",
// "=3D" is "=", any other "=" is an error; ABNF strings are
// case-insensitive, RFC 5234 section 2.3) and prepares the result with
// PrepareUsername.
func decodeSaslname(encoded string) (string, error) {
	if encoded == "" {
		return "", scramErr(ErrMalformed, "invalid-username-encoding", "empty user name")
	}
	var b strings.Builder
	for i := 0; i < len(encoded); i++ {
		c := encoded[i]
		if c != '=' {
			b.WriteByte(c)
			continue
		}
		switch strings.ToUpper(encoded[i+1 : min(i+3, len(encoded))]) {
		case "2C":
			b.WriteByte(',')
		case "3D":
			b.WriteByte('=')
		default:
			return "", scramErr(ErrMalformed, "invalid-username-encoding", "bad '=' escape in user name")
		}
		i += 2
	}
	name, err := PrepareUsername(b.String())
	if err != nil {
		return "", scramErr(ErrMalformed, "invalid-username-encoding", err.Error())
	}
	return name, nil
}

// validNonce reports whether n is a valid c-nonce: printable ASCII except
// "," (RFC 5802 section 7), bounded in length.
func validNonce(n string) bool {
	if n == "" || len(n) > maxScramNonce {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// checkExtensions checks that each optional extension is attr-val
// (ALPHA "=" value, RFC 5802 section 7). Their values are ignored; "m" is
// refused where it would be mandatory, which the callers check.
func checkExtensions(attrs []string) error {
	for _, a := range attrs {
		if len(a) < 2 || a[1] != '=' || !('a' <= a[0] && a[0] <= 'z' || 'A' <= a[0] && a[0] <= 'Z') {
			return scramErr(ErrMalformed, "invalid-encoding", "bad attribute")
		}
	}
	return nil
}

// randomNonce returns the server's part of the nonce: 18 bytes from
// crypto/rand as 24 base64 characters (printable, no ",").
func randomNonce() string {
	b := make([]byte, scramServerNonceLen)
	_, _ = rand.Read(b) // never fails (crypto/rand documentation)
	return base64.StdEncoding.EncodeToString(b)
}

// processSecret keys the fake credentials for unknown users. It is random
// per process, so nothing about it can be learnt from the configuration.
var processSecret = sync.OnceValue(func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand documentation)
	return b
})

// fakeScramCredentials returns credentials for a user that does not exist:
// a salt that is the same for the same name within this process, so
// repeated probes see a stable salt as for a real user, and keys that
// nobody knows. They are never accepted (ScramServer.known is false).
func fakeScramCredentials(username string) ScramCredentials {
	secret := processSecret()
	return ScramCredentials{
		Salt:       hmacSHA256(secret, []byte("scram salt\x00"+username))[:scramSaltLength],
		Iterations: DefaultScramIterations,
		StoredKey:  hmacSHA256(secret, []byte("scram stored key\x00"+username)),
		ServerKey:  hmacSHA256(secret, []byte("scram server key\x00"+username)),
	}
}
