package pipe

import (
	"strings"

	"github.com/lmtpd/lmtpd/protocol"
)

// parseStatusOutput recognises a command's output that starts, after
// leading white space (blank lines included), with an RFC 3463 enhanced
// status code of class 4 or 5: "4.2.2 Mailbox full". Subject and detail are
// one to three digits; the code must be followed by white space or the end
// of the line. text is the rest of that line with surrounding white space
// removed; it may be empty. out is expected to be sanitised (see
// sanitizeOutput) but any bytes are accepted.
func parseStatusOutput(out string) (ec protocol.EnhancedCode, text string, ok bool) {
	s := strings.TrimLeft(out, " \t\r\n")
	if len(s) < 5 || (s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return protocol.EnhancedCode{}, "", false
	}
	ec[0] = int(s[0] - '0')
	i := 2
	for part := 1; part <= 2; part++ {
		n, digits := 0, 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' && digits < 3 {
			n = n*10 + int(s[i]-'0')
			digits++
			i++
		}
		if digits == 0 {
			return protocol.EnhancedCode{}, "", false
		}
		ec[part] = n
		if part == 1 {
			if i >= len(s) || s[i] != '.' {
				return protocol.EnhancedCode{}, "", false
			}
			i++
		}
	}
	rest := s[i:]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' && rest[0] != '\r' && rest[0] != '\n' {
		return protocol.EnhancedCode{}, "", false
	}
	if nl := strings.IndexByte(rest, '\n'); nl >= 0 {
		rest = rest[:nl]
	}
	return ec, strings.Trim(rest, " \t\r"), true
}

// sanitizeOutput returns the captured output as text for the log: every
// byte outside printable US-ASCII other than line feed and tab becomes '?',
// CR LF becomes LF, and trailing white space is removed. Non-ASCII text is
// replaced byte by byte: the log gets a faithful length, never raw bytes.
func sanitizeOutput(p []byte) string {
	b := make([]byte, 0, len(p))
	for i, c := range p {
		switch {
		case c == '\r' && i+1 < len(p) && p[i+1] == '\n':
			// Dropped: the LF follows.
		case c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f):
			b = append(b, c)
		default:
			b = append(b, '?')
		}
	}
	return strings.TrimRight(string(b), " \t\n")
}

// maxReplyOutput bounds the command output quoted in a reply. RFC 5321
// section 4.5.3.1.5 allows 512 octets per reply line, code included.
const maxReplyOutput = 200

// replyText folds sanitised output onto one line (every run of white space
// becomes one space) and cuts it to maxReplyOutput characters, marking a cut
// with "...". The result is printable US-ASCII.
func replyText(s string) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			space = b.Len() > 0
			continue
		}
		if c < 0x20 || c >= 0x7f {
			c = '?'
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if b.Len() >= maxReplyOutput {
			return b.String()[:maxReplyOutput-3] + "..."
		}
		b.WriteByte(c)
	}
	return b.String()
}
