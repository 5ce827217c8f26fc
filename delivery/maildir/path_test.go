package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParseTemplateErrors(t *testing.T) {
	for _, s := range []string{
		"", "/var/mail/{user}", "{domain}//{user}", "./{user}", "{domain}/../{user}", "{user}/.",
		"{domain}/.hidden", "{user", "{nope}", "a}b/{user}", `a\b/{user}`, "a\x01/{user}", "a/\xff",
	} {
		if _, err := ParseTemplate(s); err == nil {
			t.Errorf("ParseTemplate(%q) succeeded", s)
		}
	}
}

func TestExpand(t *testing.T) {
	tests := []struct {
		tmpl string
		v    Vars
		want string
	}{
		{"{domain}/{user}", Vars{Domain: "Example.ORG", User: "bob"}, "example.org/bob"},
		{"users/{user}/Maildir", Vars{User: "Bob.Smith"}, "users/Bob.Smith/Maildir"},
		{"{domain}/{localpart}", Vars{Domain: "x", LocalPart: "bob+lists"}, "x/bob+lists"},
		{"{domain}/{user}-{detail}", Vars{Domain: "x", User: "u", Detail: "d"}, "x/u-d"},
		{"{domain}/x{detail}", Vars{Domain: "x", User: "u"}, "x/x"},
		{"{domain}/{user}", Vars{Domain: "x", User: "../../etc"}, "x/%2E.%2F..%2Fetc"},
		{"{domain}/{user}", Vars{Domain: "..", User: "u"}, "%2E./u"},
		{"{domain}/{user}", Vars{Domain: "x", User: "."}, "x/%2E"},
		{"{domain}/{user}", Vars{Domain: "x", User: "a/b"}, "x/a%2Fb"},
		{"{domain}/{user}", Vars{Domain: "x", User: `a\b`}, "x/a%5Cb"},
		{"{domain}/{user}", Vars{Domain: "x", User: "john doe"}, "x/john%20doe"},
		{"{domain}/{user}", Vars{Domain: "x", User: "a\x00b"}, "x/a%00b"},
		{"{domain}/{user}", Vars{Domain: "x", User: "100%"}, "x/100%25"},
		{"{domain}/{user}", Vars{Domain: "x", User: "jösé"}, "x/jösé"},
		{"{domain}/{user}", Vars{Domain: "bücher.example", User: "ü"}, "bücher.example/ü"},
		{"{domain}/{user}", Vars{Domain: "x", User: "a\u202eb"}, "x/a%E2%80%AEb"},
		{"{domain}/{user}", Vars{Domain: "x", User: "a\xffb"}, "x/a%FFb"},
		{"{domain}/{user}", Vars{Domain: "[192.0.2.1]", User: "u"}, "%5B192.0.2.1%5D/u"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl+" "+tt.v.User, func(t *testing.T) {
			tm, err := ParseTemplate(tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tm.Expand(tt.v)
			if err != nil || got != tt.want {
				t.Errorf("Expand = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestExpandErrors(t *testing.T) {
	tm, _ := ParseTemplate("{domain}/{user}")
	for name, v := range map[string]Vars{
		"empty user":   {Domain: "x"},
		"empty domain": {User: "u"},
		"too long":     {Domain: "x", User: strings.Repeat("a", MaxElement+1)},
		"too long esc": {Domain: "x", User: strings.Repeat("/", MaxElement/3+1)},
	} {
		if _, err := tm.Expand(v); !errors.Is(err, ErrBadPath) {
			t.Errorf("%s: %v, want ErrBadPath", name, err)
		}
	}
	if !tm.UsesDetail() == false {
		t.Error("UsesDetail true without {detail}")
	}
	if tm2, _ := ParseTemplate("{user}/{detail}x"); !tm2.UsesDetail() || tm2.String() != "{user}/{detail}x" {
		t.Error("UsesDetail or String wrong")
	}
}

func TestEscapeElementInjective(t *testing.T) {
	inputs := []string{"a/b", "a%2Fb", "a%b", "a%25b", ".a", "%2Ea", "a.", "ü", "%C3%BC", "\xc3", "%C3"}
	seen := map[string]string{}
	for _, in := range inputs {
		out := EscapeElement(in)
		if prev, ok := seen[out]; ok {
			t.Errorf("EscapeElement(%q) = EscapeElement(%q) = %q", in, prev, out)
		}
		seen[out] = in
	}
}

func TestFolderName(t *testing.T) {
	tests := []struct {
		detail, want string
		ok           bool
	}{
		{"lists", ".lists", true},
		{"Lists.Go", ".Lists.Go", true},
		{".hidden", ".hidden", true},
		{"..", "", false},
		{"...", "", false},
		{"", "", false},
		{"a..b", ".a.b", true},
		{"a.", ".a", true},
		{"a/b", ".a_b", true},
		{"../../etc", "._._etc", true},
		{`a\b`, ".a_b", true},
		{"a\nb\x00", ".a_b_", true},
		{"a&b", ".a_b", true},
		{"jö", ".j_", true},
		{strings.Repeat("x", MaxElement), "", false},
	}
	for _, tt := range tests {
		got, ok := FolderName(tt.detail)
		if got != tt.want || ok != tt.ok {
			t.Errorf("FolderName(%q) = %q, %v; want %q, %v", tt.detail, got, ok, tt.want, tt.ok)
		}
	}
}

// checkPathSafe fails unless p is a clean relative path of non-empty
// elements, none "." or "..", without control characters, that really
// lands inside root when created.
func checkPathSafe(t *testing.T, root, p string) {
	t.Helper()
	if !filepath.IsLocal(p) || filepath.Clean(p) != p || strings.HasPrefix(p, "/") {
		t.Fatalf("%q is not a clean local path", p)
	}
	for _, e := range strings.Split(p, "/") {
		if e == "" || e == "." || e == ".." || len(e) > MaxElement {
			t.Fatalf("%q has a bad element %q", p, e)
		}
		if strings.ContainsFunc(e, func(r rune) bool { return unicode.IsControl(r) || r == '\\' }) || !utf8.ValidString(e) {
			t.Fatalf("%q has a control character, backslash or invalid UTF-8", p)
		}
	}
	full := filepath.Join(root, p)
	rel, err := filepath.Rel(root, full)
	if err != nil || !filepath.IsLocal(rel) {
		t.Fatalf("%q escapes the root (rel %q, %v)", p, rel, err)
	}
	if err := os.MkdirAll(full, 0o700); err != nil {
		t.Fatalf("creating %q: %v", p, err)
	}
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		t.Fatal(err)
	}
	realRoot, _ := filepath.EvalSymlinks(root)
	if rel, err := filepath.Rel(realRoot, real); err != nil || !filepath.IsLocal(rel) {
		t.Fatalf("%q was created outside the root at %q", p, real)
	}
}

// FuzzMaildirPath checks that no local part, detail or domain maps to a
// path outside the root, through every placeholder and the folder name.
func FuzzMaildirPath(f *testing.F) {
	for _, s := range [][3]string{
		{"bob", "lists", "example.org"},
		{"../../etc", "../x", ".."},
		{"/", "/", "/"},
		{".", ".", "."},
		{`"john doe"`, `a\b`, "[IPv6:::1]"},
		{"a\x00b", "\x00", "\x00"},
		{"jösé", "ü", "bücher.example"},
		{"\xff\xfe", "\xc0\xaf", "%2e%2e"},
		{"a\u202e", "..\u2215..", "x"},
		{"", "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	templates := []string{"{domain}/{user}", "{domain}/{localpart}", "m/{domain}-{user}/{detail}", "{user}{detail}"}
	var tms []*Template
	for _, s := range templates {
		tm, err := ParseTemplate(s)
		if err != nil {
			f.Fatal(err)
		}
		tms = append(tms, tm)
	}
	f.Fuzz(func(t *testing.T, local, detail, domain string) {
		root := t.TempDir()
		for _, tm := range tms {
			p, err := tm.Expand(Vars{Domain: domain, User: local, LocalPart: local + "+" + detail, Detail: detail})
			if err != nil {
				if !errors.Is(err, ErrBadPath) {
					t.Fatalf("Expand error %v does not wrap ErrBadPath", err)
				}
				continue
			}
			checkPathSafe(t, root, p)
			if folder, ok := FolderName(detail); ok {
				if strings.ContainsAny(folder[1:], "/\\") || strings.Contains(folder, "..") || folder[0] != '.' || strings.HasPrefix(folder, "..") {
					t.Fatalf("FolderName(%q) = %q", detail, folder)
				}
				checkPathSafe(t, root, p+"/"+folder)
			}
		}
	})
}
