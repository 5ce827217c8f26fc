//go:build linux

package tests

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needPackageTools skips (or under CI=true fails) unless the test can
// install a package on this machine: root, dpkg, and no lmtpd package
// installed already (which the test would replace and then remove).
func needPackageTools(t *testing.T) {
	t.Helper()
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "not root"
	case lookPath("dpkg") == "" || lookPath("dpkg-deb") == "":
		missing = "no dpkg"
	case packageStatus() != "not-installed" && packageStatus() != "":
		missing = "a package lmtpd is on this machine already (" + packageStatus() + "); not replacing it"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("package test cannot run: " + missing)
	}
	t.Skip("SKIPPED: package test: " + missing)
}

// packageStatus returns dpkg's state of the package lmtpd: "installed",
// "config-files", "not-installed", or "" when dpkg knows nothing of it.
func packageStatus() string {
	b, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "lmtpd").Output()
	return string(b)
}

func lookPath(name string) string {
	p, _ := exec.LookPath(name)
	return p
}

// systemState is what installing the package may create on the machine,
// recorded before so that the test leaves the machine as it found it.
type systemState struct {
	user, group bool // user and group lmtpd existed
	dirs        map[string]bool
	privateACL  []byte // Postfix's private/ ACL xattr; nil: none
	privateDir  bool
}

const postfixPrivate = "/var/spool/postfix/private"

func recordState(t *testing.T) systemState {
	s := systemState{dirs: map[string]bool{}}
	_, err := user.Lookup("lmtpd")
	s.user = err == nil
	_, err = user.LookupGroup("lmtpd")
	s.group = err == nil
	for _, d := range []string{"/var/mail/vhosts", "/etc/lmtpd", "/var/lib/lmtpd"} {
		_, err := os.Lstat(d)
		s.dirs[d] = err == nil
	}
	if fi, err := os.Stat(postfixPrivate); err == nil && fi.IsDir() {
		s.privateDir = true
		buf := make([]byte, 4096)
		if n, err := syscall.Getxattr(postfixPrivate, "system.posix_acl_access", buf); err == nil {
			s.privateACL = buf[:n]
		}
	}
	return s
}

// restore undoes what the package's scripts did and dpkg -r leaves
// (Debian keeps system users and data directories on removal).
func (s systemState) restore(t *testing.T) {
	for d, existed := range s.dirs {
		if !existed {
			if err := os.RemoveAll(d); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	if s.privateDir {
		var err error
		if s.privateACL != nil {
			err = syscall.Setxattr(postfixPrivate, "system.posix_acl_access", s.privateACL, 0)
		} else if err = syscall.Removexattr(postfixPrivate, "system.posix_acl_access"); errors.Is(err, syscall.ENODATA) {
			err = nil
		}
		if err != nil {
			t.Errorf("cleanup: restoring the ACL of %s: %v", postfixPrivate, err)
		}
		os.Chmod(postfixPrivate, 0o700)
	}
	if !s.user {
		if out, err := exec.Command("userdel", "lmtpd").CombinedOutput(); err != nil {
			t.Errorf("cleanup: userdel lmtpd: %v %s", err, out)
		}
	}
	if _, err := user.LookupGroup("lmtpd"); !s.group && err == nil {
		if out, err := exec.Command("groupdel", "lmtpd").CombinedOutput(); err != nil {
			t.Errorf("cleanup: groupdel lmtpd: %v %s", err, out)
		}
	}
}

// buildPackages builds the .deb and the .rpm as "make package" does and
// returns them (one of each).
func buildPackages(t *testing.T) (debs, rpms []string) {
	t.Helper()
	out := tempDir(t)
	build := exec.Command("bash", "scripts/package.sh", "-o", out)
	build.Dir = ".."
	build.Env = append(os.Environ(), "GO="+goTool())
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", err, b)
	}
	debs, _ = filepath.Glob(filepath.Join(out, "lmtpd_*.deb"))
	rpms, _ = filepath.Glob(filepath.Join(out, "lmtpd-*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("packages built: %q %q, want one .deb and one .rpm", debs, rpms)
	}
	return debs, rpms
}

// installPackage installs deb with dpkg, after recording what it may
// change; the state is restored at cleanup (the caller purges the
// package, in a cleanup registered after this one, so it runs first).
func installPackage(t *testing.T, deb string) systemState {
	t.Helper()
	state := recordState(t)
	t.Cleanup(func() { state.restore(t) })
	if b, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, b)
	} else {
		t.Logf("dpkg -i:\n%s", b)
	}
	return state
}

