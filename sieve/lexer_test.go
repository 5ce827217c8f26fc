package sieve

import (
	"strings"
	"testing"
)

func TestLexerTokens(t *testing.T) {
	src := "require \"x\";\r\n# c\r\nif\t:Is 10K [\"a\\\"b\", text:  # comment\r\n..line\r\n.\r\n] {}\r\n"
	lx := newLexer("f", src)
	var got []string
	for {
		tok := lx.next()
		if tok.kind == tokEOF {
			break
		}
		s := tok.kind.String() + "@" + tok.pos.String()
		switch tok.kind {
		case tokIdent, tokTag, tokString:
			s += "=" + tok.text
		case tokNumber:
			s += "=" + itoa(int(tok.num))
		}
		got = append(got, s)
	}
	if lx.err != nil {
		t.Fatal(lx.err)
	}
	want := []string{
		"identifier@1:1=require", "string@1:9=x", "';'@1:12",
		"identifier@3:1=if", "tag@3:4=Is", "number@3:8=10240", "'['@3:12",
		"string@3:13=a\"b", "','@3:19", "string@3:21=.line\r\n", "']'@6:1",
		"'{'@6:3", "'}'@6:4",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("tokens\n%s\nwant\n%s", strings.Join(got, " "), strings.Join(want, " "))
	}
}

func TestLexerErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"keep; @", "1:7: unexpected character '@'"},
		{"if size :over 10X {}", "1:17: unexpected character 'X' after number"},
		{"if size :over 99999999999999999G {}", "1:15: number too large"},
		{"text: x\n.\n", "1:7: expected end of line after text:"},
		{"\n\n  \"abc", "3:3: unterminated string"},
		{"keep; /* x", "1:7: unterminated comment"},
		{"if header : \"a\" {}", "1:11: expected a tag name"},
		{"keep; \x01", "1:7: unexpected character 0x01"},
	}
	for _, tc := range tests {
		_, err := Compile("f", []byte(tc.src), nil)
		if err == nil || !strings.Contains(err.Error(), "f:"+tc.want) {
			t.Errorf("Compile(%q) = %v, want %q", tc.src, err, tc.want)
		}
	}
}
