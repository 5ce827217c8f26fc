package directory

import (
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	k := Key{Address: "bob+x@example.org", LocalPart: "bob", Domain: "example.org", Detail: "x"}
	tests := []struct {
		name, in, want, err string
	}{
		{name: "empty", in: "", want: ""},
		{name: "literal", in: "(objectClass=*)", want: "(objectClass=*)"},
		{name: "all", in: "{address}|{localpart}|{user}|{domain}|{detail}", want: "bob+x@example.org|bob|bob|example.org|x"},
		{name: "sql", in: "SELECT 1 FROM t WHERE u = {address} AND d = {domain}", want: "SELECT 1 FROM t WHERE u = bob+x@example.org AND d = example.org"},
		{name: "escaped braces", in: "{{address}} {{ }}", want: "{address} { }"},
		{name: "lone closing brace", in: "a}b", want: "a}b"},
		{name: "unknown", in: "uid={username}", err: "unknown placeholder {username}"},
		{name: "dovecot style is literal", in: "mail=%u", want: "mail=%u"},
		{name: "unterminated", in: "x={address", err: "unterminated placeholder"},
		{name: "empty name", in: "{}", err: "unknown placeholder {}"},
		{name: "case matters", in: "{Address}", err: "unknown placeholder {Address}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := ParseTemplate(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseTemplate(%q) error = %v, want containing %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTemplate(%q): %v", tc.in, err)
			}
			if got := tpl.Expand(k, nil); got != tc.want {
				t.Errorf("Expand = %q, want %q", got, tc.want)
			}
			if tpl.String() != tc.in {
				t.Errorf("String = %q, want %q", tpl.String(), tc.in)
			}
		})
	}
}

func TestTemplateExpandEscapes(t *testing.T) {
	tpl := MustParseTemplate("(mail={address})")
	k := Key{Address: "*)(uid=*"}
	esc := func(s string) string { return strings.NewReplacer("*", `\2a`, "(", `\28`, ")", `\29`).Replace(s) }
	if got, want := tpl.Expand(k, esc), `(mail=\2a\29\28uid=\2a)`; got != want {
		t.Errorf("Expand = %q, want %q", got, want)
	}
	if !tpl.Uses(FieldAddress) || tpl.Uses(FieldDetail) {
		t.Errorf("Uses: address %v detail %v", tpl.Uses(FieldAddress), tpl.Uses(FieldDetail))
	}
	parts := tpl.Parts()
	if len(parts) != 3 || parts[1].Field != FieldAddress || parts[0].Literal != "(mail=" {
		t.Errorf("Parts = %+v", parts)
	}
}

func TestKeyFor(t *testing.T) {
	tests := []struct {
		in   string
		want Key
	}{
		{"Alice@Example.ORG", Key{Address: "Alice@example.org", LocalPart: "Alice", Domain: "example.org"}},
		{"a@b@c.d", Key{Address: "a@b@c.d", LocalPart: "a@b", Domain: "c.d"}},
		{"postmaster", Key{Address: "postmaster", LocalPart: "postmaster"}},
	}
	for _, tc := range tests {
		if got := KeyFor(tc.in); got != tc.want {
			t.Errorf("KeyFor(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"", "{address}", "{{x}}", "a{", "{user}@{domain}", "}{", "{detail"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tpl, err := ParseTemplate(s)
		if err != nil {
			return
		}
		// Values never leak into the literal parts, and an empty key
		// leaves only the literals.
		var lit strings.Builder
		for _, p := range tpl.Parts() {
			if (p.Field == 0) == (p.Literal == "") {
				t.Fatalf("part %+v is neither literal nor placeholder", p)
			}
			lit.WriteString(p.Literal)
		}
		if got := tpl.Expand(Key{}, nil); got != lit.String() {
			t.Fatalf("Expand(empty) = %q, literals %q", got, lit.String())
		}
	})
}
