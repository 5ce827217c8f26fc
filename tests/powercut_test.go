//go:build linux

package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The power-cut test (issue 18 item 3): lmtpd delivers into maildirs on an
// ext4 or XFS file system of its own, on a loop device over a file in a
// temporary directory, while many clients send at once. At a random moment
// every write to the disk starts failing, as if it had lost power (or as
// dm-flakey's error_writes does); lmtpd keeps running for a moment and is
// then killed. The image is checked and repaired (ext4: e2fsck; XFS: a
// mount, which replays the log, then xfs_repair), mounted again, and every
// maildir is compared with what the clients were told.
//
// This kernel has no device-mapper (no dm-flakey, no dm-log-writes), so
// the cut is made on the loop device's backing file instead: once it is
// marked immutable (chattr +i), the host file system refuses every write
// the loop device passes on (EPERM, which the loop device reports as an
// I/O error), and what is in the file is exactly what the disk held at
// the cut. Writes the inner ext4 had not yet sent to the device (its page
// cache) are lost, as with a power cut; writes the device completed are
// kept, as on a disk with no volatile cache.
//
// A real power cut stops lmtpd with the disk; here lmtpd runs on for a
// moment, and what it acknowledges then must hold too: ext4 reports
// success for an fsync after its journal aborted (an fsync whose
// transaction already went through the failed commit, which jbd2 counts
// as done), and lmtpd's check of the file system after each barrier
// (delivery/maildir, fshealth_linux.go) turns that into 451 4.3.0. So
// every 250, read before the cut or after it, must be on the disk: before
// that check the odd message acknowledged after the cut was lost.
//
// Checked: every recipient acknowledged with 250 before the cut has the
// message whole in its new/; no file in new/ is empty, truncated or
// foreign; no message is in a maildir twice; the file system is
// consistent after its repair step. Then lmtpd
// starts again on the recovered file system (and its recovered dedup
// journal) and the clients resend what was not acknowledged, as an MTA
// would: lmtpd must accept every resend, and each message must end up in
// every maildir once. A second copy of a message that was not acknowledged
// but was on the disk from before the cut (its rename made a journal
// commit, its own fsync failed or its reply was lost) is the classic LMTP
// duplicate (RFC 2033 section 4.2): the dedup journal records only
// deliveries lmtpd reported done, so it cannot catch it; those are counted
// and logged. A second copy of anything else, or a third, is an error.
// Last, up to 20 messages acknowledged before the cut (the last ones
// acknowledged) are replayed, as after lost replies, and the recovered
// journal must recognise every one: its lines are fsynced before the 250,
// so a duplicate there is an error (0 duplicates from the journal
// forgetting an acknowledged message).
//
// lmtpd flushes in batches (issue 18): a delivery's file is written
// without a flush of its own, one barrier shared by every delivery
// waiting makes the files durable, then they are renamed into new/ and a
// second shared barrier makes the renames durable before the 250s. The
// test runs with every barrier lmtpd has ([delivery.maildir] flush:
// "auto", the default, "fsync", "syncfs", and "ordered", where the data
// step is a write-back without a journal commit, the one commit of new/'s
// fsync makes data and names durable together, and the file's own fsync
// follows; the test's ext4 is one "ordered" accepts, and a round fails if
// lmtpd fell back to "fsync" with "ordered", or "auto" did not choose
// "ordered"),
// from 200 connections at once, so that barriers cover many deliveries,
// and the cut falls between a group's writes and its data barrier,
// between that barrier and the renames, and between the renames and
// their barrier.
//
// The SIGKILL variant ("kill") kills lmtpd at a random moment without
// cutting the disk (the page cache survives, as after a crash of lmtpd
// alone): every acknowledged delivery must be there, nothing incomplete
// in new/ (a rename never precedes the data barrier, so not even an
// unflushed file can be seen half-written), and the same resend and
// replay checks follow.
//
// XFS (the default file system of RHEL-like systems) runs the same
// rounds: there "auto" must choose "fsync" (file fsync, link or rename
// into new/, fsync of new/) and say that the file system is XFS; "fsync"
// and "syncfs" are run too ("ordered" is ext4's alone). Its repair step:
// mounting replays the log (xfs_repair refuses a dirty one), then, after
// an unmount, xfs_repair -n must find nothing; if it does, its report is
// logged, xfs_repair repairs and xfs_repair -n must then be clean, as
// e2fsck -y then -n does on ext4 (TestPowerCutXFSRepair checks that step
// on a damaged file system).
//
// Bounded for make test: on ext4 one round of each kind and barrier, on
// XFS one round of each kind with "auto", 300 messages from 200
// connections. make crash runs more rounds with more messages, and every
// barrier on XFS (LMTPD_POWERCUT_ROUNDS, LMTPD_POWERCUT_MESSAGES,
// LMTPD_POWERCUT_CONNS). Needs root, losetup, chattr, mkfs.ext4 and
// e2fsck, and for XFS mkfs.xfs and xfs_repair; without them the test
// skips, and fails under CI=true. A kernel without XFS skips the XFS
// rounds, CI or not (tests/install-deps.sh cannot install one).

