package pipe

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lmtpd/lmtpd/protocol"
)

// placeholder names one expansion in an argument template.
type placeholder uint8

const (
	phLiteral placeholder = iota // not a placeholder: a literal segment
	phSender
	phRecipient
	phOriginalRecipient
	phUser
	phDetail
	phDomain
	phSize
	phClientAddress
	phClientHelo
	phSession
	phRecipients // only as a whole argument: one argument per recipient
	numPlaceholders
)

// placeholderNames maps the name between the braces to the placeholder.
var placeholderNames = map[string]placeholder{
	"sender":             phSender,
	"recipient":          phRecipient,
	"original_recipient": phOriginalRecipient,
	"user":               phUser,
	"detail":             phDetail,
	"domain":             phDomain,
	"size":               phSize,
	"client_address":     phClientAddress,
	"client_helo":        phClientHelo,
	"session":            phSession,
	"recipients":         phRecipients,
}

// placeholderInfo says what the placeholder is called and how a value that
// would start an argument with '-' is refused (see refuseDash).
var placeholderInfo = [numPlaceholders]struct {
	name string
	what string // for the reply text
	ec   protocol.EnhancedCode
}{
	phSender:            {"sender", "sender address", protocol.ECPermBadSender},
	phRecipient:         {"recipient", "recipient address", protocol.ECPermBadDestSyntax},
	phOriginalRecipient: {"original_recipient", "original recipient address", protocol.ECPermBadDestSyntax},
	phUser:              {"user", "recipient address", protocol.ECPermBadDestSyntax},
	phDetail:            {"detail", "recipient address detail", protocol.ECPermBadDestSyntax},
	phDomain:            {"domain", "recipient domain", protocol.ECPermBadDestSyntax},
	phSize:              {"size", "message size", protocol.ECPermInvalidArgs},
	phClientAddress:     {"client_address", "client address", protocol.ECPermInvalidArgs},
	phClientHelo:        {"client_helo", "client HELO name", protocol.ECPermInvalidArgs},
	phSession:           {"session", "session id", protocol.ECPermInvalidArgs},
	phRecipients:        {"recipients", "recipient address", protocol.ECPermBadDestSyntax},
}

// segment is a literal text or a placeholder.
type segment struct {
	ph  placeholder
	lit string // when ph == phLiteral
}

// argTemplate is one parsed element of Command.Argv.
type argTemplate struct {
	segs []segment
	// multi is set when the element is exactly "{recipients}".
	multi bool
}

// parseArg parses one argument template. "{name}" is a placeholder and must
// name a known one; "{{" and "}}" stand for literal braces; a lone brace is
// an error, so that a typo never silently becomes literal text. The
// placeholder {recipients} must be the whole argument. An argument may not
// contain NUL, which execve cannot pass.
func parseArg(s string) (argTemplate, error) {
	var t argTemplate
	if strings.IndexByte(s, 0) >= 0 {
		return t, fmt.Errorf("contains a NUL byte")
	}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.segs = append(t.segs, segment{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '{':
			if i+1 < len(s) && s[i+1] == '{' {
				lit.WriteByte('{')
				i++
				continue
			}
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return argTemplate{}, fmt.Errorf("unterminated placeholder at offset %d (write {{ for a literal brace)", i)
			}
			name := s[i+1 : i+1+end]
			ph, ok := placeholderNames[name]
			if !ok {
				return argTemplate{}, fmt.Errorf("unknown placeholder {%s}", name)
			}
			if ph == phRecipients {
				if s != "{recipients}" {
					return argTemplate{}, fmt.Errorf("{recipients} must be a whole argument")
				}
				t.multi = true
			}
			flush()
			t.segs = append(t.segs, segment{ph: ph})
			i += end + 1
		case '}':
			if i+1 < len(s) && s[i+1] == '}' {
				lit.WriteByte('}')
				i++
				continue
			}
			return argTemplate{}, fmt.Errorf("unmatched } at offset %d (write }} for a literal brace)", i)
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return t, nil
}

// parseArgs parses argv[1:]; argv[0] is checked by lookPath.
func parseArgs(argv []string) ([]argTemplate, error) {
	ts := make([]argTemplate, 0, len(argv))
	for i, a := range argv[1:] {
		t, err := parseArg(a)
		if err != nil {
			return nil, fmt.Errorf("pipe: argument %d %q: %w", i+1, a, err)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// values holds the sanitised expansion of every placeholder for one run.
type values struct {
	v          [numPlaceholders]string
	recipients []string // sanitised, for {recipients}
	allowDash  bool
}

// newValues sanitises v and recipients for expansion.
func newValues(v *Vars, recipients []string, allowDash bool) *values {
	x := &values{allowDash: allowDash}
	x.v[phSender] = sanitizeValue(v.Sender)
	x.v[phRecipient] = sanitizeValue(v.Recipient)
	x.v[phOriginalRecipient] = sanitizeValue(v.OriginalRecipient)
	x.v[phUser] = sanitizeValue(v.User)
	x.v[phDetail] = sanitizeValue(v.Detail)
	x.v[phDomain] = sanitizeValue(v.Domain)
	x.v[phSize] = strconv.FormatInt(max(v.Size, 0), 10)
	x.v[phClientAddress] = sanitizeValue(v.ClientAddress)
	x.v[phClientHelo] = sanitizeValue(v.ClientHelo)
	x.v[phSession] = sanitizeValue(v.SessionID)
	x.recipients = make([]string, len(recipients))
	for i, r := range recipients {
		x.recipients[i] = sanitizeValue(r)
	}
	return x
}

// expandArgs appends the expansion of ts to dst. Every template yields
// exactly one argument, except {recipients}, which yields one per recipient.
// A value that would start an argument with '-' is refused (see the package
// documentation) unless allowDash is set.
func expandArgs(dst []string, ts []argTemplate, x *values) ([]string, error) {
	for _, t := range ts {
		if t.multi {
			for _, r := range x.recipients {
				if err := x.checkDash(phRecipients, r, len(dst)); err != nil {
					return nil, err
				}
				dst = append(dst, r)
			}
			continue
		}
		var b strings.Builder
		for _, s := range t.segs {
			if s.ph == phLiteral {
				b.WriteString(s.lit)
				continue
			}
			val := x.v[s.ph]
			if b.Len() == 0 {
				if err := x.checkDash(s.ph, val, len(dst)); err != nil {
					return nil, err
				}
			}
			b.WriteString(val)
		}
		dst = append(dst, b.String())
	}
	return dst, nil
}

// checkDash refuses val when it would begin argument index with '-'.
func (x *values) checkDash(ph placeholder, val string, index int) error {
	if x.allowDash || !strings.HasPrefix(val, "-") {
		return nil
	}
	info := placeholderInfo[ph]
	return protocol.WrapError(protocol.BasicCode(info.ec), info.ec,
		"Delivery command refuses a "+info.what+" that starts with '-'",
		fmt.Errorf("pipe: value %q of {%s} would start argument %d with '-' (an option); see AllowLeadingDash", val, info.name, index))
}

// sanitizeValue returns s with every byte that must not reach a command's
// arguments or environment replaced by '_': C0 control characters (NUL, CR,
// LF, TAB and the rest below 0x20), DEL, the C1 controls U+0080 to U+009F, and
// every byte that is not part of a valid UTF-8 sequence. Printable ASCII and
// other valid UTF-8 are kept, so the result has the same number of characters
// as s has runes and invalid bytes. A string that needs no change is returned
// as it is, without allocating.
func sanitizeValue(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1,
			r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
			b.WriteByte('_')
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
