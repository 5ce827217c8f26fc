package delivery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/protocol"
)

// faultFS is the maildir file system with failures switched on and off
// by the test: while on, every new file in tmp/ of the maildirs in tmpOf
// (a copy being staged) and every rename into new/ of those in newOf (a
// commit) fails with EIO.
type faultFS struct {
	maildir.FS
	on           atomic.Bool
	tmpOf, newOf []string // maildirs relative to the root: "example.test/a"
}

func (f *faultFS) hit(name string, dirs []string, sub string) bool {
	if !f.on.Load() {
		return false
	}
	for _, d := range dirs {
		if strings.HasPrefix(name, d+"/"+sub+"/") {
			return true
		}
	}
	return false
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (maildir.File, error) {
	if flag != os.O_RDONLY && f.hit(name, f.tmpOf, "tmp") {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EIO}
	}
	return f.FS.OpenFile(name, flag, perm)
}

func (f *faultFS) Link(oldname, newname string) error {
	if f.hit(newname, f.tmpOf, "tmp") {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EIO}
	}
	return f.FS.Link(oldname, newname)
}

func (f *faultFS) Rename(oldname, newname string) error {
	if f.hit(newname, f.newOf, "new") {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.EIO}
	}
	return f.FS.Rename(oldname, newname)
}

// failingSendmail makes s's sendmail refuse (exit 75, EX_TEMPFAIL) every
// message to fail@remote.test and hand the others to the recording one.
func failingSendmail(t *testing.T, s *sieveSetup) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sendmail-fail")
	src := "#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = fail@remote.test ]; then echo 'refused for the test' >&2; exit 75; fi; done\nexec " +
		s.cfg.Sieve.Sendmail[0] + " \"$@\"\n"
	if err := os.WriteFile(bin, []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	s.cfg.Sieve.Sendmail[0] = bin
}

// faultRouter is s's router on a faultFS of s.root.
func (s *sieveSetup) faultRouter(t *testing.T, f *faultFS) *Router {
	f.FS = maildir.NewRootFS(s.root)
	return newRouter(t, s.cfg, Options{FS: f})
}