// powercutTools are the programs the test runs on every file system (key
// ""), and those of each kind.
var powercutTools = map[string][]string{
	"":     {"losetup", "chattr", "mount", "umount"},
	"ext4": {"mkfs.ext4", "e2fsck"},
	"xfs":  {"mkfs.xfs", "xfs_repair"},
}

// pcFileSystems are the file systems the rounds run on, with the flush
// modes that apply there: modes in every run, more only in make crash's
// (LMTPD_POWERCUT_ROUNDS set), to keep make test bounded.
var pcFileSystems = []struct {
	kind        string
	modes, more []string
}{
	{"ext4", []string{"auto", "fsync", "syncfs", "ordered"}, nil},
	{"xfs", []string{"auto"}, []string{"fsync", "syncfs"}},
}

func powercutEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// needPowercut skips (or fails under CI=true) unless loop devices and the
// tools for a file system of the kind work here. A kernel without XFS
// skips its rounds, CI or not; ext4 is the baseline and is not excused.
func needPowercut(t *testing.T, kind string) {
	t.Helper()
	if kind != "ext4" {
		if fss, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fss), "\t"+kind+"\n") {
			t.Skipf("SKIPPED: this kernel has no %s (/proc/filesystems)", kind)
		}
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range slices.Concat(powercutTools[""], powercutTools[kind]) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		if out, err := exec.Command("losetup", "-f").CombinedOutput(); err != nil {
			missing = append(missing, fmt.Sprintf("a free loop device (losetup -f: %v %s)", err, bytes.TrimSpace(out)))
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("power-cut test needs %s (tests/install-deps.sh installs the tools as root)", strings.Join(missing, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED: " + msg)
}

// pcSh runs a command and fails the test if it fails.
func pcSh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// pcDisk is an ext4 or XFS file system in an image file on a loop device.
type pcDisk struct {
	t     *testing.T
	kind  string // "ext4" or "xfs", as mount -t takes it
	img   string
	mnt   string
	loop  string // the loop device while attached
	cut   bool   // the image is immutable
	mount bool
}

func newPCDisk(t *testing.T, dir, kind string, size int64) *pcDisk {
	t.Helper()
	d := &pcDisk{t: t, kind: kind, img: filepath.Join(dir, "disk.img"), mnt: filepath.Join(dir, "fs")}
	if err := os.MkdirAll(d.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(d.img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	switch kind {
	case "ext4":
		// Inode tables and journal written now, not by a kernel thread
		// during the run.
		pcSh(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", d.img)
	case "xfs":
		// mkfs.xfs writes its inode chunks and log at once; it refuses
		// file systems under 300 MiB.
		pcSh(t, "mkfs.xfs", "-q", "-f", d.img)
	default:
		t.Fatalf("no power-cut disk of kind %q", kind)
	}
	t.Cleanup(d.teardown)
	return d
}

// attach attaches the image to a loop device and mounts it.
func (d *pcDisk) attach() {
	d.t.Helper()
	d.loop = pcSh(d.t, "losetup", "-f", "--show", d.img)
	pcSh(d.t, "mount", "-t", d.kind, d.loop, d.mnt)
	d.mount = true
}

// cutPower makes every later write to the disk fail.
func (d *pcDisk) cutPower() {
	d.t.Helper()
	pcSh(d.t, "chattr", "+i", d.img)
	d.cut = true
}

// teardown unmounts and detaches; it tolerates a file system that went
// read-only after the cut.
func (d *pcDisk) teardown() {
	if d.mount {
		if out, err := exec.Command("umount", d.mnt).CombinedOutput(); err != nil {
			d.t.Logf("umount %s: %v %s; detaching lazily", d.mnt, err, out)
			exec.Command("umount", "-l", d.mnt).Run()
		}
		d.mount = false
	}
	if d.loop != "" {
		if out, err := exec.Command("losetup", "-d", d.loop).CombinedOutput(); err != nil {
			d.t.Logf("losetup -d %s: %v %s", d.loop, err, out)
		}
		d.loop = ""
	}
	if d.cut {
		exec.Command("chattr", "-i", d.img).Run()
		d.cut = false
	}
}

// fsck repairs the image (replaying the journal) and then checks that it
// is clean. It returns the repair tool's report, whose last line says
// what it did.
func (d *pcDisk) fsck() string {
	d.t.Helper()
	if d.kind == "xfs" {
		return d.repairXFS()
	}
	out, err := exec.Command("e2fsck", "-f", "-y", d.img).CombinedOutput()
	var ee *exec.ExitError
	// 1: errors corrected; 2: corrected, reboot advised; 4 and up: not.
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() >= 4) {
		d.t.Fatalf("e2fsck -f -y: %v\n%s", err, out)
	}
	if out2, err := exec.Command("e2fsck", "-f", "-n", d.img).CombinedOutput(); err != nil {
		d.t.Errorf("the file system is not clean after repair: %v\n%s", err, out2)
	}
	return strings.TrimSpace(string(out))
}

// repairXFS is fsck for XFS. xfs_repair refuses a dirty log and replays
// none (its -L zeroes it, losing what it holds), so the image is mounted,
// which replays the log and frees inodes left unlinked (staged O_TMPFILE
// files), and unmounted; then xfs_repair -n must find nothing. If it
// finds something, its report is logged, xfs_repair repairs, and
// xfs_repair -n must be clean afterwards.
func (d *pcDisk) repairXFS() string {
	d.t.Helper()
	d.attach()
	pcSh(d.t, "umount", d.mnt)
	d.mount = false
	defer d.teardown()
	out, err := exec.Command("xfs_repair", "-n", d.loop).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "-n found no problems after the log replay (mount)"
	case !errors.As(err, &ee) || ee.ExitCode() != 1: // 1: problems found
		d.t.Fatalf("xfs_repair -n: %v\n%s", err, out)
	}
	d.t.Logf("xfs_repair -n found problems after the log replay (mount):\n%s", out)
	out, err = exec.Command("xfs_repair", d.loop).CombinedOutput()
	if err != nil {
		d.t.Fatalf("xfs_repair: %v\n%s", err, out)
	}
	d.t.Logf("xfs_repair:\n%s", out)
	if out2, err := exec.Command("xfs_repair", "-n", d.loop).CombinedOutput(); err != nil {
		d.t.Errorf("the file system is not clean after repair: %v\n%s", err, out2)
	}
	return "repaired what -n found after the log replay (mount; both reports logged above)"
}

// TestPowerCutXFSRepair: the XFS repair step reports a clean file system
// as clean, and repairs one xfs_repair -n finds damaged (a file's link
// count raised with xfs_db), so that the power-cut rounds' report of it
// can be trusted. The rounds themselves have found nothing to repair.
func TestPowerCutXFSRepair(t *testing.T) {
	needPowercut(t, "xfs")
	if _, err := exec.LookPath("xfs_db"); err != nil {
		t.Skipf("SKIPPED: no xfs_db (xfsprogs)")
	}
	for _, tc := range []struct {
		name    string
		corrupt bool
		want    string
	}{
		{"clean", false, "-n found no problems"},
		{"nlink", true, "repaired what -n found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newPCDisk(t, tempDir(t), "xfs", 320<<20)
			d.attach()
			if err := os.Mkdir(filepath.Join(d.mnt, "a"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d.mnt, "a", "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			d.teardown()
			if tc.corrupt {
				pcSh(t, "xfs_db", "-x", "-c", "path /a/f", "-c", "write core.nlinkv2 5", d.img)
			}
			if got := d.fsck(); !strings.HasPrefix(got, tc.want) {
				t.Errorf("repair step: %q, want it to start %q", got, tc.want)
			}
			out, err := exec.Command("xfs_repair", "-n", "-f", d.img).CombinedOutput()
			if err != nil {
				t.Errorf("xfs_repair -n after the repair step: %v\n%s", err, out)
			}
		})
	}
}

// stamp is what a write to the image would change.
func (d *pcDisk) stamp() string {
	st, err := os.Stat(d.img)
	if err != nil {
		d.t.Fatal(err)
	}
	return fmt.Sprintf("%d %d", st.ModTime().UnixNano(), st.Sys().(*syscall.Stat_t).Blocks)
}

// pcMessage is one test message; its text is a function of its id and
// size, so that a file can be checked for being whole.
type pcMessage struct {
	id    string
	size  int
	rcpts []string
	text  string // as sent, before dot-stuffing
	file  string // as stored: lines end in LF (the maildir convention)
}

func newPCMessage(id string, size int, rcpts []string) *pcMessage {
	var b strings.Builder
	fmt.Fprintf(&b, "From: sender@crash.test\r\nTo: %s\r\nMessage-ID: <%s@crash.test>\r\nSubject: %s\r\nX-Size: %d\r\n\r\n",
		strings.Join(rcpts, ", "), id, id, size)
	line := ".starts with a dot, then " + id + " 0123456789abcdefghijklmnopqrstuvwxyz\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString("END " + id + "\r\n")
	return &pcMessage{id: id, size: size, rcpts: rcpts, text: b.String(), file: strings.ReplaceAll(b.String(), "\r\n", "\n")}
}

// wire is the DATA text, dot-stuffed and terminated.
func (m *pcMessage) wire() string {
	return strings.ReplaceAll("\r\n"+m.text, "\r\n.", "\r\n..")[2:] + ".\r\n"
}

// pcClient is an LMTP client that returns errors instead of failing the
// test: after the cut, anything may go wrong on the wire.
type pcClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialPC(sock string) (*pcClient, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	cl := &pcClient{c: c, br: bufio.NewReader(c)}
	if code, err := cl.reply(); err != nil || code != 220 {
		c.Close()
		return nil, fmt.Errorf("greeting %d: %v", code, err)
	}
	if _, err := io.WriteString(c, "LHLO crash.test\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	if code, err := cl.reply(); err != nil || code != 250 {
		c.Close()
		return nil, fmt.Errorf("LHLO %d: %v", code, err)
	}
	return cl, nil
}

func (c *pcClient) reply() (int, error) {
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if len(line) < 4 {
			return 0, fmt.Errorf("short reply %q", line)
		}
		if line[3] == '-' {
			continue
		}
		return strconv.Atoi(line[:3])
	}
}

// send delivers m to rcpts (pipelined: MAIL, RCPTs, DATA in one write) and
// calls acked for every recipient answered 250 at the end of DATA, as
// soon as that reply is read. A non-nil error means the connection is no
// longer usable.
func (c *pcClient) send(m *pcMessage, rcpts []string, acked func(rcpt string)) error {
	var cmds strings.Builder
	cmds.WriteString("MAIL FROM:<sender@crash.test>\r\n")
	for _, r := range rcpts {
		cmds.WriteString("RCPT TO:<" + r + ">\r\n")
	}
	cmds.WriteString("DATA\r\n")
	c.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c.c, cmds.String()); err != nil {
		return err
	}
	if code, err := c.reply(); err != nil || code != 250 {
		return fmt.Errorf("MAIL: %d %v", code, err)
	}
	var ok []string
	for _, r := range rcpts {
		code, err := c.reply()
		if err != nil {
			return err
		}
		if code == 250 {
			ok = append(ok, r)
		}
	}
	code, err := c.reply()
	if err != nil {
		return err
	}
	if code != 354 {
		if code == 503 || code == 554 { // no valid recipients: DATA refused
			return nil
		}
		return fmt.Errorf("DATA: %d", code)
	}
	if _, err := io.WriteString(c.c, m.wire()); err != nil {
		return err
	}
	for _, r := range ok {
		code, err := c.reply()
		if err != nil {
			return err
		}
		if code == 250 {
			acked(r)
		}
	}
	return nil
}

func (c *pcClient) close() { c.c.Close() }

// pcRound is what the clients of one round sent and were told.
type pcRound struct {
	messages map[string]*pcMessage

	mu    sync.Mutex
	acked map[string]bool // id + " " + rcpt
	late  map[string]bool // those read after the cut began
	after int             // acknowledgements read after the cut
}

func pcKey(id, rcpt string) string { return id + " " + rcpt }

func (r *pcRound) ack(id, rcpt string, cut bool) {
	r.mu.Lock()
	r.acked[pcKey(id, rcpt)] = true
	if cut {
		r.late[pcKey(id, rcpt)] = true
		r.after++
	}
	r.mu.Unlock()
}

func (r *pcRound) nacked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acked)
}

