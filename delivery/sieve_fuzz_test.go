package delivery

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzSieveFolder: a folder name is one Maildir++ element: it starts with
// ".", has no separator or control character, and differs for different
// names.
func FuzzSieveFolder(f *testing.F) {
	for _, s := range []string{"Lists.go", "Entwürfe", "A&B", "INBOX.x", "a..b", "x/y", "日本語"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := sieveFolder(name)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, ".") || got == "." || got == ".." || strings.ContainsAny(got, "/\\\x00") || strings.Contains(got, "..") {
			t.Fatalf("sieveFolder(%q) = %q", name, got)
		}
		for _, r := range got {
			if r < 0x20 || r > 0x7e {
				t.Fatalf("sieveFolder(%q) = %q: not printable ASCII", name, got)
			}
		}
		if !utf8.ValidString(name) {
			t.Fatalf("invalid UTF-8 %q accepted", name)
		}
	})
}

// FuzzScriptTemplate: whatever the template and the user's values, an
// accepted template expands to a path under its root or userScript
// refuses it.
func FuzzScriptTemplate(f *testing.F) {
	f.Add("{home}/.dovecot.sieve", "bob", "example.org")
	f.Add("/srv/sieve/{domain}/{localpart}.sieve", "../../etc", "x")
	f.Add("{mailbox}/sieve/{address}", "a/b", "..")
	f.Fuzz(func(t *testing.T, tmpl, user, domain string) {
		tm, err := parseScriptTemplate(tmpl)
		if err != nil {
			return
		}
		s := &sieveStep{tmpl: tm, root: "/mail"}
		d := Destination{Resolution: Resolution{User: user, Domain: domain}}
		d.Mailbox = "example.org/bob"
		path, rel, root, err := s.userScript(d)
		if err != nil {
			return
		}
		if !filepath.IsLocal(rel) || filepath.Join(root, rel) != path || !strings.HasPrefix(path, root) {
			t.Fatalf("template %q, user %q, domain %q: %q (%q) under %q", tmpl, user, domain, path, rel, root)
		}
	})
}
