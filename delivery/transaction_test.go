package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/protocol"
)

const testText = "Received: from client by mx; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
	"Return-Path: <forged@example.net>\r\n" +
	"Subject: test\r\n" +
	"\r\n" +
	"line one\r\n" +
	"line two\r\n"

func newRouter(t testing.TB, cfg Config, opts Options) *Router {
	t.Helper()
	p, err := Compile(cfg, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// reloadConfig compiles cfg with r's options and reloads r with it.
func reloadConfig(r *Router, cfg Config) error {
	p, err := Compile(cfg, PlanOptions{})
	if err != nil {
		return err
	}
	return r.Reload(p)
}

// boundPipe returns the pipe target that delivers for domain's route in
// r's running plan.
func boundPipe(r *Router, domain string) *pipeTarget {
	st := r.state.Load()
	return st.target(st.plan.tab.domains[domain].route.target).(*pipeTarget)
}

// run drives a whole transaction: Mail, Rcpt for each recipient (refused
// ones are left out of the message, as the server does), Data.
func run(t testing.TB, ctx context.Context, r *Router, p protocol.Protocol, from string, rcpts []string, text string) (*statuses, []error, error) {
	t.Helper()
	tx, err := r.Mail(ctx, conn(p), addr(from), &protocol.MailParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	var accepted []string
	rcptErrs := make([]error, len(rcpts))
	for i, rc := range rcpts {
		rcptErrs[i] = tx.Rcpt(ctx, &protocol.Recipient{Address: addr(rc)})
		if rcptErrs[i] == nil {
			accepted = append(accepted, rc)
		}
	}
	msg := message(t, from, accepted, text)
	msg.Conn = conn(p)
	st := &statuses{}
	err = tx.Data(ctx, msg, st)
	return st, rcptErrs, err
}

func TestDataEndToEnd(t *testing.T) {
	root := t.TempDir()
	var logs bytes.Buffer
	ctx := testCtx(t, &logs)
	cfg := testConfig(root)
	cfg.DeliveredTo = DeliveredToAlways
	r := newRouter(t, cfg, Options{})
	rcpts := []string{"bob@example.org", "nobody@example.org", "BOB@example.org", "sales@example.org", "bob+lists@example.org", "zed@example.net"}
	st, rcptErrs, err := run(t, ctx, r, protocol.LMTP, "sender@example.com", rcpts, testText)
	if err != nil {
		t.Fatal(err)
	}
	checkCode(t, rcptErrs[1], 550, protocol.EnhancedCode{5, 1, 1})
	// Accepted: 0 bob, 1 BOB (duplicate), 2 sales (bob+Alice), 3 bob+lists, 4 zed.
	for i := 0; i < 5; i++ {
		err, ok := st.get(i)
		if !ok || err != nil {
			t.Errorf("recipient %d: status %v set %v, want delivered", i, err, ok)
		}
	}
	// bob, BOB and sales reach one mailbox and share one copy; bob+lists
	// is another destination (folder .lists) that falls back to INBOX
	// since the folder is missing: two copies in bob's INBOX.
	bob := maildirFiles(t, root, "example.org/bob")
	if len(bob) != 2 {
		t.Fatalf("bob has %d messages, want 2", len(bob))
	}
	alice := maildirFiles(t, root, "example.org/Alice")
	zed := maildirFiles(t, root, "example.net/zed")
	if len(alice) != 1 || len(zed) != 1 {
		t.Fatalf("alice %d, zed %d messages", len(alice), len(zed))
	}
	want := "Return-Path: <sender@example.com>\nDelivered-To: zed@example.net\n" +
		"Received: from client by mx; Mon, 1 Jan 2024 00:00:00 +0000\nSubject: test\n\nline one\nline two\n"
	if zed[0] != want {
		t.Errorf("zed's copy:\n%q\nwant\n%q", zed[0], want)
	}
	if !strings.Contains(alice[0], "Delivered-To: Alice@example.org\n") {
		t.Errorf("alias copy lacks the target's Delivered-To:\n%s", alice[0])
	}
	// One info line per accepted recipient (besides the maildir's one
	// line saying which barrier flush = "auto" chose for the file system).
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["level"] == "info" && m["flush"] == nil {
			lines = append(lines, m)
		}
	}
	if len(lines) != 5 {
		t.Fatalf("%d info lines, want 5:\n%s", len(lines), logs.String())
	}
	for _, k := range []string{"msgid", "from", "to", "size", "status", "duration_ms", "delivery_time_ms", "backend", "file"} {
		if _, ok := lines[0][k]; !ok {
			t.Errorf("log line lacks %q: %v", k, lines[0])
		}
	}
	if lines[0]["message"] != "delivered" || lines[0]["to"] != "bob@example.org" {
		t.Errorf("first log line %v", lines[0])
	}
}

// TestDeliveredToModes: "single" (the default) adds Delivered-To to a
// maildir copy only when the message has one destination, and always to a
// per-recipient pipe's input; "always" to every copy; "never" to none.
func TestDeliveredToModes(t *testing.T) {
	tests := []struct {
		mode     DeliveredToMode
		rcpts    []string
		want     bool // in bob's maildir copy
		wantPipe bool // in fwd's pipe input, when fwd is a recipient
	}{
		{mode: "", rcpts: []string{"bob@example.org"}, want: true},
		{mode: DeliveredToSingle, rcpts: []string{"bob@example.org", "BOB@example.org"}, want: true},
		{mode: DeliveredToSingle, rcpts: []string{"bob@example.org", "zed@example.net"}, want: false},
		{mode: DeliveredToSingle, rcpts: []string{"bob@example.org", "fwd@cmd.example"}, want: false, wantPipe: true},
		{mode: DeliveredToAlways, rcpts: []string{"bob@example.org", "zed@example.net"}, want: true},
		{mode: DeliveredToAlways, rcpts: []string{"bob@example.org", "fwd@cmd.example"}, want: true, wantPipe: true},
		{mode: DeliveredToNever, rcpts: []string{"bob@example.org"}, want: false},
		{mode: DeliveredToNever, rcpts: []string{"bob@example.org", "fwd@cmd.example"}, want: false, wantPipe: false},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+"/"+strings.Join(tt.rcpts, ","), func(t *testing.T) {
			root := t.TempDir()
			out := filepath.Join(t.TempDir(), "fwd")
			cfg := testConfig(root)
			cfg.DeliveredTo = tt.mode
			cfg.Domains = append(cfg.Domains, Domain{
				Name:  "cmd.example",
				Users: []User{{Name: "fwd", Route: sh(`cat > "$1"`, false, out)}},
			})
			r := newRouter(t, cfg, Options{})
			if _, _, err := run(t, testCtx(t, nil), r, protocol.LMTP, "", tt.rcpts, testText); err != nil {
				t.Fatal(err)
			}
			got := maildirFiles(t, root, "example.org/bob")
			if len(got) != 1 {
				t.Fatalf("bob has %d messages", len(got))
			}
			if has := strings.Contains(got[0], "Delivered-To: bob@example.org\n"); has != tt.want {
				t.Errorf("Delivered-To present %v, want %v:\n%s", has, tt.want, got[0])
			}
			if !slices.Contains(tt.rcpts, "fwd@cmd.example") {
				return
			}
			in, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if has := strings.Contains(string(in), "Delivered-To: fwd@cmd.example\n"); has != tt.wantPipe {
				t.Errorf("Delivered-To in the pipe's input %v, want %v:\n%s", has, tt.wantPipe, in)
			}
		})
	}
	bad := testConfig(t.TempDir())
	bad.DeliveredTo = "sometimes"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "delivered_to") {
		t.Errorf("Validate(delivered_to = sometimes) = %v", err)
	}
}

