package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSieveConfigMapping: [sieve] reaches delivery.SieveConfig with
// relative paths made absolute against the file's directory, and the
// defaults stand for keys left out.
func TestSieveConfigMapping(t *testing.T) {
	const base = "[[listener]]\naddress = \"127.0.0.1:2424\"\n[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"example.test\"\nany_user = true\n"
	dir := t.TempDir()
	c, err := parseConfig("test.toml", base+"[sieve]\nenabled = true\nbefore = [\"before.d\"]\nglobal_dir = \"global\"\nsendmail = [\"/bin/true\", \"{recipient}\"]\nstate_dir = \"state\"\nmax_redirects = 2\n", dir, false)
	if err != nil {
		t.Fatal(err)
	}
	s := c.dcfg.Sieve
	if !s.Enabled || s.Script != "{home}/.dovecot.sieve" || s.MaxRedirects != 2 || s.MaxActions != 32 {
		t.Errorf("sieve config %+v", s)
	}
	if !slices.Equal(s.Before, []string{filepath.Join(dir, "before.d")}) || s.GlobalDir != filepath.Join(dir, "global") || s.StateDir != filepath.Join(dir, "state") {
		t.Errorf("paths not resolved against %s: %+v", dir, s)
	}
	if !slices.Equal(s.Sendmail, []string{"/bin/true", "{recipient}"}) {
		t.Errorf("sendmail %q", s.Sendmail)
	}
	if c.plan == nil {
		t.Error("no plan compiled")
	}
	c, err = parseConfig("test.toml", base, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.dcfg.Sieve.Enabled {
		t.Error("sieve is on by default")
	}
}

// TestDeliverWithSieve: lmtpd deliver with [sieve] on runs the user's
// script from the configuration: fileinto stores into the folder; a
// reject is the recipient's permanent failure (EX_NOPERM, 5.7.1 and the
// reason).
func TestDeliverWithSieve(t *testing.T) {
	dir := t.TempDir()
	cfgText := "[[listener]]\naddress = \"127.0.0.1:2424\"\n[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"example.test\"\nusers = [\"u\", \"r\"]\n" +
		"[sieve]\nenabled = true\nsendmail = [\"/bin/true\"]\nstate_dir = \"state\"\n"
	cfgPath := filepath.Join(dir, "lmtpd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	for user, script := range map[string]string{
		"u": `require ["fileinto", "mailbox"]; fileinto :create "Lists.go";`,
		"r": `require "reject"; reject "Not here.";`,
	} {
		home := filepath.Join(dir, "mail", "example.test", user)
		os.MkdirAll(home, 0o700)
		if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(script), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(rcpt string) (int, string) {
		stderr, err := os.CreateTemp(t.TempDir(), "stderr")
		if err != nil {
			t.Fatal(err)
		}
		defer stderr.Close()
		st := cmdDeliver([]string{"-config", cfgPath, "-f", "s@remote.test", "--", rcpt}, strings.NewReader("Subject: x\n\nbody\n"), stderr)
		b, _ := os.ReadFile(stderr.Name())
		return st, string(b)
	}
	if st, out := run("u@example.test"); st != 0 {
		t.Fatalf("deliver to u: %d\n%s", st, out)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "mail", "example.test", "u", ".Lists.go", "new"))
	if len(ents) != 1 {
		t.Errorf(".Lists.go/new has %d messages, want 1", len(ents))
	}
	st, out := run("r@example.test")
	if st != exNoPerm || out != "5.7.1 Not here.\n" {
		t.Errorf("deliver to r: %d\n%s", st, out)
	}
}

// TestSieveScoreConfigErrors: every broken spamtest_ / virustest_ setting
// is refused at load with its key and line.
func TestSieveScoreConfigErrors(t *testing.T) {
	const base = "[[listener]]\naddress = \"127.0.0.1:2424\"\n[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"example.test\"\nany_user = true\n" +
		"[sieve]\nenabled = true\nsendmail = [\"/bin/true\"]\nstate_dir = \"state\"\n"
	// Line 12 is the first line after base.
	tests := []struct {
		name, text string
		want       []string
	}{
		{"ok score", "spamtest_header = \"X-Spam-Score\"\nspamtest_max_value = 5\n", nil},
		{"ok pattern and max header", "spamtest_header = 'X-Spam-Status: score=(-?[[:digit:]]+\\.[[:digit:]]+)'\nspamtest_max_header = 'X-Spam-Status: required=([0-9.]+)'\n", nil},
		{"ok text", "virustest_header = 'X-Virus-Scan: Found to be (.+)\\.'\nvirustest_type = \"text\"\nvirustest_text_values = { clean = 1, infected = 5 }\n", nil},
		{"ok strlen default max", "spamtest_header = \"X-Spam-Level\"\nspamtest_type = \"strlen\"\n", nil},
		{"no header", "spamtest_type = \"score\"\n",
			[]string{"test.toml:12: sieve.spamtest_type: has no effect without spamtest_header, the field that holds the verdict"}},
		{"bad type", "spamtest_header = \"X-Spam-Score\"\nspamtest_type = \"stars\"\n",
			[]string{`test.toml:13: sieve.spamtest_type: "stars" is not "score", "strlen" or "text"`}},
		{"bad field name", "spamtest_header = \"X Spam\"\n",
			[]string{`test.toml:12: sieve.spamtest_header: "X Spam": expecting ":" and a regular expression after the field name`}},
		{"bad regexp", "spamtest_header = 'X-Spam-Score: score=([0-9'\n",
			[]string{"test.toml:12: sieve.spamtest_header: \"score=([0-9\": error parsing regexp: missing closing ]: `[0-9`"}},
		{"regexp without group", "virustest_header = 'X-Virus: infected'\n",
			[]string{`test.toml:12: sieve.virustest_header: "infected" has no group: its first (...) is the value read`}},
		{"both maxima", "spamtest_header = \"X-Spam-Score\"\nspamtest_max_value = 5\nspamtest_max_header = \"X-Spam-Max\"\n",
			[]string{"test.toml:13: sieve.spamtest_max_value: set together with spamtest_max_header: the maximum is one or the other"}},
		{"negative max", "spamtest_header = \"X-Spam-Score\"\nspamtest_max_value = -1.5\n",
			[]string{"test.toml:13: sieve.spamtest_max_value: -1.5 is not a positive number"}},
		{"bad max header", "spamtest_header = \"X-Spam-Score\"\nspamtest_max_header = \"X-Max: (\"\n",
			[]string{"test.toml:13: sieve.spamtest_max_header: \"(\": error parsing regexp: missing closing ): `(`"}},
		{"text without values", "spamtest_header = \"X-Spam\"\nspamtest_type = \"text\"\n",
			[]string{`test.toml:8: sieve.spamtest_text_values: required with spamtest_type = "text": the texts and their values 0..10`}},
		{"text value out of range", "virustest_header = \"X-Virus\"\nvirustest_type = \"text\"\nvirustest_text_values = { clean = 1, infected = 9 }\n",
			[]string{`test.toml:14: sieve.virustest_text_values: the value of "infected" is 9, not in 0..5`}},
		{"text with a max", "spamtest_header = \"X-Spam\"\nspamtest_type = \"text\"\nspamtest_text_values = { Yes = 10 }\nspamtest_max_value = 10\n",
			[]string{`test.toml:13: sieve.spamtest_type: "text" takes no spamtest_max_value or spamtest_max_header: the texts' values are the scale`}},
		{"values without text", "spamtest_header = \"X-Spam\"\nspamtest_text_values = { Yes = 10 }\n",
			[]string{`test.toml:13: sieve.spamtest_text_values: only for spamtest_type = "text"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testConfig(t, base+tc.text)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce configErrors
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want configErrors", err)
			}
			var got []string
			for _, e := range ce {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestSieveScoreConfigMapping: the [sieve] keys reach the options scripts
// run with.
func TestSieveScoreConfigMapping(t *testing.T) {
	const text = "[[listener]]\naddress = \"127.0.0.1:2424\"\n[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"example.test\"\nany_user = true\n" +
		"[sieve]\nenabled = true\nsendmail = [\"/bin/true\"]\nstate_dir = \"state\"\n" +
		"spamtest_header = 'X-Spam-Status: score=([0-9.]+)'\nspamtest_max_value = 5\n" +
		"virustest_header = \"X-Virus\"\nvirustest_type = \"text\"\nvirustest_text_values = { clean = 1, infected = 5 }\n"
	c, err := testConfig(t, text)
	if err != nil {
		t.Fatal(err)
	}
	o := c.dcfg.Sieve.ScriptOptions()
	if o.SpamTest.Header != "X-Spam-Status" || o.SpamTest.Pattern == nil || o.SpamTest.Pattern.String() != "score=([0-9.]+)" || o.SpamTest.Max != 5 {
		t.Errorf("spamtest %+v", o.SpamTest)
	}
	if o.VirusTest.Header != "X-Virus" || o.VirusTest.TextValues["infected"] != 5 || o.VirusTest.Pattern != nil {
		t.Errorf("virustest %+v", o.VirusTest)
	}
}
