package sieve

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustCompile(t *testing.T, src string) *Script {
	t.Helper()
	s, err := Compile("t.sieve", []byte(src), nil)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

func run1(t *testing.T, s *Script, msg string, opts *Options) (Result, error) {
	t.Helper()
	env := &Env{Envelope: Envelope{From: "a@example.org", To: "b@example.net"}, Now: time.Unix(0, 0), Location: time.UTC}
	return s.Execute(context.Background(), ParseMessage([]byte(crlf(msg))), env, opts)
}

func TestLimits(t *testing.T) {
	many := func(n int, cmd string) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(strings.ReplaceAll(cmd, "N", itoa(i)))
		}
		return b.String()
	}
	tests := []struct {
		name   string
		script string
		msg    string
		opts   *Options
		want   error
	}{
		{"actions", `require "fileinto";` + many(40, `fileinto "fN";`), defaultMessage, nil, ErrTooManyActions},
		{"actions option", `require "fileinto";` + many(5, `fileinto "fN";`), defaultMessage, &Options{MaxActions: 4}, ErrTooManyActions},
		{"redirects", many(5, `redirect "uN@example.org";`), defaultMessage, nil, ErrTooManyRedirects},
		{"steps", many(200, `if header :contains "subject" "x" { }`), defaultMessage, &Options{MaxSteps: 100}, ErrStepBudget},
		{"long matches", `if header :matches "subject" "*` + strings.Repeat("a", 50) + `b" { }`, "Subject: " + strings.Repeat("a", 5000) + "\n\nx\n", &Options{MaxSteps: 500}, ErrStepBudget},
		{"body regex", `require ["body", "regex"]; if body :regex "(a|b)*c.*z$" { }`, "Subject: x\n\n" + strings.Repeat("ab", 300000) + "\n", nil, ErrStepBudget},
		{"many regex on headers", `require "regex";` + many(3000, `if header :regex "subject" "(a|b)*c.*z$" { }`), "Subject: " + strings.Repeat("ab", 400) + "\n\nx\n", nil, ErrStepBudget},
		{"variable size", `require "variables"; set "a" "0123456789"; set "a" "${a}${a}";`, defaultMessage, &Options{MaxVariableSize: 12}, ErrInvalidArgument},
		{"variables count", `require "variables";` + many(10, `set "vN" "x";`), defaultMessage, &Options{MaxVariables: 5}, ErrInvalidArgument},
		{"regex size", `require ["regex", "variables"]; set "p" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; if header :regex "subject" "${p}" { }`, defaultMessage, &Options{MaxRegexSize: 10}, ErrRegexTooLarge},
		{"header edits", `require "editheader";` + many(10, `addheader "X-N" "v";`), defaultMessage, &Options{MaxHeaderEdits: 3}, ErrTooManyActions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := run1(t, mustCompile(t, tc.script), tc.msg, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var re *RuntimeError
			if !errors.As(err, &re) || re.Pos.Line < 1 {
				t.Fatalf("error %v is not a positioned *RuntimeError", err)
			}
			if !res.ImplicitKeep || len(res.Actions) != 0 {
				t.Fatalf("result after an error: %v", res.Lines())
			}
		})
	}
}

type selfLoader struct{ s map[string]*Script }

func (l selfLoader) LoadScript(_ context.Context, _ Location, name string) (*Script, error) {
	if s, ok := l.s[name]; ok {
		return s, nil
	}
	return nil, ErrNotFound
}

func TestIncludeDepth(t *testing.T) {
	l := selfLoader{s: map[string]*Script{}}
	for i := 0; i < 20; i++ {
		l.s["s"+itoa(i)] = mustCompile(t, `require "include"; include "s`+itoa(i+1)+`";`)
	}
	env := &Env{Loader: l}
	_, err := l.s["s0"].Execute(context.Background(), ParseMessage([]byte(defaultMessage)), env, &Options{MaxIncludeDepth: 5})
	if !errors.Is(err, ErrIncludeDepth) {
		t.Fatalf("error %v, want ErrIncludeDepth", err)
	}
}

