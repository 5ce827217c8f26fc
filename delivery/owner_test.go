package delivery

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/directory/passwd"
	"github.com/lmtpd/lmtpd/protocol"
)

// TestOwnerConfig: owner, group and modes are checked by Compile, each
// problem a *ConfigError at its key.
func TestOwnerConfig(t *testing.T) {
	for _, tc := range []struct {
		name       string
		set        func(*MaildirConfig)
		key, err   string
		warning    string
		noWarnings bool
	}{
		{name: "unknown owner", set: func(m *MaildirConfig) { m.Owner = "no-such-user-lmtpd" }, key: "maildir.owner", err: `no such user "no-such-user-lmtpd"`},
		{name: "unknown group", set: func(m *MaildirConfig) { m.Group = "no-such-group-lmtpd" }, key: "maildir.group", err: `no such group "no-such-group-lmtpd"`},
		{name: "negative id", set: func(m *MaildirConfig) { m.Owner = "-3" }, key: "maildir.owner", err: "not a valid id"},
		{name: "setuid file mode", set: func(m *MaildirConfig) { m.FileMode = 0o4640 }, key: "maildir.file_mode", err: "only permission bits"},
		{name: "file the owner cannot write", set: func(m *MaildirConfig) { m.FileMode = 0o440 }, key: "maildir.file_mode", err: "read and write"},
		{name: "directory the owner cannot enter", set: func(m *MaildirConfig) { m.DirMode = 0o650 }, key: "maildir.dir_mode", err: "enter"},
		{name: "unknown flush mode", set: func(m *MaildirConfig) { m.Flush = "fdatasync" }, key: "maildir.flush", err: `"fdatasync": want "auto", "fsync", "syncfs" or "ordered"`},
		{name: "syncfs flush", set: func(m *MaildirConfig) { m.Flush = "syncfs" }},
		{name: "ids and modes", set: func(m *MaildirConfig) { m.Owner, m.Group, m.FileMode, m.DirMode = "0", "root", 0o640, 0o750 }, noWarnings: true},
		{name: "group reads files it cannot reach", set: func(m *MaildirConfig) { m.FileMode = 0o640 }, warning: "add 0050 to the directory mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("/srv/mail")
			cfg.Postmaster = "bob@example.org"
			tc.set(&cfg.Maildir)
			p, err := Compile(cfg, PlanOptions{})
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				w := strings.Join(p.Warnings(), "\n")
				if tc.noWarnings && w != "" || !strings.Contains(w, tc.warning) {
					t.Errorf("warnings %q, want %q", w, tc.warning)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || strings.Join(ce.Key, ".") != tc.key || !strings.Contains(ce.Err.Error(), tc.err) {
				t.Fatalf("error %v, want %s: ...%s...", err, tc.key, tc.err)
			}
		})
	}
}

// TestTrustedMailbox: only a trusted record may name an absolute maildir,
// and only inside its home; anything else is a temporary failure an
// administrator can fix.
func TestTrustedMailbox(t *testing.T) {
	tab, err := compile(ptr(testConfig("/srv/mail")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rec  directory.Record
		ok   bool
		want string
	}{
		{rec: directory.Record{Mailbox: "/home/a/Maildir", Home: "/home/a", Trusted: true, UID: 1000, GID: 1000}, ok: true},
		{rec: directory.Record{Mailbox: "/home/a/mail/box", Trusted: true, UID: -1, GID: -1}, ok: true},
		{rec: directory.Record{Mailbox: "/home/a/Maildir", Home: "/home/a"}},                     // not trusted
		{rec: directory.Record{Mailbox: "/home/b/Maildir", Home: "/home/a", Trusted: true}},      // another home
		{rec: directory.Record{Mailbox: "/home/a", Home: "/home/a", Trusted: true}},              // the home itself
		{rec: directory.Record{Mailbox: "/home/a/../b/Maildir", Home: "/home/a", Trusted: true}}, // not clean
		{rec: directory.Record{Mailbox: "/home/a/Maildir", Home: "home/a", Trusted: true}},       // relative home
		{rec: directory.Record{Mailbox: "/", Trusted: true}},                                     // the root
	} {
		ds, err := tab.lookup(context.Background(), addr("ext@example.org"), protocol.LMTP, &recordLookup{rec: tc.rec})
		if !tc.ok {
			checkCode(t, err, 451, protocol.EnhancedCode{4, 3, 5})
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tc.rec, err)
			continue
		}
		if ds[0].Mailbox != tc.rec.Mailbox {
			t.Errorf("%+v: mailbox %q", tc.rec, ds[0].Mailbox)
		}
	}
	// A configured user has no record, hence no owner of its own.
	ds, err := tab.lookup(context.Background(), addr("bob@example.org"), protocol.LMTP, nil)
	if err != nil || ds[0].UID != -1 || ds[0].GID != -1 {
		t.Errorf("configured user: %+v, %v; want uid and gid -1", ds, err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test changes file owners and must run as root (CI=true)")
	}
	t.Skip("SKIPPED: this test changes file owners and needs root")
}

func statOwner(t *testing.T, p string) (uid, gid int, perm fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid), fi.Mode().Perm()
}

