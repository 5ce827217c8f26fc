package sasl

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cramPrefix starts the text encoding of a CRAMSecret, the one of
// Dovecot's CRAM-MD5 password scheme ("doveadm pw -s CRAM-MD5").
const cramPrefix = "{CRAM-MD5}"

// CRAMSecret is what a server keeps to verify CRAM-MD5 (RFC 2195) without
// the plaintext password: the two MD5 chaining values reached after
// hashing the HMAC key XOR ipad and XOR opad (the precomputation RFC 2104
// section 4 describes). It is password-equivalent for CRAM-MD5 and a
// cheap, unsalted target for guessing the password; see the package
// documentation for why CRAM-MD5 is off by default. Every way of printing
// or marshaling it yields "[REDACTED]"; use Encode for the text form. The
// zero value is not a valid secret.
type CRAMSecret struct {
	// ctx is the outer then the inner chaining value, each as four
	// little-endian 32-bit words: Dovecot's hmac_md5_get_cram_context
	// layout.
	ctx [2 * md5.Size]byte
}

// NewCRAMSecret computes the CRAM-MD5 secret for password. The password
// must be non-empty.
func NewCRAMSecret(password string) (CRAMSecret, error) {
	if password == "" {
		return CRAMSecret{}, errors.New("sasl: empty password")
	}
	// RFC 2104 section 2: keys longer than the block are hashed first,
	// shorter ones padded with zeros.
	key := []byte(password)
	if len(key) > md5.BlockSize {
		sum := md5.Sum(key)
		key = sum[:]
	}
	var ipad, opad [md5.BlockSize]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	var c CRAMSecret
	if err := md5ChainingValue(c.ctx[:md5.Size], opad[:]); err != nil {
		return CRAMSecret{}, err
	}
	if err := md5ChainingValue(c.ctx[md5.Size:], ipad[:]); err != nil {
		return CRAMSecret{}, err
	}
	return c, nil
}

// ParseCRAMSecret parses "{CRAM-MD5}" followed by 64 hexadecimal digits,
// the format of Dovecot's CRAM-MD5 scheme, so existing Dovecot entries can
// be reused. Errors match ErrInvalidSecret and do not contain the input.
func ParseCRAMSecret(s string) (CRAMSecret, error) {
	text, ok := strings.CutPrefix(s, cramPrefix)
	if !ok {
		return CRAMSecret{}, fmt.Errorf("%w: CRAM-MD5: missing %q prefix", ErrInvalidSecret, cramPrefix)
	}
	var c CRAMSecret
	if len(text) != hex.EncodedLen(len(c.ctx)) {
		return CRAMSecret{}, fmt.Errorf("%w: CRAM-MD5: want %d hexadecimal digits", ErrInvalidSecret, hex.EncodedLen(len(c.ctx)))
	}
	if _, err := hex.Decode(c.ctx[:], []byte(text)); err != nil {
		return CRAMSecret{}, fmt.Errorf("%w: CRAM-MD5: want %d hexadecimal digits", ErrInvalidSecret, hex.EncodedLen(len(c.ctx)))
	}
	return c, nil
}

// Encode returns the text encoding ParseCRAMSecret reads. The result is a
// secret; it belongs in a credentials file, never in a log.
func (c CRAMSecret) Encode() string { return cramPrefix + hex.EncodeToString(c.ctx[:]) }

// UnmarshalText parses the text encoding (see ParseCRAMSecret).
func (c *CRAMSecret) UnmarshalText(text []byte) error {
	parsed, err := ParseCRAMSecret(string(text))
	if err != nil {
		return err
	}
	*c = parsed
	return nil
}

// String returns "[REDACTED]".
func (c CRAMSecret) String() string { return redacted }

// Format prints "[REDACTED]" for every verb.
func (c CRAMSecret) Format(f fmt.State, _ rune) { formatRedacted(f) }

// MarshalJSON returns the JSON string "[REDACTED]".
func (c CRAMSecret) MarshalJSON() ([]byte, error) { return jsonRedacted() }

// LogValue returns "[REDACTED]" for log/slog.
func (c CRAMSecret) LogValue() slog.Value { return slogRedacted() }

// digest returns HMAC-MD5(key, challenge) from the stored chaining values.
func (c CRAMSecret) digest(challenge []byte) ([]byte, error) {
	inner, err := md5Resume(c.ctx[md5.Size:])
	if err != nil {
		return nil, err
	}
	inner.Write(challenge)
	outer, err := md5Resume(c.ctx[:md5.Size])
	if err != nil {
		return nil, err
	}
	outer.Write(inner.Sum(nil))
	return outer.Sum(nil), nil
}

// The helpers below move an MD5 chaining value in and out of crypto/md5
// through its encoding.BinaryMarshaler state: "md5\x01", the four state
// words big-endian, the 64-byte block buffer, and the length in bytes as a
// big-endian uint64 (crypto/md5 md5.go). Tests check the result against
// crypto/hmac, so a change of that format cannot pass unnoticed.
const (
	md5StateMagic = "md5\x01"
	md5StateSize  = len(md5StateMagic) + md5.Size + md5.BlockSize + 8
)

