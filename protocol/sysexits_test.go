package protocol

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// permErr returns a reply with text "text" (lmtpd deliver's tests name it perm).
func permErr(code int, ec EnhancedCode) error { return NewError(code, ec, "text") }

func TestExitStatusError(t *testing.T) {
	// The table of Postfix sys_exits.c (the pipe package documentation
	// shows it), plus statuses outside it.
	tests := []struct {
		status int
		want   EnhancedCode
		name   string // EX_ name expected in the text, "" for none
	}{
		{64, EnhancedCode{5, 3, 0}, "EX_USAGE"},
		{65, EnhancedCode{5, 6, 0}, "EX_DATAERR"},
		{66, EnhancedCode{5, 3, 0}, "EX_NOINPUT"},
		{67, EnhancedCode{5, 1, 1}, "EX_NOUSER"},
		{68, EnhancedCode{5, 1, 2}, "EX_NOHOST"},
		{69, EnhancedCode{5, 3, 0}, "EX_UNAVAILABLE"},
		{70, EnhancedCode{5, 3, 0}, "EX_SOFTWARE"},
		{71, EnhancedCode{4, 3, 0}, "EX_OSERR"},
		{72, EnhancedCode{5, 3, 0}, "EX_OSFILE"},
		{73, EnhancedCode{5, 2, 0}, "EX_CANTCREAT"},
		{74, EnhancedCode{5, 3, 0}, "EX_IOERR"},
		{75, EnhancedCode{4, 3, 0}, "EX_TEMPFAIL"},
		{76, EnhancedCode{5, 5, 0}, "EX_PROTOCOL"},
		{77, EnhancedCode{5, 7, 0}, "EX_NOPERM"},
		{78, EnhancedCode{5, 3, 5}, "EX_CONFIG"},
		{1, EnhancedCode{5, 3, 0}, ""},
		{2, EnhancedCode{5, 3, 0}, ""},
		{63, EnhancedCode{5, 3, 0}, ""},
		{79, EnhancedCode{5, 3, 0}, ""},
		{126, EnhancedCode{5, 3, 0}, ""},
		{127, EnhancedCode{5, 3, 0}, ""},
		{255, EnhancedCode{5, 3, 0}, ""},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.name+"_", "_")+strconv.Itoa(tt.status), func(t *testing.T) {
			e := ExitStatusError(tt.status)
			ec, text := e.EnhancedCode, e.Message
			if ec != tt.want {
				t.Errorf("ExitStatusError(%d) = %v, want %v", tt.status, ec, tt.want)
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
		ec   EnhancedCode
		want int
	}{
		{EnhancedCode{4, 2, 2}, 452},
		{EnhancedCode{4, 3, 1}, 452},
		{EnhancedCode{4, 2, 0}, 450},
		{EnhancedCode{4, 2, 1}, 450},
		{EnhancedCode{4, 2, 999}, 450},
		{EnhancedCode{4, 0, 0}, 451},
		{EnhancedCode{4, 1, 1}, 451},
		{EnhancedCode{4, 3, 0}, 451},
		{EnhancedCode{4, 3, 5}, 451},
		{EnhancedCode{4, 4, 2}, 451},
		{EnhancedCode{4, 7, 1}, 451},
		{EnhancedCode{5, 2, 2}, 552},
		{EnhancedCode{5, 2, 3}, 552},
		{EnhancedCode{5, 3, 4}, 552},
		{EnhancedCode{5, 1, 1}, 550},
		{EnhancedCode{5, 1, 3}, 550},
		{EnhancedCode{5, 2, 0}, 550},
		{EnhancedCode{5, 2, 1}, 550},
		{EnhancedCode{5, 7, 0}, 550},
		{EnhancedCode{5, 7, 1}, 550},
		{EnhancedCode{5, 0, 0}, 554},
		{EnhancedCode{5, 3, 0}, 554},
		{EnhancedCode{5, 3, 5}, 554},
		{EnhancedCode{5, 4, 6}, 554},
		{EnhancedCode{5, 5, 0}, 554},
		{EnhancedCode{5, 5, 4}, 554},
		{EnhancedCode{5, 6, 0}, 554},
		{EnhancedCode{5, 999, 999}, 554},
	}
	for _, tt := range tests {
		t.Run(tt.ec.String(), func(t *testing.T) {
			if got := BasicCode(tt.ec); got != tt.want {
				t.Errorf("BasicCode(%v) = %d, want %d", tt.ec, got, tt.want)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"unknown user", permErr(550, EnhancedCode{5, 1, 1}), ExitNoUser},
		{"bad mailbox name", permErr(553, EnhancedCode{5, 1, 3}), ExitNoUser},
		{"domain not served", permErr(550, EnhancedCode{5, 1, 2}), ExitNoHost},
		{"mailbox full", permErr(552, EnhancedCode{5, 2, 2}), ExitCantCreat},
		{"too big", permErr(552, EnhancedCode{5, 3, 4}), ExitCantCreat},
		{"config", permErr(554, EnhancedCode{5, 3, 5}), ExitConfig},
		{"content", permErr(550, EnhancedCode{5, 6, 0}), ExitDataErr},
		{"policy", permErr(550, EnhancedCode{5, 7, 0}), ExitNoPerm},
		{"protocol", permErr(554, EnhancedCode{5, 5, 0}), ExitProtocol},
		{"loop", permErr(554, EnhancedCode{5, 4, 6}), ExitUnavailable},
		{"other system", permErr(554, EnhancedCode{5, 3, 0}), ExitUnavailable},
		{"temporary", permErr(451, EnhancedCode{4, 3, 0}), ExitTempFail},
		{"temporary mailbox full", permErr(452, EnhancedCode{4, 2, 2}), ExitTempFail},
		{"delivered", nil, ExitOK},
		{"not an *Error", errors.New("boom"), ExitTempFail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitStatus(tc.err); got != tc.want {
				t.Errorf("ExitStatus = %d, want %d", got, tc.want)
			}
		})
	}
}
