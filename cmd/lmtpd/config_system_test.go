package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// nobodyAccount is the account the checks are made for in these tests:
// not root, so modes matter even when the tests run as root.
func nobodyAccount(t *testing.T) account {
	t.Helper()
	a, err := lookupAccount("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	if a.uid == os.Geteuid() {
		t.Skip("the tests run as nobody: they need another account to check for")
	}
	return a
}

// openTempDir returns a temporary directory every user can reach (t.TempDir
// makes 0700 ones).
func openTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mkdirMode makes dir with exactly mode, owned by uid (-1: unchanged;
// changing it needs root).
func mkdirMode(t *testing.T, dir string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	if uid >= 0 {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give a directory to another user")
		}
		if err := os.Chown(dir, uid, -1); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckDirFor(t *testing.T) {
	nobody := nobodyAccount(t)
	base := openTempDir(t)
	me := os.Geteuid()
	mkdirMode(t, filepath.Join(base, "closed"), 0o700, me)
	mkdirMode(t, filepath.Join(base, "closed", "inner"), 0o777, me)
	mkdirMode(t, filepath.Join(base, "shared"), 0o755, me)
	mkdirMode(t, filepath.Join(base, "open"), 0o777, me)
	mkdirMode(t, filepath.Join(base, "own"), 0o700, nobody.uid)
	if err := os.WriteFile(filepath.Join(base, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	owner := nobody.String()
	who := func(p string, mode string) string {
		return p + " (mode " + mode + ", owner " + userName(me) + ", group " + groupName(os.Getegid()) + ")"
	}
	tests := []struct {
		name, dir, want string
	}{
		{"writable, owned", filepath.Join(base, "own"), ""},
		{"writable for all", filepath.Join(base, "open"), ""},
		{"to be created in a writable one", filepath.Join(base, "open", "a", "b"), ""},
		{"not writable", filepath.Join(base, "shared"), who(filepath.Join(base, "shared"), "0755") + " is not writable for " + owner},
		{"cannot be created", filepath.Join(base, "shared", "new"),
			filepath.Join(base, "shared", "new") + " does not exist and " + owner + " cannot create it: " + who(filepath.Join(base, "shared"), "0755") + " is not writable for it"},
		{"a parent not searchable", filepath.Join(base, "closed", "inner"),
			owner + " cannot reach " + filepath.Join(base, "closed", "inner") + ": no search (x) permission on " + who(filepath.Join(base, "closed"), "0700")},
		{"a file in the way", filepath.Join(base, "file", "x"), filepath.Join(base, "file") + " is not a directory, so " + filepath.Join(base, "file", "x") + " cannot be one"},
		{"relative", "mail", "mail is not an absolute path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if err := checkDirFor(tc.dir, nobody); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("checkDirFor(%s) =\n%q, want\n%q", tc.dir, got, tc.want)
			}
		})
	}
	// For the process itself the kernel answers: /proc/1 is not writable
	// even for root.
	if err := checkDirFor("/proc/1/x", processAccount()); err == nil || !strings.Contains(err.Error(), "cannot create it") {
		t.Errorf("checkDirFor(/proc/1/x) as this process = %v, want cannot create it", err)
	}
	// A read-only file system is reported as such, whoever asks.
	if readOnlyFS("/proc/sys") {
		if err := checkDirFor("/proc/sys", processAccount()); err == nil || !strings.Contains(err.Error(), "read-only file system") {
			t.Errorf("checkDirFor(/proc/sys) = %v, want read-only file system", err)
		}
	}
}

func userName(uid int) string {
	a, err := lookupAccount(strconv.Itoa(uid))
	if err != nil {
		return strconv.Itoa(uid)
	}
	return strings.TrimPrefix(a.name, "user ")
}

func groupName(gid int) string { return primaryGroupName(account{gids: []int{gid}}) }

// TestCheckConfigStartup: check-config reports, at their lines and keys,
// what start-up as [server] user would fail on, and passes once the
// directories and groups are right.
func TestCheckConfigStartup(t *testing.T) {
	nobody := nobodyAccount(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to prepare directories owned by another user")
	}
	base := openTempDir(t)
	mkdirMode(t, filepath.Join(base, "private"), 0o700, 0)
	mkdirMode(t, filepath.Join(base, "mail"), 0o755, 0)
	mkdirMode(t, filepath.Join(base, "sock"), 0o755, nobody.uid)
	mkdirMode(t, filepath.Join(base, "vmail"), 0o750, nobody.uid)
	file := filepath.Join(base, "lmtpd.toml")
	write := func(text string) {
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		st := cmdCheckConfig(append([]string{"-config", file, "-q"}, args...), &stdout, &stderr)
		return st, stderr.String()
	}

	write(`[server]
user = "nobody"
mta_user = "nobody"

[[listener]]
address = "unix:private/lmtp.sock"
socket_group = "root"

[delivery.maildir]
root = "mail"

[[domain]]
name = "example.test"
any_user = true
`)
	st, out := check()
	want := []string{
		"lmtpd: " + file + ":6: listener[0].address: cannot create the socket: " + filepath.Join(base, "private") + " (mode 0700, owner root, group root) is not writable for user nobody (uid 65534)",
		"lmtpd: " + file + ":7: listener[0].socket_group: user nobody (uid 65534) is not in group root (gid 0), so it cannot give the socket that group: add it to the group (usermod -aG, or SupplementaryGroups= in its systemd unit)",
		"lmtpd: " + file + ":10: delivery.maildir.root: " + filepath.Join(base, "mail") + " (mode 0755, owner root, group root) is not writable for user nobody (uid 65534)",
	}
	if nobody.uid != 65534 {
		t.Skipf("nobody is uid %d here; the expected text names 65534", nobody.uid)
	}
	if st != exConfig || out != strings.Join(want, "\n")+"\n" {
		t.Errorf("exit %d, stderr:\n%s\nwant exit %d and:\n%s", st, out, exConfig, strings.Join(want, "\n"))
	}

	// The same service with its directories and group right: valid, and
	// the MTA (nobody too) can connect.
	text2 := `[server]
user = "nobody"
mta_user = "nobody"

[[listener]]
address = "unix:sock/lmtp.sock"
socket_group = "nogroup"

[delivery.maildir]
root = "vmail/root"

[[domain]]
name = "example.test"
any_user = true
`
	write(text2)
	if st, out := check(); st != exOK || out != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing", st, out)
	}
	// A file where the socket goes.
	if err := os.Mkdir(filepath.Join(base, "sock", "lmtp.sock"), 0o755); err != nil {
		t.Fatal(err)
	}
	if st, out := check(); st != exConfig || !strings.Contains(out, ":6: listener[0].address: "+filepath.Join(base, "sock", "lmtp.sock")+" exists and is not a socket") {
		t.Errorf("exit %d, stderr %q; want 78 and the file in the way", st, out)
	}
	// A socket that exists (systemd's, for socket activation) in a
	// directory the service cannot write is not an error.
	if err := os.Remove(filepath.Join(base, "sock", "lmtp.sock")); err != nil {
		t.Fatal(err)
	}
	mkdirMode(t, filepath.Join(base, "sock", "systemd"), 0o755, 0)
	ln, err := net.Listen("unix", filepath.Join(base, "sock", "systemd", "lmtp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	write(strings.Replace(text2, "unix:sock/lmtp.sock", "unix:sock/systemd/lmtp.sock", 1))
	if st, out := check(); st != exOK || out != "" {
		t.Errorf("existing socket: exit %d, stderr %q; want 0 and nothing", st, out)
	}
}

// TestMTAReach: a socket the MTA's account could not connect to is a
// warning at the listener's address, saying why and what to set.
func TestMTAReach(t *testing.T) {
	nobody := nobodyAccount(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: the sockets' group must be one the run account may give")
	}
	base := openTempDir(t)
	mkdirMode(t, filepath.Join(base, "closed"), 0o750, 0)
	mkdirMode(t, filepath.Join(base, "open"), 0o755, 0)
	mkdirMode(t, filepath.Join(base, "sgid"), 0o755|os.ModeSetgid, 0)
	if err := os.Chown(filepath.Join(base, "sgid"), 0, nobody.gids[0]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, listener, want string // want: the warning, "" for none
	}{
		{"directory not searchable", `address = "unix:closed/lmtp.sock"` + "\nsocket_mode = \"0666\"",
			"no search (x) permission on " + filepath.Join(base, "closed") + " (mode 0750, owner root, group root); give that directory to a group of user nobody with mode 0750 or 0710, or put the socket elsewhere"},
		{"wrong group", `address = "unix:open/lmtp.sock"` + "\nsocket_group = \"root\"",
			"the socket will have mode 0660 and group root, and user nobody is neither its owner nor in its group; set socket_group to a group of user nobody (socket_group = \"nogroup\", with lmtpd in that group) or socket_mode"},
		{"right group", `address = "unix:open/lmtp.sock"` + "\nsocket_group = \"nogroup\"", ""},
		{"owner", `address = "unix:open/lmtp.sock"` + "\nsocket_owner = \"nobody\"\nsocket_mode = \"0600\"", ""},
		{"group without write", `address = "unix:open/lmtp.sock"` + "\nsocket_group = \"nogroup\"\nsocket_mode = \"0640\"",
			"the socket will have mode 0640 and group nogroup, and user nobody is in its group; set socket_group to a group of user nobody (socket_group = \"nogroup\", with lmtpd in that group) or socket_mode"},
		{"setgid directory of the MTA's group", `address = "unix:sgid/lmtp.sock"`, ""},
		{"missing directories are made 0755", `address = "unix:open/a/b/lmtp.sock"` + "\nsocket_mode = \"0666\"", ""},
		{"tcp", `address = "127.0.0.1:2424"`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := "[server]\nmta_user = \"nobody\"\n[[listener]]\n" + tc.listener +
				"\n[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"example.test\"\nany_user = true\n"
			cfg, err := parseConfig("f.toml", text, base, false)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range cfg.warnings {
				got = append(got, warningText(w))
			}
			var want []string
			if tc.want != "" {
				path, _ := cfg.Listeners[0].isUnix()
				want = []string{"f.toml:4: listener[0].address: warning: user nobody (uid " + strconv.Itoa(nobody.uid) + "), the MTA (server.mta_user), will not be able to connect to " + path + ": " + tc.want}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestRunUserMismatch: serve warns when it runs as another account than
// [server] user names.
func TestRunUserMismatch(t *testing.T) {
	nobody := nobodyAccount(t)
	c := &config{}
	if m := c.runUserMismatch(); m != "" {
		t.Errorf("no user configured: %q", m)
	}
	c.Server.User = "nobody"
	want := "lmtpd runs as uid " + strconv.Itoa(os.Geteuid()) + ", not as " + nobody.String() + " that server.user names"
	if m := c.runUserMismatch(); !strings.HasPrefix(m, want) {
		t.Errorf("got %q, want %q...", m, want)
	}
	if me, err := lookupAccount(strconv.Itoa(os.Geteuid())); err == nil {
		c.Server.User = strings.TrimPrefix(me.name, "user ")
		if m := c.runUserMismatch(); m != "" {
			t.Errorf("running as server.user: %q", m)
		}
	}
}
