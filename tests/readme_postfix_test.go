//go:build linux

package tests

import (
	"bytes"
	"errors"
	"fmt"
	"net"
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

// The system Postfix's files this test changes or that running it
// creates; each is put back as it was (or removed) afterwards.
const (
	postfixMainCf  = "/etc/postfix/main.cf"
	postfixLog     = "/var/log/postfix.log" // the README's maillog_file
	postfixSpool   = "/var/spool/postfix"
	postfixData    = "/var/lib/postfix"
	deliverConfig  = "/etc/lmtpd-deliver.toml" // the README's configuration of lmtpd deliver
	readmeHeading  = "## Behind Postfix in five minutes"
	readmeDeadline = 90 * time.Second // install, configure, start and deliver: under 2 minutes with the cleanup
)

// needSystemPostfix skips (under CI=true: fails) unless this machine's own
// Postfix may be configured, started and stopped by the test: its tools
// are there and it is not running (a running Postfix is someone's mail
// system).
func needSystemPostfix(t *testing.T) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"postfix", "postconf", "postqueue", "postsuper", "newaliases", "swaks", "setpriv", "unshare", "useradd", "userdel"} {
		if lookPath(tool) == "" {
			missing = append(missing, tool)
		}
	}
	if _, err := user.Lookup("postfix"); err != nil {
		missing = append(missing, "user postfix")
	}
	if pid := postfixMasterPID(); pid > 0 {
		missing = append(missing, fmt.Sprintf("the system Postfix is running (master pid %d); not touching it", pid))
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("README Postfix test cannot run: %s", strings.Join(missing, ", "))
	}
	t.Skipf("SKIPPED: README Postfix test: %s", strings.Join(missing, ", "))
}