func TestDataHardLinks(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(root)
	r := newRouter(t, cfg, Options{})
	st, _, err := run(t, testCtx(t, nil), r, protocol.LMTP, "", []string{"bob@example.org", "alice@example.org", "zed@example.net"}, testText)
	if err != nil {
		t.Fatal(err)
	}
	var infos []os.FileInfo
	for _, d := range []string{"example.org/bob", "example.org/Alice", "example.net/zed"} {
		ents, _ := os.ReadDir(filepath.Join(root, d, "new"))
		if len(ents) != 1 {
			t.Fatalf("%s has %d messages", d, len(ents))
		}
		fi, _ := os.Stat(filepath.Join(root, d, "new", ents[0].Name()))
		infos = append(infos, fi)
		if got := maildirFiles(t, root, d)[0]; !strings.HasPrefix(got, "Return-Path: <>\nReceived:") {
			t.Errorf("%s: %q", d, got)
		}
	}
	if !os.SameFile(infos[0], infos[1]) || !os.SameFile(infos[0], infos[2]) {
		t.Error("identical copies are not hard links")
	}
	for i := 0; i < 3; i++ {
		if err, ok := st.get(i); !ok || err != nil {
			t.Errorf("recipient %d: %v", i, err)
		}
	}
}

func TestDataLoopCheck(t *testing.T) {
	root := t.TempDir()
	r := newRouter(t, testConfig(root), Options{})
	text := "Delivered-To: <BOB@example.org>\r\n" + testText
	st, _, err := run(t, testCtx(t, nil), r, protocol.LMTP, "a@b", []string{"bob@example.org", "zed@example.net"}, text)
	if err != nil {
		t.Fatal(err)
	}
	e0, _ := st.get(0)
	checkCode(t, e0, 554, protocol.EnhancedCode{5, 4, 6})
	if e1, ok := st.get(1); !ok || e1 != nil {
		t.Errorf("zed: %v", e1)
	}
	if n := len(maildirFiles(t, root, "example.org/bob")); n != 0 {
		t.Errorf("bob got %d messages despite the loop", n)
	}
	// With the check off it is delivered.
	cfg := testConfig(root)
	cfg.LoopCheck = false
	reloadConfig(r, cfg)
	st, _, _ = run(t, testCtx(t, nil), r, protocol.LMTP, "a@b", []string{"bob@example.org"}, text)
	if e0, _ := st.get(0); e0 != nil {
		t.Errorf("loop check off: %v", e0)
	}
}