// TestPackage builds the .deb and .rpm as "make package" does, installs
// the .deb with dpkg, checks what landed (the binary, the units, the
// sysusers.d and tmpfiles.d files applied, the manual pages, completion),
// runs the installed lmtpd as the unit would (user lmtpd, group postfix)
// on Postfix's private directory when Postfix is installed, and removes
// the package again.
func TestPackage(t *testing.T) {
	needPackageTools(t)
	debs, rpms := buildPackages(t)
	if fi, err := os.Stat(rpms[0]); err != nil || fi.Size() < 1<<20 {
		t.Errorf("rpm: %v (size %v)", err, fi)
	}

	state := installPackage(t, debs[0])
	removed := false
	t.Cleanup(func() {
		if !removed {
			exec.Command("dpkg", "--purge", "lmtpd").Run()
		}
	})

	// The binary: version report and command list.
	v, err := exec.Command("/usr/bin/lmtpd", "--version").Output()
	if err != nil || !regexp.MustCompile(`^lmtpd \S+\ncommit [0-9a-f]{12}(-dirty)?\nbuilt with go1\.\S+ linux/\S+\n$`).Match(v) {
		t.Errorf("lmtpd --version: %v\n%s", err, v)
	}
	if h, err := exec.Command("/usr/bin/lmtpd", "-h").Output(); err != nil || !bytes.Contains(h, []byte("check-config")) {
		t.Errorf("lmtpd -h: %v\n%s", err, h)
	}

	// Units: the service runs the installed binary, and its exposure is
	// what contrib/systemd promises.
	unit, err := os.ReadFile("/usr/lib/systemd/system/lmtpd.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^Exec\w+=[-+@:!]*(/\S+)`).FindAllSubmatch(unit, -1) {
		if fi, err := os.Stat(string(m[1])); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("lmtpd.service runs %s: %v", m[1], err)
		}
	}
	if !bytes.Contains(unit, []byte("ExecStart=/usr/bin/lmtpd serve")) {
		t.Error("lmtpd.service does not start /usr/bin/lmtpd")
	}
	if _, err := os.Stat("/usr/lib/systemd/system/lmtpd.socket"); err != nil {
		t.Error(err)
	}
	if lookPath("systemd-analyze") != "" {
		sec, _ := exec.Command("systemd-analyze", "security", "--offline=yes", "/usr/lib/systemd/system/lmtpd.service").CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for lmtpd.service: (\d+\.\d)`).FindSubmatch(sec)
		if m == nil {
			t.Errorf("systemd-analyze security:\n%s", sec)
		} else if x, _ := strconv.ParseFloat(string(m[1]), 64); x > 5.8 {
			t.Errorf("exposure %s, want at most 5.8", m[1])
		} else {
			t.Logf("systemd-analyze security: exposure %s", m[1])
		}
		if b, err := exec.Command("systemd-analyze", "verify", "/usr/lib/systemd/system/lmtpd.service", "/usr/lib/systemd/system/lmtpd.socket").CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify: %v\n%s", err, b)
		}
	}

	// sysusers.d and tmpfiles.d were applied by the package's script.
	u, err := user.Lookup("lmtpd")
	if err != nil {
		t.Fatalf("user lmtpd: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if u.HomeDir != "/var/lib/lmtpd" {
		t.Errorf("lmtpd's home %q", u.HomeDir)
	}
	for _, c := range []struct {
		path     string
		uid, gid int
		mode     os.FileMode
	}{
		{"/var/mail/vhosts", uid, gid, 0o750},
		{"/etc/lmtpd", 0, gid, 0o750},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Errorf("tmpfiles: %v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || int(st.Uid) != c.uid || int(st.Gid) != c.gid || fi.Mode().Perm() != c.mode {
			t.Errorf("%s: %v uid %d gid %d, want directory %v uid %d gid %d", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
	}

	// Manual pages and completion.
	for _, page := range []string{"/usr/share/man/man8/lmtpd.8.gz", "/usr/share/man/man5/lmtpd.toml.5.gz"} {
		cmd := exec.Command("man", "-l", page)
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=80")
		b, err := cmd.Output()
		if err != nil || !bytes.Contains(b, []byte("lmtpd")) || !bytes.Contains(b, []byte("NAME")) {
			t.Errorf("man -l %s: %v\n%.300s", page, err, b)
		}
	}
	// man-db indexed them: "man lmtpd.toml" finds the page.
	if b, err := exec.Command("man", "-w", "5", "lmtpd.toml").Output(); err != nil || strings.TrimSpace(string(b)) != "/usr/share/man/man5/lmtpd.toml.5.gz" {
		t.Errorf("man -w 5 lmtpd.toml: %v %q", err, b)
	}
	if b, err := exec.Command("bash", "-c", "source /usr/share/bash-completion/completions/lmtpd && complete -p lmtpd").CombinedOutput(); err != nil || !bytes.Contains(b, []byte("-F _lmtpd lmtpd")) {
		t.Errorf("bash completion: %v %s", err, b)
	}
	if b, err := os.ReadFile("/usr/share/zsh/vendor-completions/_lmtpd"); err != nil || !bytes.HasPrefix(b, []byte("#compdef lmtpd")) {
		t.Errorf("zsh completion: %v", err)
	}
	example, err := os.ReadFile("/usr/share/doc/lmtpd/examples/lmtpd.toml")
	if want, _ := os.ReadFile("../config.example.toml"); err != nil || !bytes.Equal(example, want) {
		t.Errorf("example configuration: %v", err)
	}

	if state.privateDir {
		runAsUnit(t, uid)
	} else {
		t.Log("no Postfix spool here: the socket in private/ is not tried")
	}

	// Removal.
	b, err := exec.Command("dpkg", "-r", "lmtpd").CombinedOutput()
	removed = err == nil
	if err != nil {
		t.Fatalf("dpkg -r: %v\n%s", err, b)
	} // and purged below
	for _, f := range []string{"/usr/bin/lmtpd", "/usr/lib/systemd/system/lmtpd.service", "/usr/lib/systemd/system/lmtpd.socket",
		"/usr/lib/sysusers.d/lmtpd.conf", "/usr/lib/tmpfiles.d/lmtpd.conf", "/usr/share/man/man8/lmtpd.8.gz",
		"/usr/share/bash-completion/completions/lmtpd"} {
		if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after dpkg -r, %s: %v", f, err)
		}
	}
	if st := packageStatus(); st != "config-files" && st != "not-installed" && st != "" {
		t.Errorf("after dpkg -r, status %q", st)
	}
	// Purged, dpkg forgets it (the maintainer scripts were all that -r kept).
	if b, err := exec.Command("dpkg", "--purge", "lmtpd").CombinedOutput(); err != nil {
		t.Errorf("dpkg --purge: %v\n%s", err, b)
	}
	if st := packageStatus(); st != "not-installed" && st != "" {
		t.Errorf("after dpkg --purge, status %q", st)
	}
}

// runAsUnit runs the installed lmtpd with the unit's identity (user
// lmtpd, supplementary group postfix) and file system (read-only but for
// its ReadWritePaths=) on the README's paths: its socket in Postfix's
// private directory (reachable only through the ACL the tmpfiles.d file
// sets), group postfix, and mail under /var/mail/vhosts; then user postfix
// delivers a message through that socket. The rest of the sandbox needs
// systemd itself.
func runAsUnit(t *testing.T, uid int) {
	t.Helper()
	if lookPath("setpriv") == "" || lookPath("swaks") == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("setpriv or swaks missing")
		}
		t.Log("SKIPPED part: setpriv or swaks missing")
		return
	}
	pfx, err := user.LookupGroup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	pfxGID, _ := strconv.Atoi(pfx.Gid)
	dir := tempDir(t)
	os.Chmod(dir, 0o755)
	// Names of our own beside anything the machine uses.
	tag := "pkgtest" + strconv.Itoa(os.Getpid())
	sock := filepath.Join(postfixPrivate, "lmtpd-"+tag)
	domain := tag + ".example"
	t.Cleanup(func() {
		os.Remove(sock)
		os.RemoveAll(filepath.Join("/var/mail/vhosts", domain))
	})
	cfg := writeFile(t, dir, "lmtpd.toml", `[[listener]]
name = "lmtp"
protocol = "lmtp"
address = "unix:`+sock+`"
socket_mode = "0660"
socket_group = "postfix"
trusted_networks = []

[delivery.maildir]
root = "/var/mail/vhosts"
template = "{domain}/{user}"

[[domain]]
name = "`+domain+`"
users = ["bob"]
`)
	os.Chmod(cfg, 0o644)
	stop := startAsUnit(t, dir, cfg, sock)
	defer stop()
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 || int(st.Uid) != uid || int(st.Gid) != pfxGID {
		t.Errorf("socket %s: %v uid %d gid %d, want socket 0660 owner lmtpd group postfix", sock, fi.Mode(), st.Uid, st.Gid)
	}
	swaks := exec.Command("setpriv", "--reuid=postfix", "--regid=postfix", "--clear-groups",
		"swaks", "--socket", sock, "--protocol", "LMTP", "--to", "bob@"+domain, "--from", "alice@example.org", "--silent", "2")
	swaks.Dir = "/"
	if b, err := swaks.CombinedOutput(); err != nil {
		t.Errorf("swaks as user postfix: %v\n%s", err, b)
	}
	newDir := filepath.Join("/var/mail/vhosts", domain, "bob", "new")
	files, err := os.ReadDir(newDir)
	if err != nil || len(files) != 1 {
		t.Fatalf("%s: %v, %d files", newDir, err, len(files))
	}
	info, err := files[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	if owner := info.Sys().(*syscall.Stat_t).Uid; int(owner) != uid {
		t.Errorf("delivered file owned by uid %d, want lmtpd (%d)", owner, uid)
	}
	t.Logf("delivered through %s as user postfix: %s", sock, filepath.Join(newDir, files[0].Name()))
}

// startAsUnit starts the installed lmtpd serve -config cfg (in directory
// dir) as the installed lmtpd.service would run it: user lmtpd, group
// lmtpd, supplementary group postfix, and ProtectSystem=strict with the
// unit's ReadWritePaths= replayed with unshare --mount (everything
// read-only but those paths). It waits until sock exists and returns a
// function that stops lmtpd (SIGTERM) and logs what it wrote.
func startAsUnit(t *testing.T, dir, cfg, sock string) (stop func()) {
	t.Helper()
	// ProtectSystem=strict with the unit's ReadWritePaths=, replayed in a
	// mount namespace of its own: everything read-only but those paths.
	unit, err := os.ReadFile("/usr/lib/systemd/system/lmtpd.service")
	if err != nil {
		t.Fatal(err)
	}
	script := "set -e\n"
	for _, m := range regexp.MustCompile(`(?m)^ReadWritePaths=(.*)$`).FindAllSubmatch(unit, -1) {
		for _, p := range strings.Fields(string(m[1])) {
			p = strings.TrimPrefix(p, "-")
			if _, err := os.Stat(p); err == nil {
				script += "mount --bind " + p + " " + p + "\n"
			}
		}
	}
	script += "mount -o remount,bind,ro /\nexec setpriv --reuid=lmtpd --regid=lmtpd --groups=postfix /usr/bin/lmtpd serve -config \"$1\"\n"
	var cmd *exec.Cmd
	if lookPath("unshare") != "" {
		cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", cfg)
	} else {
		t.Log("no unshare: lmtpd runs without the read-only file system of ProtectSystem=strict")
		cmd = exec.Command("setpriv", "--reuid=lmtpd", "--regid=lmtpd", "--groups=postfix", "/usr/bin/lmtpd", "serve", "-config", cfg)
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		t.Logf("lmtpd (as user lmtpd) logged:\n%s", logs.String())
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err = os.Lstat(sock); err == nil {
			break
		}
		select {
		case err := <-done:
			done <- err
			stop()
			t.Fatalf("lmtpd as user lmtpd exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("no socket %s after 10s", sock)
		}
	}
	return stop
}
