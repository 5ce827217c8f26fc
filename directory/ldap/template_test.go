package ldap

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/lmtpd/lmtpd/directory"
)

func TestEscapeFilterValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@example.org", "alice@example.org"},
		{"*)(uid=*", `\2a\29\28uid=\2a`},
		{`a\b`, `a\5cb`},
		{"a\x00b", `a\00b`},
		{"é", `\c3\a9`},
		{"\xff", `\ff`},
		{"", ""},
	}
	for _, tc := range tests {
		if got := escapeFilterValue(tc.in); got != tc.want {
			t.Errorf("escapeFilterValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEscapeDNValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.org", "example.org"},
		{"a,b", `a\,b`},
		{`"+;<>\=`, `\"\+\;\<\>\\\=`},
		{"#x", `\#x`},
		{"x#", "x#"},
		{" x ", `\ x\ `},
		{"a b", "a b"},
		{"a\x00b", `a\00b`},
		{"a\nb", `a\0ab`},
		{"", ""},
	}
	for _, tc := range tests {
		got := escapeDNValue(tc.in)
		if got != tc.want {
			t.Errorf("escapeDNValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// The escaped value is one attribute value of one RDN.
		if tc.in != "" {
			dn, err := ldap.ParseDN("cn=" + got + ",dc=org")
			if err != nil || len(dn.RDNs) != 2 || len(dn.RDNs[0].Attributes) != 1 {
				t.Errorf("cn=%s does not parse as one RDN: %v", got, err)
			} else if v := dn.RDNs[0].Attributes[0].Value; v != tc.in {
				t.Errorf("cn=%s parses back to %q, want %q", got, v, tc.in)
			}
		}
	}
}

func TestTemplate(t *testing.T) {
	k := directory.Key{Address: "a+x@b.org", LocalPart: "a", Domain: "b.org", Detail: "x"}
	tests := []struct{ in, want, err string }{
		{"(mail={address})", "(mail=a+x@b.org)", ""},
		{"(&(uid={localpart})(dc={domain})(d={detail}))", "(&(uid=a)(dc=b.org)(d=x))", ""},
		{"{address}{address}", "a+x@b.orga+x@b.org", ""},
		{"(mail={user})", "", "unknown placeholder {user}"},
		{"(mail={Address})", "", "unknown placeholder {Address}"},
		{"(cn={a b})", "(cn={a b})", ""},
		{"(cn={)", "(cn={)", ""},
		{"no placeholder", "no placeholder", ""},
		{"", "", ""},
	}
	for _, tc := range tests {
		tm, err := parseTemplate(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseTemplate(%q): %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseTemplate(%q): %v", tc.in, err)
			continue
		}
		if got := tm.expand(k, func(s string) string { return s }); got != tc.want {
			t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzFilterPlaceholder: whatever the address, the expanded filter
// compiles, has the template's shape, and asserts exactly the address.
func FuzzFilterPlaceholder(f *testing.F) {
	for _, s := range []string{"alice@example.org", "*)(uid=*", "\x00", `\`, "((((", "é*", ""} {
		f.Add(s)
	}
	tm, err := parseTemplate("(&(objectClass=inetOrgPerson)(mail={address}))")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		filter := tm.expand(directory.Key{Address: addr}, escapeFilterValue)
		p, err := ldap.CompileFilter(filter)
		if err != nil {
			t.Fatalf("%q: %v", filter, err)
		}
		if len(p.Children) != 2 || len(p.Children[1].Children) != 2 {
			t.Fatalf("%q: the filter's shape changed", filter)
		}
		eq := p.Children[1]
		if eq.Tag != ldap.FilterEqualityMatch {
			t.Fatalf("%q: not an equality match", filter)
		}
		if got := eq.Children[1].Data.String(); got != addr {
			t.Fatalf("asserted value %q, want %q", got, addr)
		}
	})
}

// FuzzTemplate: parseTemplate never panics, and a template without
// placeholders expands to itself.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"(mail={address})", "{", "}", "{}", "{{address}}", "{address", "x{detail}y{domain}z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := parseTemplate(s)
		if err != nil {
			return
		}
		k := directory.Key{Address: "A", LocalPart: "L", Domain: "D", Detail: "T"}
		got := tm.expand(k, func(v string) string { return v })
		if !tm.hasPlaceholders() && got != s {
			t.Fatalf("expand(%q) = %q", s, got)
		}
	})
}
