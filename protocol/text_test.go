package protocol

import (
	"testing"
	"unicode/utf8"
)

func TestIsHeaderWord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		s      string
		ascii  bool // passes without SMTPUTF8
		utf8OK bool // passes with SMTPUTF8
	}{
		{"ascii", "mx.example.test", true, true},
		{"literal", "[192.0.2.1]", true, true},
		{"empty", "", false, false},
		{"space", "a b", false, false},
		{"tab", "a\tb", false, false},
		{"CR", "a\rb", false, false},
		{"LF", "a\nb", false, false},
		{"NUL", "a\x00b", false, false},
		{"DEL", "a\x7fb", false, false},
		{"U-label", "héllo.test", false, true},
		{"greek", "παράδειγμα.test", false, true},
		{"ZWNJ", "a\u200cb", false, true},
		{"NEL", "a\u0085X-Injected:yes", false, false},
		{"C1 CSI", "a\u009bb", false, false},
		{"LINE SEPARATOR", "a\u2028X-Injected:yes", false, false},
		{"PARAGRAPH SEPARATOR", "a\u2029b", false, false},
		{"NBSP", "a\u00a0b", false, false},
		{"RLO", "a\u202eb", false, false},
		{"BOM", "\ufeffa", false, false},
		{"invalid byte", "a\xffb", false, false},
		{"truncated sequence", "a\xc2", false, false},
		{"surrogate encoding", "a\xed\xa0\x80b", false, false},
		{"overlong NUL", "a\xc0\x80b", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isHeaderWord(tc.s, false); got != tc.ascii {
				t.Errorf("isHeaderWord(%q, false) = %v, want %v", tc.s, got, tc.ascii)
			}
			if got := isHeaderWord(tc.s, true); got != tc.utf8OK {
				t.Errorf("isHeaderWord(%q, true) = %v, want %v", tc.s, got, tc.utf8OK)
			}
		})
	}
}

func TestAppendHeaderWord(t *testing.T) {
	for _, tc := range []struct {
		s, ascii, utf8 string
	}{
		{"mx.test", "mx.test", "mx.test"},
		{"a b(c)[d];e", "a_b_c__d__e", "a_b_c__d__e"},
		{"héllo", "h_llo", "héllo"},
		{"a\u0085X-Injected:yes", "a_X-Injected:yes", "a_X-Injected:yes"},
		{"a\u2028b", "a_b", "a_b"},
		{"a\xff\xfeb", "a__b", "a__b"},
		{"a\r\nb", "a__b", "a__b"},
	} {
		if got := string(appendHeaderWord(nil, tc.s, false)); got != tc.ascii {
			t.Errorf("appendHeaderWord(%q, false) = %q, want %q", tc.s, got, tc.ascii)
		}
		if got := string(appendHeaderWord(nil, tc.s, true)); got != tc.utf8 {
			t.Errorf("appendHeaderWord(%q, true) = %q, want %q", tc.s, got, tc.utf8)
		}
	}
}

// FuzzAppendHeaderWord: whatever the input, the word written is valid
// UTF-8 that isHeaderWord accepts (or empty), so it cannot break a header.
func FuzzAppendHeaderWord(f *testing.F) {
	for _, s := range []string{"a\u0085b", "a\u2028b", "\xff", "héllo", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, utf8OK := range []bool{false, true} {
			w := string(appendHeaderWord(nil, s, utf8OK))
			if !utf8.ValidString(w) {
				t.Fatalf("appendHeaderWord(%q, %v) = %q: invalid UTF-8", s, utf8OK, w)
			}
			if w != "" && !isHeaderWord(w, utf8OK) {
				t.Fatalf("appendHeaderWord(%q, %v) = %q: not a header word", s, utf8OK, w)
			}
		}
	})
}

// Addresses reach the Received field's "for" clause and Delivered-To:
// characters isHeaderRune refuses are refused in them too.
func TestAddressRefusesLineBreakingRunes(t *testing.T) {
	for _, s := range []string{
		"<a\u2028X-Injected:yes@example.test>",
		"<a\u2029b@example.test>",
		"<a\u0085b@example.test>",
		"<a\u00a0b@example.test>",
		"<\"a\u2028b\"@example.test>",
		"<a@ex\u2028ample.test>",
	} {
		if _, _, err := parsePath(s, true); err == nil {
			t.Errorf("parsePath(%q) accepted", s)
		}
	}
	if _, _, err := parsePath("<δοκιμή@παράδειγμα.test>", true); err != nil {
		t.Errorf("UTF-8 address refused: %v", err)
	}
}
