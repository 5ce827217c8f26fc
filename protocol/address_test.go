package protocol

import (
	"strings"
	"testing"
)

// pathMode says which command a path case applies to.
type pathMode int

const (
	both pathMode = iota
	mailOnly
	rcptOnly
)

func (m pathMode) rcptValues() []bool {
	switch m {
	case mailOnly:
		return []bool{false}
	case rcptOnly:
		return []bool{true}
	}
	return []bool{false, true}
}

func TestParsePathValid(t *testing.T) {
	long64 := strings.Repeat("l", 64)
	dom254 := strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("d", 62)
	tests := []struct {
		name   string
		mode   pathMode
		in     string
		local  string
		domain string
		rest   string
	}{
		{"simple", both, "<user@example.com>", "user", "example.com", ""},
		{"rest kept", both, "<user@example.com> SIZE=100 BODY=8BITMIME", "user", "example.com", " SIZE=100 BODY=8BITMIME"},
		{"case kept", both, "<User@Example.COM>", "User", "Example.COM", ""},
		{"null path", mailOnly, "<>", "", "", ""},
		{"null path with params", mailOnly, "<> BODY=8BITMIME", "", "", " BODY=8BITMIME"},
		{"postmaster", rcptOnly, "<Postmaster>", "Postmaster", "", ""},
		{"postmaster any case", rcptOnly, "<pOSTMASTER> NOTIFY=NEVER", "pOSTMASTER", "", " NOTIFY=NEVER"},
		{"postmaster with domain", both, "<postmaster@example.com>", "postmaster", "example.com", ""},
		{"source route", both, "<@a.example,@b.example:user@c.example>", "user", "c.example", ""},
		{"source route one hop", both, "<@relay.example:u@x.org> X", "u", "x.org", " X"},
		{"quoted", both, `<"john doe"@example.com>`, `"john doe"`, "example.com", ""},
		{"quoted pairs kept", both, `<"a\"b\\c"@x.org>`, `"a\"b\\c"`, "x.org", ""},
		{"quoted specials", both, `<"a@b>c,d:e"@x.org>`, `"a@b>c,d:e"`, "x.org", ""},
		{"quoted empty", both, `<""@x.org>`, `""`, "x.org", ""},
		{"dots consecutive", both, "<a..b@x.org>", "a..b", "x.org", ""},
		{"dot leading", both, "<.a@x.org>", ".a", "x.org", ""},
		{"dot trailing", both, "<a.@x.org>", "a.", "x.org", ""},
		{"atext specials", both, "<a!#$%&'*+-/=?^_`{|}~z@x.org>", "a!#$%&'*+-/=?^_`{|}~z", "x.org", ""},
		{"digits and hyphens", both, "<1@x-1.9y.com>", "1", "x-1.9y.com", ""},
		{"single label", both, "<root@localhost>", "root", "localhost", ""},
		{"utf8 local and domain", both, "<用户@例子.广告>", "用户", "例子.广告", ""},
		{"utf8 greek", both, "<δοκιμή@παράδειγμα.δοκιμή>", "δοκιμή", "παράδειγμα.δοκιμή", ""},
		{"utf8 mixed label", both, "<a@bücher-x.de>", "a", "bücher-x.de", ""},
		{"utf8 quoted", both, `<"ü x"@example.com>`, `"ü x"`, "example.com", ""},
		{"contextual middle dot", both, "<a@col·lecció.cat>", "a", "col·lecció.cat", ""},
		{"a-label", both, "<a@xn--bcher-kva.de>", "a", "xn--bcher-kva.de", ""},
		{"ipv4 literal", both, "<a@[192.0.2.1]>", "a", "[192.0.2.1]", ""},
		{"ipv4 literal leading zeros", both, "<a@[001.002.003.255]>", "a", "[001.002.003.255]", ""},
		{"ipv6 literal", both, "<a@[IPv6:2001:db8::1]>", "a", "[IPv6:2001:db8::1]", ""},
		{"ipv6 literal lower tag", both, "<a@[ipv6:::1]>", "a", "[ipv6:::1]", ""},
		{"ipv6 literal v4 tail", both, "<a@[IPv6:::ffff:192.0.2.1]>", "a", "[IPv6:::ffff:192.0.2.1]", ""},
		{"general literal", both, "<a@[x-tag:some!content:here]>", "a", "[x-tag:some!content:here]", ""},
		{"local 64", both, "<" + long64 + "@x.org>", long64, "x.org", ""},
		{"path 256", both, "<a@" + dom254 + ">", "a", dom254, ""},
	}
	for _, tc := range tests {
		for _, rcpt := range tc.mode.rcptValues() {
			t.Run(tc.name+map[bool]string{false: "/mail", true: "/rcpt"}[rcpt], func(t *testing.T) {
				a, rest, err := parsePath(tc.in, rcpt)
				if err != nil {
					t.Fatalf("parsePath(%q) error: %v", tc.in, err)
				}
				if a.LocalPart != tc.local || a.Domain != tc.domain || rest != tc.rest {
					t.Fatalf("parsePath(%q) = %q, %q, rest %q; want %q, %q, rest %q",
						tc.in, a.LocalPart, a.Domain, rest, tc.local, tc.domain, tc.rest)
				}
			})
		}
	}
}