// TestSieveRedirectNotKept: a redirect whose sendmail fails after the
// recipient's commit is kept in INBOX by a late store; when that store
// fails too the recipient is deferred (451 4.3.0) instead of its message
// being lost: in LMTP that recipient only, in SMTP the one reply. The
// resend delivers it, and the redirect that had gone out is not sent a
// second time.
func TestSieveRedirectNotKept(t *testing.T) {
	const script = `redirect "fwd@remote.test"; redirect "fail@remote.test";`
	const msg = "From: sender@remote.test\r\nTo: a@example.test\r\nSubject: hi\r\nMessage-ID: <keep1@remote.test>\r\n\r\nbody\r\n"
	rcpts := []string{"a@example.test", "b@example.test", "c@example.test"}
	tests := []struct {
		name       string
		proto      protocol.Protocol
		inboxFails bool
		want       []string // the DATA replies
		inboxA     int      // a's INBOX after the first attempt
		retry      []string // recipients the client sends the message to again
		inboxBC    int      // b's and c's INBOX after the retry
	}{
		{"lmtp sendmail and INBOX fail", protocol.LMTP, true,
			[]string{"451 4.3.0 <a@example.test> Message could not be stored, try again later", "250 2.", "250 2."},
			0, []string{"a@example.test"}, 1},
		{"lmtp only sendmail fails", protocol.LMTP, false,
			[]string{"250 2.", "250 2.", "250 2."}, 1, nil, 1},
		{"smtp sendmail and INBOX fail", protocol.SMTP, true,
			[]string{"451 4.3.0 Message could not be stored, try again later"},
			// b and c were stored before a's hook failed: the resend
			// stores them again, a duplicate rather than a loss.
			0, rcpts, 2},
		{"smtp only sendmail fails", protocol.SMTP, false,
			[]string{"250 2."}, 1, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSieveSetup(t, "a", "b", "c")
			failingSendmail(t, s)
			s.script(t, "a", script)
			f := &faultFS{tmpOf: []string{"example.test/a"}}
			f.on.Store(tc.inboxFails)
			r := s.faultRouter(t, f)

			got := s.dialogue(t, r, tc.proto, "sender@remote.test", rcpts, msg)
			if len(got) != len(tc.want) {
				t.Fatalf("replies %q, want %q", got, tc.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("reply %d: %q, want %q", i, got[i], tc.want[i])
				}
			}
			if n := len(files(t, s.root, "example.test/a", "new")); n != tc.inboxA {
				t.Errorf("a's INBOX has %d, want %d:\n%s", n, tc.inboxA, s.log.String())
			}
			for _, u := range []string{"b", "c"} {
				if n := len(files(t, s.root, "example.test/"+u, "new")); n != 1 {
					t.Errorf("%s's INBOX has %d, want 1", u, n)
				}
			}
			sent := s.sent(t)
			if len(sent) != 1 || !strings.Contains(sent[0], "ARG fwd@remote.test\n") {
				t.Fatalf("sendmail got %d messages, want the one to fwd@remote.test", len(sent))
			}
			logs := s.log.String()
			if tc.inboxFails {
				if !strings.Contains(logs, "could not be kept in INBOX either") || !strings.Contains(logs, `"message":"deferred"`) {
					t.Errorf("the deferral is not logged:\n%s", logs)
				}
			} else if !strings.Contains(logs, "kept in INBOX after a failed redirect") {
				t.Errorf("the late keep is not logged:\n%s", logs)
			}
			if tc.retry == nil {
				return
			}

			// The client resends once the store works again.
			f.on.Store(false)
			got = s.dialogue(t, r, tc.proto, "sender@remote.test", tc.retry, msg)
			for i, g := range got {
				if !strings.HasPrefix(g, "250 2.") {
					t.Errorf("retry reply %d: %q, want 250", i, g)
				}
			}
			if n := len(files(t, s.root, "example.test/a", "new")); n != 1 {
				t.Errorf("a's INBOX has %d after the retry, want 1 (the late keep)", n)
			}
			for _, u := range []string{"b", "c"} {
				if n := len(files(t, s.root, "example.test/"+u, "new")); n != tc.inboxBC {
					t.Errorf("%s's INBOX has %d after the retry, want %d", u, n, tc.inboxBC)
				}
			}
			if n := len(s.sent(t)); n != 1 {
				t.Errorf("sendmail got %d messages after the retry, want still 1 (the redirect to fwd@ is not sent twice)", n)
			}
			if !strings.Contains(s.log.String(), "sent by an earlier attempt") {
				t.Errorf("no log line for the redirect not sent again:\n%s", s.log.String())
			}
		})
	}
}

// TestSieveSMTPCommitPartWay: an SMTP transaction whose commit fails part
// way (c committed, then b's rename fails) answers 4xx, and the client
// resends the whole message: the redirects of a (redirect only) and c
// (redirect :copy) are sent by the resend that succeeds, once each, and
// not by the attempt that failed. c's copy, committed by the first
// attempt, is stored again (the duplicate Stager.Commit documents).
func TestSieveSMTPCommitPartWay(t *testing.T) {
	s := newSieveSetup(t, "a", "b", "c")
	s.script(t, "a", `redirect "fwd-a@remote.test";`)
	s.script(t, "c", `require "copy"; redirect :copy "fwd-c@remote.test";`)
	f := &faultFS{newOf: []string{"example.test/b"}}
	f.on.Store(true)
	r := s.faultRouter(t, f)
	rcpts := []string{"c@example.test", "b@example.test", "a@example.test"}
	const msg = "From: sender@remote.test\r\nTo: list@remote.test\r\nSubject: hi\r\nMessage-ID: <part1@remote.test>\r\n\r\nbody\r\n"

	got := s.dialogue(t, r, protocol.SMTP, "sender@remote.test", rcpts, msg)
	if !strings.HasPrefix(got[0], "451 4.3.0 ") {
		t.Fatalf("reply %q, want 451 4.3.0 (b's commit failed)", got[0])
	}
	if n := len(files(t, s.root, "example.test/c", "new")); n != 1 {
		t.Fatalf("c's INBOX has %d, want 1: the test needs c committed before b failed", n)
	}
	if n := len(s.sent(t)); n != 0 {
		t.Fatalf("sendmail got %d messages from an attempt answered 451, want 0:\n%s", n, s.log.String())
	}
	if !strings.Contains(s.log.String(), "another recipient of the message failed") {
		t.Errorf("a (nothing stored) is not logged as not delivered:\n%s", s.log.String())
	}

	f.on.Store(false)
	got = s.dialogue(t, r, protocol.SMTP, "sender@remote.test", rcpts, msg)
	if !strings.HasPrefix(got[0], "250 2.") {
		t.Fatalf("retry: %q", got[0])
	}
	sent := s.sent(t)
	if len(sent) != 2 {
		t.Fatalf("sendmail got %d messages, want 2 (each redirect once)", len(sent))
	}
	joined := strings.Join(sent, "\n")
	for _, to := range []string{"fwd-a@remote.test", "fwd-c@remote.test"} {
		if strings.Count(joined, "ARG "+to+"\n") != 1 {
			t.Errorf("the redirect to %s was not sent exactly once", to)
		}
	}
	if n := len(files(t, s.root, "example.test/b", "new")); n != 1 {
		t.Errorf("b's INBOX has %d, want 1", n)
	}
	if n := len(files(t, s.root, "example.test/c", "new")); n != 2 {
		t.Errorf("c's INBOX has %d, want 2 (the half-way commit's copy and the retry's)", n)
	}
	if n := len(files(t, s.root, "example.test/a", "new")); n != 0 {
		t.Errorf("a's INBOX has %d, want 0 (redirect only)", n)
	}
}

