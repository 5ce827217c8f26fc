package sieve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The corpus: testdata/*.corpus files, each holding cases of the form
//
//	=== name
//	--- script
//	...
//	--- message            (optional; a default message otherwise)
//	--- envelope           (optional) lines "from: A", "to: A", "orig_to: A", "auth: A"
//	--- options            (optional) lines "key: value", see applyOption
//	--- include personal NAME / --- include global NAME   (scripts for include)
//	--- expect             the Result.Lines(), one per line
//	--- error              compile errors, lines "LINE:COL: text the message contains"
//	--- runtime-error      a text the run-time error contains (the result is then the implicit keep)
//
// Message lines are joined with CRLF. A line "\\" alone in a section stands
// for an empty line at the end (sections drop trailing empty lines).

const defaultMessage = `From: Sender <sender@example.org>
To: User <user@example.net>
Subject: Hello
Date: Tue, 1 Apr 2025 10:00:00 +0200
Message-ID: <m1@example.org>

Hello world.
`

type corpusCase struct {
	file, name string
	line       int
	sections   map[string]string
	includes   map[string]string
}

func readCorpus(t *testing.T) []*corpusCase {
	files, err := filepath.Glob("testdata/*.corpus")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files: %v", err)
	}
	var cases []*corpusCase
	for _, fn := range files {
		data, err := os.ReadFile(fn)
		if err != nil {
			t.Fatal(err)
		}
		var cur *corpusCase
		var sec string
		var buf []string
		flush := func() {
			if cur != nil && sec != "" {
				for len(buf) > 0 && strings.TrimSpace(buf[len(buf)-1]) == "" {
					buf = buf[:len(buf)-1]
				}
				for i, l := range buf {
					if l == `\\` {
						buf[i] = ""
					}
				}
				text := strings.Join(buf, "\n")
				if strings.HasPrefix(sec, "include ") {
					cur.includes[strings.TrimPrefix(sec, "include ")] = text
				} else {
					cur.sections[sec] = text
				}
			}
			buf, sec = nil, ""
		}
		for i, l := range strings.Split(string(data), "\n") {
			switch {
			case strings.HasPrefix(l, "=== "):
				flush()
				cur = &corpusCase{file: fn, name: strings.TrimSpace(l[4:]), line: i + 1, sections: map[string]string{}, includes: map[string]string{}}
				cases = append(cases, cur)
			case strings.HasPrefix(l, "--- ") && cur != nil:
				flush()
				sec = strings.TrimSpace(l[4:])
			case cur != nil && sec != "":
				buf = append(buf, l)
			}
		}
		flush()
	}
	return cases
}

type fakeTracker struct {
	seen  []string // globs over keys with \x00 shown as |
	asked []string
}

func (f *fakeTracker) Seen(_ context.Context, key string, _ time.Duration) (bool, error) {
	k := strings.ReplaceAll(key, "\x00", "|")
	f.asked = append(f.asked, k)
	for _, g := range f.seen {
		if ok, _, _ := glob(k, g, false, false); ok {
			return true, nil
		}
	}
	return false, nil
}

// fakeMailboxes maps a mailbox to true, and "NAME \\Attr" to true for a
// special-use attribute of NAME.
type fakeMailboxes map[string]bool

func (m fakeMailboxes) MailboxExists(_ context.Context, name string) (bool, error) {
	return m[name], nil
}

// Metadata answers from entries "meta MAILBOX ENTRY=VALUE" ("meta  ENTRY=VALUE"
// for the server).
func (m fakeMailboxes) Metadata(_ context.Context, mailbox, entry string) (string, bool, error) {
	for k := range m {
		rest, ok := strings.CutPrefix(k, "meta "+mailbox+" "+entry+"=")
		if ok {
			return rest, true, nil
		}
	}
	return "", false, nil
}

func (m fakeMailboxes) SpecialUseExists(_ context.Context, mailbox string, attrs []string) (bool, error) {
	for _, a := range attrs {
		found := false
		for k := range m {
			name, attr, ok := strings.Cut(k, " ")
			if ok && strings.EqualFold(attr, a) && (mailbox == "" || name == mailbox) {
				found = true
			}
		}
		if !found {
			return false, nil
		}
	}
	return true, nil
}

type fakeLoader struct {
	scripts map[string]string // "personal NAME" -> source
	opts    *CompileOptions
}

func (l *fakeLoader) LoadScript(_ context.Context, loc Location, name string) (*Script, error) {
	src, ok := l.scripts[loc.String()+" "+name]
	if !ok {
		return nil, ErrNotFound
	}
	return Compile(name, []byte(src), l.opts)
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func applyOption(t *testing.T, key, val string, env *Env, opts *Options, tr *fakeTracker) {
	switch key {
	case "now":
		tm, err := time.Parse(time.RFC3339, val)
		if err != nil {
			t.Fatalf("option now: %v", err)
		}
		env.Now = tm
	case "zone":
		loc, ok := parseZone(val)
		if !ok {
			t.Fatalf("option zone %q", val)
		}
		env.Location = loc
	case "seen":
		tr.seen = append(tr.seen, val)
	case "mailbox":
		if env.Mailboxes == nil {
			env.Mailboxes = fakeMailboxes{}
		}
		env.Mailboxes.(fakeMailboxes)[val] = true
	case "environment":
		k, v, _ := strings.Cut(val, "=")
		if env.Environment == nil {
			env.Environment = map[string]string{}
		}
		env.Environment[k] = v
	case "delimiters":
		opts.SubaddressDelimiters = val
	case "max-actions":
		opts.MaxActions = atoiT(t, val)
	case "max-redirects":
		opts.MaxRedirects = atoiT(t, val)
	case "max-steps":
		opts.MaxSteps = atoiT(t, val)
	case "max-variable-size":
		opts.MaxVariableSize = atoiT(t, val)
	case "max-include-depth":
		opts.MaxIncludeDepth = atoiT(t, val)
	case "spam-header":
		opts.SpamTest.Header = val
	case "spam-max":
		opts.SpamTest.Max = float64(atoiT(t, val))
	case "spam-strlen":
		opts.SpamTest.Strlen = val == "true"
	case "spam-pattern":
		opts.SpamTest.Pattern = regexp.MustCompile(val)
	case "spam-max-header":
		name, pat, _ := strings.Cut(val, ":")
		opts.SpamTest.MaxHeader = name
		if pat = strings.TrimSpace(pat); pat != "" {
			opts.SpamTest.MaxPattern = regexp.MustCompile(pat)
		}
	case "spam-text":
		text, num, _ := strings.Cut(val, "=")
		if opts.SpamTest.TextValues == nil {
			opts.SpamTest.TextValues = map[string]int{}
		}
		opts.SpamTest.TextValues[text] = atoiT(t, num)
	case "virus-header":
		opts.VirusTest.Header = val
	case "virus-pattern":
		opts.VirusTest.Pattern = regexp.MustCompile(val)
	case "virus-strlen":
		opts.VirusTest.Strlen = val == "true"
	case "virus-max":
		opts.VirusTest.Max = float64(atoiT(t, val))
	case "virus-text":
		text, num, _ := strings.Cut(val, "=")
		if opts.VirusTest.TextValues == nil {
			opts.VirusTest.TextValues = map[string]int{}
		}
		opts.VirusTest.TextValues[text] = atoiT(t, num)
	case "virus-value":
		pat, num, _ := strings.Cut(val, "=")
		opts.VirusTest.Values = append(opts.VirusTest.Values, VirusValue{Pattern: regexp.MustCompile(pat), Value: atoiT(t, num)})
	case "user-address":
		env.UserAddresses = append(env.UserAddresses, val)
	default:
		t.Fatalf("unknown option %q", key)
	}
}

func atoiT(t *testing.T, s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func TestCorpus(t *testing.T) {
	names := map[string]bool{}
	for _, c := range readCorpus(t) {
		id := filepath.Base(c.file) + "/" + c.name
		if names[id] {
			t.Errorf("%s:%d: duplicate case name %q", c.file, c.line, c.name)
		}
		names[id] = true
		t.Run(id, func(t *testing.T) {
			t.Logf("case at %s:%d", c.file, c.line)
			script, ok := c.sections["script"]
			if !ok {
				t.Fatal("case has no script")
			}
			s, err := Compile("script", []byte(script+"\n"), nil)
			if want, ok := c.sections["error"]; ok {
				checkCompileErrors(t, err, want)
				return
			}
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			msg := defaultMessage
			if m, ok := c.sections["message"]; ok {
				msg = m + "\n"
			}
			env := &Env{
				Envelope: Envelope{From: "sender@example.org", To: "user@example.net"},
				Now:      time.Date(2025, 4, 1, 12, 0, 0, 0, time.UTC),
				Location: time.UTC,
			}
			tr := &fakeTracker{}
			env.Tracker = tr
			opts := &Options{}
			for _, l := range splitLines(c.sections["envelope"]) {
				k, v, _ := strings.Cut(l, ":")
				v = strings.TrimSpace(v)
				switch strings.TrimSpace(k) {
				case "from":
					env.Envelope.From = v
				case "to":
					env.Envelope.To = v
				case "orig_to":
					env.Envelope.OrigTo = v
				case "auth":
					env.Envelope.Auth = v
				default:
					t.Fatalf("unknown envelope line %q", l)
				}
			}
			for _, l := range splitLines(c.sections["options"]) {
				k, v, _ := strings.Cut(l, ":")
				applyOption(t, strings.TrimSpace(k), strings.TrimSpace(v), env, opts, tr)
			}
			env.Loader = &fakeLoader{scripts: c.includes}
			res, err := s.Execute(context.Background(), ParseMessage([]byte(crlf(msg))), env, opts)
			if want, ok := c.sections["runtime-error"]; ok {
				if err == nil {
					t.Fatalf("no run-time error, want %q; result:\n%s", want, strings.Join(res.Lines(), "\n"))
				}
				var re *RuntimeError
				if !errors.As(err, &re) {
					t.Fatalf("error %v is not a *RuntimeError", err)
				}
				if !strings.Contains(err.Error(), strings.TrimSpace(want)) {
					t.Fatalf("run-time error %q does not contain %q", err, want)
				}
				if !res.ImplicitKeep || len(res.Actions) != 0 {
					t.Fatalf("after a run-time error the result must be the implicit keep alone: %v", res.Lines())
				}
				return
			}
			if err != nil {
				t.Fatalf("execute: %v", err)
			}
			want, ok := c.sections["expect"]
			if !ok {
				t.Fatal("case has no expect section")
			}
			got := strings.Join(res.Lines(), "\n")
			if strings.TrimSpace(got) != strings.TrimSpace(want) {
				t.Errorf("result:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return out
}

func checkCompileErrors(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("compiled, want errors:\n%s", want)
	}
	var el ErrorList
	if !errors.As(err, &el) {
		t.Fatalf("error %T is not an ErrorList", err)
	}
	for _, w := range splitLines(want) {
		pos, text, _ := strings.Cut(w, ": ")
		found := false
		for _, e := range el {
			if e.Pos.String() == pos && strings.Contains(e.Msg, text) {
				found = true
			}
		}
		if !found {
			t.Errorf("no error %q among:\n%v", w, err)
		}
	}
}
