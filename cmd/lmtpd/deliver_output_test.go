package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// deliverPipeRun runs cmdDeliver with its standard error a pipe, as
// Postfix's local(8) and pipe(8) give it (not a terminal), and returns
// the exit status and everything it wrote there.
func deliverPipeRun(t *testing.T, msg string, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	st := cmdDeliver(args, strings.NewReader(msg), w)
	w.Close()
	return st, string(<-got)
}

// TestDeliverStatusOutput: what lmtpd deliver prints, with standard error
// a pipe as under an MTA, is the delivery status and nothing else: no
// line at all for a success, one "X.Y.Z reason" line for a failure
// (Postfix's local(8) takes its code as the dsn and the rest as the
// reason the sender and the administrator read), temporary (4.3.5 with
// what could not be written where, the home as "~", exit 75) or permanent
// (5.1.1, exit 67). The structured log goes to syslog, facility mail,
// without the file or the command line asking for it; -log stderr and
// [log] output = "stderr" put it on standard error, after the status
// line.
func TestDeliverStatusOutput(t *testing.T) {
	defer zerolog.SetGlobalLevel(zerolog.TraceLevel)
	dir := t.TempDir()
	home := filepath.Join(dir, "home", "alice")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	uid := homeTestAccount()
	gid := os.Getgid()
	if uid != os.Getuid() {
		gid = uid
		os.Chown(home, uid, gid)
	}
	passwdFile := filepath.Join(dir, "passwd")
	lines := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nalice:x:%d:%d::%s:/bin/sh\n", uid, gid, home)
	if err := os.WriteFile(passwdFile, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, sock := listenSyslog(t)
	const directory = "[[directory]]\nname = \"system\"\ndriver = \"passwd\"\npath = \"passwd\"\nmin_uid = 1\nexclude = [\"root\"]\n"
	conf := filepath.Join(dir, "deliver.toml")
	// No [log] output: deliver's choice. The socket stands for /dev/log.
	text := "[log]\nsyslog_socket = " + strconv.Quote(sock) + "\n" + directory
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	deliver := func(rcpt string, extra ...string) (int, string) {
		args := append([]string{"-config", conf, "-f", "sender@elsewhere.test"}, extra...)
		return deliverPipeRun(t, mailboxCommandMessage(rcpt), append(args, "--", rcpt)...)
	}
	// logged reads one syslog datagram and returns its facility,
	// severity and JSON message.
	logged := func(t *testing.T) (int, int, string) {
		t.Helper()
		d := readDatagrams(t, srv, 1)[0]
		m := syslogLine.FindStringSubmatch(d)
		if m == nil {
			t.Fatalf("syslog datagram %q", d)
		}
		pri, _ := strconv.Atoi(m[1])
		return pri / 8, pri % 8, m[3]
	}
	const facMail, sevErr, sevWarning, sevInfo = 2, 3, 4, 6

	t.Run("success", func(t *testing.T) {
		st, out := deliver("alice@mx.example")
		if st != exOK || out != "" {
			t.Fatalf("exit %d, output %q; want 0 and nothing", st, out)
		}
		fac, sev, msg := logged(t)
		if fac != facMail || sev != sevInfo || !strings.Contains(msg, `"message":"delivered"`) || !strings.Contains(msg, `"to":"alice@mx.example"`) {
			t.Errorf("syslog: facility %d severity %d %s; want mail.info, delivered", fac, sev, msg)
		}
		if fac, sev, msg := logged(t); fac != facMail || sev != sevInfo || !strings.Contains(msg, `"exit":0,`) || !strings.Contains(msg, `"message":"deliver done"`) {
			t.Errorf("syslog: facility %d severity %d %s; want mail.info, deliver done", fac, sev, msg)
		}
	})

	t.Run("permanent failure", func(t *testing.T) {
		st, out := deliver("nobody@mx.example")
		if st != exNoUser || out != "5.1.1 No such user here\n" {
			t.Fatalf("exit %d, output %q; want %d and one 5.1.1 line", st, out, exNoUser)
		}
		// Refused at RCPT: deliver's own line says so.
		if _, sev, msg := logged(t); sev != sevInfo || !strings.Contains(msg, `"to":["nobody@mx.example"],"exit":67,"status":["5.1.1 No such user here"],`) || !strings.Contains(msg, `"message":"deliver done"`) {
			t.Errorf("syslog: severity %d %s; want info, deliver done with the status", sev, msg)
		}
	})

	t.Run("temporary failure", func(t *testing.T) {
		md := filepath.Join(home, "Maildir")
		os.RemoveAll(filepath.Join(md, "new"))
		if err := os.WriteFile(filepath.Join(md, "new"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(md, "new"))
		st, out := deliver("alice@mx.example")
		if want := "4.3.5 cannot open ~/Maildir/new: not a directory\n"; st != exTempFail || out != want {
			t.Fatalf("exit %d, output %q; want %d and %q", st, out, exTempFail, want)
		}
		// The maildir's own line with the fix, then the outcome.
		for _, want := range []string{`"message":"maildir delivery failed"`, `"message":"deferred"`} {
			fac, sev, msg := logged(t)
			if fac != facMail || sev != sevErr || !strings.Contains(msg, want) || !strings.Contains(msg, filepath.Join(md, "new")) {
				t.Errorf("syslog: facility %d severity %d %s; want mail.err, %s with the path", fac, sev, msg, want)
			}
		}
		if _, sev, msg := logged(t); sev != sevWarning || !strings.Contains(msg, `"exit":75`) {
			t.Errorf("syslog: severity %d %s; want warning, deliver done", sev, msg)
		}
	})

	t.Run("log on stderr", func(t *testing.T) {
		// -log stderr, or the file's [log] output: the log follows the
		// status line.
		stderrConf := filepath.Join(dir, "stderr.toml")
		if err := os.WriteFile(stderrConf, []byte("[log]\noutput = \"stderr\"\n"+directory), 0o644); err != nil {
			t.Fatal(err)
		}
		for name, args := range map[string][]string{
			"flag": {"-config", conf, "-log", "stderr"},
			"file": {"-config", stderrConf},
		} {
			st, out := deliverPipeRun(t, "Subject: x\n\nx\n", append(args, "--", "nobody@mx.example")...)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if st != exNoUser || len(lines) != 2 || lines[0] != "5.1.1 No such user here" || !strings.Contains(lines[1], `"message":"deliver done"`) {
				t.Errorf("%s: exit %d, output %q; want the status line, then the log", name, st, out)
			}
		}
		if st, out := deliverPipeRun(t, "", "-config", conf, "-log", "journal", "--", "alice@mx.example"); st != exUsage || !strings.Contains(out, `-log "journal"`) {
			t.Errorf("-log journal: exit %d %q, want %d", st, out, exUsage)
		}
	})

	t.Run("no syslog daemon", func(t *testing.T) {
		// The log is lost, the delivery and its status are not.
		gone := filepath.Join(dir, "nodaemon.toml")
		if err := os.WriteFile(gone, []byte("[log]\nsyslog_socket = \"/nonexistent/log\"\n"+directory), 0o644); err != nil {
			t.Fatal(err)
		}
		if st, out := deliverPipeRun(t, "Subject: x\n\nx\n", "-config", gone, "--", "nobody@mx.example"); st != exNoUser || out != "5.1.1 No such user here\n" {
			t.Errorf("exit %d, output %q; want %d and the status line only", st, out, exNoUser)
		}
	})
}

// TestDeliverStatusLine: the reasons of the status lines, per cause.
func TestDeliverStatusLine(t *testing.T) {
	const home = "/home/alice"
	tempErr := func(cause error) error { return protocol.ErrMisconfigured.Wrap(cause) }
	unknown := perm(550, protocol.EnhancedCode{5, 1, 1})
	tests := []struct {
		name string
		rcpt string
		err  error
		want string
	}{
		{"permanent: the reply text", "", unknown, "5.1.1 text"},
		{"several recipients name theirs", "a@x", unknown, "5.1.1 <a@x>: text"},
		{"a file in tmp", "", tempErr(&os.PathError{Op: "openat", Path: home + "/Maildir/tmp/1.M2P3.host", Err: syscall.EROFS}), "4.3.5 cannot store into ~/Maildir/tmp: read-only file system"},
		{"a directory", "", tempErr(&os.PathError{Op: "mkdir", Path: home + "/Maildir", Err: syscall.EACCES}), "4.3.5 cannot create ~/Maildir: permission denied"},
		{"a rename", "", tempErr(&os.LinkError{Op: "rename", Old: home + "/Maildir/tmp/1.x", New: home + "/Maildir/new/1.x", Err: syscall.EACCES}), "4.3.5 cannot store into ~/Maildir/new: permission denied"},
		{"outside the home", "", tempErr(&os.PathError{Op: "open", Path: "/var/mail/x", Err: syscall.EACCES}), "4.3.5 cannot open /var/mail/x: permission denied"},
		{"another cause: the reply text", "", tempErr(fmt.Errorf("dial tcp db.internal:5432: refused")), "4.3.5 Mail system configuration error, try again later"},
		{"not a protocol error", "", fmt.Errorf("boom"), "4.3.0 temporary failure"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusLine(tc.rcpt, tc.err, home); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