// failFS fails opening files whose path contains a string.
type failFS struct {
	maildir.FS
	match string
	err   error
}

func (f *failFS) OpenFile(name string, flag int, perm os.FileMode) (maildir.File, error) {
	if flag != os.O_RDONLY && strings.Contains(name, f.match) {
		return nil, &os.PathError{Op: "open", Path: name, Err: f.err}
	}
	return f.FS.OpenFile(name, flag, perm)
}

func TestDataPerRecipientErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		max  int64
		code int
		ec   protocol.EnhancedCode
	}{
		{"enospc", syscall.ENOSPC, 0, 452, protocol.EnhancedCode{4, 3, 1}},
		{"edquot", syscall.EDQUOT, 0, 552, protocol.EnhancedCode{5, 2, 2}},
		{"eacces", syscall.EACCES, 0, 451, protocol.EnhancedCode{4, 3, 5}},
		{"eio", syscall.EIO, 0, 451, protocol.EnhancedCode{4, 3, 0}},
		{"too big", nil, 10, 552, protocol.EnhancedCode{5, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			cfg := testConfig(root)
			opts := Options{}
			match := "Alice"
			if tt.err != nil {
				opts.FS = &failFS{FS: maildir.NewRootFS(root), match: match, err: tt.err}
			} else {
				cfg.Maildir.MaxMessageBytes = tt.max
			}
			r := newRouter(t, cfg, opts)
			var logs bytes.Buffer
			st, _, err := run(t, testCtx(t, &logs), r, protocol.LMTP, "a@b", []string{"alice@example.org", "bob@example.org", "sales@example.org"}, testText)
			if err != nil {
				t.Fatal(err)
			}
			// A configuration problem is logged with what to fix.
			if hasFix := strings.Contains(logs.String(), `"fix":"permission denied`); hasFix != (tt.ec == protocol.EnhancedCode{4, 3, 5}) {
				t.Errorf("log has a fix hint: %v, want it for 4.3.5 only:\n%s", hasFix, logs.String())
			}
			e0, _ := st.get(0)
			checkCode(t, e0, tt.code, tt.ec)
			// sales reaches bob and Alice: Alice's failure is its status.
			e2, _ := st.get(2)
			checkCode(t, e2, tt.code, tt.ec)
			e1, ok := st.get(1)
			if tt.err != nil && (!ok || e1 != nil) {
				t.Errorf("bob: %v, want delivered", e1)
			}
			if n := len(maildirFiles(t, root, "example.org/Alice")); n != 0 {
				t.Errorf("Alice has %d messages", n)
			}
		})
	}
}

