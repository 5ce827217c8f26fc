package pipe

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
)

func TestParseArg(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []segment
		multi   bool
		wantErr string
	}{
		{name: "literal", in: "-f", want: []segment{{lit: "-f"}}},
		{name: "empty", in: "", want: nil},
		{name: "placeholder", in: "{recipient}", want: []segment{{ph: phRecipient}}},
		{name: "mixed", in: "--to={user}+{detail}@{domain}", want: []segment{
			{lit: "--to="}, {ph: phUser}, {lit: "+"}, {ph: phDetail}, {lit: "@"}, {ph: phDomain}}},
		{name: "all names", in: "{sender}{recipient}{original_recipient}{user}{detail}{domain}{size}{client_address}{client_helo}{session}",
			want: []segment{{ph: phSender}, {ph: phRecipient}, {ph: phOriginalRecipient}, {ph: phUser}, {ph: phDetail},
				{ph: phDomain}, {ph: phSize}, {ph: phClientAddress}, {ph: phClientHelo}, {ph: phSession}}},
		{name: "escaped braces", in: "{{x}}{{", want: []segment{{lit: "{x}{"}}},
		{name: "escape next to placeholder", in: "{{{user}}}", want: []segment{{lit: "{"}, {ph: phUser}, {lit: "}"}}},
		{name: "recipients", in: "{recipients}", want: []segment{{ph: phRecipients}}, multi: true},
		{name: "unknown", in: "{rcpt}", wantErr: "unknown placeholder {rcpt}"},
		{name: "case matters", in: "{Recipient}", wantErr: "unknown placeholder {Recipient}"},
		{name: "empty name", in: "{}", wantErr: "unknown placeholder {}"},
		// "$" is literal: Postfix's ${name} is not our syntax.
		{name: "shell syntax", in: "${recipient}", want: []segment{{lit: "$"}, {ph: phRecipient}}},
		{name: "unterminated", in: "a{user", wantErr: "unterminated placeholder"},
		{name: "lone close", in: "a}b", wantErr: "unmatched }"},
		{name: "recipients in text", in: "--to={recipients}", wantErr: "{recipients} must be a whole argument"},
		{name: "recipients twice", in: "{recipients}{recipients}", wantErr: "{recipients} must be a whole argument"},
		{name: "NUL", in: "a\x00b", wantErr: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseArg(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseArg(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseArg(%q): %v", tt.in, err)
			}
			if !slices.Equal(got.segs, tt.want) || got.multi != tt.multi {
				t.Errorf("parseArg(%q) = %+v multi=%v, want %+v multi=%v", tt.in, got.segs, got.multi, tt.want, tt.multi)
			}
		})
	}
}

func TestParseArgsNamesArgument(t *testing.T) {
	_, err := parseArgs([]string{"/bin/true", "ok", "{bad}"})
	if err == nil || !strings.Contains(err.Error(), `argument 2 "{bad}"`) {
		t.Fatalf("error = %v, want it to name argument 2", err)
	}
}

