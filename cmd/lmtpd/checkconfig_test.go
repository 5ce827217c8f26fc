package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/sasl"
)

// TestCheckConfigSecrets: check-config hides password hashes and SCRAM
// keys unless asked, and with -secrets its output reads back as the same
// users.
func TestCheckConfigSecrets(t *testing.T) {
	hash, scram, err := sasl.MakeSecrets("pw")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "lmtpd.toml")
	text := "[[listener]]\naddress = \"127.0.0.1:2424\"\n[delivery.maildir]\nroot = \"mail\"\n" +
		"[[domain]]\nname = \"example.test\"\nany_user = true\n" +
		"[[auth.user]]\nname = \"bob\"\npassword_hash = \"" + hash + "\"\nscram = \"" + scram + "\"\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		show bool
	}{
		{[]string{"-config", file}, false},
		{[]string{"-config", file, "-secrets"}, true},
	} {
		var stdout, stderr bytes.Buffer
		if st := cmdCheckConfig(tt.args, &stdout, &stderr); st != exOK {
			t.Fatalf("%q: exit %d: %s", tt.args, st, stderr.String())
		}
		out := stdout.String()
		for _, secret := range []string{hash, scram} {
			if got := strings.Contains(out, secret); got != tt.show {
				t.Errorf("%q: secret shown %v, want %v:\n%s", tt.args, got, tt.show, out)
			}
		}
		if got := strings.Count(out, `"`+hiddenSecret+`"`); got != map[bool]int{false: 2, true: 0}[tt.show] {
			t.Errorf("%q: %d hidden secrets in\n%s", tt.args, got, out)
		}
		if !tt.show {
			continue
		}
		cfg, err := parseConfig("effective.toml", out, dir, false)
		if err != nil {
			t.Fatalf("-secrets output does not read back: %v\n%s", err, out)
		}
		if u := cfg.users["bob"]; u.PasswordHash != hash || u.Scram == nil {
			t.Errorf("bob read back as %+v", u)
		}
	}
}

// TestCheckConfigWarnings: a valid configuration whose postmaster routes
// nowhere passes with a warning on standard error, also with -q.
func TestCheckConfigWarnings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lmtpd.toml")
	text := "[[listener]]\naddress = \"127.0.0.1:2424\"\n[delivery.maildir]\nroot = \"mail\"\n" +
		"[[domain]]\nname = \"example.test\"\nusers = [\"bob\"]\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-config", file}, {"-config", file, "-q"}} {
		var stdout, stderr bytes.Buffer
		if st := cmdCheckConfig(args, &stdout, &stderr); st != exOK {
			t.Fatalf("%q: exit %d: %s", args, st, stderr.String())
		}
		want := file + ": warning: postmaster@example.test does not route"
		if !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%q: stderr %q, want one line starting %q", args, stderr.String(), want)
		}
	}
	// With an alias for it, no warning.
	if err := os.WriteFile(file, []byte(text+"aliases = { postmaster = [\"bob\"] }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if st := cmdCheckConfig([]string{"-config", file, "-q"}, &stdout, &stderr); st != exOK || stderr.Len() != 0 || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and nothing", st, stdout.String(), stderr.String())
	}
}
