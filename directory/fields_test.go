package directory

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		unit int64
		want int64
		err  bool
	}{
		{"0", 1, 0, false},
		{"1000", 1, 1000, false},
		{"1000", 1024, 1024000, false},
		{"100b", 1024, 100, false},
		{"1k", 1, 1024, false},
		{"1K", 1, 1024, false},
		{"10M", 1, 10 << 20, false},
		{"1G", 1, 1 << 30, false},
		{"2T", 1, 2 << 40, false},
		{" 5G ", 1, 5 << 30, false},
		{"", 1, 0, true},
		{"G", 1, 0, true},
		{"-1", 1, 0, true},
		{"1.5G", 1, 0, true},
		{"1X", 1, 0, true},
		{"99999999999T", 1, 0, true},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in, tc.unit)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q, %d) = %d, %v; want %d, err %v", tc.in, tc.unit, got, err, tc.want, tc.err)
		}
	}
}

func TestParseQuotaRule(t *testing.T) {
	set := func(n int64) Limit { return Limit{Value: n, Set: true} }
	tests := []struct {
		in         string
		bytes, msg Limit
		err        string
	}{
		{in: "*:storage=1G", bytes: set(1 << 30)},
		{in: "*:storage=1000", bytes: set(1024000)}, // kilobytes, as Dovecot
		{in: "*:bytes=1000", bytes: set(1000)},
		{in: "*:messages=500", msg: set(500)},
		{in: "*:storage=10M:messages=100", bytes: set(10 << 20), msg: set(100)},
		{in: "*:storage=0", bytes: set(0)},
		{in: "*:ignore", bytes: set(0), msg: set(0)},
		{in: "Trash:storage=+100M", err: "mailbox-wide"},
		{in: "*:storage=+100M", err: "relative"},
		{in: "*:storage=10%", err: "relative"},
		{in: "*:storage=lots", err: "storage"},
		{in: "*:messages=1k", err: "messages"},
		{in: "*:colour=blue", err: "unknown limit"},
	}
	for _, tc := range tests {
		b, m, err := ParseQuotaRule(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseQuotaRule(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || b != tc.bytes || m != tc.msg {
			t.Errorf("ParseQuotaRule(%q) = %+v %+v %v; want %+v %+v", tc.in, b, m, err, tc.bytes, tc.msg)
		}
	}
}

func TestParseMailLocation(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "maildir:~/Maildir", want: "~/Maildir"},
		{in: "maildir:/var/vmail/d/u:LAYOUT=fs:INDEX=/idx", want: "/var/vmail/d/u"},
		{in: "~/Maildir", want: "~/Maildir"},
		{in: "mbox:~/mail:INBOX=/var/mail/u", err: "not maildir"},
		{in: "mdbox:~/mdbox", err: "not maildir"},
		{in: "maildir:", err: "without a path"},
	}
	for _, tc := range tests {
		got, err := ParseMailLocation(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMailLocation(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseMailLocation(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestExpandDovecotVars(t *testing.T) {
	k := Key{Address: "Bob@example.org", LocalPart: "Bob", Domain: "example.org"}
	tests := []struct{ in, home, want, err string }{
		{in: "/var/vmail/%d/%n", want: "/var/vmail/example.org/Bob"},
		{in: "/var/vmail/%d/%Ln", want: "/var/vmail/example.org/bob"},
		{in: "%u", want: "Bob@example.org"},
		{in: "%{home}/Maildir", home: "/home/bob", want: "/home/bob/Maildir"},
		{in: "%h/x", home: "/h", want: "/h/x"},
		{in: "100%%", want: "100%"},
		{in: "%{domain}/%{username}", want: "example.org/Bob"},
		{in: "%h/x", err: "no home"},
		{in: "%r", err: "not supported"},
		{in: "x%", err: "lone"},
		{in: "%{user", err: "unterminated"},
	}
	for _, tc := range tests {
		got, err := ExpandDovecotVars(tc.in, k, tc.home)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ExpandDovecotVars(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ExpandDovecotVars(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNewRecord(t *testing.T) {
	k := Key{Address: "bob@example.org", LocalPart: "bob", Domain: "example.org"}
	set := func(n int64) Limit { return Limit{Value: n, Set: true} }
	tests := []struct {
		name    string
		in      map[string]string
		want    Record
		unknown []string
		err     string
	}{
		{name: "lmtpd names", in: map[string]string{"mailbox": "example.org/bob", "quota_bytes": "1G", "quota_messages": "1000",
			"sieve": "/s/bob.sieve", "forward": "unix:/run/other.sock", "uid": "5000", "gid": "5001", "password": "{PLAIN}x"},
			want: Record{Mailbox: "example.org/bob", QuotaBytes: set(1 << 30), QuotaMessages: set(1000), Sieve: "/s/bob.sieve",
				Forward: "unix:/run/other.sock", UID: 5000, GID: 5001}},
		{name: "dovecot names", in: map[string]string{"home": "/var/vmail/%d/%n", "mail": "maildir:~/Maildir", "quota_rule": "*:storage=512M",
			"sieve": "file:~/sieve;active=~/.dovecot.sieve"},
			want: Record{Home: "/var/vmail/example.org/bob", Mailbox: "/var/vmail/example.org/bob/Maildir", QuotaBytes: set(512 << 20),
				Sieve: "/var/vmail/example.org/bob/.dovecot.sieve", UID: -1, GID: -1}},
		{name: "explicit beats composite", in: map[string]string{"mail": "maildir:/a", "mailbox": "/b", "quota_rule": "*:storage=1k:messages=5", "quota_bytes": "7"},
			want: Record{Mailbox: "/b", QuotaBytes: set(7), QuotaMessages: set(5), UID: -1, GID: -1}},
		{name: "case and NULLs", in: map[string]string{"MailBox": "x", "Quota_Bytes": "", "home": ""},
			want: Record{Mailbox: "x", UID: -1, GID: -1}},
		{name: "unknown", in: map[string]string{"mailbox": "x", "active": "1", "created": "2020"},
			want: Record{Mailbox: "x", UID: -1, GID: -1, Extra: map[string]string{"active": "1", "created": "2020"}}, unknown: []string{"active", "created"}},
		{name: "bad quota", in: map[string]string{"quota_bytes": "lots"}, err: "quota_bytes"},
		{name: "bad uid", in: map[string]string{"uid": "vmail"}, err: "uid"},
		{name: "tilde without home", in: map[string]string{"mail": "maildir:~/Maildir"}, err: "no home"},
		{name: "mbox", in: map[string]string{"mail": "mbox:~/mail"}, err: "not maildir"},
		{name: "dovecot var unsupported", in: map[string]string{"home": "/h/%r"}, err: "not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, unknown, err := NewRecord(k, tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("record = %+v\nwant     %+v", got, tc.want)
			}
			if !reflect.DeepEqual(unknown, tc.unknown) {
				t.Errorf("unknown = %q, want %q", unknown, tc.unknown)
			}
		})
	}
}