func TestCancelledContext(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 3000; i++ {
		b.WriteString(`if true { }` + "\n")
	}
	s := mustCompile(t, b.String())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Execute(ctx, ParseMessage([]byte(defaultMessage)), nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// TestConcurrentExecute runs one Script from many goroutines (with -race:
// the compiled form is never written).
func TestConcurrentExecute(t *testing.T) {
	s := mustCompile(t, `require ["variables", "fileinto", "regex", "imap4flags", "editheader"];
if header :matches "subject" "*" { set "s" "${1}"; }
if header :regex "subject" "^(H)" { addflag "\\Seen"; }
addheader "X-Seen" "${s}";
fileinto "f-${s}";`)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			msg := "Subject: H" + itoa(i) + "\n\nx\n"
			res, err := run1(t, s, msg, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if got := res.Actions[0].Mailbox; got != "f-H"+itoa(i) {
				t.Errorf("goroutine %d: mailbox %q", i, got)
			}
		}(i)
	}
	wg.Wait()
}

func TestErrorFormat(t *testing.T) {
	_, err := Compile("dir/user.sieve", []byte("keep;\n  foo;\n"), nil)
	if err == nil || err.Error() != "dir/user.sieve:2:3: unknown command foo" {
		t.Fatalf("error %q", err)
	}
	_, err = Compile("big", make([]byte, 100), &CompileOptions{MaxScriptSize: 10})
	if err == nil || !strings.Contains(err.Error(), "big:1:1: script larger than 10 bytes") {
		t.Fatalf("error %q", err)
	}
	deep := strings.Repeat("if true {", 100) + strings.Repeat("}", 100)
	_, err = Compile("deep", []byte(deep), nil)
	if err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Fatalf("error %q", err)
	}
	deepTest := "if " + strings.Repeat("not ", 100) + "true {}"
	_, err = Compile("deep", []byte(deepTest), nil)
	if err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Fatalf("error %q", err)
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		val, pat string
		fold, ok bool
		caps     []string
	}{
		{"Hello", "H*o", false, true, []string{"Hello", "ell"}},
		{"Hello", "h*O", true, true, []string{"Hello", "ell"}},
		{"Hello", "h*O", false, false, nil},
		{"[a] [b] c", "[*] *", false, true, []string{"[a] [b] c", "a", "[b] c"}},
		{"abc", "a?c", false, true, []string{"abc", "b"}},
		{"ab", "a?c", false, false, nil},
		{"a*b", `a\*b`, false, true, []string{"a*b"}},
		{"axb", `a\*b`, false, false, nil},
		{"", "*", false, true, []string{"", ""}},
		{"", "", false, true, []string{""}},
		{"x", "", false, false, nil},
		{"coyote@ACME.Example.COM", "coyote@**.com", true, true, []string{"coyote@ACME.Example.COM", "", "ACME.Example"}},
		{"äöü", "??ö??", false, true, []string{"äöü", "\xc3", "\xa4", "\xc3", "\xbc"}},
		{"café", "caf?", true, false, nil},
	}
	for _, tc := range tests {
		ok, caps, _ := glob(tc.val, tc.pat, tc.fold, true)
		if ok != tc.ok || (ok && strings.Join(caps, "|") != strings.Join(tc.caps, "|")) {
			t.Errorf("glob(%q, %q) = %v %q, want %v %q", tc.val, tc.pat, ok, caps, tc.ok, tc.caps)
		}
	}
}

func TestVacationAllowed(t *testing.T) {
	hdr := func(s string) []HeaderField { return ParseMessage([]byte(crlf(s + "\n\nx\n"))).Header() }
	mine := []string{"user@example.net"}
	tests := []struct {
		name   string
		hdr    string
		sender string
		ok     bool
	}{
		{"plain", "To: User <user@example.net>", "a@example.org", true},
		{"cc", "To: x@example.org\nCc: USER@example.net", "a@example.org", true},
		{"resent-bcc", "Resent-Bcc: user@example.net", "a@example.org", true},
		{"not named", "To: x@example.org", "a@example.org", false},
		{"null sender", "To: user@example.net", "", false},
		{"mailer-daemon", "To: user@example.net", "MAILER-DAEMON@example.org", false},
		{"owner-", "To: user@example.net", "owner-list@example.org", false},
		{"-request", "To: user@example.net", "list-request@example.org", false},
		{"auto-submitted", "To: user@example.net\nAuto-Submitted: auto-generated", "a@example.org", false},
		{"auto-submitted no", "To: user@example.net\nAuto-Submitted: no", "a@example.org", true},
		{"precedence list", "To: user@example.net\nPrecedence: list", "a@example.org", false},
		{"list-unsubscribe", "To: user@example.net\nList-Unsubscribe: <mailto:x@y>", "a@example.org", false},
		{"own address", "To: user@example.net", "user@example.net", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := VacationAllowed(hdr(tc.hdr), tc.sender, mine)
			if ok != tc.ok {
				t.Fatalf("VacationAllowed = %v (%s), want %v", ok, why, tc.ok)
			}
			if !ok && why == "" {
				t.Fatal("no reason given for a refusal")
			}
		})
	}
}

