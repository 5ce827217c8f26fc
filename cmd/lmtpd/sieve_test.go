package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const sieveTestMsg = "Return-Path: <sender@example.org>\r\nFrom: sender@example.org\r\nTo: User <user@example.net>\r\nSubject: Hello\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"

func TestSievec(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"good.sieve": "require \"fileinto\";\nfileinto \"x\";\n",
		"bad.sieve":  "keep;\n  frob;\nif foo { }\n",
	})
	var out, errb bytes.Buffer
	if st := cmdSievec([]string{filepath.Join(dir, "good.sieve")}, &out, &errb); st != exOK || out.Len() != 0 {
		t.Fatalf("good script: status %d, output %q %q", st, out.String(), errb.String())
	}
	bad := filepath.Join(dir, "bad.sieve")
	if st := cmdSievec([]string{filepath.Join(dir, "good.sieve"), bad}, &out, &errb); st != exFailure {
		t.Fatalf("bad script: status %d", st)
	}
	want := bad + ":2:3: unknown command frob\n" + bad + ":3:4: unknown test foo\n"
	if out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	if st := cmdSievec(nil, &out, &errb); st != exUsage {
		t.Fatalf("no arguments: status %d", st)
	}
}

func runSieveTest(t *testing.T, args ...string) (int, sieveTestOutput, string) {
	t.Helper()
	var out, errb bytes.Buffer
	st := cmdSieveTest(append([]string{"-json"}, args...), &out, &errb)
	var o sieveTestOutput
	if err := json.Unmarshal(out.Bytes(), &o); err != nil {
		t.Fatalf("output is not JSON: %v\n%s\n%s", err, out.String(), errb.String())
	}
	return st, o, errb.String()
}

func TestSieveTestJSON(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"main.sieve": `require ["fileinto", "include", "vacation", "imap4flags"];
include :personal "lists";
fileinto :flags "\\Seen" "Archive";
vacation :days 3 :handle "away" "I am away";
`,
		"lists.sieve": `require "fileinto"; if header :contains "subject" "hello" { fileinto "Hello"; }`,
		"msg.eml":     sieveTestMsg,
		"bad.sieve":   "if true {\n",
		"rt.sieve":    "require [\"reject\"]; keep; reject \"no\";",
	})
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	st, o, _ := runSieveTest(t, "-state", state, "-to", "user@example.net", filepath.Join(dir, "main.sieve"), filepath.Join(dir, "msg.eml"))
	if st != exOK || len(o.Errors) != 0 {
		t.Fatalf("status %d, errors %v", st, o.Errors)
	}
	got, _ := json.Marshal(o.Actions)
	want := `[{"action":"fileinto","copy":false,"flags":[],"mailbox":"Hello"},{"action":"fileinto","copy":false,"flags":["\\Seen"],"mailbox":"Archive"},{"action":"vacation","days":3,"from":"user@example.net","handle":"away","reason":"I am away","subject":"Auto: Hello","to":"sender@example.org"}]`
	if string(got) != want || o.ImplicitKeep {
		t.Fatalf("actions %s implicit keep %v\nwant %s", got, o.ImplicitKeep, want)
	}
	// The same sender again within :days: no second reply.
	_, o, _ = runSieveTest(t, "-state", state, "-to", "user@example.net", filepath.Join(dir, "main.sieve"), filepath.Join(dir, "msg.eml"))
	for _, a := range o.Actions {
		if a["action"] == "vacation" {
			t.Fatalf("second run replied again: %v", o.Actions)
		}
	}
	// The null sender gets no reply.
	_, o, _ = runSieveTest(t, "-from", "", filepath.Join(dir, "main.sieve"), filepath.Join(dir, "msg.eml"))
	for _, a := range o.Actions {
		if a["action"] == "vacation" {
			t.Fatalf("null sender got a reply: %v", o.Actions)
		}
	}
	// A compile error: status 1 and the positioned errors.
	st, o, _ = runSieveTest(t, filepath.Join(dir, "bad.sieve"), filepath.Join(dir, "msg.eml"))
	if st != exFailure || len(o.Errors) != 1 || !strings.HasPrefix(o.Errors[0], filepath.Join(dir, "bad.sieve")+":2:1: ") {
		t.Fatalf("compile error: status %d, errors %q", st, o.Errors)
	}
	// A run-time error: status 0, the error and the implicit keep.
	st, o, _ = runSieveTest(t, filepath.Join(dir, "rt.sieve"), filepath.Join(dir, "msg.eml"))
	if st != exOK || len(o.Errors) != 1 || !o.ImplicitKeep || len(o.Actions) != 0 {
		t.Fatalf("run-time error: status %d, %+v", st, o)
	}
}

func TestSieveTestText(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"s.sieve": "redirect \"a@example.org\";\n",
		"m.eml":   sieveTestMsg,
	})
	var out, errb bytes.Buffer
	if st := cmdSieveTest([]string{filepath.Join(dir, "s.sieve"), filepath.Join(dir, "m.eml")}, &out, &errb); st != exOK {
		t.Fatalf("status %d: %s", st, errb.String())
	}
	if out.String() != "redirect \"a@example.org\"\n" {
		t.Fatalf("output %q", out.String())
	}
	if st := cmdSieveTest([]string{filepath.Join(dir, "s.sieve")}, &out, &errb); st != exUsage {
		t.Fatalf("one argument: status %d", st)
	}
	if st := cmdSieveTest([]string{filepath.Join(dir, "missing"), filepath.Join(dir, "m.eml")}, &out, &errb); st != exNoInput {
		t.Fatalf("missing script: status %d", st)
	}
}