func TestExpandArgs(t *testing.T) {
	v := Vars{
		Sender:            "alice@example.org",
		Recipient:         "a b \"c\" '$(rm -rf /)' ;|&\n@example.test",
		OriginalRecipient: "orig@example.test",
		User:              "bob",
		Detail:            "lists",
		Domain:            "example.test",
		Size:              1234,
		ClientAddress:     "192.0.2.1",
		ClientHelo:        "mx.example.org",
		SessionID:         "S1",
	}
	tests := []struct {
		name       string
		argv       []string
		v          Vars
		recipients []string
		allowDash  bool
		want       []string
		wantEC     protocol.EnhancedCode // refusal
	}{
		{name: "one argument per placeholder", v: v,
			argv: []string{"{recipient}", "{sender}", "{original_recipient}", "{user}", "{detail}", "{domain}", "{size}", "{client_address}", "{client_helo}", "{session}"},
			want: []string{"a b \"c\" '$(rm -rf /)' ;|&_@example.test", "alice@example.org", "orig@example.test", "bob", "lists",
				"example.test", "1234", "192.0.2.1", "mx.example.org", "S1"}},
		{name: "composed", v: v, argv: []string{"--to={user}+{detail}@{domain}", "x{{y}}"},
			want: []string{"--to=bob+lists@example.test", "x{y}"}},
		{name: "empty values stay arguments", v: Vars{}, argv: []string{"{sender}", "{detail}", "{size}", ""},
			want: []string{"", "", "0", ""}},
		{name: "negative size", v: Vars{Size: -1}, argv: []string{"{size}"}, want: []string{"0"}},
		{name: "recipients", v: v, argv: []string{"-f", "{sender}", "--", "{recipients}", "{domain}"},
			recipients: []string{"a@x", "b c@x", "d\r\n@x"},
			want:       []string{"-f", "alice@example.org", "--", "a@x", "b c@x", "d__@x", "example.test"}},
		{name: "recipients none", v: v, argv: []string{"{recipients}", "end"}, recipients: []string{}, want: []string{"end"}},
		{name: "dash recipient refused", v: Vars{Recipient: "-oQ/tmp@x"}, argv: []string{"{recipient}"},
			wantEC: protocol.EnhancedCode{5, 1, 3}},
		{name: "dash sender refused", v: Vars{Sender: "-f"}, argv: []string{"-f", "{sender}"},
			wantEC: protocol.EnhancedCode{5, 1, 7}},
		{name: "dash detail refused", v: Vars{Detail: "-x"}, argv: []string{"{detail}"}, wantEC: protocol.EnhancedCode{5, 1, 3}},
		{name: "dash helo refused", v: Vars{ClientHelo: "-h"}, argv: []string{"{client_helo}"}, wantEC: protocol.EnhancedCode{5, 5, 4}},
		{name: "dash after empty value refused", v: Vars{Recipient: "-r"}, argv: []string{"{detail}{recipient}"},
			wantEC: protocol.EnhancedCode{5, 1, 3}},
		{name: "dash in recipients refused", v: v, argv: []string{"{recipients}"}, recipients: []string{"ok@x", "-bad@x"},
			wantEC: protocol.EnhancedCode{5, 1, 3}},
		{name: "dash inside argument passes", v: Vars{Recipient: "-r@x"}, argv: []string{"--to={recipient}", "x{recipient}"},
			want: []string{"--to=-r@x", "x-r@x"}},
		{name: "dash after other value passes", v: Vars{User: "u", Detail: "-d"}, argv: []string{"{user}{detail}"},
			want: []string{"u-d"}},
		{name: "dash allowed", v: Vars{Recipient: "-r@x", Sender: "-s"}, allowDash: true,
			argv: []string{"{recipient}", "{sender}"}, want: []string{"-r@x", "-s"}},
		{name: "literal dash is configuration", v: Vars{}, argv: []string{"-x", "--"}, want: []string{"-x", "--"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := parseArgs(append([]string{"/bin/true"}, tt.argv...))
			if err != nil {
				t.Fatal(err)
			}
			rcpts := tt.recipients
			if rcpts == nil {
				rcpts = []string{tt.v.Recipient}
			}
			got, err := expandArgs(nil, ts, newValues(&tt.v, rcpts, tt.allowDash))
			if !tt.wantEC.IsZero() {
				var pe *protocol.Error
				if !errors.As(err, &pe) {
					t.Fatalf("expandArgs = %q, %v; want refusal %v", got, err, tt.wantEC)
				}
				if pe.EnhancedCode != tt.wantEC || pe.Code != protocol.BasicCode(tt.wantEC) {
					t.Errorf("refusal %d %v, want %d %v", pe.Code, pe.EnhancedCode, protocol.BasicCode(tt.wantEC), tt.wantEC)
				}
				if !strings.Contains(pe.Message, "starts with '-'") || pe.Err == nil {
					t.Errorf("refusal message %q, cause %v", pe.Message, pe.Err)
				}
				return
			}
			if err != nil {
				t.Fatalf("expandArgs: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("expandArgs = %q\nwant           %q", got, tt.want)
			}
		})
	}
}

func TestSanitizeValue(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"printable", "bob+x@example.test", "bob+x@example.test"},
		{"spaces and quotes kept", `"a b"@x '$(rm)'`, `"a b"@x '$(rm)'`},
		{"NUL", "a\x00b", "a_b"},
		{"CR LF", "a\r\nb", "a__b"},
		{"tab", "a\tb", "a_b"},
		{"escape", "\x1b[31m", "_[31m"},
		{"DEL", "a\x7f", "a_"},
		{"UTF-8 kept", "jürgen@bücher.example", "jürgen@bücher.example"},
		{"C1 control", "a\u0085b\u009bc", "a_b_c"},
		{"invalid UTF-8", "a\xffb\xc3", "a_b_"},
		{"surrogate encoding", "\xed\xa0\x80", "___"},
		{"replacement char kept", "\uFFFD", "\uFFFD"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sanitizeValue(tt.in); got != tt.want {
				t.Errorf("sanitizeValue(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSanitizeValueNoAllocation(t *testing.T) {
	s := "bob+lists@example.test"
	if n := testing.AllocsPerRun(100, func() { _ = sanitizeValue(s) }); n != 0 {
		t.Errorf("sanitizeValue of a clean value allocates %v times", n)
	}
}