func TestParsePathErrors(t *testing.T) {
	long65 := strings.Repeat("l", 65)
	label63 := strings.Repeat("d", 63)
	dom254 := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("d", 62)
	dom256 := dom254 + ".d"
	tests := []struct {
		name string
		mode pathMode
		in   string
		msg  string
	}{
		{"empty", both, "", msgAddrNoBracket},
		{"no bracket", both, "user@example.com", msgAddrNoBracket},
		{"null for rcpt", rcptOnly, "<>", msgAddrNull},
		{"postmaster for mail", mailOnly, "<Postmaster>", msgAddrNoDomain},
		{"postmaster longer", rcptOnly, "<Postmasters>", msgAddrNoDomain},
		{"no domain", both, "<user>", msgAddrNoDomain},
		{"empty domain", both, "<user@>", msgAddrDomain},
		{"empty local", both, "<@x.org>", msgAddrRoute},
		{"unterminated", both, "<user@example.com", msgAddrSyntax},
		{"only bracket", both, "<", msgAddrLocal},
		{"space before bracket", both, "<user@example.com >", msgAddrSyntax},
		{"space inside", both, "< user@example.com>", msgAddrLocal},
		{"space in local", both, "<a b@x.org>", msgAddrLocal},
		{"parenthesis in local", both, "<a(b)@x.org>", msgAddrLocal},
		{"only dots", both, "<..@x.org>", msgAddrLocal},
		{"two ats", both, "<a@b@x.org>", msgAddrSyntax},
		{"leading hyphen", both, "<u@-x.org>", msgAddrDomain},
		{"trailing hyphen", both, "<u@x-.org>", msgAddrDomain},
		{"empty label", both, "<u@x..org>", msgAddrDomain},
		{"trailing dot", both, "<u@x.org.>", msgAddrDomain},
		{"leading dot", both, "<u@.x.org>", msgAddrDomain},
		{"underscore", both, "<u@x_y.org>", msgAddrDomain},
		{"local too long", both, "<" + long65 + "@x.org>", msgAddrLocalLong},
		{"domain too long", both, "<a@" + dom256 + ">", msgAddrDomainLong},
		{"path too long", both, "<ab@" + dom254 + ">", msgAddrPathLong},
		{"path with route too long", both, "<@" + dom254 + ":a@x.org>", msgAddrPathLong},
		{"CR", both, "<a\r@x.org>", msgAddrCtl},
		{"LF after", both, "<a@x.org>\n", msgAddrCtl},
		{"NUL", both, "<a\x00@x.org>", msgAddrCtl},
		{"CR in params", both, "<a@x.org> SIZE=1\r", msgAddrCtl},
		{"invalid utf8 local", both, "<\xff@x.org>", msgAddrUTF8},
		{"truncated utf8 local", both, "<a\xc3@x.org>", msgAddrUTF8},
		{"invalid utf8 domain", both, "<a@\xc3.org>", msgAddrUTF8},
		{"invalid utf8 quoted", both, "<\"\xff\"@x.org>", msgAddrUTF8},
		{"surrogate", both, "<\xed\xa0\x80@x.org>", msgAddrUTF8},
		{"C1 control", both, "<a\u0085@x.org>", msgAddrLocal},
		{"symbol in domain", both, "<a@☃.org>", msgAddrDomain},
		{"nbsp in domain", both, "<a@b\u00a0c.org>", msgAddrDomain},
		{"ideographic full stop", both, "<a@例子\u3002广告>", msgAddrDomain},
		{"unterminated quote", both, `<"abc@x.org>`, msgAddrLocal},
		{"quote then text", both, `<"a"b@x.org>`, msgAddrLocal},
		{"bad quoted pair", both, "<\"a\\\x01\"@x.org>", msgAddrLocal},
		{"quoted pair non-ascii", both, `<"a\é"@x.org>`, msgAddrLocal},
		{"control in quoted", both, "<\"a\x01\"@x.org>", msgAddrLocal},
		{"tab in local", both, "<a\tb@x.org>", msgAddrLocal},
		{"ipv4 three parts", both, "<a@[1.2.3]>", msgAddrLiteral},
		{"ipv4 five parts", both, "<a@[1.2.3.4.5]>", msgAddrLiteral},
		{"ipv4 256", both, "<a@[256.1.1.1]>", msgAddrLiteral},
		{"ipv4 four digits", both, "<a@[1234.1.1.1]>", msgAddrLiteral},
		{"ipv4 empty part", both, "<a@[1..2.3]>", msgAddrLiteral},
		{"ipv4 trailing dot", both, "<a@[1.2.3.4.]>", msgAddrLiteral},
		{"literal empty", both, "<a@[]>", msgAddrLiteral},
		{"literal unterminated", both, "<a@[1.2.3.4>", msgAddrLiteral},
		{"literal then text", both, "<a@[1.2.3.4]x>", msgAddrSyntax},
		{"ipv6 holding ipv4", both, "<a@[IPv6:1.2.3.4]>", msgAddrLiteral},
		{"ipv6 zone", both, "<a@[IPv6:fe80::1%eth0]>", msgAddrLiteral},
		{"ipv6 bad", both, "<a@[IPv6:zz::1]>", msgAddrLiteral},
		{"general empty tag", both, "<a@[:abc]>", msgAddrLiteral},
		{"general tag hyphen end", both, "<a@[tag-:abc]>", msgAddrLiteral},
		{"general bad tag", both, "<a@[t_g:abc]>", msgAddrLiteral},
		{"general empty content", both, "<a@[tag:]>", msgAddrLiteral},
		{"general space", both, "<a@[tag:a b]>", msgAddrLiteral},
		{"general backslash", both, "<a@[tag:a\\b]>", msgAddrLiteral},
		{"general open bracket", both, "<a@[tag:a[b]>", msgAddrLiteral},
		{"route empty mailbox", both, "<@a.example:>", msgAddrLocal},
		{"route missing at", both, "<@a.example,b.example:u@x.org>", msgAddrRoute},
		{"route bad separator", both, "<@a.example;u@x.org>", msgAddrRoute},
		{"route unterminated", both, "<@a.example", msgAddrRoute},
		{"route empty domain", both, "<@:u@x.org>", msgAddrDomain},
		{"route literal", both, "<@[1.2.3.4]:u@x.org>", msgAddrDomain},
	}
	for _, tc := range tests {
		for _, rcpt := range tc.mode.rcptValues() {
			t.Run(tc.name+map[bool]string{false: "/mail", true: "/rcpt"}[rcpt], func(t *testing.T) {
				a, rest, err := parsePath(tc.in, rcpt)
				if err == nil {
					t.Fatalf("parsePath(%q) = %+v, rest %q; want error %q", tc.in, a, rest, tc.msg)
				}
				e := AsError(err)
				want := ECPermBadSender
				if rcpt {
					want = ECPermBadDestSyntax
				}
				if e == nil || e.Code != CodeParamSyntax || e.EnhancedCode != want || e.Message != tc.msg {
					t.Fatalf("parsePath(%q) error %v; want 501 %v %q", tc.in, err, want, tc.msg)
				}
				if a != (Address{}) || rest != "" {
					t.Errorf("parsePath(%q) returned %+v, rest %q with its error", tc.in, a, rest)
				}
			})
		}
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		local  string
		domain string
		msg    string // expected error message; "" for success
	}{
		{"simple", "user@example.com", "user", "example.com", ""},
		{"quoted", `"a b"@x.org`, `"a b"`, "x.org", ""},
		{"literal", "a@[192.0.2.1]", "a", "[192.0.2.1]", ""},
		{"utf8", "用户@例子.广告", "用户", "例子.广告", ""},
		{"empty", "", "", "", msgAddrLocal},
		{"no domain", "user", "", "", msgAddrNoDomain},
		{"postmaster", "Postmaster", "", "", msgAddrNoDomain},
		{"brackets", "<user@x.org>", "", "", msgAddrLocal},
		{"trailing text", "user@x.org extra", "", "", msgAddrSyntax},
		{"trailing bracket", "user@x.org>", "", "", msgAddrSyntax},
		{"empty local", "@x.org", "", "", msgAddrLocal},
		{"route", "@a.example:u@x.org", "", "", msgAddrLocal},
		{"CR", "u@x.org\r", "", "", msgAddrCtl},
		{"local too long", strings.Repeat("a", 65) + "@x.org", "", "", msgAddrLocalLong},
		{"too long", strings.Repeat("a", 64) + "@" + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + ".dd",
			"", "", msgAddrPathLong},
		{"invalid utf8", "u@x\xff.org", "", "", msgAddrUTF8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAddress(tc.in)
			if tc.msg == "" {
				if err != nil || a.LocalPart != tc.local || a.Domain != tc.domain {
					t.Fatalf("ParseAddress(%q) = %+v, %v; want %q@%q", tc.in, a, err, tc.local, tc.domain)
				}
				return
			}
			e := AsError(err)
			if e == nil || e.Code != CodeParamSyntax || e.EnhancedCode != ECPermBadDestSyntax || e.Message != tc.msg {
				t.Fatalf("ParseAddress(%q) = %+v, %v; want 501 5.1.3 %q", tc.in, a, err, tc.msg)
			}
		})
	}
}