func TestParseAddressList(t *testing.T) {
	tests := []struct{ in, want string }{
		{`a@b.c`, "a@b.c"},
		{`"Doe, John" <john@example.org>, jane@example.org (Jane)`, "john@example.org|jane@example.org"},
		{`group: a@x.y, b@x.y;, c@x.y`, "a@x.y|b@x.y|c@x.y"},
		{`undisclosed-recipients:;`, ""},
		{`<@route,@r2:u@h.d>`, "u@h.d"},
		{`"quoted local"@example.org`, `"quoted local"@example.org`},
		{`broken`, "broken"},
	}
	for _, tc := range tests {
		var got []string
		for _, a := range parseAddressList(tc.in) {
			got = append(got, a.raw)
		}
		if strings.Join(got, "|") != tc.want {
			t.Errorf("parseAddressList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEncodedCharacter(t *testing.T) {
	tests := []struct{ in, want string }{
		{"${hex:41 42}", "AB"},
		{"${HEX: 41 }x", "Ax"},
		{"${unicode:263a}", "☺"},
		{"${hex:}", "${hex:}"},
		{"${hex:zz}", "${hex:zz}"},
		{"${hex:41", "${hex:41"},
		{"$${hex:24}", "$$"},
		{"${other:41}", "${other:41}"},
	}
	for _, tc := range tests {
		got, errText := decodeEncodedCharacter(tc.in)
		if errText != "" || got != tc.want {
			t.Errorf("decode(%q) = %q %q, want %q", tc.in, got, errText, tc.want)
		}
	}
	if _, errText := decodeEncodedCharacter("${unicode:110000}"); errText == "" {
		t.Error("out-of-range code point accepted")
	}
}

func TestNumericComparator(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"10", "9", 1}, {"007", "7", 0}, {"x", "999999999999999999999", 1},
		{"x", "y", 0}, {"1", "x", -1}, {"123456789012345678901234", "123456789012345678901233", 1},
	}
	for _, tc := range tests {
		if got := cmpNumeric.compare(tc.a, tc.b); got != tc.want {
			t.Errorf("compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestSummaryAndNewMessage(t *testing.T) {
	s := mustCompile(t, `require ["fileinto", "copy", "body"];
if body :contains "needle" { fileinto :copy "Lists.go"; redirect :copy "a@example.org"; }`)
	opened := 0
	msg := NewMessage([]HeaderField{{Name: "Subject", Value: " x"}}, 100, func() (io.Reader, error) {
		opened++
		return strings.NewReader("a needle here\r\n"), nil
	})
	res, err := s.Execute(context.Background(), msg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Summary(); got != "fileinto:Lists.go,redirect:a@example.org,keep" {
		t.Fatalf("Summary() = %q", got)
	}
	if opened != 1 {
		t.Fatalf("body opened %d times", opened)
	}
}

func TestScriptInfo(t *testing.T) {
	s := mustCompile(t, `require ["vacation-seconds", "fileinto", "ihave"]; if ihave "regex" { keep; }`)
	if s.Name() != "t.sieve" {
		t.Errorf("Name() = %q", s.Name())
	}
	if got := strings.Join(s.Requires(), ","); got != "fileinto,ihave,vacation,vacation-seconds" {
		t.Errorf("Requires() = %q", got)
	}
	exts := strings.Join(Extensions(), ",")
	for _, e := range []string{"fileinto", "variables", "regex", "enotify", "foreverypart", "special-use"} {
		if !strings.Contains(","+exts+",", ","+e+",") {
			t.Errorf("Extensions() lacks %s: %s", e, exts)
		}
	}
}

// TestCharsetReader: other charsets go through Env.CharsetReader, for
// encoded words and body parts alike.
func TestCharsetReader(t *testing.T) {
	s := mustCompile(t, `require ["body", "fileinto"];
if header :is :comparator "i;octet" "subject" "ROT" { fileinto "header"; }
if body :text :comparator "i;octet" :contains "ROT" { fileinto "body"; }`)
	upper := func(cs string, in io.Reader) (io.Reader, error) {
		if cs != "x-upper" {
			return nil, errors.New("unknown charset " + cs)
		}
		b, _ := io.ReadAll(in)
		return strings.NewReader(strings.ToUpper(string(b))), nil
	}
	msg := "Subject: =?x-upper?q?rot?=\nContent-Type: text/plain; charset=x-upper\n\nsome rot here\n"
	env := &Env{CharsetReader: upper}
	res, err := s.Execute(context.Background(), ParseMessage([]byte(crlf(msg))), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Lines(), "|"); got != `fileinto "header"|fileinto "body"` {
		t.Fatalf("result %q", got)
	}
	// Without the reader the word stays raw and the body as it is.
	res, err = s.Execute(context.Background(), ParseMessage([]byte(crlf(msg))), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Lines(), "|"); got != "implicit keep" {
		t.Fatalf("result without reader %q", got)
	}
}