// postfixMasterPID returns the pid of the system Postfix's running master
// process, or 0.
func postfixMasterPID() int {
	b, err := os.ReadFile(filepath.Join(postfixSpool, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// fileState remembers whether a file existed and its content, to put it
// back.
type fileState struct {
	path    string
	existed bool
	data    []byte
	mode    os.FileMode
}

func recordFile(path string) fileState {
	fs := fileState{path: path}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
		fs.existed, fs.mode = true, fi.Mode().Perm()
		fs.data, _ = os.ReadFile(path)
	} else if err == nil {
		fs.existed = true // not a regular file: left alone
		fs.data = nil
		fs.mode = 0
	}
	return fs
}

func (fs fileState) restore(t *testing.T) {
	switch {
	case !fs.existed:
		if err := os.Remove(fs.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup: %v", err)
		}
	case fs.mode != 0:
		if err := os.WriteFile(fs.path, fs.data, fs.mode); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// dirEntries lists the names in dir.
func dirEntries(dir string) map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// TestReadmePostfix runs the README's "Behind Postfix in five minutes" on
// this machine's own Postfix, as a new administrator would (issue 17, "How
// it is shown"): the package installed (user lmtpd from sysusers.d,
// /var/mail/vhosts and Postfix's private/ ACL from tmpfiles.d), lmtpd
// started with the unit's user, groups and file system
// (ProtectSystem=strict, ReadWritePaths=), the README's lmtpd.toml as
// /etc/lmtpd/lmtpd.toml, the "No configuration" commands, the main.cf
// lines for virtual domains, reject_unverified_recipient and the
// mailbox_command with its /etc/lmtpd-deliver.toml, all read from
// README.md so that they cannot drift; then Postfix is started and mail
// goes in over SMTP:
//
//   - (a) bob@example.org, a virtual user, lands in
//     /var/mail/vhosts/example.org/bob/new, owned by lmtpd;
//   - (b) a system account (created for the test, uid >= 1000) at
//     localhost lands in its ~/Maildir through the mailbox_command, owned
//     by the account, with one Delivered-To;
//   - (c) nosuch@example.org is refused at RCPT with 550 and lmtpd's
//     5.1.1 (reject_unverified_recipient);
//   - (d) with the account's ~/Maildir read-only, its mail is deferred
//     (status=deferred, 4.3.5, still in the queue), not bounced.
//
// The machine is put back afterwards: Postfix stopped, its main.cf,
// aliases.db, log and run-time files as they were, the test's messages
// removed from the queue, the account deleted, the package purged, and
// what the package created removed.
func TestReadmePostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED: -short: the README Postfix test configures and starts the system's Postfix")
	}
	needPackageTools(t)
	needSystemPostfix(t)

	// What the README prints, read first: a README that lacks a piece
	// fails before the machine is touched.
	lmtpdToml := readmeSnippet(t, readmeHeading, "toml")
	deliverToml := readmeBlockAfter(t, "`"+deliverConfig+"`", "toml")
	noConfig := readmeIndented(t, "touch /etc/postfix/main.cf")
	virtual := readmeIndented(t, "virtual_mailbox_domains = ")
	verify := readmeIndented(t, "smtpd_recipient_restrictions = ")
	command := readmeIndented(t, "mailbox_command = ")
	if len(command) != 1 || !strings.Contains(command[0], "-config "+deliverConfig) {
		t.Fatalf("README's mailbox_command %q does not use %s", command, deliverConfig)
	}
	// The README's commands say /usr/local/bin/lmtpd and add that the
	// package's is /usr/bin/lmtpd.
	command[0] = strings.Replace(command[0], "/usr/local/bin/lmtpd", "/usr/bin/lmtpd", 1)

	debs, _ := buildPackages(t)
	// From here on the test is bounded: every wait ends at deadline.
	deadline := time.Now().Add(readmeDeadline)

	// Put back what Postfix and the test change, in this order: Postfix
	// stopped first (cleanups run last registered, first run).
	files := []fileState{recordFile(postfixMainCf), recordFile(postfixLog), recordFile("/etc/aliases.db"),
		recordFile("/etc/aliases.lmdb"), recordFile(deliverConfig), recordFile("/etc/lmtpd/lmtpd.toml")}
	runDirs := map[string]map[string]bool{}
	for _, d := range []string{filepath.Join(postfixSpool, "private"), filepath.Join(postfixSpool, "public"), filepath.Join(postfixSpool, "pid"), postfixData} {
		runDirs[d] = dirEntries(d)
	}
	t.Cleanup(func() {
		for _, f := range files {
			f.restore(t)
		}
		for d, before := range runDirs {
			for name := range dirEntries(d) {
				if !before[name] {
					if err := os.RemoveAll(filepath.Join(d, name)); err != nil {
						t.Errorf("cleanup: %v", err)
					}
				}
			}
		}
	})

	installPackage(t, debs[0])
	t.Cleanup(func() {
		if b, err := exec.Command("dpkg", "--purge", "lmtpd").CombinedOutput(); err != nil {
			t.Errorf("cleanup: dpkg --purge: %v\n%s", err, b)
		}
	})
	lmtpdUser, err := user.Lookup("lmtpd")
	if err != nil {
		t.Fatalf("the package created no user lmtpd: %v", err)
	}
	lmtpdUID, _ := strconv.Atoi(lmtpdUser.Uid)

	// The system account of (b) and (d).
	account := "rdme" + strconv.Itoa(os.Getpid()%1000000)
	if b, err := exec.Command("useradd", "-m", "-s", "/bin/sh", account).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, b)
	}
	t.Cleanup(func() {
		if b, err := exec.Command("userdel", "-r", account).CombinedOutput(); err != nil && !bytes.Contains(b, []byte("mail spool")) {
			t.Errorf("cleanup: userdel -r %s: %v\n%s", account, err, b)
		}
	})
	acct, err := user.Lookup(account)
	if err != nil {
		t.Fatal(err)
	}
	acctUID, _ := strconv.Atoi(acct.Uid)
	acctGID, _ := strconv.Atoi(acct.Gid)
	if acctUID < 1000 {
		t.Fatalf("useradd gave %s uid %d, want a normal account (>= 1000)", account, acctUID)
	}

	// lmtpd, on the README's configuration, as the unit runs it.
	if err := os.WriteFile("/etc/lmtpd/lmtpd.toml", []byte(lmtpdToml), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chown("/etc/lmtpd/lmtpd.toml", 0, lmtpdGID(t))
	if err := os.WriteFile(deliverConfig, []byte(deliverToml), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(postfixPrivate, "lmtpd")
	t.Cleanup(func() { os.Remove(sock) })
	stopLmtpd := startAsUnit(t, "/", "/etc/lmtpd/lmtpd.toml", sock)
	t.Cleanup(stopLmtpd)

	// Postfix, configured as the README prints it.
	for _, line := range noConfig {
		if b, err := exec.Command("sh", "-c", line).CombinedOutput(); err != nil {
			t.Fatalf("README's %q: %v\n%s", line, err, b)
		}
	}
	mainCf := append(append(append([]string{}, virtual...), verify...), command...)
	// The test's one addition: permit_mynetworks lets the machine's own
	// addresses through unverified, and the test client is on the machine;
	// a real MX's senders are outside mynetworks, as this makes it.
	mainCf = append(mainCf, "mynetworks = 127.0.0.2/32")
	if b, err := exec.Command("postconf", append([]string{"-e"}, mainCf...)...).CombinedOutput(); err != nil {
		t.Fatalf("postconf -e %q: %v\n%s", mainCf, err, b)
	}
	if b, err := exec.Command("postfix", "check").CombinedOutput(); err != nil {
		t.Logf("postfix check: %v\n%s", err, b)
	}
	if b, err := exec.Command("postfix", "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v\n%s", err, b)
	}
	var queued []string // queue ids of the test's messages left in the queue
	t.Cleanup(func() {
		for _, id := range queued {
			exec.Command("postsuper", "-d", id).Run()
		}
		stopPostfix(t)
		if b, err := os.ReadFile(postfixLog); err == nil {
			t.Logf("Postfix's log:\n%s", b)
		}
	})
	waitFor(t, deadline, "Postfix listening on 127.0.0.1:25", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:25", time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	// send runs swaks against Postfix; until verify(8)'s probe has an
	// answer, RCPT gets 450, so that is retried.
	send := func(to string, extra ...string) (int, string) {
		t.Helper()
		for {
			args := append([]string{"--server", "127.0.0.1", "--port", "25", "--from", "sender@example.net", "--to", to,
				"--helo", "client.example.net", "--header", "Subject: README test for " + to}, extra...)
			cmd := exec.Command("swaks", args...)
			out, err := cmd.CombinedOutput()
			status := 0
			if err != nil {
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("swaks: %v", err)
				}
				status = ee.ExitCode()
			}
			if status != 0 && bytes.Contains(out, []byte("<** 450 ")) && time.Now().Before(deadline) {
				time.Sleep(time.Second)
				continue
			}
			return status, string(out)
		}
	}

	// (a) A virtual user, through lmtpd's socket.
	if st, out := send("bob@example.org"); st != 0 {
		t.Fatalf("(a) swaks to bob@example.org: exit %d\n%s", st, out)
	}
	bobNew := "/var/mail/vhosts/example.org/bob/new"
	waitFor(t, deadline, "(a) a message in "+bobNew, func() bool { return len(dirEntries(bobNew)) == 1 })
	checkOwner(t, bobNew, lmtpdUID, -1)

	// (b) A system account, through the mailbox_command, into ~/Maildir.
	rcpt := account + "@localhost"
	if st, out := send(rcpt); st != 0 {
		t.Fatalf("(b) swaks to %s: exit %d\n%s", rcpt, st, out)
	}
	md := filepath.Join(acct.HomeDir, "Maildir")
	waitFor(t, deadline, "(b) a message in "+md+"/new", func() bool { return len(dirEntries(filepath.Join(md, "new"))) == 1 })
	for name := range dirEntries(filepath.Join(md, "new")) {
		f := filepath.Join(md, "new", name)
		checkOwner(t, f, acctUID, acctGID)
		checkOwner(t, md, acctUID, acctGID)
		b, _ := os.ReadFile(f)
		if n := strings.Count(strings.ToLower(string(b)), "\ndelivered-to: "+strings.ToLower(rcpt)+"\n"); n != 1 {
			t.Errorf("(b) %d Delivered-To fields for %s, want 1 (local(8)'s):\n%s", n, rcpt, b)
		}
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("(b) %s: %v, want mode 0600", f, fi.Mode())
		}
	}

	// (c) An unknown user, refused at RCPT.
	if st, out := send("nosuch@example.org", "--quit-after", "RCPT"); st == 0 || !regexp.MustCompile(`<\*\* 550 5\.1\.1 `).MatchString(out) {
		t.Errorf("(c) swaks to nosuch@example.org: exit %d, want 550 5.1.1 at RCPT\n%s", st, out)
	}

	// (d) The account's maildir read-only: deferred, kept, not bounced.
	for _, d := range []string{md, filepath.Join(md, "tmp"), filepath.Join(md, "new"), filepath.Join(md, "cur")} {
		if err := os.Chmod(d, 0o500); err != nil {
			t.Fatal(err)
		}
	}
	if st, out := send(rcpt, "--header", "X-Test: read-only"); st != 0 {
		t.Fatalf("(d) swaks to %s: exit %d\n%s", rcpt, st, out)
	}
	deferred := regexp.MustCompile(`postfix/local\[\d+\]: ([0-9A-Za-z]+): to=<` + regexp.QuoteMeta(rcpt) + `>.*status=deferred.*`)
	var line []string
	waitFor(t, deadline, "(d) status=deferred in "+postfixLog, func() bool {
		line = deferred.FindStringSubmatch(readLog())
		return line != nil
	})
	id := line[1]
	queued = append(queued, id)
	// deliver's status line is Postfix's status: its code the dsn, its
	// short reason the text, and no log line with it.
	if !strings.Contains(line[0], "dsn=4.3.5,") || !strings.Contains(line[0], "status=deferred (cannot store into ~/Maildir/tmp: ") || strings.Contains(line[0], `"level"`) {
		t.Errorf("(d) the deferral does not carry lmtpd's dsn=4.3.5 and reason alone: %s", line[0])
	}
	if q, err := exec.Command("postqueue", "-p").CombinedOutput(); err != nil || !bytes.Contains(q, []byte(id)) {
		t.Errorf("(d) postqueue -p does not list %s: %v\n%s", id, err, q)
	}
	if bounced := regexp.MustCompile(`to=<` + regexp.QuoteMeta(rcpt) + `>.*status=bounced`); bounced.MatchString(readLog()) {
		t.Errorf("(d) %s bounced", rcpt)
	}
	if n := len(dirEntries(filepath.Join(md, "new"))); n != 1 {
		t.Errorf("(d) %d messages in %s/new, want (b)'s only", n, md)
	}
	t.Logf("(d) deferred and queued as %s: %s", id, line[0])
}