// doneStep is a Step of a caller's own whose Done hook records the status
// it is given and fails for recipients whose local part is "late", as
// Sieve's hook does when a redirect can be neither sent nor kept.
type doneStep struct {
	mu  sync.Mutex
	got map[string][]error // by local part: the statuses Done saw
}

func (*doneStep) Name() string { return "done" }

func (s *doneStep) Apply(_ context.Context, m *Message, rcpt int, ds []Destination) StepResult {
	lp := m.Recipients[rcpt].Address.LocalPart
	return StepResult{Destinations: ds, Done: func(_ context.Context, status error) error {
		s.mu.Lock()
		s.got[lp] = append(s.got[lp], status)
		s.mu.Unlock()
		if status == nil && lp == "late" {
			return protocol.WrapError(451, protocol.EnhancedCode{4, 3, 0}, "Try again later", errors.New("the hook failed"))
		}
		return nil
	}}
}

// TestStepDoneError: a Done hook's error replaces its recipient's status
// before the reply is written: in LMTP that recipient's reply alone, in
// SMTP the one reply. Done sees nil only when the recipient is delivered
// and, in SMTP, the whole message is.
func TestStepDoneError(t *testing.T) {
	for _, proto := range []protocol.Protocol{protocol.LMTP, protocol.SMTP} {
		t.Run(proto.String(), func(t *testing.T) {
			root := t.TempDir()
			cfg := testConfig(root)
			cfg.Domains = []Domain{{Name: "example.test", Users: []User{{Name: "ok"}, {Name: "late"}, {Name: "after"}}}}
			step := &doneStep{got: map[string][]error{}}
			p, err := Compile(cfg, PlanOptions{Steps: []Step{step}})
			if err != nil {
				t.Fatal(err)
			}
			r, err := New(p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			s := &sieveSetup{root: root}
			got := s.dialogue(t, r, proto, "x@remote.test", []string{"ok@example.test", "late@example.test", "after@example.test"}, "Subject: s\r\n\r\nbody\r\n")
			want := []string{"250 2.0.0 <ok@example.test>", "451 4.3.0 <late@example.test> Try again later", "250 2.0.0 <after@example.test>"}
			if proto == protocol.SMTP {
				want = []string{"451 4.3.0 Try again later"}
			}
			if len(got) != len(want) {
				t.Fatalf("replies %q, want %q", got, want)
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Errorf("reply %d: %q, want %q", i, got[i], want[i])
				}
			}
			step.mu.Lock()
			defer step.mu.Unlock()
			for _, lp := range []string{"ok", "late", "after"} {
				if len(step.got[lp]) != 1 {
					t.Fatalf("Done of %s called %d times, want once", lp, len(step.got[lp]))
				}
			}
			if step.got["ok"][0] != nil || step.got["late"][0] != nil {
				t.Errorf("Done saw %v and %v, want nil (delivered)", step.got["ok"][0], step.got["late"][0])
			}
			// In SMTP the message is deferred by late's hook before after's
			// runs: after's hook sees the failure and sends nothing.
			if afterErr := step.got["after"][0]; (proto == protocol.SMTP) != (afterErr != nil) {
				t.Errorf("%s: after's Done saw %v", proto, afterErr)
			}
		})
	}
}
