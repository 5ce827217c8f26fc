package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

const testBody = "Subject: hi\r\n\r\nhello\r\n..dot line\r\n"

// unstuffed is testBody as delivered (the dot-stuffing removed).
const unstuffed = "Subject: hi\r\n\r\nhello\r\n.dot line\r\n"

// startServer runs gosmtpd with args in the background and returns its
// address; the server is stopped when the test ends.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	ready := make(chan net.Addr, 1)
	stop := make(chan os.Signal)
	code := make(chan int, 1)
	var logs bytes.Buffer
	go func() { code <- run(append([]string{"-listen", "127.0.0.1:0"}, args...), &logs, ready, stop) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case c := <-code:
		t.Fatalf("gosmtpd exited with %d: %s", c, logs.String())
	}
	t.Cleanup(func() {
		close(stop)
		if c := <-code; c != 0 {
			t.Errorf("gosmtpd exited with %d: %s", c, logs.String())
		}
	})
	return addr.String()
}

// dialogue is a raw client: it sends lines and reads replies.
type dialogue struct {
	t  *testing.T
	c  net.Conn
	tp *textproto.Reader
}

func connect(t *testing.T, addr, hello string) *dialogue {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	d := &dialogue{t: t, c: c, tp: textproto.NewReader(bufioReader(c))}
	d.expect(220)
	d.send(hello + " client.test")
	d.expect(250)
	return d
}

func (d *dialogue) send(s string) {
	d.t.Helper()
	if _, err := io.WriteString(d.c, s+"\r\n"); err != nil {
		d.t.Fatal(err)
	}
}

func (d *dialogue) expect(code int) string {
	d.t.Helper()
	got, msg, err := d.tp.ReadResponse(0)
	if err != nil && got == 0 {
		d.t.Fatalf("reading reply: %v", err)
	}
	if got != code {
		d.t.Fatalf("reply %d %q, want %d", got, msg, code)
	}
	return msg
}

// delivered returns the contents of the files in mailbox's new/, and fails
// the test if anything is left in tmp/.
func delivered(t *testing.T, mailbox string) []string {
	t.Helper()
	tmp, _ := os.ReadDir(filepath.Join(mailbox, "tmp"))
	if len(tmp) > 0 {
		t.Errorf("%s/tmp holds %d files", mailbox, len(tmp))
	}
	entries, _ := os.ReadDir(filepath.Join(mailbox, "new"))
	var out []string
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(mailbox, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(data))
	}
	return out
}

// deliveredFiles returns the paths of the files in mailbox's new/.
func deliveredFiles(t *testing.T, mailbox string) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(mailbox, "new"))
	var out []string
	for _, e := range entries {
		out = append(out, filepath.Join(mailbox, "new", e.Name()))
	}
	return out
}

// nlink returns the link count of the file at path.
func nlink(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(st.Sys().(*syscall.Stat_t).Nlink)
}

