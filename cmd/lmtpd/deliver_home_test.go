package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// mailboxCommandMessage is what Postfix's local(8) writes to a
// mailbox_command: the mbox From line, Return-Path, X-Original-To and its
// own Delivered-To on top of the message.
func mailboxCommandMessage(rcpt string) string {
	return "From sender@elsewhere.test  Sun Dec  6 05:00:00 2026\n" +
		"Return-Path: <sender@elsewhere.test>\n" +
		"X-Original-To: " + rcpt + "\n" +
		"Delivered-To: " + rcpt + "\n" +
		"Received: by mx.example (Postfix, from userid 0)\n\tid 4Abc; Sun,  6 Dec 2026 05:00:00 +0000 (UTC)\n" +
		"Subject: hi\n\nHello.\n"
}

// homeTestAccount is the account a test delivers to: the uid deliver runs
// as when it is not root (so that the run is the recipient's own, as
// under Postfix's local(8)), else another one, whose files root gives
// away.
func homeTestAccount() int {
	if uid := os.Getuid(); uid != 0 {
		return uid
	}
	return 4242
}

// deliverRun runs cmdDeliver and returns its exit status and its
// standard error.
func deliverRun(t *testing.T, dir, msg string, args ...string) (int, string) {
	t.Helper()
	stderr, err := os.CreateTemp(dir, "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	st := cmdDeliver(args, strings.NewReader(msg), stderr)
	b, _ := os.ReadFile(stderr.Name())
	return st, string(b)
}

// TestDeliverMailboxCommand: the README's mailbox_command recipe, run as
// Postfix's local(8) runs it. The configuration has no [[listener]], no
// [[domain]] and no maildir root, only the passwd directory: the
// recipient's domain (whatever mydestination name local(8) matched) is
// served from it, mail goes to ~/Maildir owned by the account, with one
// Delivered-To (local(8)'s) and one Return-Path; an unknown account or one
// outside the uid range is 67; another account's home, for a deliver not
// run as root, is 75 with the reason; a home where the maildir cannot be
// written is 75, never a bounce. Without a passwd directory the domain is
// not served (68), with no [[domain]] either the file does not validate
// (78), and serve still wants a listener.
func TestDeliverMailboxCommand(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home", "alice")
	other := filepath.Join(dir, "home", "bob")
	for _, h := range []string{home, other} {
		if err := os.MkdirAll(h, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid := homeTestAccount()
	gid := os.Getgid()
	if uid != os.Getuid() {
		gid = uid
	}
	if os.Getuid() == 0 {
		os.Chown(home, uid, gid)
	}
	passwdFile := filepath.Join(dir, "passwd")
	lines := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nalice:x:%d:%d::%s:/bin/sh\nbob:x:%d:%d::%s:/bin/sh\n", uid, gid, home, uid+1, gid, other)
	if err := os.WriteFile(passwdFile, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "deliver.toml")
	text := "[[directory]]\nname = \"system\"\ndriver = \"passwd\"\npath = \"passwd\"\nmin_uid = 1\nexclude = [\"root\"]\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	deliver := func(rcpt string) (int, string) {
		return deliverRun(t, dir, mailboxCommandMessage(rcpt), "-config", conf, "-f", "sender@elsewhere.test", "--", rcpt)
	}

	st, out := deliver("alice@mx.example")
	if st != exOK {
		t.Fatalf("alice: exit %d\n%s", st, out)
	}
	newDir := filepath.Join(home, "Maildir", "new")
	ents, err := os.ReadDir(newDir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("%s: %v, %d files", newDir, err, len(ents))
	}
	file := filepath.Join(newDir, ents[0].Name())
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\nDelivered-To: alice@mx.example\n"); n != 1 {
		t.Errorf("%d Delivered-To fields, want local(8)'s only:\n%s", n, b)
	}
	if !strings.HasPrefix(string(b), "Return-Path: <sender@elsewhere.test>\n") || strings.Count(string(b), "Return-Path:") != 1 || strings.Contains(string(b), "From sender") {
		t.Errorf("copy:\n%s", b)
	}
	for _, p := range []string{filepath.Join(home, "Maildir"), newDir, file} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
	}

	for _, rcpt := range []string{"nobody@mx.example", "root@localhost"} {
		if st, out := deliver(rcpt); st != exNoUser || out != "5.1.1 No such user here\n" {
			t.Errorf("%s: exit %d, want %d\n%s", rcpt, st, exNoUser, out)
		}
	}

	t.Run("another account's home", func(t *testing.T) {
		old := deliverUID
		deliverUID = func() int { return uid + 2 } // neither alice nor bob
		defer func() { deliverUID = old }()
		st, out := deliver("bob@mx.example")
		want := "4.3.5 lmtpd deliver runs as uid " + strconv.Itoa(uid+2) + ", not as the owner of " + other
		if st != exTempFail || !strings.HasPrefix(out, want) {
			t.Errorf("exit %d, want %d and %q\n%s", st, exTempFail, want, out)
		}
		if _, err := os.Stat(filepath.Join(other, "Maildir")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("bob's Maildir: %v, want nothing created", err)
		}
	})

	// A maildir that cannot be written: deferred (75), never bounced.
	unwritable := []struct {
		name  string
		setup func(t *testing.T, md string)
	}{
		{"a link planted at tmp", func(t *testing.T, md string) {
			os.RemoveAll(filepath.Join(md, "tmp"))
			if err := os.Symlink(dir, filepath.Join(md, "tmp")); err != nil {
				t.Fatal(err)
			}
		}},
		{"a file in place of new", func(t *testing.T, md string) {
			os.RemoveAll(filepath.Join(md, "new"))
			if err := os.WriteFile(filepath.Join(md, "new"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	if os.Getuid() != 0 {
		unwritable = append(unwritable, struct {
			name  string
			setup func(t *testing.T, md string)
		}{"read-only maildir", func(t *testing.T, md string) {
			if err := os.Chmod(md, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(md, 0o700) })
			os.Chmod(filepath.Join(md, "new"), 0o500)
			t.Cleanup(func() { os.Chmod(filepath.Join(md, "new"), 0o700) })
		}})
	}
	for _, u := range unwritable {
		t.Run(u.name, func(t *testing.T) {
			md := filepath.Join(home, "Maildir")
			if err := os.MkdirAll(filepath.Join(md, "new"), 0o700); err != nil {
				t.Fatal(err)
			}
			u.setup(t, md)
			defer func() {
				os.Chmod(md, 0o700)
				os.RemoveAll(md)
			}()
			st, out := deliver("alice@mx.example")
			if st != exTempFail || !strings.HasPrefix(out, "4.3.5 ") || strings.Count(out, "\n") != 1 {
				t.Errorf("exit %d, want %d (EX_TEMPFAIL) with 4.3.5\n%s", st, exTempFail, out)
			}
		})
	}

	t.Run("no passwd directory", func(t *testing.T) {
		conf := filepath.Join(dir, "virtual.toml")
		text := "[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"example.test\"\nany_user = true\n"
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if st, out := deliverRun(t, dir, "Subject: x\n\nx\n", "-config", conf, "--", "alice@mx.example"); st != exNoHost {
			t.Errorf("unserved domain: exit %d, want %d\n%s", st, exNoHost, out)
		}
		if st, out := deliverRun(t, dir, "Subject: x\n\nx\n", "-config", conf, "--", "u@example.test"); st != exOK {
			t.Errorf("configured domain without a listener: exit %d\n%s", st, out)
		}
		if _, err := loadConfig(conf); err == nil || !strings.Contains(err.Error(), "at least one [[listener]] is required") {
			t.Errorf("loadConfig without a listener: %v", err)
		}
		// Neither a [[domain]] nor a passwd directory: the file serves
		// nothing, which does not validate (EX_CONFIG), not a domain
		// that is not served (68); check-config -deliver agrees.
		empty := filepath.Join(dir, "empty.toml")
		if err := os.WriteFile(empty, []byte("[delivery.maildir]\nroot = \"mail\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if st, out := deliverRun(t, dir, "Subject: x\n\nx\n", "-config", empty, "--", "alice@mx.example"); st != exConfig || !strings.Contains(out, "at least one [[domain]] is required") {
			t.Errorf("no domain, no passwd directory: exit %d, want %d\n%s", st, exConfig, out)
		}
		if _, err := loadDeliverConfig(empty, []string{"alice@mx.example"}); err == nil || !strings.Contains(err.Error(), "at least one [[domain]] is required") {
			t.Errorf("loadDeliverConfig without domains: %v", err)
		}
	})
}

// TestDeliverConfigRoot: loadDeliverConfig serves an unserved recipient
// domain from the passwd directory, and gives a configuration without a
// root the invoking account's home only when no configured domain
// delivers to maildir (that one still needs its root: 78, as before).
func TestDeliverConfigRoot(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	const sys = "[[directory]]\nname = \"system\"\ndriver = \"passwd\"\n"
	tests := []struct {
		name, text, root string
		domains          []string
		wantErr          string
	}{
		{"accounts only", sys, home, []string{"host.example"}, ""},
		{"recipient's domain configured", sys + "[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"Host.Example\"\nany_user = true\n", filepath.Join(dir, "mail"), []string{"Host.Example"}, ""},
		{"pipe domain without root", sys + "[[domain]]\nname = \"pipe.example\"\nusers = [\"a\"]\nroute = { pipe = { argv = [\"/bin/true\"] } }\n", home, []string{"pipe.example", "host.example"}, ""},
		{"maildir domain without root", sys + "[[domain]]\nname = \"virtual.example\"\nany_user = true\n", "", nil, "delivery.maildir.root: required"},
		{"no passwd directory", "[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"virtual.example\"\nany_user = true\n", filepath.Join(dir, "mail"), []string{"virtual.example"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, "c.toml")
			if err := os.WriteFile(file, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := loadDeliverConfig(file, []string{"alice@HOST.example", "<bob@host.example>", "bad address"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, d := range c.Domains {
				names = append(names, d.Name)
			}
			if strings.Join(names, " ") != strings.Join(tc.domains, " ") || c.dcfg.Maildir.Root != tc.root {
				t.Errorf("domains %q root %q, want %q %q", names, c.dcfg.Maildir.Root, tc.domains, tc.root)
			}
		})
	}
}