// md5ChainingValue hashes one 64-byte block and stores the chaining value
// in dst in Dovecot's little-endian layout.
func md5ChainingValue(dst, block []byte) error {
	h := md5.New()
	h.Write(block)
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil || len(state) != md5StateSize || string(state[:4]) != md5StateMagic {
		return errors.New("sasl: CRAM-MD5: unexpected crypto/md5 state format")
	}
	for i := 0; i < 4; i++ {
		w := binary.BigEndian.Uint32(state[4+4*i:])
		binary.LittleEndian.PutUint32(dst[4*i:], w)
	}
	return nil
}

// md5Resume returns an MD5 hash that has already absorbed one 64-byte
// block ending in the chaining value cv (Dovecot layout).
func md5Resume(cv []byte) (hash.Hash, error) {
	state := make([]byte, 0, md5StateSize)
	state = append(state, md5StateMagic...)
	for i := 0; i < 4; i++ {
		state = binary.BigEndian.AppendUint32(state, binary.LittleEndian.Uint32(cv[4*i:]))
	}
	state = append(state, make([]byte, md5.BlockSize)...)
	state = binary.BigEndian.AppendUint64(state, md5.BlockSize)
	h := md5.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, errors.New("sasl: CRAM-MD5: unexpected crypto/md5 state format")
	}
	return h, nil
}

// NewCramMD5Server returns a server for CRAM-MD5 (RFC 2195). The server
// speaks first, so an initial response is refused with ErrMalformed
// (RFC 4422 section 3.3). The challenge is "<random.timestamp@hostname>"
// (RFC 2195 section 2); an empty hostname means os.Hostname, or
// "localhost" when that fails. The client answers "username SP digest",
// digest being 32 hexadecimal digits of HMAC-MD5(password, challenge).
//
// lookup is called with the prepared user name; it returns the user's
// CRAMSecret, ErrUnknownUser when there is none (unknown user, or a user
// whose entry does not allow CRAM-MD5), or another error for an internal
// failure, which Next returns wrapped. For ErrUnknownUser the server
// computes the digest with a fake secret, so the failure (ErrAuthFailed)
// takes the same work as a wrong password.
func NewCramMD5Server(lookup func(username string) (CRAMSecret, error), hostname string) Server {
	if hostname == "" {
		hostname = defaultHostname()
	}
	s := &cramServer{lookup: lookup}
	s.challenge = func() string { return randomCramChallenge(hostname) }
	return s
}

// cramServer is the CRAM-MD5 state machine: stateStart, stateOne (the
// response expected), stateDone.
type cramServer struct {
	lookup    func(username string) (CRAMSecret, error)
	challenge func() string // a test seam
	sent      []byte        // the challenge sent
	state     int
	username  string
}

// Next implements Server.
func (s *cramServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case stateStart:
		if response != nil {
			s.state = stateDone
			return nil, true, malformed("CRAM-MD5: initial response not allowed")
		}
		s.sent = []byte(s.challenge())
		s.state = stateOne
		return s.sent, false, nil
	case stateOne:
		s.state = stateDone
		name, err := s.verify(response)
		if err != nil {
			return nil, true, err
		}
		s.username = name
		return nil, true, nil
	}
	return nil, true, errAfterEnd
}

// verify checks the response "username SP digest" and returns the
// prepared user name.
func (s *cramServer) verify(response []byte) (string, error) {
	if len(response) > MaxUsernameLength+1+hex.EncodedLen(md5.Size) {
		return "", malformed("CRAM-MD5: response is too long")
	}
	text := string(response)
	cut := strings.LastIndexByte(text, ' ')
	if cut < 0 {
		return "", malformed("CRAM-MD5: want user name, space, digest")
	}
	name, err := prepareClientName(text[:cut])
	if err != nil {
		return "", err
	}
	digestText := text[cut+1:]
	if len(digestText) != hex.EncodedLen(md5.Size) {
		return "", malformed("CRAM-MD5: digest is not 32 hexadecimal digits")
	}
	got, err := hex.DecodeString(digestText)
	if err != nil {
		return "", malformed("CRAM-MD5: digest is not 32 hexadecimal digits")
	}
	secret, err := s.lookup(name)
	known := true
	switch {
	case err == nil:
	case errors.Is(err, ErrUnknownUser):
		secret, known = fakeCRAMSecret(name), false
	default:
		return "", fmt.Errorf("sasl: CRAM-MD5: credential lookup: %w", err)
	}
	want, err := secret.digest(s.sent)
	if err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare(got, want) != 1 || !known {
		return "", authFailed("CRAM-MD5: digest does not verify")
	}
	return name, nil
}

// Username implements Server.
func (s *cramServer) Username() string { return s.username }

// fakeCRAMSecret returns a secret nobody knows, for unknown users.
func fakeCRAMSecret(username string) CRAMSecret {
	var c CRAMSecret
	copy(c.ctx[:], hmacSHA256(processSecret(), []byte("cram\x00"+username)))
	return c
}

// randomCramChallenge returns "<digits.timestamp@hostname>" with 63 random
// bits in decimal.
func randomCramChallenge(hostname string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documentation)
	n := binary.BigEndian.Uint64(b[:]) >> 1
	return "<" + strconv.FormatUint(n, 10) + "." + strconv.FormatInt(time.Now().Unix(), 10) + "@" + hostname + ">"
}

// defaultHostname is os.Hostname, or "localhost" when it fails.
var defaultHostname = sync.OnceValue(func() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
})
