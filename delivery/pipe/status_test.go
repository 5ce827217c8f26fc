package pipe

import (
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
)

func TestParseStatusOutput(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
		ec   protocol.EnhancedCode
		text string
	}{
		{"temporary", "4.2.2 over quota", true, protocol.EnhancedCode{4, 2, 2}, "over quota"},
		{"permanent", "5.1.1 no such user\n", true, protocol.EnhancedCode{5, 1, 1}, "no such user"},
		{"leading white space", " \t\n\r\n  5.7.1   spam   \nmore", true, protocol.EnhancedCode{5, 7, 1}, "spam"},
		{"three digits", "4.123.456 x", true, protocol.EnhancedCode{4, 123, 456}, "x"},
		{"code alone", "5.3.0", true, protocol.EnhancedCode{5, 3, 0}, ""},
		{"code and newline", "5.3.0\nsecond line", true, protocol.EnhancedCode{5, 3, 0}, ""},
		{"tab separator", "4.3.0\ttry later", true, protocol.EnhancedCode{4, 3, 0}, "try later"},
		{"CRLF", "4.3.0 later\r\n", true, protocol.EnhancedCode{4, 3, 0}, "later"},
		{"only first line", "5.1.1 a\n5.2.2 b", true, protocol.EnhancedCode{5, 1, 1}, "a"},
		{"class 2", "2.0.0 ok", false, protocol.EnhancedCode{}, ""},
		{"class 3", "3.0.0 x", false, protocol.EnhancedCode{}, ""},
		{"four digits", "5.1234.1 x", false, protocol.EnhancedCode{}, ""},
		{"four digits detail", "5.1.1234 x", false, protocol.EnhancedCode{}, ""},
		{"missing detail", "5.1 x", false, protocol.EnhancedCode{}, ""},
		{"missing subject", "5..1 x", false, protocol.EnhancedCode{}, ""},
		{"trailing dot", "5.1.1. x", false, protocol.EnhancedCode{}, ""},
		{"glued text", "5.1.1x", false, protocol.EnhancedCode{}, ""},
		{"not first", "error: 5.1.1 x", false, protocol.EnhancedCode{}, ""},
		{"basic code", "550 5.1.1 x", false, protocol.EnhancedCode{}, ""},
		{"empty", "", false, protocol.EnhancedCode{}, ""},
		{"white space only", " \n\t", false, protocol.EnhancedCode{}, ""},
		{"short", "5.1.", false, protocol.EnhancedCode{}, ""},
		{"letters", "5.a.b", false, protocol.EnhancedCode{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ec, text, ok := parseStatusOutput(tt.in)
			if ok != tt.ok || ec != tt.ec || text != tt.text {
				t.Errorf("parseStatusOutput(%q) = %v, %q, %v; want %v, %q, %v", tt.in, ec, text, ok, tt.ec, tt.text, tt.ok)
			}
		})
	}
}

func TestSanitizeOutput(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "hello\n", "hello"},
		{"CRLF", "a\r\nb\r\n", "a\nb"},
		{"lone CR", "a\rb", "a?b"},
		{"tab kept", "a\tb", "a\tb"},
		{"controls", "a\x00b\x1bc\x7f", "a?b?c?"},
		{"UTF-8 per byte", "j\xc3\xbcrgen", "j??rgen"},
		{"trailing white space", "x \t\n\n", "x"},
		{"leading white space kept", "\n  x", "\n  x"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sanitizeOutput([]byte(tt.in)); got != tt.want {
				t.Errorf("sanitizeOutput(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestReplyText(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, in, want string
	}{
		{"one line", "disk full", "disk full"},
		{"folded", "  a\n\n b\t c \n", "a b c"},
		{"controls", "a\x01b", "a?b"},
		{"exactly max", long[:maxReplyOutput], long[:maxReplyOutput]},
		{"exactly max then space", long[:maxReplyOutput] + "  \n", long[:maxReplyOutput]},
		{"cut", long, long[:maxReplyOutput-3] + "..."},
		{"cut after space", long[:maxReplyOutput] + " y", long[:maxReplyOutput-3] + "..."},
		{"empty", " \n ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := replyText(tt.in)
			if got != tt.want {
				t.Errorf("replyText(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(got) > maxReplyOutput {
				t.Errorf("len = %d > %d", len(got), maxReplyOutput)
			}
		})
	}
}
