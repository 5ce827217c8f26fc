package delivery

import (
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/quota"
)

func TestWarningMessage(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	v := warningVars{addr: "bob@example.org", usage: quota.Usage{Bytes: 943718, Messages: 12},
		limits: quota.Limits{Bytes: 1 << 20}, percent: 90}
	tests := []struct {
		name, tmpl string
		want       []string // substrings of the result
		wantTop    string   // prefix of the result
	}{
		{"placeholders and CRLF", "Subject: {percent}%\r\nTo: {user}\r\n\r\n{usage} of {limit}, {messages} of {message_limit}\r\n",
			[]string{"Subject: 90%\nTo: bob@example.org\n\n921.6 KiB of 1.0 MiB, 12 of unlimited\n"}, "Date: Sun, 06 Dec 2026 10:00:00 +0000\nMessage-ID: <quota."},
		{"own Date and Message-ID kept", "Date: x\nmessage-id: <y@z>\nSubject: s\n\nbody", []string{"Date: x\nmessage-id: <y@z>\nSubject: s\n\nbody\n"}, "Date: x\n"},
		{"body only", "Your mailbox is at {percent}%.\n", []string{"\n\nYour mailbox is at 90%.\n"}, "Date: "},
		{"header only", "Subject: full\n", []string{"Subject: full\n"}, "Date: "},
		{"address with a line break", "To: {user}\n\nx\n", []string{"To: bob?x@example.org\n"}, "Date: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vv := v
			if strings.Contains(tt.name, "line break") {
				vv.addr = "bob\nx@example.org"
			}
			got := string(warningMessage([]byte(tt.tmpl), vv, now))
			if !strings.HasPrefix(got, tt.wantTop) {
				t.Errorf("starts %q, want %q", got, tt.wantTop)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
			if strings.Contains(got, "\r") {
				t.Errorf("CR left in %q", got)
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 10 << 20: "10.0 MiB", 3 << 30: "3.0 GiB", 5 << 40: "5.0 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