// TestDeliverLMTPAndSMTP sends two pipelined transactions to bob, carol
// and bob again over the wire, in both maildir modes: hard links (one
// inode with a link per recipient, the same bytes everywhere, no
// Delivered-To:) and copies (one file each, Delivered-To: in each).
func TestDeliverLMTPAndSMTP(t *testing.T) {
	for _, mode := range []string{"link", "copy"} {
		for _, proto := range []string{"lmtp", "smtp"} {
			t.Run(mode+"/"+proto, func(t *testing.T) {
				root := t.TempDir()
				args := []string{"-proto", proto, "-maildir", root}
				if mode == "copy" {
					args = append(args, "-copy")
				}
				addr := startServer(t, args...)
				hello, finals := "EHLO", 1
				if proto == "lmtp" {
					hello, finals = "LHLO", 3
				}
				d := connect(t, addr, hello)
				// Two transactions on one connection, pipelined like Postfix.
				for range 2 {
					d.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@Example.TEST>\r\nRCPT TO:<carol@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA")
					for range 4 {
						d.expect(250)
					}
					d.expect(354)
					d.send(testBody + ".")
					for range finals {
						d.expect(250)
					}
				}
				d.send("QUIT")
				d.expect(221)
				bobBox, carolBox := filepath.Join(root, "example.test", "bob"), filepath.Join(root, "example.test", "carol")
				bob, carol := delivered(t, bobBox), delivered(t, carolBox)
				if len(bob) != 4 || len(carol) != 2 {
					t.Fatalf("bob has %d messages, carol %d: want 4 and 2", len(bob), len(carol))
				}
				files := append(deliveredFiles(t, bobBox), deliveredFiles(t, carolBox)...)
				for i, m := range append(bob, carol...) {
					if !strings.HasPrefix(m, "Return-Path: <alice@example.org>\r\n") || !strings.HasSuffix(m, "\r\n"+unstuffed) {
						t.Errorf("delivered %q", m)
					}
					hasDT := strings.Contains(m, "Delivered-To: ")
					switch n := nlink(t, files[i]); mode {
					case "link":
						// Three recipients of one transaction: one inode.
						if hasDT || n != 3 {
							t.Errorf("%s: link count %d (want 3), Delivered-To: %v (want none): %q", files[i], n, hasDT, m)
						}
						if m != bob[0] {
							t.Errorf("%s differs from the first copy: %q", files[i], m)
						}
					case "copy":
						if !hasDT || n != 1 {
							t.Errorf("%s: link count %d (want 1), Delivered-To: %v (want one): %q", files[i], n, hasDT, m)
						}
					}
				}
				if mode == "link" {
					// The two transactions are two inodes, each linked from
					// both of bob's and one of carol's entries.
					same := 0
					for _, f := range files[1:] {
						a, _ := os.Stat(files[0])
						b, _ := os.Stat(f)
						if os.SameFile(a, b) {
							same++
						}
					}
					if same != 2 {
						t.Errorf("%d other entries share the first file's inode, want 2", same)
					}
				}
				if mode == "copy" && !strings.Contains(carol[0], "Delivered-To: carol@example.test\r\n") {
					t.Errorf("carol's copy: %q", carol[0])
				}
			})
		}
	}
}

// TestSingleRecipientDeliveredTo: with one recipient, the link mode writes
// Delivered-To: as Dovecot and lmtpd do, so both modes write the same bytes.
func TestSingleRecipientDeliveredTo(t *testing.T) {
	for _, copyMode := range []bool{false, true} {
		st, err := newMaildirStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		st.copy = copyMode
		if errs := st.deliver("alice@example.org", []string{"bob@d"}, strings.NewReader(unstuffed)); errs[0] != nil {
			t.Fatal(errs[0])
		}
		got := delivered(t, filepath.Join(st.root, "d", "bob"))
		want := "Return-Path: <alice@example.org>\r\nDelivered-To: bob@d\r\n" + unstuffed
		if len(got) != 1 || got[0] != want {
			t.Errorf("copy=%v: delivered %q, want [%q]", copyMode, got, want)
		}
	}
}

