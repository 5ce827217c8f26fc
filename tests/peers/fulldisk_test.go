//go:build linux

package peers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mountTmpfs mounts a tmpfs of the given size on a new directory and
// unmounts it when the test ends. It skips the test, even in CI, when
// mounting is not allowed (not root, or no CAP_SYS_ADMIN in a container).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(shortTempDir(t), "full")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root with CAP_SYS_ADMIN): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull delivers into maildirs on a 2 MiB tmpfs until it is full:
// then every delivery gets 452 4.3.1 (LMTP and SMTP, an existing maildir
// and one that would have to be created), no partial file is left in new/
// or tmp/, and delivery resumes once space is freed.
func TestDiskFull(t *testing.T) {
	root := mountTmpfs(t, "2m")
	d := newDaemon(t, daemonOptions{MaildirRoot: root})
	const rcpt = "alice@example.test"
	box := d.mailbox(rcpt)

	// A spool directory on the same file system, for a second lmtpd below.
	spoolDir := filepath.Join(root, "spool")
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	send := func(id string, size int, to ...string) []reply {
		t.Helper()
		return sendOne(t, d, id, size, to...)
	}
	isFull := func(r reply) bool { return r.Code == 452 && strings.HasPrefix(r.Text(), "4.3.1 ") }

	// Fill: 100 KiB messages until one is refused; 2 MiB hold at most 20.
	delivered, full := 0, false
	for i := range 40 {
		r := send(fmt.Sprintf("fill-%02d", i), 100<<10, rcpt)[0]
		if r.Code == 250 {
			delivered++
			continue
		}
		if !isFull(r) {
			t.Fatalf("message %d: %v, want 250 or 452 4.3.1", i, r)
		}
		t.Logf("full after %d messages: %v", delivered, r)
		full = true
		break
	}
	if !full || delivered == 0 {
		t.Fatalf("delivered %d messages and never got 452 4.3.1", delivered)
	}

	checkNoPartial := func() {
		t.Helper()
		for _, f := range newFiles(t, box) {
			if _, err := verifyDigest(readFile(t, f)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
		if tmp := listFiles(t, filepath.Join(box, "tmp")); len(tmp) > 0 {
			t.Errorf("files left in tmp/ after a failed delivery: %v", tmp)
		}
	}
	checkNoPartial()

	t.Run("still-full", func(t *testing.T) {
		// Two recipients sharing one spool, one of them a maildir that does
		// not exist yet: each gets its own 452 4.3.1.
		rs := send("full-two", 200<<10, rcpt, "newuser@example.test")
		if len(rs) != 2 || !isFull(rs[0]) || !isFull(rs[1]) {
			t.Errorf("two recipients on a full disk: %v, want 452 4.3.1 for each", rs)
		}
		// SMTP folds the statuses into one reply.
		m := newMessage("full-smtp", "sender@example.test", rcpt, 200<<10)
		c := dialWire(t, "tcp", d.SMTPAddr)
		defer c.Close()
		c.Expect("EHLO client.example.test", 250)
		_, dr, err := c.transaction("sender@example.test", []string{rcpt}, m.Wire, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(dr) != 1 || !isFull(dr[0]) {
			t.Errorf("SMTP on a full disk: %v, want 452 4.3.1", dr)
		}
		checkNoPartial()
	})

	t.Run("spool-on-full-disk", func(t *testing.T) {
		// Every message spooled to a file on the full file system: the
		// failure comes while the message is read, not while it is stored.
		d2 := newDaemon(t, daemonOptions{MaildirRoot: root,
			Extra: fmt.Sprintf("[delivery.spool]\ndir = %q\nthreshold = \"0\"\n", spoolDir)})
		rs := sendOne(t, d2, "full-spool", 50<<10, rcpt, "bob@example.test")
		if len(rs) != 2 || !isFull(rs[0]) || !isFull(rs[1]) {
			t.Errorf("spool on a full disk: %v, want 452 4.3.1 for each recipient", rs)
		}
		if left := listFiles(t, spoolDir); len(left) > 0 {
			t.Errorf("spool files left: %v", left)
		}
		checkNoPartial()
	})

	t.Run("resumes-when-freed", func(t *testing.T) {
		files := newFiles(t, box)
		for _, f := range files[:5] {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			if r := send(fmt.Sprintf("after-%d", i), 100<<10, rcpt)[0]; r.Code != 250 {
				t.Fatalf("after freeing 500 KiB, message %d: %v, want 250", i, r)
			}
		}
		if got, want := len(newFiles(t, box)), len(files)-5+3; got != want {
			t.Errorf("%d files in new/, want %d", got, want)
		}
		checkNoPartial()
	})
}

// sendOne sends one generated message over d's LMTP unix socket and
// returns the replies after DATA, requiring every RCPT to be accepted.
func sendOne(t *testing.T, d *daemon, id string, size int, to ...string) []reply {
	t.Helper()
	m := newMessage(id, "sender@example.test", to[0], size)
	c := dialWire(t, "unix", d.Socket)
	defer c.Close()
	rr, dr, err := c.lmtpSend("sender@example.test", to, m.Wire)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	for _, r := range rr {
		if r.Code != 250 {
			t.Fatalf("%s: RCPT: %v", id, r)
		}
	}
	return dr
}