func TestDataBodyError(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(root)
	cfg.Spool.Threshold = 4 // spill to a file, and fail halfway
	r := newRouter(t, cfg, Options{})
	ctx := testCtx(t, nil)
	tx, _ := r.Mail(ctx, conn(protocol.LMTP), addr("a@b"), &protocol.MailParams{})
	defer tx.Close()
	tx.Rcpt(ctx, &protocol.Recipient{Address: addr("bob@example.org")})
	msg := message(t, "a@b", []string{"bob@example.org"}, "Subject: x\r\n\r\n")
	msg.Body = io.MultiReader(strings.NewReader("some text\r\n"), iotest.ErrReader(protocol.ErrMessageTooBig))
	st := &statuses{}
	err := tx.Data(ctx, msg, st)
	if !errors.Is(err, protocol.ErrMessageTooBig) {
		t.Fatalf("Data = %v, want ErrMessageTooBig", err)
	}
	if _, ok := st.get(0); ok {
		t.Error("a status was set for an incomplete message")
	}
	if n := len(maildirFiles(t, root, "example.org/bob")); n != 0 {
		t.Errorf("incomplete message delivered")
	}
}

func TestDataSpoolErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		dir  string
		code int
		ec   protocol.EnhancedCode
	}{
		{"missing spool dir", "/nonexistent/spool", 451, protocol.EnhancedCode{4, 3, 5}},
		{"spool dir is a file", "/dev/null", 451, protocol.EnhancedCode{4, 3, 5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			cfg := testConfig(root)
			cfg.Spool = SpoolConfig{Threshold: -1, Dir: tt.dir}
			r := newRouter(t, cfg, Options{})
			st, _, err := run(t, testCtx(t, nil), r, protocol.LMTP, "a@b", []string{"bob@example.org"}, testText)
			checkCode(t, err, tt.code, tt.ec)
			if _, ok := st.get(0); ok {
				t.Error("status set although the message was not spooled")
			}
		})
	}
}

func TestDataLargeMessage(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(root)
	cfg.Spool.Threshold = 1024
	r := newRouter(t, cfg, Options{})
	line := strings.Repeat("x", 998) + "\r\n"
	body := strings.Repeat(line, 2000) // 2 MB
	st, _, err := run(t, testCtx(t, nil), r, protocol.LMTP, "a@b", []string{"bob@example.org", "alice@example.org"}, "Subject: big\r\n\r\n"+body)
	if err != nil {
		t.Fatal(err)
	}
	wantBody := strings.ReplaceAll(body, "\r\n", "\n")
	for i, d := range []string{"example.org/bob", "example.org/Alice"} {
		if e, _ := st.get(i); e != nil {
			t.Fatalf("%s: %v", d, e)
		}
		got := maildirFiles(t, root, d)
		if len(got) != 1 || !strings.HasSuffix(got[0], "\n\n"+wantBody) {
			t.Errorf("%s: body differs", d)
		}
	}
}