func TestSieveTestGlobalFromConfig(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"global/spam.sieve": `require "fileinto"; fileinto "Junk";`,
		"main.sieve":        `require "include"; include :global "spam";`,
		"m.eml":             sieveTestMsg,
	})
	// A whole configuration, read by the daemon's loader: global_dir is
	// relative, resolved against the file's directory as the daemon does.
	cfg := filepath.Join(dir, "lmtpd.toml")
	text := "[[listener]]\naddress = \"unix:lmtp.sock\"\n\n[[domain]]\nname = \"example.test\"\n\n[delivery.maildir]\nroot = \"mail\"\n\n[sieve]\nenabled = true\nglobal_dir = \"global\"\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// A configuration the daemon refuses is refused here too, with the
	// loader's file:line message.
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte(text+"no_such_key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var bout, berr bytes.Buffer
	if st := cmdSieveTest([]string{"-config", bad, filepath.Join(dir, "main.sieve"), filepath.Join(dir, "m.eml")}, &bout, &berr); st != exUsage || !strings.Contains(berr.String(), "no_such_key") || bout.Len() != 0 {
		t.Fatalf("bad config: status %d, stdout %q, stderr %q", st, bout.String(), berr.String())
	}
	t.Chdir(t.TempDir()) // global_dir must not depend on the working directory
	st, o, _ := runSieveTest(t, "-config", cfg, filepath.Join(dir, "main.sieve"), filepath.Join(dir, "m.eml"))
	if st != exOK || len(o.Actions) != 1 || o.Actions[0]["mailbox"] != "Junk" {
		t.Fatalf("status %d, %+v", st, o)
	}
	// Without it, the global script cannot be found: a run-time error.
	st, o, _ = runSieveTest(t, filepath.Join(dir, "main.sieve"), filepath.Join(dir, "m.eml"))
	if st != exOK || len(o.Errors) != 1 || !o.ImplicitKeep {
		t.Fatalf("status %d, %+v", st, o)
	}
	var out, errb bytes.Buffer
	if st := cmdSieveTest([]string{"-config", filepath.Join(dir, "missing.toml"), filepath.Join(dir, "main.sieve"), filepath.Join(dir, "m.eml")}, &out, &errb); st != exUsage {
		t.Fatalf("missing config: status %d", st)
	}
}

// TestSieveTestSpamtestFromConfig: with -config, sieve-test reads the
// spamtest and virustest settings of [sieve] as delivery does; without,
// the tests answer 0 (not tested).
func TestSieveTestSpamtestFromConfig(t *testing.T) {
	script := `require ["spamtestplus", "virustest", "fileinto", "relational", "comparator-i;ascii-numeric", "variables"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto "Junk"; }
if spamtest :matches "*" { fileinto "spam-${1}"; }
if spamtest :percent :matches "*" { fileinto "pct-${1}"; }
if virustest :matches "*" { fileinto "virus-${1}"; }
`
	dir := writeFiles(t, map[string]string{
		"s.sieve": script,
		"m.eml":   "X-Spam-Score: 6.3\r\nX-Virus-Scan: Found to be clean.\r\n" + sieveTestMsg,
		"lmtpd.toml": "[[listener]]\naddress = \"unix:lmtp.sock\"\n[[domain]]\nname = \"example.test\"\n[delivery.maildir]\nroot = \"mail\"\n" +
			"[sieve]\nenabled = true\nsendmail = [\"/bin/true\"]\nstate_dir = \"state\"\n" +
			"spamtest_header = \"X-Spam-Score\"\nspamtest_max_value = 10\n" +
			"virustest_header = 'X-Virus-Scan: Found to be (.+)\\.'\nvirustest_type = \"text\"\nvirustest_text_values = { clean = 1, infected = 5 }\n",
	})
	mailboxes := func(o sieveTestOutput) []string {
		var out []string
		for _, a := range o.Actions {
			out = append(out, a["mailbox"].(string))
		}
		return out
	}
	st, o, stderr := runSieveTest(t, "-config", filepath.Join(dir, "lmtpd.toml"), filepath.Join(dir, "s.sieve"), filepath.Join(dir, "m.eml"))
	// 6.3 of 10: 1 + floor(9 * 0.63) = 6, floor(100 * 0.63) = 63.
	if want := []string{"Junk", "spam-6", "pct-63", "virus-1"}; st != exOK || !slices.Equal(mailboxes(o), want) {
		t.Fatalf("status %d, mailboxes %q, want %q\n%s", st, mailboxes(o), want, stderr)
	}
	st, o, _ = runSieveTest(t, filepath.Join(dir, "s.sieve"), filepath.Join(dir, "m.eml"))
	if want := []string{"spam-0", "pct-0", "virus-0"}; st != exOK || !slices.Equal(mailboxes(o), want) {
		t.Fatalf("without -config: status %d, mailboxes %q, want %q", st, mailboxes(o), want)
	}
}
