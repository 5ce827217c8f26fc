package policy

import (
	"errors"
	"testing"
)

func TestActionBuilders(t *testing.T) {
	for _, tc := range []struct {
		got  Action
		want string
	}{
		{Dunno, "DUNNO"},
		{OK, "OK"},
		{Reject(552, "5.2.2", "Mailbox full"), "552 5.2.2 Mailbox full"},
		{Reject(450, "", "Try again"), "450 Try again"},
		{Reject(550, "5.1.1", ""), "550 5.1.1 Access denied"},
		{Reject(552, "5.2.2", "two\r\nlines\x00"), "552 5.2.2 two  lines"},
		{MailboxFull(false), "552 5.2.2 Mailbox full"},
		{MailboxFull(true), "452 4.2.2 Mailbox full"},
		{Defer("later"), "DEFER later"},
		{Defer(""), "DEFER"},
		{DeferIfPermit("Service temporarily unavailable"), string(Unavailable)},
		{DeferIfReject(" x "), "DEFER_IF_REJECT x"},
		{Warn("look\nhere"), "WARN look here"},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
		if err := tc.got.Validate(); err != nil {
			t.Errorf("%q: Validate: %v", tc.got, err)
		}
	}
}

func TestActionValidate(t *testing.T) {
	for _, tc := range []struct {
		a  Action
		ok bool
	}{
		{"DUNNO", true},
		{"dunno", true},
		{"PREPEND X-Quota: 80%", true},
		{"552 5.2.2 Mailbox full", true},
		{"450 4.7.1 Later", true},
		{"599 no enhanced code", true},
		{"452 Mailbox full", true},
		{"552 5.2.2 Mailbox full (Übergröße)", true},
		{"552 text mentioning 4.2.2 later", true},

		{"", false},
		{"   ", false},
		{"REJECT a\nb", false},
		{"REJECT a\rb", false},
		{"REJECT a\x00b", false},
		{"REJECT \xff", false},
		{"250 2.0.0 Ok", false},
		{"652 6.0.0 No", false},
		{"399 x", false},
		{"5522 5.2.2 x", false},
		{"55 x", false},
		{"552", false},
		{"552 ", false},
		{"552 4.2.2 Mailbox full", false},
		{"452 5.2.2 Mailbox full", false},
		{"452 2.0.0 Mailbox full", false},
	} {
		err := tc.a.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%q: Validate() = %v, want ok=%v", tc.a, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidAction) {
			t.Errorf("%q: %v does not wrap ErrInvalidAction", tc.a, err)
		}
	}
}

func TestIsEnhancedCode(t *testing.T) {
	for s, want := range map[string]bool{
		"5.2.2": true, "4.7.1": true, "2.0.0": true, "5.123.456": true,
		"5.2": false, "55.2.2": false, "5.2.2.2": false, "5..2": false, "5.2.x": false, "5.1234.1": false, "": false,
	} {
		if got := isEnhancedCode(s); got != want {
			t.Errorf("isEnhancedCode(%q) = %v, want %v", s, got, want)
		}
	}
}
