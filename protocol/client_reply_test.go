package protocol

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		code  int
		ec    EnhancedCode
		lines []string
	}{
		{"simple", "250 ok\r\n", 250, EnhancedCode{}, []string{"ok"}},
		{"code only", "250\r\n", 250, EnhancedCode{}, []string{""}},
		{"code and space", "250 \r\n", 250, EnhancedCode{}, []string{""}},
		{"bare LF", "220 mx ready\n", 220, EnhancedCode{}, []string{"mx ready"}},
		{"enhanced", "550 5.1.1 <a@x> No such user\r\n", 550, EnhancedCode{5, 1, 1}, []string{"<a@x> No such user"}},
		{"enhanced alone", "250 2.0.0\r\n", 250, EnhancedCode{2, 0, 0}, []string{""}},
		{"enhanced three digits", "452 4.123.999 full\r\n", 452, EnhancedCode{4, 123, 999}, []string{"full"}},
		{"class mismatch is text", "250 5.1.1 odd\r\n", 250, EnhancedCode{}, []string{"5.1.1 odd"}},
		{"not a code", "250 2.0 ok\r\n", 250, EnhancedCode{}, []string{"2.0 ok"}},
		{"version number is text", "220 mx 1.2.3 ready\r\n", 220, EnhancedCode{}, []string{"mx 1.2.3 ready"}},
		{"multi-line", "250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 100\r\n250 8BITMIME\r\n", 250, EnhancedCode{},
			[]string{"mx.test Hello", "PIPELINING", "SIZE 100", "8BITMIME"}},
		{"multi-line enhanced", "550-5.7.1 Go away\r\n550-5.7.1 \r\n550 5.7.1 Really\r\n", 550, EnhancedCode{5, 7, 1},
			[]string{"Go away", "", "Really"}},
		{"multi-line enhanced only first", "451-4.3.0 first\r\n451 second\r\n", 451, EnhancedCode{4, 3, 0}, []string{"first", "second"}},
		{"multi-line enhanced alone", "451-4.3.0 a\r\n451 4.3.0\r\n", 451, EnhancedCode{4, 3, 0}, []string{"a", ""}},
		{"multi-line code only", "250-\r\n250 x\r\n", 250, EnhancedCode{}, []string{"", "x"}},
		{"tab in text", "250 a\tb\r\n", 250, EnhancedCode{}, []string{"a\tb"}},
		{"8-bit text kept", "250 ça va\r\n", 250, EnhancedCode{}, []string{"ça va"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseReply(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != tc.code || r.EnhancedCode != tc.ec || !reflect.DeepEqual(r.Lines, tc.lines) {
				t.Fatalf("got %d %v %q, want %d %v %q", r.Code, r.EnhancedCode, r.Lines, tc.code, tc.ec, tc.lines)
			}
		})
	}
}

func TestParseReplyMalformed(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty line", "\r\n"},
		{"short code", "25 ok\r\n"},
		{"letters", "abc ok\r\n"},
		{"class 1", "150 ok\r\n"},
		{"class 6", "650 ok\r\n"},
		{"four digits", "2500 ok\r\n"},
		{"bad separator", "250_ok\r\n"},
		{"codes differ", "250-a\r\n251 b\r\n"},
		{"no last line", "250-a\r\n250-b\r\n"},
		{"unterminated", "250 ok"},
		{"after last", "250 a\r\n250 b\r\n"},
		{"control character", "250 a\x00b\r\n"},
		{"bare CR inside", "250 a\rb\r\n"},
		{"escape", "250 a\x1b[31m\r\n"},
		{"too long", "250 " + strings.Repeat("a", maxReplyLine) + "\r\n"},
		{"too many lines", strings.Repeat("250-a\r\n", maxReplyLines) + "250 b\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseReply(tc.in)
			if !errors.Is(err, ErrMalformedReply) {
				t.Fatalf("got %+v, %v; want ErrMalformedReply", r, err)
			}
		})
	}
}