// TestSyncOrder records the durability steps of a delivery to three
// mailboxes and checks, at each fsync, what the file system holds: the
// file is whole in tmp/ when it is fsynced, links are made only after
// that fsync, and each new/ is fsynced after its file was renamed into it.
// The link mode makes one file fsync and three directory fsyncs; the copy
// mode three of each, file and directory alternating.
func TestSyncOrder(t *testing.T) {
	want := map[bool][]string{
		false: {"fsync tmp/ a", "link b", "link c", "fsync new/ a", "fsync new/ b", "fsync new/ c"},
		true:  {"fsync tmp/ a", "fsync new/ a", "fsync tmp/ b", "fsync new/ b", "fsync tmp/ c", "fsync new/ c"},
	}
	for _, copyMode := range []bool{false, true} {
		t.Run(map[bool]string{false: "link", true: "copy"}[copyMode], func(t *testing.T) {
			st, err := newMaildirStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			st.copy = copyMode
			box := func(path string) string { return filepath.Base(filepath.Dir(filepath.Dir(path))) }
			var events []string
			st.syncFile = func(f *os.File) error {
				data, err := os.ReadFile(f.Name())
				if err != nil || !strings.HasSuffix(string(data), unstuffed) || filepath.Base(filepath.Dir(f.Name())) != "tmp" {
					t.Errorf("fsync of %s: not a whole file in tmp/ (%v, %q)", f.Name(), err, data)
				}
				events = append(events, "fsync tmp/ "+box(f.Name()))
				return f.Sync()
			}
			st.link = func(oldname, newname string) error {
				events = append(events, "link "+box(newname))
				return os.Link(oldname, newname)
			}
			st.syncDir = func(path string) error {
				files := deliveredFiles(t, filepath.Dir(path))
				if len(files) != 1 {
					t.Errorf("fsync of %s with %d files in it, want the renamed one", path, len(files))
				} else if data, _ := os.ReadFile(files[0]); !strings.HasSuffix(string(data), unstuffed) {
					t.Errorf("fsync of %s: %s holds %q", path, files[0], data)
				}
				events = append(events, "fsync new/ "+filepath.Base(filepath.Dir(path)))
				return fsyncDir(path)
			}
			for i, err := range st.deliver("x@y", []string{"a@d", "b@d", "c@d"}, strings.NewReader(unstuffed)) {
				if err != nil {
					t.Errorf("recipient %d: %v", i, err)
				}
			}
			if strings.Join(events, ", ") != strings.Join(want[copyMode], ", ") {
				t.Errorf("steps:\n  %s\nwant\n  %s", strings.Join(events, ", "), strings.Join(want[copyMode], ", "))
			}
		})
	}
}

func TestDiscard(t *testing.T) {
	addr := startServer(t, "-discard")
	d := connect(t, addr, "LHLO")
	d.send("MAIL FROM:<>\r\nRCPT TO:<a@b>\r\nRCPT TO:<c@d>\r\nDATA")
	d.expect(250)
	d.expect(250)
	d.expect(250)
	d.expect(354)
	d.send(testBody + ".")
	d.expect(250)
	d.expect(250)
}

func TestRejectBadRecipient(t *testing.T) {
	root := t.TempDir()
	addr := startServer(t, "-maildir", root)
	d := connect(t, addr, "LHLO")
	d.send("MAIL FROM:<alice@example.org>")
	d.expect(250)
	for _, rcpt := range []string{".hidden@example.test", "a@.hidden", "a@..", `"a/b"@example.test`} {
		d.send("RCPT TO:<" + rcpt + ">")
		d.expect(550)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Errorf("root holds %d entries after rejected recipients", len(entries))
	}
}

