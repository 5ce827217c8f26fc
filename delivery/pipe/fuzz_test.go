package pipe

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lmtpd/lmtpd/protocol"
)

func FuzzParseStatusOutput(f *testing.F) {
	for _, s := range []string{
		"4.2.2 over quota", "5.1.1 no such user\n", "  \n5.7.1\tspam", "4.123.456 x", "5.3.0", "2.0.0 ok",
		"5.1234.1 x", "5.1.1x", "5..1", "4.3.0 later\r\nmore", "", "\x00", "5.1.", "4.0.0 \xff\xfe",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		ec, text, ok := parseStatusOutput(out)
		if !ok {
			if ec != (protocol.EnhancedCode{}) || text != "" {
				t.Fatalf("not ok but returned %v %q", ec, text)
			}
			return
		}
		if ec[0] != 4 && ec[0] != 5 {
			t.Fatalf("class %d", ec[0])
		}
		// The code is what the output says, as protocol parses it.
		token := strings.Fields(out)[0]
		parsed, err := protocol.ParseEnhancedCode(token)
		if err != nil || parsed != ec {
			t.Fatalf("%q: parsed %v, protocol.ParseEnhancedCode(%q) = %v, %v", out, ec, token, parsed, err)
		}
		if strings.ContainsAny(text, "\n") || strings.Trim(text, " \t\r") != text {
			t.Fatalf("text %q is not one trimmed line", text)
		}
		if !strings.Contains(out, text) {
			t.Fatalf("text %q not from the output %q", text, out)
		}
		// Through the reply path the text is safe to send.
		if r := replyText(sanitizeOutput([]byte(text))); len(r) > maxReplyOutput || !isReplySafe(r) {
			t.Fatalf("reply text %q", r)
		}
	})
}

// FuzzExpand checks, for any argument template and any value, that
// expansion yields exactly one argument per template (or one per recipient
// for {recipients}), that no value brings a control character or invalid
// UTF-8 into an argument, that a refusal happens exactly when a value would
// start an argument with '-', and that the expansion of empty values is the
// template's literal text.
func FuzzExpand(f *testing.F) {
	for _, s := range [][2]string{
		{"{recipient}", "bob@example.test"},
		{"--to={user}+{detail}@{domain}", "a b\r\n\x00"},
		{"{recipients}", "-oQ/tmp"},
		{"{{x}}{sender}", "$(rm -rf /)"},
		{"{detail}{recipient}", "-r"},
		{"{size}{session}", "\xff\xc3"},
		{"{unknown}", "x"},
		{"a}", ""},
		{"{client_helo}{client_address}{original_recipient}", "\u0085\u2028"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, tmpl, val string) {
		tpl, err := parseArg(tmpl)
		if err != nil {
			return
		}
		literal, err := expandArgs(nil, []argTemplate{tpl}, newValues(&Vars{}, []string{""}, false))
		if err != nil {
			t.Fatalf("empty values refused: %v", err)
		}
		if len(literal) != 1 {
			t.Fatalf("%q: %d arguments from empty values", tmpl, len(literal))
		}
		if !tpl.multi && literal[0] != unescapeLiteral(tmpl) {
			t.Fatalf("%q: literal expansion %q, want %q", tmpl, literal[0], unescapeLiteral(tmpl))
		}

		v := Vars{Sender: val, Recipient: val, OriginalRecipient: val, User: val, Detail: val, Domain: val,
			ClientAddress: val, ClientHelo: val, SessionID: val, Size: int64(len(val))}
		rcpts := []string{val, "x" + val}
		for _, allow := range []bool{false, true} {
			args, err := expandArgs(nil, []argTemplate{tpl}, newValues(&v, rcpts, allow))
			clean := sanitizeValue(val)
			dashStart := strings.HasPrefix(clean, "-") && startsWithValue(tpl, clean)
			if err != nil {
				var pe *protocol.Error
				if allow || !dashStart || !errors.As(err, &pe) || pe.Code/100 != 5 {
					t.Fatalf("%q with %q (allow=%v): unexpected refusal %v", tmpl, val, allow, err)
				}
				continue
			}
			if dashStart && !allow {
				t.Fatalf("%q with %q: %q starts with '-' from a value and was not refused", tmpl, val, args)
			}
			want := 1
			if tpl.multi {
				want = len(rcpts)
			}
			if len(args) != want {
				t.Fatalf("%q with %q: %d arguments, want %d", tmpl, val, len(args), want)
			}
			for _, a := range args {
				if !utf8.ValidString(tmpl) || hasControl(tmpl) {
					continue // the configuration brought them
				}
				if !utf8.ValidString(a) || hasControl(a) {
					t.Fatalf("%q with %q: argument %q has a control character or invalid UTF-8", tmpl, val, a)
				}
			}
		}
	})
}

// unescapeLiteral is the reference for a template's literal text: the
// placeholders removed ({size} becomes "0") and the doubled braces halved.
func unescapeLiteral(tmpl string) string {
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		switch {
		case strings.HasPrefix(tmpl[i:], "{{") || strings.HasPrefix(tmpl[i:], "}}"):
			b.WriteByte(tmpl[i])
			i++
		case tmpl[i] == '{':
			end := strings.IndexByte(tmpl[i:], '}')
			if tmpl[i:i+end+1] == "{size}" {
				b.WriteByte('0')
			}
			i += end
		default:
			b.WriteByte(tmpl[i])
		}
	}
	return b.String()
}

// startsWithValue reports whether the argument's first byte comes from a
// placeholder when every placeholder expands to the non-empty value v (the
// size placeholder expands to digits and never starts with '-').
func startsWithValue(t argTemplate, v string) bool {
	if t.multi {
		return true // the first recipient is v
	}
	if len(t.segs) == 0 {
		return false
	}
	ph := t.segs[0].ph
	return ph != phLiteral && ph != phSize && v != ""
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return true
		}
	}
	return false
}
