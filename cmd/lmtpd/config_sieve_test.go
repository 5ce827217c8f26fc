package main

import (
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
	if st != exNoPerm || !strings.Contains(out, "5.7.1 <r@example.test>: Not here.") {
		t.Errorf("deliver to r: %d\n%s", st, out)
	}
}
