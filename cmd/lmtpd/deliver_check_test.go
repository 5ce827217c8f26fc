package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readmeDeliverConfig returns the README's /etc/lmtpd-deliver.toml: the
// first toml block after the file is named in backquotes.
func readmeDeliverConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "`/etc/lmtpd-deliver.toml`")
	if i < 0 {
		t.Fatal("README.md does not name /etc/lmtpd-deliver.toml")
	}
	s = s[i:]
	start := strings.Index(s, "```toml\n")
	if start < 0 {
		t.Fatal("README.md: no toml block after /etc/lmtpd-deliver.toml")
	}
	s = s[start+len("```toml\n"):]
	end := strings.Index(s, "```")
	if end < 0 {
		t.Fatal("README.md: the toml block does not end")
	}
	return s[:end]
}

// TestCheckConfigDeliver: check-config -deliver checks a configuration of
// lmtpd deliver as deliver loads it (the README's passes: no listener, no
// domain, no root), prints it with no root of its own, and warns, without
// failing, when deliver's default log (syslog) has no daemon to go to; an
// output = "syslog" the file asks for is checked as for serve. Without
// -deliver the same file fails for want of a listener, with a line that
// says what it is.
func TestCheckConfigDeliver(t *testing.T) {
	dir := t.TempDir()
	check := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		st := cmdCheckConfig(args, &stdout, &stderr)
		return st, stdout.String(), stderr.String()
	}
	write := func(name, text string) string {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return file
	}
	_, sock := listenSyslog(t)
	readme := readmeDeliverConfig(t)
	file := write("readme.toml", "[log]\nsyslog_socket = "+strconv.Quote(sock)+"\n"+readme)

	st, out, errs := check("-deliver", "-config", file)
	if st != exOK || errs != "" {
		t.Fatalf("-deliver: exit %d, stderr %q; want 0 and nothing", st, errs)
	}
	for _, want := range []string{"# Effective configuration of " + file + " for lmtpd deliver", "\nroot = \"\"\n", "\noutput = \"syslog\"\n", "\ndriver = \"passwd\"\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("-deliver output lacks %q:\n%s", want, out)
		}
	}

	st, _, errs = check("-config", file)
	if st != exConfig || !strings.Contains(errs, "listener: at least one [[listener]] is required") ||
		!strings.Contains(errs, "lmtpd: "+file+" has no [[listener]], which serve needs; lmtpd deliver needs none and can use the file: give -deliver") {
		t.Errorf("without -deliver: exit %d, stderr:\n%s", st, errs)
	}

	// No syslog daemon for deliver's default: a warning.
	gone := write("gone.toml", "[log]\nsyslog_socket = \"/nonexistent/log\"\n"+readme)
	st, _, errs = check("-deliver", "-q", "-config", gone)
	if want := gone + `: warning: lmtpd deliver run by an MTA logs to syslog`; st != exOK || !strings.HasPrefix(errs, want) || !strings.Contains(errs, `set [log] output = "stderr"`) {
		t.Errorf("no syslog daemon: exit %d, stderr %q; want 0 and %q...", st, errs, want)
	}
	// The file's own output = "syslog" must work, as for serve.
	asked := write("asked.toml", "[log]\noutput = \"syslog\"\nsyslog_socket = \"/nonexistent/log\"\n"+readme)
	if st, _, errs := check("-deliver", "-q", "-config", asked); st != exConfig || !strings.Contains(errs, "log.syslog_socket: cannot connect to the syslog daemon") {
		t.Errorf("output = \"syslog\" unreachable: exit %d, stderr %q; want %d", st, errs, exConfig)
	}
	// A mistake is one as for serve.
	bad := write("bad.toml", readme+"min_uid = \"1000\"\n")
	if st, _, errs := check("-deliver", "-q", "-config", bad); st != exConfig || !strings.Contains(errs, "min_uid") || strings.Contains(errs, "listener") {
		t.Errorf("a bad key: exit %d, stderr %q; want %d naming min_uid only", st, errs, exConfig)
	}
	// A file deliver cannot use either gets no hint.
	neither := write("neither.toml", "[[domain]]\nname = \"example.test\"\nany_user = true\n")
	if st, _, errs := check("-config", neither); st != exConfig || strings.Contains(errs, "-deliver") || !strings.Contains(errs, "listener") {
		t.Errorf("a file wrong for both: exit %d, stderr %q", st, errs)
	}
}

// TestLookupDeliver: lookup -deliver answers as deliver delivers: an
// account of the passwd directory at any domain the file does not serve,
// its mailbox ~/Maildir; an excluded or unknown one is unknown (67).
// Without -deliver the file is refused (78) with the hint.
func TestLookupDeliver(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home", "alice")
	passwdFile := filepath.Join(dir, "passwd")
	lines := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nalice:x:2001:2001::%s:/bin/sh\n", home)
	if err := os.WriteFile(passwdFile, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "deliver.toml")
	text := "[[directory]]\nname = \"system\"\ndriver = \"passwd\"\npath = \"passwd\"\nexclude = [\"root\"]\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	lookup := func(args ...string) (int, string, string) {
		stderr, err := os.CreateTemp(dir, "stderr")
		if err != nil {
			t.Fatal(err)
		}
		defer stderr.Close()
		var stdout bytes.Buffer
		st := cmdLookup(args, &stdout, stderr)
		stderr.Seek(0, io.SeekStart)
		b, _ := io.ReadAll(stderr)
		return st, stdout.String(), string(b)
	}
	st, out, errs := lookup("-deliver", "-config", file, "alice@localhost", "alice@mx.example")
	want := "alice@localhost status=deliver directory=system\n  alice@localhost target=maildir mailbox=" + filepath.Join(home, "Maildir") + "\n" +
		"alice@mx.example status=deliver directory=system\n  alice@mx.example target=maildir mailbox=" + filepath.Join(home, "Maildir") + "\n"
	if st != exOK || out != want {
		t.Errorf("alice: exit %d\n%s\nwant\n%s\nstderr: %s", st, out, want, errs)
	}
	for _, rcpt := range []string{"root@localhost", "nobody@localhost"} {
		st, out, errs := lookup("-deliver", "-config", file, rcpt)
		if want := rcpt + " status=unknown reply=\"550 5.1.1 No such user here\"\n"; st != exNoUser || out != want {
			t.Errorf("%s: exit %d %q, want %d %q\n%s", rcpt, st, out, exNoUser, want, errs)
		}
	}
	st, _, errs = lookup("-config", file, "alice@localhost")
	if st != exConfig || !strings.Contains(errs, "has no [[listener]], which serve needs; lmtpd deliver needs none") {
		t.Errorf("without -deliver: exit %d\n%s", st, errs)
	}
}
