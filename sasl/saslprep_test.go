package sasl

import (
	"errors"
	"strings"
	"testing"
)

func TestPrepareUsername(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        error
	}{
		{"ASCII unchanged", "user@example.org", "user@example.org", nil},
		{"ASCII space kept", "John Doe", "John Doe", nil},
		{"case kept", "User", "User", nil},
		{"non-ASCII kept", "jürgen", "jürgen", nil},
		{"soft hyphen removed (B.1)", "I\u00adX", "IX", nil},
		{"zero width space removed (B.1)", "a\u200bb", "ab", nil},
		{"variation selector removed (B.1)", "a\ufe0fb", "ab", nil},
		{"no-break space mapped (C.1.2)", "a\u00a0b", "a b", nil},
		{"ideographic space mapped (C.1.2)", "a\u3000b", "a b", nil},
		{"longest", strings.Repeat("u", MaxUsernameLength), strings.Repeat("u", MaxUsernameLength), nil},
		{"empty", "", "", errNameEmpty},
		{"only mapped to nothing", "\u00ad\u200b", "", errNameEmpty},
		{"too long", strings.Repeat("u", MaxUsernameLength+1), "", errNameTooLong},
		{"invalid UTF-8", "us\xffer", "", errNameUTF8},
		{"encoded surrogate", "a\xed\xa0\x80b", "", errNameUTF8},
		{"NUL (C.2.1)", "a\x00b", "", errNameProhibited},
		{"tab (C.2.1)", "a\tb", "", errNameProhibited},
		{"DEL (C.2.1)", "a\x7fb", "", errNameProhibited},
		{"C1 control (C.2.2)", "a\u0085b", "", errNameProhibited},
		{"line separator (C.2.2)", "a\u2028b", "", errNameProhibited},
		{"musical control (C.2.2)", "a\U0001D173b", "", errNameProhibited},
		{"private use (C.3)", "a\ue000b", "", errNameProhibited},
		{"plane 15 private use (C.3)", "a\U000F0000b", "", errNameProhibited},
		{"non-character (C.4)", "a\ufdd0b", "", errNameProhibited},
		{"plane 1 non-character (C.4)", "a\U0001FFFEb", "", errNameProhibited},
		{"replacement character (C.6)", "a\ufffdb", "", errNameProhibited},
		{"ideographic description (C.7)", "a\u2ff0b", "", errNameProhibited},
		{"left-to-right mark (C.8)", "a\u200eb", "", errNameProhibited},
		{"bidi override (C.8)", "a\u202eb", "", errNameProhibited},
		{"language tag (C.9)", "a\U000E0001b", "", errNameProhibited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PrepareUsername(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("PrepareUsername(%q) = (%q, %v), want (%q, %v)", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err == nil {
				again, err := PrepareUsername(got)
				if err != nil || again != got {
					t.Fatalf("not idempotent: %q -> (%q, %v)", got, again, err)
				}
			}
		})
	}
}

func TestPreparePassword(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ASCII", "pencil", "pencil"},
		{"mapped", "pen\u00a0cil\u00ad", "pen cil"},
		{"prohibited kept raw", "pen\u0085cil", "pen\u0085cil"},
		{"invalid UTF-8 kept raw", "pen\xffcil", "pen\xffcil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := preparePassword(tt.in); got != tt.want {
				t.Fatalf("preparePassword(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
