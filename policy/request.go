package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Request is one policy request, as Postfix's smtpd sends it
// (SMTPD_POLICY_README, "Protocol description"). The named fields hold the
// well-known attributes; an attribute Postfix did not send, or sent empty,
// leaves its field at the zero value ("name=" and "name=0" mean
// "unavailable" in the protocol). Attrs holds every attribute received,
// known or not, with its raw value.
type Request struct {
	// Request is the request type; Postfix's smtpd always sends
	// "smtpd_access_policy". The attribute is required.
	Request string
	// ProtocolState is the SMTP stage: CONNECT, EHLO, HELO, MAIL, RCPT,
	// DATA (also for BDAT), END-OF-MESSAGE, VRFY or ETRN.
	ProtocolState string
	// ProtocolName is SMTP or ESMTP.
	ProtocolName string
	HeloName     string
	QueueID      string
	// Sender is the envelope sender without angle brackets; empty for the
	// null sender.
	Sender string
	// Recipient is the RCPT TO address; it is also set in the DATA and
	// END-OF-MESSAGE stages when the message has exactly one recipient.
	Recipient string
	// RecipientCount is non-zero only in the DATA and END-OF-MESSAGE
	// stages: the number of accepted recipients.
	RecipientCount uint64
	// ClientAddress is the SMTP client's IP address (1.2.3.4 or 1:2::3).
	ClientAddress     string
	ClientName        string
	ReverseClientName string
	ClientPort        uint64
	ServerAddress     string
	ServerPort        uint64
	// Instance is the same for all requests about one message delivery
	// on one connection.
	Instance string
	// Size is the SIZE= of MAIL FROM (0 if none), and the real size in
	// the END-OF-MESSAGE stage.
	Size         uint64
	SASLMethod   string
	SASLUsername string
	SASLSender   string
	// CCertSubject and CCertIssuer are the client certificate's common
	// names, decoded from the xtext Postfix sends them in (RFC 3461
	// section 4; a value that is not valid xtext is kept as received).
	CCertSubject           string
	CCertIssuer            string
	CCertFingerprint       string
	CCertPubkeyFingerprint string
	EncryptionProtocol     string
	EncryptionCipher       string
	EncryptionKeysize      uint64
	// TLSSNI is the server name the client sent in TLS (Postfix 3.12).
	TLSSNI     string
	ETRNDomain string
	// Stress is "yes" when Postfix's smtpd is under stress, else empty.
	Stress             string
	PolicyContext      string
	CompatibilityLevel string
	MailVersion        string

	// Attrs holds every attribute of the request by name, the well-known
	// ones included, with its value as received (the first, when a name
	// repeats).
	Attrs map[string]string
}

// Limits bound what ReadRequest accepts. A zero field means its default.
type Limits struct {
	// MaxLineLength bounds one attribute line, newline included.
	// Default DefaultMaxLineLength.
	MaxLineLength int
	// MaxAttributes bounds the attribute lines of one request, repeated
	// names included. Default DefaultMaxAttributes.
	MaxAttributes int
	// MaxRequestBytes bounds one request, the lines and the final empty
	// line included. Default DefaultMaxRequestBytes.
	MaxRequestBytes int
}

// Default limits. Postfix sends about 30 attributes in about 1 KiB; a
// value is at most an SMTP command argument (smtpd's line_length_limit is
// 2048) or an xtext-encoded certificate name.
const (
	// DefaultMaxLineLength is attr_scan_plain's own (disabled) bound of
	// 4 × line_length_limit.
	DefaultMaxLineLength = 8192
	// DefaultMaxAttributes is attr_scan_plain's ATTR_HASH_LIMIT.
	DefaultMaxAttributes = 1024
	// DefaultMaxRequestBytes is 64 KiB.
	DefaultMaxRequestBytes = 64 << 10
)

func (l Limits) withDefaults() Limits {
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = DefaultMaxLineLength
	}
	if l.MaxAttributes <= 0 {
		l.MaxAttributes = DefaultMaxAttributes
	}
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = DefaultMaxRequestBytes
	}
	return l
}

// Errors of ReadRequest. Each one wraps ErrMalformed, so a caller can test
// for "the peer does not speak the protocol" with one errors.Is.
var (
	// ErrMalformed is the class of every protocol violation.
	ErrMalformed = errors.New("policy: malformed request")
	// ErrLineTooLong: an attribute line is longer than MaxLineLength.
	ErrLineTooLong = fmt.Errorf("%w: line too long", ErrMalformed)
	// ErrTooManyAttributes: more than MaxAttributes lines in one request.
	ErrTooManyAttributes = fmt.Errorf("%w: too many attributes", ErrMalformed)
	// ErrRequestTooLarge: the request is larger than MaxRequestBytes.
	ErrRequestTooLarge = fmt.Errorf("%w: request too large", ErrMalformed)
	// ErrTruncated: the input ended inside a request.
	ErrTruncated = fmt.Errorf("%w: end of input inside a request", ErrMalformed)
)