// pcUsers are the mailboxes, so that messages share directories (the
// group commit) and multi-recipient messages hard-link across them.
var pcUsers = []string{"u0", "u1", "u2", "u3", "u4", "u5"}

func pcConfig(dir, fs, flush string) string {
	return fmt.Sprintf(`[log]
format = "json"
level = "info"

[server]
hostname = "mx.crash.test"
shutdown_grace = "1s"

[[listener]]
name = "lmtp"
protocol = "lmtp"
address = "unix:%s/lmtp.sock"
max_connections = 1000

[delivery]
delivered_to = "single"

[delivery.maildir]
root = "%s/mail"
template = "{domain}/{user}"
flush = "%s"

[delivery.dedup]
enabled = true
path = "%s/lib/dedup.journal"

[[domain]]
name = "crash.test"
any_user = true
`, dir, fs, flush, fs)
}

// TestPowerCut: see the comment at the top of this file.
func TestPowerCut(t *testing.T) {
	rounds := powercutEnvInt("LMTPD_POWERCUT_ROUNDS", 1)
	crash := os.Getenv("LMTPD_POWERCUT_ROUNDS") != ""
	messages := powercutEnvInt("LMTPD_POWERCUT_MESSAGES", 300)
	conns := powercutEnvInt("LMTPD_POWERCUT_CONNS", 200)
	for _, pfs := range pcFileSystems {
		t.Run(pfs.kind, func(t *testing.T) {
			needPowercut(t, pfs.kind)
			modes := pfs.modes
			if crash {
				modes = slices.Concat(modes, pfs.more)
			}
			for _, kill := range []bool{false, true} {
				kind := "power"
				if kill {
					kind = "kill"
				}
				for _, flush := range modes {
					for i := range rounds {
						t.Run(fmt.Sprintf("%s/%s/round%d", kind, flush, i+1), func(t *testing.T) {
							powercutRound(t, pcOptions{fs: pfs.kind, messages: messages, conns: conns, flush: flush, kill: kill})
						})
					}
				}
			}
		})
	}
}

