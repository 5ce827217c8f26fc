package protocol

import "strings"

// Address is a mailbox from a MAIL FROM reverse-path or a RCPT TO
// forward-path (RFC 5321 section 4.1.2, RFC 6531 section 3.3).
//
// The zero value is the null reverse-path "<>".
type Address struct {
	// LocalPart is the local part exactly as the client wrote it: a
	// quoted string keeps its quotes and backslashes ("\"john doe\"").
	// Use DecodedLocalPart for the mailbox name it denotes.
	LocalPart string
	// Domain is the domain as the client wrote it (case kept), or an
	// address literal with its brackets ("[192.0.2.1]", "[IPv6:2001:db8::1]").
	// It is empty for the null path and for the bare "Postmaster"
	// recipient that RFC 5321 section 4.5.1 requires servers to accept.
	Domain string
}

// IsNull reports whether a is the null reverse-path "<>".
func (a Address) IsNull() bool { return a.LocalPart == "" && a.Domain == "" }

// String returns the address as written, local@domain, without angle
// brackets; "" for the null path and "Postmaster" for the bare postmaster.
func (a Address) String() string {
	if a.Domain == "" {
		return a.LocalPart
	}
	return a.LocalPart + "@" + a.Domain
}

// IsQuoted reports whether the local part is a quoted string.
func (a Address) IsQuoted() bool {
	return len(a.LocalPart) >= 2 && a.LocalPart[0] == '"'
}

// DecodedLocalPart returns the local part with the quotes of a quoted
// string removed and its quoted pairs resolved ("\"a\\\"b\"" is `a"b`).
// A dot-atom local part is returned unchanged.
func (a Address) DecodedLocalPart() string {
	if !a.IsQuoted() {
		return a.LocalPart
	}
	s := a.LocalPart[1 : len(a.LocalPart)-1]
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// IsASCII reports whether the address is all US-ASCII. A non-ASCII address
// needs the SMTPUTF8 parameter on MAIL (RFC 6531 section 3.4).
func (a Address) IsASCII() bool {
	return isASCII(a.LocalPart) && isASCII(a.Domain)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// BodyType is the MAIL BODY= parameter (RFC 6152, RFC 3030).
type BodyType string

// Body types.
const (
	Body7Bit       BodyType = "7BIT"
	Body8BitMIME   BodyType = "8BITMIME"
	BodyBinaryMIME BodyType = "BINARYMIME"
)

// DSNReturn is the RET= parameter of MAIL (RFC 3461 section 4.3).
type DSNReturn string

// DSN return values.
const (
	DSNReturnFull    DSNReturn = "FULL"
	DSNReturnHeaders DSNReturn = "HDRS"
)

// MailParams are the parameters of MAIL FROM. Values are decoded (xtext
// removed); absent parameters have the zero value.
type MailParams struct {
	// Size is the declared SIZE= (RFC 1870); 0 when absent.
	Size int64
	// Body is BODY= (RFC 6152, RFC 3030); empty when absent (7BIT).
	Body BodyType
	// SMTPUTF8 is set by the SMTPUTF8 parameter (RFC 6531 section 3.4).
	SMTPUTF8 bool
	// Return is RET= (RFC 3461 section 4.3).
	Return DSNReturn
	// EnvelopeID is ENVID= decoded from xtext (RFC 3461 section 4.4).
	EnvelopeID string
	// Auth is AUTH= decoded from xtext (RFC 4954 section 5); "<>" when the
	// client said it does not know the submitter.
	Auth string
}

// DSNNotify is a NOTIFY= keyword (RFC 3461 section 4.1).
type DSNNotify string

// NOTIFY keywords.
const (
	DSNNotifyNever   DSNNotify = "NEVER"
	DSNNotifySuccess DSNNotify = "SUCCESS"
	DSNNotifyFailure DSNNotify = "FAILURE"
	DSNNotifyDelay   DSNNotify = "DELAY"
)

// RcptParams are the parameters of RCPT TO, decoded.
type RcptParams struct {
	// Notify is NOTIFY= (RFC 3461 section 4.1), upper case, in the order
	// given; nil when absent.
	Notify []DSNNotify
	// OriginalRecipientType is the addr-type of ORCPT= ("rfc822",
	// "utf-8"); empty when absent (RFC 3461 section 4.2).
	OriginalRecipientType string
	// OriginalRecipient is the xtext-decoded address of ORCPT=.
	OriginalRecipient string
}

// Recipient is one accepted RCPT TO.
type Recipient struct {
	// Address is the forward-path's mailbox (source route dropped).
	Address Address
	// Params are the RCPT parameters.
	Params RcptParams
}