func TestStageCommit(t *testing.T) {
	root := t.TempDir()
	r := newRouter(t, testConfig(root), Options{})
	ctx := testCtx(t, nil)
	stage := func(rcpts ...string) (protocol.Transaction, error) {
		tx, _ := r.Mail(ctx, conn(protocol.SMTP), addr("a@b"), &protocol.MailParams{})
		for _, rc := range rcpts {
			if err := tx.Rcpt(ctx, &protocol.Recipient{Address: addr(rc)}); err != nil {
				t.Fatal(err)
			}
		}
		return tx, tx.(protocol.Stager).Stage(ctx, message(t, "a@b", rcpts, testText))
	}
	count := func(d, sub string) int {
		ents, _ := os.ReadDir(filepath.Join(root, d, sub))
		return len(ents)
	}

	tx, err := stage("bob@example.org", "zed@example.net")
	if err != nil {
		t.Fatal(err)
	}
	// Staged: nothing in new/ yet, and in tmp/ one file, or none where
	// the file is staged unnamed (O_TMPFILE) until Commit links it.
	if count("example.org/bob", "tmp") > 1 || count("example.org/bob", "new") != 0 {
		t.Fatal("Stage did not leave at most one file in tmp/ and none in new/")
	}
	if err := tx.(protocol.Stager).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	if count("example.org/bob", "new") != 1 || count("example.net/zed", "new") != 1 || count("example.org/bob", "tmp") != 0 {
		t.Fatal("Commit did not move the files into new/")
	}
	if err := tx.(protocol.Stager).Commit(ctx); err == nil {
		t.Error("second Commit succeeded")
	}

	// Stage, then Close without Commit: nothing stays.
	tx, err = stage("bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	tx.Close()
	if count("example.org/bob", "tmp") != 0 || count("example.org/bob", "new") != 1 {
		t.Fatal("Close after Stage left a file")
	}
}

func TestStageAllOrNothing(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(root)
	cfg.DeliveredTo = DeliveredToAlways // a write per recipient, so one can fail
	r := newRouter(t, cfg, Options{FS: &failFS{FS: maildir.NewRootFS(root), match: "example.net", err: syscall.ENOSPC}})
	ctx := testCtx(t, nil)
	tx, _ := r.Mail(ctx, conn(protocol.SMTP), addr("a@b"), &protocol.MailParams{})
	defer tx.Close()
	rcpts := []string{"bob@example.org", "zed@example.net", "alice@example.org"}
	for _, rc := range rcpts {
		tx.Rcpt(ctx, &protocol.Recipient{Address: addr(rc)})
	}
	err := tx.(protocol.Stager).Stage(ctx, message(t, "a@b", rcpts, testText))
	checkCode(t, err, 452, protocol.EnhancedCode{4, 3, 1})
	for _, d := range []string{"example.org/bob", "example.org/Alice"} {
		if n := len(maildirFiles(t, root, d)); n != 0 {
			t.Errorf("%s got a message from a failed all-or-nothing transaction", d)
		}
	}
}

// sh returns a pipe route running a POSIX shell script; $1 is the
// first extra argument. Braces in the script must be doubled.
func sh(script string, perMessage bool, extra ...string) Route {
	argv := append([]string{"/bin/sh", "-c", script, "sh"}, extra...)
	return Route{Pipe: &Pipe{Command: pipe.Command{Argv: argv}, PerMessage: perMessage}}
}

func TestPipeRoutes(t *testing.T) {
	root := t.TempDir()
	out := t.TempDir()
	cfg := testConfig(root)
	cfg.DeliveredTo = DeliveredToAlways // each command sees its recipient
	cfg.Domains = append(cfg.Domains, Domain{
		Name: "cmd.example",
		Users: []User{
			{Name: "ok", Route: sh(`cat > "$1.$2"`, false, filepath.Join(out, "ok"), "{recipient}")},
			{Name: "tempfail", Route: sh("exit 75", false)},
			{Name: "nouser", Route: sh("exit 67", false)},
			{Name: "quota", Route: sh("echo 4.2.2 over quota; exit 1", false)},
		},
		Aliases: map[string][]string{"all": {"ok", "tempfail"}},
	}, Domain{
		Name:  "batch.example",
		Route: sh(`f=$1; shift; printf '%s\n' "$@" > "$f"; cat >> "$f"`, true, filepath.Join(out, "batch"), "{recipients}"),
		Users: []User{{Name: "a"}, {Name: "b"}},
	})
	r := newRouter(t, cfg, Options{})
	ctx := testCtx(t, nil)
	rcpts := []string{"ok@cmd.example", "tempfail@cmd.example", "nouser@cmd.example", "quota@cmd.example", "all@cmd.example", "a@batch.example", "B@batch.example", "bob@example.org"}
	st, _, err := run(t, ctx, r, protocol.LMTP, "s@example.com", rcpts, testText)
	if err != nil {
		t.Fatal(err)
	}
	wants := []struct {
		code int
		ec   protocol.EnhancedCode
	}{
		{0, protocol.EnhancedCode{}},
		{451, protocol.EnhancedCode{4, 3, 0}},
		{550, protocol.EnhancedCode{5, 1, 1}},
		{452, protocol.EnhancedCode{4, 2, 2}},
		{451, protocol.EnhancedCode{4, 3, 0}}, // alias: one target deferred
		{0, protocol.EnhancedCode{}},
		{0, protocol.EnhancedCode{}},
		{0, protocol.EnhancedCode{}},
	}
	for i, w := range wants {
		e, ok := st.get(i)
		if !ok {
			t.Errorf("recipient %d: no status", i)
			continue
		}
		if w.code == 0 {
			if e != nil {
				t.Errorf("recipient %d (%s): %v", i, rcpts[i], e)
			}
			continue
		}
		checkCode(t, e, w.code, w.ec)
	}
	got, err := os.ReadFile(filepath.Join(out, "ok.ok@cmd.example"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), "Return-Path: <s@example.com>\nDelivered-To: ok@cmd.example\nReceived:") {
		t.Errorf("pipe input:\n%s", got)
	}
	got, _ = os.ReadFile(filepath.Join(out, "batch"))
	if !strings.HasPrefix(string(got), "a@batch.example\nB@batch.example\nReturn-Path: <s@example.com>\nReceived:") {
		t.Errorf("per-message pipe input:\n%s", got)
	}
}

func TestReload(t *testing.T) {
	root := t.TempDir()
	r := newRouter(t, testConfig(root), Options{})
	ctx := testCtx(t, nil)
	old, _ := r.Mail(ctx, conn(protocol.LMTP), addr("a@b"), &protocol.MailParams{})
	defer old.Close()

	cfg := testConfig(root)
	cfg.Domains[0].Users = append(cfg.Domains[0].Users, User{Name: "newbie"})
	if err := reloadConfig(r, cfg); err != nil {
		t.Fatal(err)
	}
	bad := testConfig(root)
	bad.Domains = nil
	if err := reloadConfig(r, bad); err == nil {
		t.Fatal("invalid config accepted")
	}
	tx, _ := r.Mail(ctx, conn(protocol.LMTP), addr("a@b"), &protocol.MailParams{})
	defer tx.Close()
	if err := tx.Rcpt(ctx, &protocol.Recipient{Address: addr("newbie@example.org")}); err != nil {
		t.Errorf("new transaction does not see the new user: %v", err)
	}
	err := old.Rcpt(ctx, &protocol.Recipient{Address: addr("newbie@example.org")})
	checkCode(t, err, 550, protocol.EnhancedCode{5, 1, 1})
	if _, err := Compile(bad, PlanOptions{}); err == nil {
		t.Error("New with an invalid config succeeded")
	}
}

// TestObserve: Options.Observe sees one outcome per recipient and
// destination, with the backend and the recipient's status.
func TestObserve(t *testing.T) {
	root := t.TempDir()
	var mu sync.Mutex
	var got []Outcome
	r := newRouter(t, testConfig(root), Options{Observe: func(o Outcome) {
		mu.Lock()
		got = append(got, o)
		mu.Unlock()
	}})
	ctx := testCtx(t, &bytes.Buffer{})
	_, _, err := run(t, ctx, r, protocol.LMTP, "sender@example.com", []string{"bob@example.org", "zed@example.net"}, testText)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d outcomes, want 2: %+v", len(got), got)
	}
	for _, o := range got {
		if o.Backend != "maildir" || o.Err != nil || o.Duration <= 0 {
			t.Errorf("outcome %+v", o)
		}
	}
}