// pcOptions are one round's settings.
type pcOptions struct {
	fs              string // the file system: "ext4" or "xfs"
	messages, conns int
	flush           string // [delivery.maildir] flush
	kill            bool   // SIGKILL only: no power cut
}

func powercutRound(t *testing.T, o pcOptions) {
	n, conns := o.messages, o.conns
	dir := tempDir(t)
	d := newPCDisk(t, dir, o.fs, 512<<20)
	d.attach()
	fs := d.mnt
	for _, sub := range []string{"mail", "lib"} {
		if err := os.MkdirAll(filepath.Join(fs, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "lmtp.sock")
	cfg := writeFile(t, dir, "lmtpd.toml", pcConfig(dir, fs, o.flush))

	r := &pcRound{messages: map[string]*pcMessage{}, acked: map[string]bool{}, late: map[string]bool{}}
	var order []*pcMessage
	for i := range n {
		id := fmt.Sprintf("pc%05d", i)
		// 1 to 3 recipients: a file and hard links; sizes up to 64 KiB,
		// some beyond the in-memory spool (256 KiB).
		k := 1 + rand.IntN(3)
		perm := rand.Perm(len(pcUsers))
		var rcpts []string
		for _, j := range perm[:k] {
			rcpts = append(rcpts, pcUsers[j]+"@crash.test")
		}
		size := 200 + rand.IntN(64<<10)
		if i%25 == 0 {
			size = 300<<10 + rand.IntN(200<<10)
		}
		m := newPCMessage(id, size, rcpts)
		r.messages[id] = m
		order = append(order, m)
	}

	p := start(t, dir, nil, "-config", cfg)
	p.waitLog(0, "listening")

	// The clients: each takes the next message and sends it once; after
	// the cut they keep sending until stopped.
	var (
		next    atomic.Int64
		cutDone atomic.Bool
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		sent    atomic.Int64
		done    atomic.Int64 // messages whose transaction ended
	)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *pcClient
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := int(next.Add(1)) - 1
				if i >= len(order) {
					return
				}
				m := order[i]
				if c == nil {
					var err error
					if c, err = dialPC(sock); err != nil {
						c = nil
						done.Add(1)
						time.Sleep(20 * time.Millisecond)
						continue // this message is simply not sent
					}
				}
				sent.Add(1)
				err := c.send(m, m.rcpts, func(rcpt string) { r.ack(m.id, rcpt, cutDone.Load()) })
				done.Add(1)
				if err != nil {
					c.close()
					c = nil
				}
			}
		}()
	}

	// The cut, after a random share (20% to 70%) of the messages' worth
	// of acknowledgements.
	// Counted in acknowledged recipients (about two per message), not in
	// messages taken: 200 connections take 200 messages at once, and the
	// cut is to fall with many acknowledged and many in flight.
	target := n/5 + rand.IntN(n/2)
	deadline := time.Now().Add(90 * time.Second)
	for r.nacked() < target && int(next.Load()) < len(order) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	inFlight := int(next.Load()) - int(done.Load())
	var before, cutAt int
	if o.kill {
		// SIGKILL: nothing is read after it, so no acknowledgement is
		// late; the disk keeps every write the kernel has.
		p.cmd.Process.Kill()
		p.wait()
		before, cutAt = r.nacked(), min(int(next.Load()), len(order))
	} else {
		// Acknowledgements read from now on are late: the cut may have
		// begun.
		cutDone.Store(true)
		before, cutAt = r.nacked(), min(int(next.Load()), len(order))
		d.cutPower()
		stamp := d.stamp()
		// lmtpd keeps running, its writes failing, for a moment.
		time.Sleep(400 * time.Millisecond)
		if s := d.stamp(); s != stamp {
			t.Fatalf("the image changed after the cut (%s -> %s): writes were not cut", stamp, s)
		}
		p.cmd.Process.Kill()
		p.wait()
	}
	close(stop)
	wg.Wait()
	logErrs := 0
	for _, l := range strings.Split(p.log(), "\n") {
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"warn"`) {
			logErrs++
		}
	}
	switch o.fs {
	case "ext4":
		if o.flush == "ordered" && strings.Contains(p.log(), "not safe on this file system") {
			t.Errorf(`flush = "ordered" fell back to "fsync" on the test's ext4; lmtpd's log:%s`, p.log())
		}
		if o.flush == "auto" && !strings.Contains(p.log(), `"flush":"ordered"`) {
			t.Errorf(`flush = "auto" did not choose "ordered" on the test's ext4; lmtpd's log:%s`, p.log())
		}
	case "xfs":
		if o.flush == "auto" && !pcChoseFsync(p.log(), "xfs") {
			t.Errorf(`flush = "auto" did not say it chose "fsync" because the file system is XFS; lmtpd's log:%s`, p.log())
		}
	}
	d.teardown()
	report := d.fsck()
	what := "power cut"
	if o.kill {
		what = "SIGKILL"
	}
	repair := "e2fsck"
	if o.fs == "xfs" {
		repair = "xfs_repair"
	}
	t.Logf("%s on %s (flush = %q) at %d recipients acknowledged, with %d messages in flight on %d connections; %d of %d messages sent by the end; lmtpd logged %d warnings/errors; %s: %s",
		what, o.fs, o.flush, before, inFlight, conns, sent.Load(), n, logErrs, repair, pcLastLine(report))

	// Mounted again: every acknowledged delivery is there, whole.
	d.attach()
	found, bad := scanPowercut(t, filepath.Join(fs, "mail"), r.messages)
	for _, b := range bad {
		t.Error(b)
	}
	missing, lateLost := 0, map[string]bool{}
	for key := range r.acked {
		switch {
		case found[key] > 0:
		case r.late[key]:
			lateLost[key] = true
			t.Errorf("%s: acknowledged with 250 after the cut began, not on the disk (the file system check after the barrier missed a failure)", key)
		default:
			missing++
			if missing <= 10 {
				t.Errorf("%s: acknowledged with 250 before the cut but not in new/", key)
			}
		}
	}
	durableUnacked, dups := 0, 0
	for key, c := range found {
		if c > 1 {
			dups++
			t.Errorf("%s: %d copies in new/ after one delivery", key, c)
		}
		if !r.acked[key] {
			durableUnacked++
		}
	}
	t.Logf("after the cut: %d recipients acknowledged before the cut, %d of them missing; %d acknowledged after it, %d of them missing; %d files in new/ (%d not acknowledged: on disk before the cut, reply lost), %d damaged, %d duplicates",
		len(r.acked)-r.after, missing, r.after, len(lateLost), len(found), durableUnacked, len(bad), dups)
	if t.Failed() {
		return
	}

	// lmtpd on the recovered file system and journal; the clients resend
	// what was not acknowledged.
	os.Remove(sock)
	p2 := start(t, dir, nil, "-config", cfg)
	p2.waitLog(0, "listening")
	resent, refused := 0, 0
	c, err := dialPC(sock)
	if err != nil {
		t.Fatalf("lmtpd on the recovered file system: %v", err)
	}
	for _, m := range order {
		var rest []string
		for _, rc := range m.rcpts {
			if !r.acked[pcKey(m.id, rc)] {
				rest = append(rest, rc)
			}
		}
		if len(rest) == 0 {
			continue
		}
		resent++
		got := 0
		if err := c.send(m, rest, func(string) { got++ }); err != nil {
			t.Fatalf("resending %s: %v", m.id, err)
		}
		refused += len(rest) - got
	}
	// A resend after a lost 250 is what the dedup journal is for: resend
	// up to 20 messages acknowledged in full before the cut, the last ones
	// acknowledged (their journal lines were written nearest the cut), as
	// a client that lost those replies would. lmtpd fsyncs a journal line
	// before the 250 it stands for (delivery/journal.go), so the recovered
	// journal must recognise every one: a second copy is an error.
	replayed := map[string]bool{}
	for i := cutAt - 1; i >= 0 && len(replayed) < 20; i-- {
		m := order[i]
		all := true
		for _, rc := range m.rcpts {
			all = all && r.acked[pcKey(m.id, rc)] && !r.late[pcKey(m.id, rc)]
		}
		if !all {
			continue
		}
		got := 0
		if err := c.send(m, m.rcpts, func(string) { got++ }); err != nil {
			t.Fatalf("resending %s: %v", m.id, err)
		}
		refused += len(m.rcpts) - got
		replayed[m.id] = true
	}
	c.close()
	if refused > 0 {
		t.Errorf("%d recipients refused on resend", refused)
	}
	p2.signal(syscall.SIGTERM)
	p2.wait()
	found2, bad2 := scanPowercut(t, filepath.Join(fs, "mail"), r.messages)
	for _, b := range bad2 {
		t.Error(b)
	}
	lmtpDups, replayDups, replayKeys := 0, 0, 0
	for id, m := range r.messages {
		for _, rc := range m.rcpts {
			key := pcKey(id, rc)
			switch c := found2[key]; {
			case replayed[id]:
				replayKeys++
				if c != 1 {
					replayDups++
					t.Errorf("%s: %d copies after a replay of a message acknowledged before the cut, want 1 (the dedup journal forgot an acknowledged delivery)", key, c)
				}
			case lateLost[key]:
				// The client took the 250 and does not resend.
			case c == 0:
				t.Errorf("%s: not delivered after the resend", key)
			case c == 2 && !r.acked[key] && found[key] == 1:
				// On the disk from before the cut, but answered 4xx (its
				// own fsync failed) or not at all: lmtpd journals only
				// deliveries it reported done, so the resend is new to it.
				lmtpDups++
			case c > 1:
				t.Errorf("%s: %d copies after the resend", key, c)
			}
		}
	}
	// Logged, not failed: a recipient renamed durably into new/ whose 250
	// never reached the client is delivered again by the resend. That is
	// inherent to LMTP (RFC 2033 section 4.2): lmtpd journals a delivery
	// only once it reports it done, and journalling it earlier would let a
	// resend be skipped for a delivery that then failed.
	t.Logf("resent %d messages: %d recipients delivered twice (on the disk from before the cut without a 250: the LMTP duplicate the dedup journal does not cover)", resent, lmtpDups)
	t.Logf("replayed %d acknowledged messages (%d recipients): the recovered dedup journal recognised %d, %d delivered twice", len(replayed), replayKeys, replayKeys-replayDups, replayDups)
}

