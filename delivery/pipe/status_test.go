package pipe

import (
	"strconv"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
)

func TestExitStatus(t *testing.T) {
	// The table of ../shared/recipes/README.md, "Pipe exit statuses", plus
	// statuses outside it.
	tests := []struct {
		status int
		want   protocol.EnhancedCode
		name   string // EX_ name expected in the text, "" for none
	}{
		{64, protocol.EnhancedCode{5, 3, 0}, "EX_USAGE"},
		{65, protocol.EnhancedCode{5, 6, 0}, "EX_DATAERR"},
		{66, protocol.EnhancedCode{5, 3, 0}, "EX_NOINPUT"},
		{67, protocol.EnhancedCode{5, 1, 1}, "EX_NOUSER"},
		{68, protocol.EnhancedCode{5, 1, 2}, "EX_NOHOST"},
		{69, protocol.EnhancedCode{5, 3, 0}, "EX_UNAVAILABLE"},
		{70, protocol.EnhancedCode{5, 3, 0}, "EX_SOFTWARE"},
		{71, protocol.EnhancedCode{4, 3, 0}, "EX_OSERR"},
		{72, protocol.EnhancedCode{5, 3, 0}, "EX_OSFILE"},
		{73, protocol.EnhancedCode{5, 2, 0}, "EX_CANTCREAT"},
		{74, protocol.EnhancedCode{5, 3, 0}, "EX_IOERR"},
		{75, protocol.EnhancedCode{4, 3, 0}, "EX_TEMPFAIL"},
		{76, protocol.EnhancedCode{5, 5, 0}, "EX_PROTOCOL"},
		{77, protocol.EnhancedCode{5, 7, 0}, "EX_NOPERM"},
		{78, protocol.EnhancedCode{5, 3, 5}, "EX_CONFIG"},
		{1, protocol.EnhancedCode{5, 3, 0}, ""},
		{2, protocol.EnhancedCode{5, 3, 0}, ""},
		{63, protocol.EnhancedCode{5, 3, 0}, ""},
		{79, protocol.EnhancedCode{5, 3, 0}, ""},
		{126, protocol.EnhancedCode{5, 3, 0}, ""},
		{127, protocol.EnhancedCode{5, 3, 0}, ""},
		{255, protocol.EnhancedCode{5, 3, 0}, ""},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.name+"_", "_")+strconv.Itoa(tt.status), func(t *testing.T) {
			ec, text := exitStatus(tt.status)
			if ec != tt.want {
				t.Errorf("exitStatus(%d) = %v, want %v", tt.status, ec, tt.want)
			}
			if !strings.Contains(text, "exit status "+strconv.Itoa(tt.status)) {
				t.Errorf("text %q does not name the status", text)
			}
			if tt.name != "" && !strings.Contains(text, tt.name) {
				t.Errorf("text %q does not name %s", text, tt.name)
			}
			if tt.name == "" && !strings.Contains(text, "unknown mail system error") {
				t.Errorf("text %q: want Postfix's unknown mail system error", text)
			}
		})
	}
}

func TestBasicCode(t *testing.T) {
	tests := []struct {
		ec   protocol.EnhancedCode
		want int
	}{
		{protocol.EnhancedCode{4, 2, 2}, 452},
		{protocol.EnhancedCode{4, 3, 1}, 452},
		{protocol.EnhancedCode{4, 2, 0}, 450},
		{protocol.EnhancedCode{4, 2, 1}, 450},
		{protocol.EnhancedCode{4, 2, 999}, 450},
		{protocol.EnhancedCode{4, 0, 0}, 451},
		{protocol.EnhancedCode{4, 1, 1}, 451},
		{protocol.EnhancedCode{4, 3, 0}, 451},
		{protocol.EnhancedCode{4, 3, 5}, 451},
		{protocol.EnhancedCode{4, 4, 2}, 451},
		{protocol.EnhancedCode{4, 7, 1}, 451},
		{protocol.EnhancedCode{5, 2, 2}, 552},
		{protocol.EnhancedCode{5, 2, 3}, 552},
		{protocol.EnhancedCode{5, 3, 4}, 552},
		{protocol.EnhancedCode{5, 1, 1}, 550},
		{protocol.EnhancedCode{5, 1, 3}, 550},
		{protocol.EnhancedCode{5, 2, 0}, 550},
		{protocol.EnhancedCode{5, 2, 1}, 550},
		{protocol.EnhancedCode{5, 7, 0}, 550},
		{protocol.EnhancedCode{5, 7, 1}, 550},
		{protocol.EnhancedCode{5, 0, 0}, 554},
		{protocol.EnhancedCode{5, 3, 0}, 554},
		{protocol.EnhancedCode{5, 3, 5}, 554},
		{protocol.EnhancedCode{5, 4, 6}, 554},
		{protocol.EnhancedCode{5, 5, 0}, 554},
		{protocol.EnhancedCode{5, 5, 4}, 554},
		{protocol.EnhancedCode{5, 6, 0}, 554},
		{protocol.EnhancedCode{5, 999, 999}, 554},
	}
	for _, tt := range tests {
		t.Run(tt.ec.String(), func(t *testing.T) {
			if got := basicCode(tt.ec); got != tt.want {
				t.Errorf("basicCode(%v) = %d, want %d", tt.ec, got, tt.want)
			}
		})
	}
}

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
