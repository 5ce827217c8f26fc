package main

import (
	"path/filepath"
	"slices"
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