// TestLMTPStatusPerRecipient: a delivery that fails for one recipient is
// answered 451 for that one and 250 for the others, in RCPT order.
func TestLMTPStatusPerRecipient(t *testing.T) {
	root := t.TempDir()
	st, err := newMaildirStore(root)
	if err != nil {
		t.Fatal(err)
	}
	st.syncDir = func(path string) error {
		if strings.Contains(path, "broken") {
			return errors.New("injected fsync failure")
		}
		return fsyncDir(path)
	}
	s := &session{store: st}
	s.Mail("alice@example.org", nil)
	for _, r := range []string{"a@example.test", "broken@example.test", "c@example.test"} {
		if err := s.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	rec := &statusRecorder{}
	if err := s.LMTPData(strings.NewReader(unstuffed), rec); err != nil {
		t.Fatal(err)
	}
	want := []string{"a@example.test ok", "broken@example.test 451", "c@example.test ok"}
	if strings.Join(rec.got, ",") != strings.Join(want, ",") {
		t.Errorf("statuses %q, want %q", rec.got, want)
	}
	if err := s.Data(strings.NewReader(unstuffed)); err != tempFail {
		t.Errorf("SMTP Data with one failed recipient: %v, want %v", err, tempFail)
	}
	s.Reset()
	if len(s.rcpts) != 0 || s.from != "" {
		t.Errorf("Reset left %q %q", s.from, s.rcpts)
	}
}

type statusRecorder struct{ got []string }

func (r *statusRecorder) SetStatus(rcpt string, err error) {
	s := "ok"
	if err != nil {
		s = err.Error()
		if err == tempFail {
			s = "451"
		}
	}
	r.got = append(r.got, rcpt+" "+s)
}

func TestDeliverErrors(t *testing.T) {
	boom := errors.New("injected")
	tests := []struct {
		name     string
		setup    func(t *testing.T, st *maildirStore)
		body     io.Reader
		rcpts    []string
		wantErrs []bool
		wantNew  map[string]int // mailbox -> files in new/
		only     string         // "link" or "copy": the mode the case is for; "": both
	}{
		{
			name:     "file fsync fails for every copy",
			setup:    func(t *testing.T, st *maildirStore) { st.syncFile = func(*os.File) error { return boom } },
			rcpts:    []string{"a@d", "b@d"},
			wantErrs: []bool{true, true},
			wantNew:  map[string]int{"d/a": 0, "d/b": 0},
		},
		{
			name: "second copy's fsync fails",
			setup: func(t *testing.T, st *maildirStore) {
				n := 0
				st.syncFile = func(f *os.File) error {
					if n++; n == 2 {
						return boom
					}
					return f.Sync()
				}
			},
			rcpts:    []string{"a@d", "b@d", "c@d"},
			wantErrs: []bool{false, true, false},
			wantNew:  map[string]int{"d/a": 1, "d/b": 0, "d/c": 1},
			only:     "copy",
		},
		{
			name: "link into the second mailbox fails",
			setup: func(t *testing.T, st *maildirStore) {
				st.link = func(oldname, newname string) error {
					if strings.Contains(newname, "/b/") {
						return boom
					}
					return os.Link(oldname, newname)
				}
			},
			rcpts:    []string{"a@d", "b@d", "c@d"},
			wantErrs: []bool{false, true, false},
			wantNew:  map[string]int{"d/a": 1, "d/b": 0, "d/c": 1},
			only:     "link",
		},
		{
			name: "second new/ fsync fails",
			setup: func(t *testing.T, st *maildirStore) {
				st.syncDir = func(path string) error {
					if strings.Contains(path, "/b/") {
						return boom
					}
					return fsyncDir(path)
				}
			},
			rcpts:    []string{"a@d", "b@d", "c@d"},
			wantErrs: []bool{false, true, false},
			// The rename was made: the file is there, just not known durable.
			wantNew: map[string]int{"d/a": 1, "d/b": 1, "d/c": 1},
		},
		{
			name:     "client data fails mid-message",
			body:     io.MultiReader(strings.NewReader("Subject: x\r\n"), iotest.ErrReader(boom)),
			rcpts:    []string{"a@d", "b@d"},
			wantErrs: []bool{true, true},
			wantNew:  map[string]int{"d/a": 0, "d/b": 0},
		},
		{
			name: "mailbox cannot be created",
			setup: func(t *testing.T, st *maildirStore) {
				if err := os.WriteFile(filepath.Join(st.root, "d"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			rcpts:    []string{"a@d"},
			wantErrs: []bool{true},
		},
		{
			name: "second mailbox cannot be created",
			setup: func(t *testing.T, st *maildirStore) {
				if err := os.WriteFile(filepath.Join(st.root, "e"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			rcpts:    []string{"a@d", "b@e"},
			wantErrs: []bool{false, true},
			wantNew:  map[string]int{"d/a": 1},
		},
		{
			name: "rename into new/ fails",
			setup: func(t *testing.T, st *maildirStore) {
				if err := os.MkdirAll(filepath.Join(st.root, "d", "a", "tmp"), 0o700); err != nil {
					t.Fatal(err)
				}
				// new/ is a file, so the rename cannot land in it.
				if err := os.WriteFile(filepath.Join(st.root, "d", "a", "new"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				st.made.Store(filepath.Join(st.root, "d", "a"), struct{}{})
			},
			rcpts:    []string{"a@d", "b@d"},
			wantErrs: []bool{true, false},
			wantNew:  map[string]int{"d/b": 1},
		},
		{
			name:  "no recipients",
			rcpts: nil,
		},
	}
	for _, tc := range tests {
		for _, mode := range []string{"link", "copy"} {
			if tc.only != "" && tc.only != mode {
				continue
			}
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				st, err := newMaildirStore(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				st.copy = mode == "copy"
				if tc.setup != nil {
					tc.setup(t, st)
				}
				body := tc.body
				if body == nil {
					body = strings.NewReader(unstuffed)
				}
				errs := st.deliver("alice@example.org", tc.rcpts, body)
				if len(errs) != len(tc.rcpts) {
					t.Fatalf("%d results for %d recipients", len(errs), len(tc.rcpts))
				}
				for i, err := range errs {
					if (err != nil) != tc.wantErrs[i] {
						t.Errorf("recipient %d: err = %v, want error %v", i, err, tc.wantErrs[i])
					}
				}
				for mb, n := range tc.wantNew {
					if got := delivered(t, filepath.Join(st.root, mb)); len(got) != n {
						t.Errorf("%s: %d files in new/, want %d", mb, len(got), n)
					}
				}
			})
		}
	}
}

func TestNewMaildirStoreErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, root := range map[string]string{"missing": "/nonexistent/mail", "not a directory": file} {
		t.Run(name, func(t *testing.T) {
			if _, err := newMaildirStore(root); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"neither mode", []string{}, 2, "exactly one of -maildir and -discard"},
		{"both modes", []string{"-discard", "-maildir", "/tmp"}, 2, "exactly one"},
		{"copy without maildir", []string{"-discard", "-copy"}, 2, "-copy needs -maildir"},
		{"bad proto", []string{"-discard", "-proto", "esmtp"}, 2, `-proto "esmtp"`},
		{"extra argument", []string{"-discard", "x"}, 2, "unexpected arguments"},
		{"unknown flag", []string{"-bogus"}, 2, "flag provided but not defined"},
		{"help", []string{"-h"}, 0, "Usage of gosmtpd"},
		{"missing maildir", []string{"-maildir", "/nonexistent/mail"}, 1, "no such file"},
		{"bad address", []string{"-discard", "-listen", "256.0.0.1:1"}, 1, "listen"},
		{"bad profile path", []string{"-discard", "-listen", "127.0.0.1:0", "-cpuprofile", "/nonexistent/cpu.prof"}, 1, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tc.args, &stderr, nil, nil); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
		})
	}
}

// TestUnixSocketAndProfile serves on a unix socket with a CPU profile.
func TestUnixSocketAndProfile(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "lmtp.sock")
	prof := filepath.Join(dir, "cpu.prof")
	ready := make(chan net.Addr, 1)
	stop := make(chan os.Signal)
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"-listen", "unix:" + sock, "-discard", "-cpuprofile", prof}, io.Discard, ready, stop)
	}()
	<-ready
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tp := textproto.NewReader(bufioReader(c))
	if code, _, err := tp.ReadResponse(220); err != nil {
		t.Fatalf("greeting %d: %v", code, err)
	}
	c.Close()
	close(stop)
	if c := <-code; c != 0 {
		t.Fatalf("exit %d", c)
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Errorf("profile: %v", err)
	}
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