func TestReplyMethods(t *testing.T) {
	r := &Reply{Code: 452, EnhancedCode: EnhancedCode{4, 2, 2}, Lines: []string{"<a@x> Mailbox", "full"}}
	if r.Positive() || r.Text() != "<a@x> Mailbox full" || r.String() != "452 4.2.2 <a@x> Mailbox full" {
		t.Errorf("%v %q %q", r.Positive(), r.Text(), r.String())
	}
	e := AsError(r.Err())
	if e == nil || e.Code != 452 || e.EnhancedCode != r.EnhancedCode || e.Message != r.Text() || !e.Temporary() {
		t.Errorf("Err() = %+v", e)
	}
	ok := &Reply{Code: 354, Lines: []string{"go"}}
	if !ok.Positive() || ok.Err() != nil || ok.String() != "354 go" {
		t.Errorf("354: %v %v %q", ok.Positive(), ok.Err(), ok.String())
	}
	// Without an enhanced code the relayed reply gets class.0.0.
	plain := &Reply{Code: 550, Lines: []string{"no"}}
	if got := AsError(plain.Err()).Error(); got != "550 5.0.0 no" {
		t.Errorf("relayed %q", got)
	}
}

func TestParseExtensions(t *testing.T) {
	r, err := parseReply("250-mx.test greets you\r\n250-pipelining\r\n250-SIZE 1000\r\n250-AUTH=LOGIN\r\n250-XCLIENT NAME ADDR\r\n250-8BITMIME \r\n250 \r\n")
	if err != nil {
		t.Fatal(err)
	}
	ext := parseExtensions(r)
	want := map[string]string{"PIPELINING": "", "SIZE": "1000", "AUTH": "LOGIN", "XCLIENT": "NAME ADDR", "8BITMIME": ""}
	if !reflect.DeepEqual(ext, want) {
		t.Fatalf("got %q, want %q", ext, want)
	}
	c := &Client{ext: ext}
	if n, ok := c.MaxMessageSize(); !ok || n != 1000 {
		t.Errorf("MaxMessageSize %d %v", n, ok)
	}
	if got := c.AuthMechanisms(); !reflect.DeepEqual(got, []string{"LOGIN"}) {
		t.Errorf("AuthMechanisms %q", got)
	}
	if got := c.XForwardAttributes(); got != nil {
		t.Errorf("XForwardAttributes %q", got)
	}
	c.ext["XFORWARD"] = ""
	if got := c.XForwardAttributes(); got == nil || len(got) != 0 {
		t.Errorf("XFORWARD without attributes: %q", got)
	}
}

// FuzzReplyParser: the reply parser never panics, and what it accepts
// has a valid code, the enhanced code's class matching it, and line
// texts without CR or LF.
func FuzzReplyParser(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n", "250-a\r\n250 b\r\n", "550 5.1.1 no\r\n", "550-5.1.1 a\r\n550 5.1.1\r\n",
		"250\n", "25", "999 x\r\n", "451 4.3.0\r\n", "250-\r\n250 \r\n", "220 \xff\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseReply(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedReply) {
				t.Fatalf("error %v does not wrap ErrMalformedReply", err)
			}
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 {
			t.Fatalf("accepted %+v", r)
		}
		if !r.EnhancedCode.IsZero() && r.EnhancedCode[0] != r.Code/100 {
			t.Fatalf("enhanced code %v with %d", r.EnhancedCode, r.Code)
		}
		for _, l := range r.Lines {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("line %q", l)
			}
		}
		_ = r.String()
		_ = r.Err()
	})
}

// FuzzCRLFNormalizer compares the streaming normalizer, fed in two
// pieces, with a plain reference: line endings become CRLF, a missing
// last one is added, leading dots are doubled for DATA.
func FuzzCRLFNormalizer(f *testing.F) {
	for _, s := range []string{"", "a", "a\r", "a\r\r\nb", ".\n..\r\n.", "x\ry\nz"} {
		f.Add(s, uint(1), true)
	}
	f.Fuzz(func(t *testing.T, s string, split uint, dot bool) {
		k := int(split % uint(len(s)+1))
		n := crlfNormalizer{bol: true, dotStuff: dot}
		out := n.append(nil, []byte(s[:k]))
		out = n.finish(n.append(out, []byte(s[k:])))

		ref := strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
		var want strings.Builder
		if ref != "" {
			lines := strings.Split(strings.TrimSuffix(ref, "\n"), "\n")
			for _, l := range lines {
				if dot && strings.HasPrefix(l, ".") {
					want.WriteByte('.')
				}
				want.WriteString(l + "\r\n")
			}
		}
		if string(out) != want.String() {
			t.Fatalf("%q split %d dot %v: got %q, want %q", s, k, dot, out, want.String())
		}
	})
}
