package socketmap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestReplyFor(t *testing.T) {
	cause := errors.New("secret driver detail")
	for _, tc := range []struct {
		name     string
		value    string
		err      error
		timedOut bool
		want     string
		logged   bool // an error is returned for the log
	}{
		{name: "found", value: "v", want: "OK v"},
		{name: "found empty", value: "", want: "OK "},
		{name: "value with spaces", value: "a b, c", want: "OK a b, c"},
		{name: "value at the limit", value: strings.Repeat("x", 17), want: "OK " + strings.Repeat("x", 17)},
		{name: "value over the limit", value: strings.Repeat("x", 18), want: "PERM reply too large", logged: true},
		{name: "value with NUL", value: "a\x00", want: "PERM value contains a NUL byte", logged: true},
		{name: "not found", err: ErrNotFound, want: "NOTFOUND "},
		{name: "not found wrapped", err: fmt.Errorf("user x: %w", ErrNotFound), want: "NOTFOUND "},
		{name: "temporary", err: Temporary("directory down", cause), want: "TEMP directory down", logged: true},
		{name: "temporary wrapped", err: fmt.Errorf("lookup: %w", Temporary("directory down", cause)), want: "TEMP directory down", logged: true},
		{name: "permanent", err: Permanent("no such map", nil), want: "PERM no such map", logged: true},
		{name: "timeout status", err: &Error{Status: StatusTimeout, Reason: "slow"}, want: "TIMEOUT slow", logged: true},
		{name: "reason cleaned", err: Temporary("a\r\nb\x00c", nil), want: "TEMP a??b?c", logged: true},
		{name: "reason bounded", err: Temporary(strings.Repeat("r", 30), nil), want: "TEMP " + strings.Repeat("r", 15), logged: true},
		{name: "error with OK status is not trusted", err: &Error{Status: StatusOK, Reason: "x"}, want: "TEMP temporary lookup failure (session S1)", logged: true},
		{name: "bad request", err: fmt.Errorf("%w: unknown map", ErrBadRequest), want: "PERM bad request", logged: true},
		{name: "our timeout", err: context.DeadlineExceeded, timedOut: true, want: "TIMEOUT lookup timed out", logged: true},
		{name: "someone else's deadline", err: context.DeadlineExceeded, want: "TEMP temporary lookup failure (session S1)", logged: true},
		{name: "unrecognised", err: cause, want: "TEMP temporary lookup failure (session S1)", logged: true},
		{name: "not found wins over a value", value: "ignored", err: ErrNotFound, want: "NOTFOUND "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := replyFor(tc.value, tc.err, tc.timedOut, "S1", 20)
			if got := string(r.bytes()); got != tc.want {
				t.Errorf("reply %q, want %q", got, tc.want)
			}
			if (err != nil) != tc.logged {
				t.Errorf("error for the log %v, want one: %v", err, tc.logged)
			}
			if strings.Contains(string(r.bytes()), "secret") {
				t.Errorf("the cause reached the reply: %q", r.bytes())
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct{ in, name, key string }{
		{"mailbox bob@example.org", "mailbox", "bob@example.org"},
		{"alias a b c", "alias", "a b c"},
		{"m ", "m", ""},
		{"m  two", "m", " two"},
	} {
		n, k, err := parseRequest([]byte(tc.in))
		if err != nil || n != tc.name || k != tc.key {
			t.Errorf("parseRequest(%q) = %q, %q, %v", tc.in, n, k, err)
		}
	}
	for _, in := range []string{"", "nospace", " key", "m k\x00"} {
		if _, _, err := parseRequest([]byte(in)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("parseRequest(%q) = %v, want ErrBadRequest", in, err)
		}
	}
}