// TestStageCommitLogsEveryRecipient: in SMTP (Stage, then Commit) every
// recipient gets its one outcome line, those of a pipe command included,
// with the target kind and where the copy went.
func TestStageCommitLogsEveryRecipient(t *testing.T) {
	root := t.TempDir()
	r := newRouter(t, testConfig(root), Options{})
	var logs bytes.Buffer
	ctx := testCtx(t, &logs)
	rcpts := []string{"bob@example.org", "p@pipe.example"}
	tx, _ := r.Mail(ctx, conn(protocol.SMTP), addr("a@b"), &protocol.MailParams{})
	defer tx.Close()
	for _, rc := range rcpts {
		if err := tx.Rcpt(ctx, &protocol.Recipient{Address: addr(rc)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.(protocol.Stager).Stage(ctx, message(t, "a@b", rcpts, testText)); err != nil {
		t.Fatal(err)
	}
	if err := tx.(protocol.Stager).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["message"] == "delivered" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d outcome lines, want 2:\n%s", len(lines), logs.String())
	}
	for i, want := range []struct{ to, backend, key string }{{"bob@example.org", "maildir", "file"}, {"p@pipe.example", "pipe", "command"}} {
		l := lines[i]
		if l["to"] != want.to || fmt.Sprint(l["backend"]) != "["+want.backend+"]" || l[want.key] == nil {
			t.Errorf("line %d: %v, want to %s, backend %s and %s", i, l, want.to, want.backend, want.key)
		}
	}
}

// TestDeliveredToNotTwice: with the loop check off (lmtpd deliver behind
// Postfix's local(8), which adds Delivered-To before running it), a copy
// gets no second Delivered-To for the address the topmost field already
// names, in any case; a topmost field for another address, or one for
// this address further down (an earlier hop), does not stop it.
func TestDeliveredToNotTwice(t *testing.T) {
	tests := []struct {
		name, head string
		want       int // Delivered-To: bob@example.org fields in bob's copy, any case
	}{
		{"none", "", 1},
		{"on top", "Delivered-To: bob@example.org\r\n", 1},
		{"on top, other case and brackets", "Delivered-To: <BOB@Example.org>\r\n", 1},
		{"another address on top", "Delivered-To: list@example.net\r\nDelivered-To: bob@example.org\r\n", 2},
		{"other address only", "Delivered-To: list@example.net\r\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			cfg := testConfig(root)
			cfg.LoopCheck = false
			r := newRouter(t, cfg, Options{})
			st, _, err := run(t, testCtx(t, nil), r, protocol.LMTP, "a@b", []string{"bob@example.org"}, tt.head+testText)
			if err != nil {
				t.Fatal(err)
			}
			if e, _ := st.get(0); e != nil {
				t.Fatalf("bob: %v", e)
			}
			got := maildirFiles(t, root, "example.org/bob")
			if len(got) != 1 {
				t.Fatalf("bob has %d messages", len(got))
			}
			n := 0
			for _, l := range strings.Split(got[0], "\n") {
				if v, ok := strings.CutPrefix(l, "Delivered-To: "); ok && strings.EqualFold(strings.Trim(v, "<>"), "bob@example.org") {
					n++
				}
			}
			if n != tt.want {
				t.Errorf("%d Delivered-To fields for bob, want %d:\n%s", n, tt.want, got[0])
			}
		})
	}
}