// readLog returns Postfix's log (the README's maillog_file).
func readLog() string {
	b, _ := os.ReadFile(postfixLog)
	return string(b)
}

// waitFor polls cond until it holds, failing the test at deadline.
func waitFor(t *testing.T, deadline time.Time, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkOwner checks path's owner (and group, unless gid is -1); for a
// directory, that of the one file in it.
func checkOwner(t *testing.T, path string, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.IsDir() && filepath.Base(path) == "new" {
		for name := range dirEntries(path) {
			checkOwner(t, filepath.Join(path, name), uid, gid)
		}
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || gid >= 0 && int(st.Gid) != gid {
		t.Errorf("%s owned by %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}

// lmtpdGID returns the gid of group lmtpd.
func lmtpdGID(t *testing.T) int {
	g, err := user.LookupGroup("lmtpd")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

// stopPostfix stops the system Postfix the test started and waits for its
// master to exit.
func stopPostfix(t *testing.T) {
	pid := postfixMasterPID()
	if b, err := exec.Command("postfix", "stop").CombinedOutput(); err != nil {
		t.Logf("postfix stop: %v\n%s", err, b)
	}
	for end := time.Now().Add(15 * time.Second); pid > 0 && syscall.Kill(pid, 0) == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Errorf("cleanup: Postfix's master (pid %d) still runs", pid)
			return
		}
	}
}