// pcChoseFsync reports whether lmtpd's JSON log has flush = "auto"'s line
// choosing "fsync", with a reason that names the file system kind.
func pcChoseFsync(log, kind string) bool {
	for _, l := range strings.Split(log, "\n") {
		var e struct{ Message, Flush, Reason string }
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		if strings.HasPrefix(e.Message, `flush = "auto"`) && e.Flush == "fsync" && strings.Contains(e.Reason, `"`+kind+`"`) {
			return true
		}
	}
	return false
}

func pcLastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// pcIDRe finds the test message id in a delivered file.
var pcIDRe = regexp.MustCompile(`(?m)^Message-ID: <(pc\d+)@crash\.test>$`)

// scanPowercut reads every file in every new/ under root and returns the
// number of copies of each (message id, recipient), and one complaint per
// file that is not a whole test message.
func scanPowercut(t *testing.T, root string, msgs map[string]*pcMessage) (map[string]int, []string) {
	t.Helper()
	found := map[string]int{}
	var bad []string
	boxes, err := filepath.Glob(filepath.Join(root, "crash.test", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, box := range boxes {
		rcpt := filepath.Base(box) + "@crash.test"
		ents, err := os.ReadDir(filepath.Join(box, "new"))
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", box, err))
			continue
		}
		for _, e := range ents {
			path := filepath.Join(box, "new", e.Name())
			b, err := os.ReadFile(path)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", path, err))
				continue
			}
			if len(b) == 0 {
				bad = append(bad, fmt.Sprintf("%s: empty file in new/", path))
				continue
			}
			mm := pcIDRe.FindSubmatch(b)
			if mm == nil {
				bad = append(bad, fmt.Sprintf("%s: %d bytes, no test Message-ID (truncated header?): %.200q", path, len(b), b))
				continue
			}
			m := msgs[string(mm[1])]
			if m == nil || !strings.HasSuffix(string(b), m.file) {
				bad = append(bad, fmt.Sprintf("%s: %s is not whole (%d bytes)", path, mm[1], len(b)))
				continue
			}
			found[pcKey(m.id, rcpt)]++
		}
	}
	return found, bad
}