// ReadRequest reads one request from br: attribute lines up to and
// including the empty line that ends it. It returns io.EOF, and nothing
// else, when br ends cleanly before the first byte of a request; an error
// wrapping ErrMalformed when the input is not a request (see the package
// documentation for the rules); or the read error of br. After an error
// the stream's position is undefined: the caller closes the connection.
//
// br must be able to buffer a whole line: its size must be at least
// MaxLineLength (bufio.NewReaderSize), or long lines are refused early.
func ReadRequest(br *bufio.Reader, lim Limits) (*Request, error) {
	lim = lim.withDefaults()
	attrs := make(map[string]string)
	total, lines := 0, 0
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, ErrLineTooLong
		case errors.Is(err, io.EOF):
			if len(line) == 0 && lines == 0 && total == 0 {
				return nil, io.EOF
			}
			return nil, ErrTruncated
		default:
			return nil, err
		}
		if len(line) > lim.MaxLineLength {
			return nil, ErrLineTooLong
		}
		total += len(line)
		if total > lim.MaxRequestBytes {
			return nil, ErrRequestTooLarge
		}
		line = line[:len(line)-1]
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break
		}
		lines++
		if lines > lim.MaxAttributes {
			return nil, ErrTooManyAttributes
		}
		name, value, ok := bytes.Cut(line, []byte{'='})
		switch {
		case !ok:
			// attr_scan_plain: "missing value for string attribute".
			return nil, fmt.Errorf("%w: line %d has no '='", ErrMalformed, lines)
		case len(name) == 0:
			return nil, fmt.Errorf("%w: line %d has an empty attribute name", ErrMalformed, lines)
		case bytes.IndexByte(line, 0) >= 0:
			// SMTPD_POLICY_README: names and values contain no null.
			return nil, fmt.Errorf("%w: line %d contains a NUL byte", ErrMalformed, lines)
		}
		if _, dup := attrs[string(name)]; !dup {
			attrs[string(name)] = string(value)
		}
	}
	return newRequest(attrs)
}

// newRequest fills the named fields from the attributes.
func newRequest(attrs map[string]string) (*Request, error) {
	r := &Request{Attrs: attrs}
	if attrs["request"] == "" {
		// SMTPD_POLICY_README: "The request attribute is required."
		return nil, fmt.Errorf("%w: no request attribute", ErrMalformed)
	}
	strs := []struct {
		name string
		dst  *string
	}{
		{"request", &r.Request},
		{"protocol_state", &r.ProtocolState},
		{"protocol_name", &r.ProtocolName},
		{"helo_name", &r.HeloName},
		{"queue_id", &r.QueueID},
		{"sender", &r.Sender},
		{"recipient", &r.Recipient},
		{"client_address", &r.ClientAddress},
		{"client_name", &r.ClientName},
		{"reverse_client_name", &r.ReverseClientName},
		{"server_address", &r.ServerAddress},
		{"instance", &r.Instance},
		{"sasl_method", &r.SASLMethod},
		{"sasl_username", &r.SASLUsername},
		{"sasl_sender", &r.SASLSender},
		{"ccert_fingerprint", &r.CCertFingerprint},
		{"ccert_pubkey_fingerprint", &r.CCertPubkeyFingerprint},
		{"encryption_protocol", &r.EncryptionProtocol},
		{"encryption_cipher", &r.EncryptionCipher},
		{"tls_sni", &r.TLSSNI},
		{"etrn_domain", &r.ETRNDomain},
		{"stress", &r.Stress},
		{"policy_context", &r.PolicyContext},
		{"compatibility_level", &r.CompatibilityLevel},
		{"mail_version", &r.MailVersion},
	}
	for _, f := range strs {
		*f.dst = attrs[f.name]
	}
	r.CCertSubject = xtextDecode(attrs["ccert_subject"])
	r.CCertIssuer = xtextDecode(attrs["ccert_issuer"])
	nums := []struct {
		name string
		dst  *uint64
	}{
		{"recipient_count", &r.RecipientCount},
		{"client_port", &r.ClientPort},
		{"server_port", &r.ServerPort},
		{"size", &r.Size},
		{"encryption_keysize", &r.EncryptionKeysize},
	}
	for _, f := range nums {
		v := attrs[f.name]
		if v == "" {
			continue
		}
		// Postfix sends these with %u / %lu; attr_scan_plain refuses
		// anything but digits in a number, so do we.
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s=%.40q is not a number", ErrMalformed, f.name, v)
		}
		*f.dst = n
	}
	return r, nil
}

// xtextDecode decodes xtext (RFC 3461 section 4: "+XX" for a byte in
// upper-case hex), or returns s unchanged when it is not valid xtext.
func xtextDecode(s string) string {
	if !bytes.ContainsRune([]byte(s), '+') {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) {
			return s
		}
		b, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return s
		}
		out = append(out, byte(b))
		i += 2
	}
	return string(out)
}
