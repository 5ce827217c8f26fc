package sieve

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"
)

const matrixMessage = "From: a@example.org\r\nTo: b+c@example.net\r\nSubject: x\r\nDate: Tue, 1 Apr 2025 10:00:00 +0200\r\n" +
	"Message-ID: <1@x>\r\nX-Spam-Score: 3\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: text/html; name=x\r\n\r\n<p>x</p>\r\n--b--\r\n"

// TestGrammarMatrix builds, for every command and test, scripts with each
// of its tags (alone and with every match type and comparator) and runs
// those that compile: no combination may panic. It covers what random
// fuzzing is unlikely to hit.
func TestGrammarMatrix(t *testing.T) {
	var all []string
	for e := range knownExtensions {
		all = append(all, `"`+e+`"`)
	}
	sort.Strings(all)
	req := "require [" + strings.Join(all, ", ") + "];\n"
	argFor := func(at argType, i int) string {
		switch at {
		case atString:
			return []string{`"Subject"`, `"date"`, `"x"`}[i%3]
		case atStrings:
			return `["Subject", "a b", "\\Seen"]`
		case atNumber:
			return "1"
		}
		return ""
	}
	matches := []string{"", ":is", ":contains", ":matches", ":regex", `:count "eq"`, `:value "ge"`}
	comps := []string{"", `:comparator "i;octet"`, `:comparator "i;ascii-numeric"`}
	env := func() *Env {
		return &Env{
			Envelope: Envelope{From: "a@example.org", To: "b+c@example.net"},
			Now:      time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
			Location: time.UTC, Tracker: &fakeTracker{},
			Mailboxes: fakeMailboxes{"INBOX": true},
			Loader:    fuzzLoader{src: "keep;"},
		}
	}
	compiled := 0
	try := func(src string) {
		s, err := Compile("m", []byte(src), nil)
		if err != nil {
			return
		}
		compiled++
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("panic %v running:\n%s", p, src)
				}
			}()
			_, _ = s.Execute(context.Background(), ParseMessage([]byte(matrixMessage)), env(), nil)
		}()
	}
	build := func(name string, def *cmdDef, tags string) string {
		var args []string
		for i, at := range def.args {
			args = append(args, argFor(at, i))
		}
		body := name + " " + tags + " " + strings.Join(args, " ")
		if def.test {
			sub := ""
			switch def.tests {
			case 1:
				sub = " true"
			case -1:
				sub = " (true, false)"
			}
			return req + "foreverypart { if " + body + sub + " { keep; } }\n"
		}
		if def.block {
			return req + body + " true { keep; }\n"
		}
		return req + "foreverypart { " + body + "; }\n"
	}
	for _, defs := range []map[string]*cmdDef{commandDefs, testDefs} {
		for name, def := range defs {
			if name == "require" || name == "elsif" || name == "else" {
				continue
			}
			var tags []string
			for _, set := range def.tags {
				for tag, td := range set {
					s := ":" + tag
					switch td.val {
					case atString:
						s += ` "1"`
					case atStrings:
						s += ` ["1", "x"]`
					case atNumber:
						s += " 1"
					}
					tags = append(tags, s)
				}
			}
			try(build(name, def, ""))
			for _, tag := range tags {
				try(build(name, def, tag))
				try(build(name, def, ":mime :anychild "+tag))
				for _, m := range matches {
					for _, c := range comps {
						try(build(name, def, tag+" "+m+" "+c))
					}
				}
			}
		}
	}
	if compiled < 300 {
		t.Fatalf("only %d scripts compiled: the matrix builds wrong scripts", compiled)
	}
	t.Logf("%d scripts compiled and ran", compiled)
}
