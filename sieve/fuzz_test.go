package sieve

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seedScripts adds every script of the corpus to a fuzz target's seeds.
func seedScripts(f *testing.F, add func(script string)) {
	files, _ := filepath.Glob("testdata/*.corpus")
	for _, fn := range files {
		data, err := os.ReadFile(fn)
		if err != nil {
			f.Fatal(err)
		}
		for _, part := range strings.Split(string(data), "--- script\n")[1:] {
			end := strings.Index(part, "\n--- ")
			if end < 0 {
				end = len(part)
			}
			add(part[:end])
		}
	}
}

// FuzzParse: no input makes Compile panic, and an accepted script's
// errors or success are stable (a second compile agrees).
func FuzzParse(f *testing.F) {
	seedScripts(f, func(s string) { f.Add(s) })
	f.Add("text:\r\n..\r\n.\r\n")
	f.Add(`require "encoded-character"; if header :is "a" "${hex:41 42}${unicode:263a}" {}`)
	f.Fuzz(func(t *testing.T, src string) {
		s1, err1 := Compile("f", []byte(src), nil)
		s2, err2 := Compile("f", []byte(src), nil)
		if (err1 == nil) != (err2 == nil) || (s1 == nil) != (s2 == nil) {
			t.Fatalf("compile not deterministic: %v / %v", err1, err2)
		}
		if err1 != nil {
			if _, ok := err1.(ErrorList); !ok {
				t.Fatalf("error %T is not an ErrorList", err1)
			}
			for _, e := range err1.(ErrorList) {
				if e.Pos.Line < 1 || e.Pos.Col < 1 {
					t.Fatalf("error without a position: %v", e)
				}
			}
		}
	})
}

var requireAll = func() string {
	var all []string
	for _, e := range Extensions() {
		all = append(all, `"`+e+`"`)
	}
	return "require [" + strings.Join(all, ",") + "];\n"
}()

type fuzzLoader struct{ src string }

func (l fuzzLoader) LoadScript(_ context.Context, _ Location, name string) (*Script, error) {
	return Compile(name, []byte(l.src), nil)
}

// FuzzExecute runs random scripts against random messages: no panic, and
// the step budget bounds the work.
func FuzzExecute(f *testing.F) {
	seedScripts(f, func(s string) { f.Add(s, defaultMessage) })
	f.Add(`require ["variables","body","regex"]; if header :matches "subject" "*${1}*" { set "a" "${0}${0}${0}"; }
if body :regex "(a+)+b" { discard; }`, "Subject: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
	f.Add(`require ["body"]; if body :content "text" :contains "x" { keep; }`,
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\neHl6\r\n--b--\r\n")
	f.Add(`require ["foreverypart", "mime", "extracttext", "variables"]; foreverypart { if header :mime :anychild :param "name" "content-type" "x" { extracttext :first 10 "v"; break; } }`,
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: text/html; name=x\r\n\r\n<p>x</p>\r\n--c--\r\n--b--\r\n")
	f.Fuzz(func(t *testing.T, src, msg string) {
		s, err := Compile("f", []byte(src), nil)
		if err != nil {
			// Random commands rarely come with their require: try again
			// with every extension required, to reach their code.
			if s, err = Compile("f", []byte(requireAll+src), nil); err != nil {
				return
			}
		}
		env := &Env{
			Envelope: Envelope{From: "a@example.org", To: "b+c@example.net"},
			Now:      time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
			Location: time.UTC,
			Tracker:  &fakeTracker{},
			Loader:   fuzzLoader{src: src},
		}
		opts := &Options{MaxSteps: 20000}
		res, err := s.Execute(context.Background(), ParseMessage([]byte(msg)), env, opts)
		if err != nil && (!res.ImplicitKeep || len(res.Actions) != 0) {
			t.Fatalf("run-time error without the plain implicit keep: %v", err)
		}
		if len(res.Actions) > DefaultMaxActions {
			t.Fatalf("%d actions, limit %d", len(res.Actions), DefaultMaxActions)
		}
	})
}