// TestSystemUsers: through the passwd directory, alice (uid 4242) gets
// her mail in ~/Maildir, owned by her and private, while a virtual user
// of the same message gets his under the maildir root with the configured
// owner, group and modes. When alice has planted a link at ~/Maildir/tmp,
// her copy is deferred (451 4.3.5) and nothing is written through it;
// the other recipient is not affected.
func TestSystemUsers(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	root := filepath.Join(base, "vmail")
	home := filepath.Join(base, "home", "alice")
	for _, d := range []string{root, filepath.Join(home, ".ssh")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(home, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	pwfile := filepath.Join(base, "passwd")
	if err := os.WriteFile(pwfile, []byte("root:x:0:0:root:/root:/bin/sh\nalice:x:4242:4343:Alice:"+home+":/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := passwd.New(passwd.Options{Name: "system", Path: pwfile, Exclude: []string{"root"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Maildir.Root = root
	cfg.Maildir.Owner, cfg.Maildir.Group = "4000", "4001"
	cfg.Maildir.FileMode, cfg.Maildir.DirMode = 0o640, 0o750
	cfg.Domains = []Domain{{Name: "localhost", Users: []User{{Name: "bob"}, {Name: "postmaster"}}}}
	p, err := Compile(cfg, PlanOptions{Lookup: dir})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx := testCtx(t, nil)

	st, rcptErrs, err := run(t, ctx, r, protocol.LMTP, "sender@example.com", []string{"alice@localhost", "bob@localhost", "root@localhost"}, testText)
	if err != nil {
		t.Fatal(err)
	}
	checkCode(t, rcptErrs[2], 550, protocol.EnhancedCode{5, 1, 1}) // excluded
	for i := range 2 {
		if err, _ := st.get(i); err != nil {
			t.Fatalf("recipient %d: %v", i, err)
		}
	}
	if got := maildirFiles(t, home, "Maildir"); len(got) != 1 || !strings.HasPrefix(got[0], "Return-Path: <sender@example.com>\n") || !strings.HasSuffix(got[0], "line two\n") {
		t.Fatalf("alice's maildir: %q", got)
	}
	newFile := func(dir string) string {
		ents, err := os.ReadDir(filepath.Join(dir, "new"))
		if err != nil || len(ents) != 1 {
			t.Fatalf("%s/new: %v %v", dir, ents, err)
		}
		return filepath.Join(dir, "new", ents[0].Name())
	}
	md := filepath.Join(home, "Maildir")
	for _, c := range []struct {
		p    string
		perm fs.FileMode
	}{{md, 0o700}, {filepath.Join(md, "tmp"), 0o700}, {filepath.Join(md, "new"), 0o700}, {newFile(md), 0o600}} {
		if uid, gid, perm := statOwner(t, c.p); uid != 4242 || gid != 4343 || perm != c.perm {
			t.Errorf("%s: %d:%d %#o, want alice's (4242:4343) and %#o", c.p, uid, gid, perm, c.perm)
		}
	}
	bob := filepath.Join(root, "localhost", "bob")
	for _, c := range []struct {
		p    string
		perm fs.FileMode
	}{{filepath.Join(root, "localhost"), 0o750}, {bob, 0o750}, {filepath.Join(bob, "cur"), 0o750}, {newFile(bob), 0o640}} {
		if uid, gid, perm := statOwner(t, c.p); uid != 4000 || gid != 4001 || perm != c.perm {
			t.Errorf("%s: %d:%d %#o, want 4000:4001 %#o", c.p, uid, gid, perm, c.perm)
		}
	}

	// Alice swaps ~/Maildir/tmp for a link to her ~/.ssh.
	tmp := filepath.Join(home, "Maildir", "tmp")
	if err := os.Rename(tmp, tmp+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(home, ".ssh"), tmp); err != nil {
		t.Fatal(err)
	}
	st, _, err = run(t, ctx, r, protocol.LMTP, "sender@example.com", []string{"alice@localhost", "bob@localhost"}, testText)
	if err != nil {
		t.Fatal(err)
	}
	aliceErr, _ := st.get(0)
	checkCode(t, aliceErr, 451, protocol.EnhancedCode{4, 3, 5})
	if err, _ := st.get(1); err != nil {
		t.Errorf("bob: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(home, ".ssh")); len(ents) != 0 {
		t.Errorf("written through alice's link: ~/.ssh holds %v", ents)
	}
	if got := maildirFiles(t, root, "localhost/bob"); len(got) != 2 {
		t.Errorf("bob has %d messages, want 2", len(got))
	}
}