// TestParsePathRoundTrip checks that a parsed address, written back in
// brackets, parses to itself, and that DecodedLocalPart undoes quoting.
func TestParsePathRoundTrip(t *testing.T) {
	for _, in := range []string{"<a@b.c>", `<"x\"y"@b.c>`, "<用户@例子.广告>", "<a@[IPv6:::1]>"} {
		a, _, err := parsePath(in, true)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		b, rest, err := parsePath("<"+a.String()+">", true)
		if err != nil || b != a || rest != "" {
			t.Fatalf("%q: reparse = %+v, %q, %v", in, b, rest, err)
		}
	}
	a, _, _ := parsePath(`<"x\"y z"@b.c>`, false)
	if got := a.DecodedLocalPart(); got != `x"y z` {
		t.Fatalf("DecodedLocalPart = %q", got)
	}
}

func TestParsePathAllocs(t *testing.T) {
	inputs := []string{
		"<user@example.com> SIZE=1000",
		`<@a.example:"quoted x"@[IPv6:2001:db8::1]>`,
		"<用户@例子.广告>",
	}
	for _, in := range inputs {
		allocs := testing.AllocsPerRun(100, func() {
			if _, _, err := parsePath(in, true); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("parsePath(%q): %v allocations, want 0", in, allocs)
		}
	}
}
