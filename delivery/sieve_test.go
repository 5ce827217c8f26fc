package delivery

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/sieve"
)

func TestSieveFolder(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Lists.go", ".Lists.go"},
		{"Junk", ".Junk"},
		{"INBOX.Work", ".Work"},
		{"Entwürfe", ".Entw&APw-rfe"},
		{"A&B", ".A&-B"},
		{"日本語", ".&ZeVnLIqe-"},
		{"a..b", ""},
		{".hidden", ""},
		{"x/y", ""},
		{"bad\nname", ""},
		{"", ""},
	}
	for _, tc := range tests {
		got, err := sieveFolder(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("sieveFolder(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("sieveFolder(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSanitizeReason(t *testing.T) {
	for in, want := range map[string]string{
		"go away":                 "go away",
		"line one\r\nline two\n":  "line one line two",
		"tab\there\x00nul":        "tab here?nul",
		"ünïcode":                 "?n?code",
		"":                        "Message rejected",
		strings.Repeat("x", 1000): strings.Repeat("x", 200),
	} {
		if got := sanitizeReason(in); got != want {
			t.Errorf("sanitizeReason(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSieveActions covers the actions one at a time over LMTP: flags into
// cur/ with dovecot-keywords, a fileinto without :create to a missing
// folder falling back to INBOX, discard, redirect (sent, a loop refused
// and kept, a failing sendmail kept), several fileintos sharing one file.
func TestSieveActions(t *testing.T) {
	s := newSieveSetup(t, "u")
	r := s.router(t)
	run := func(t *testing.T, script, text string) string {
		t.Helper()
		os.RemoveAll(filepath.Join(s.root, "example.test", "u"))
		s.script(t, "u", script)
		s.log.Reset()
		return s.lmtp(t, r, "sender@remote.test", []string{"u@example.test"}, text)[0]
	}
	msg := "From: sender@remote.test\r\nTo: u@example.test\r\nSubject: hi\r\n\r\nbody\r\n"

	t.Run("flags", func(t *testing.T) {
		got := run(t, `require ["fileinto", "imap4flags", "mailbox"]; fileinto :create :flags ["\\Seen", "\\Flagged", "$Important"] "Work";`, msg)
		if !strings.HasPrefix(got, "250 ") {
			t.Fatal(got)
		}
		cur := files(t, s.root, "example.test/u/.Work", "cur")
		if len(cur) != 1 {
			t.Fatalf(".Work/cur has %d files, want 1", len(cur))
		}
		for name := range cur {
			if !strings.HasSuffix(name, ":2,FSa") {
				t.Errorf("file %s, want the info :2,FSa", name)
			}
		}
		kw, err := os.ReadFile(filepath.Join(s.root, "example.test/u/.Work/dovecot-keywords"))
		if err != nil || string(kw) != "0 $Important\n" {
			t.Errorf("dovecot-keywords %q, %v", kw, err)
		}
	})
	t.Run("missing folder", func(t *testing.T) {
		run(t, `require "fileinto"; fileinto "Nowhere";`, msg)
		if n := len(files(t, s.root, "example.test/u", "new")); n != 1 {
			t.Errorf("INBOX has %d, want 1", n)
		}
		if _, err := os.Stat(filepath.Join(s.root, "example.test/u/.Nowhere")); err == nil {
			t.Error("the folder was created without :create")
		}
		if !strings.Contains(s.log.String(), "fileinto a folder that does not exist") {
			t.Errorf("no log line of the fallback:\n%s", s.log.String())
		}
	})
	t.Run("discard", func(t *testing.T) {
		if got := run(t, `discard;`, msg); !strings.HasPrefix(got, "250 ") {
			t.Fatal(got)
		}
		if n := len(files(t, s.root, "example.test/u", "new")); n != 0 {
			t.Errorf("INBOX has %d after discard", n)
		}
		if !strings.Contains(s.log.String(), `"sieve":"discard"`) {
			t.Errorf("outcome line:\n%s", s.log.String())
		}
	})
	t.Run("two fileintos", func(t *testing.T) {
		run(t, `require ["fileinto", "mailbox"]; fileinto :create "A"; fileinto :create "B"; keep;`, msg)
		a := filepath.Join(s.root, "example.test/u/.A/new")
		b := filepath.Join(s.root, "example.test/u/.B/new")
		ea, _ := os.ReadDir(a)
		eb, _ := os.ReadDir(b)
		ei, _ := os.ReadDir(filepath.Join(s.root, "example.test/u/new"))
		if len(ea) != 1 || len(eb) != 1 || len(ei) != 1 {
			t.Fatalf("A %d, B %d, INBOX %d; want 1 each", len(ea), len(eb), len(ei))
		}
		fa, _ := os.Stat(filepath.Join(a, ea[0].Name()))
		fb, _ := os.Stat(filepath.Join(b, eb[0].Name()))
		if !os.SameFile(fa, fb) {
			t.Error("the copies are not hard links of one file")
		}
	})
	t.Run("redirect", func(t *testing.T) {
		before := len(s.sent(t))
		if got := run(t, `redirect "other@remote.test";`, msg); !strings.HasPrefix(got, "250 ") {
			t.Fatal(got)
		}
		sent := s.sent(t)
		if len(sent) != before+1 {
			t.Fatalf("sendmail got %d new messages, want 1", len(sent)-before)
		}
		m := sent[len(sent)-1]
		if !strings.Contains(m, "ARG -f\nARG sender@remote.test\nARG --\nARG other@remote.test\n") ||
			!strings.Contains(m, "\nDelivered-To: u@example.test\n") || !strings.Contains(m, "\nSubject: hi\n") {
			t.Errorf("redirected message:\n%s", m)
		}
		if n := len(files(t, s.root, "example.test/u", "new")); n != 0 {
			t.Errorf("INBOX has %d after a redirect", n)
		}
	})
	t.Run("redirect loop", func(t *testing.T) {
		// With loop_check on, lmtpd refuses such a message before Sieve
		// runs; without it, redirect refuses the loop itself.
		saved := s.cfg.LoopCheck
		s.cfg.LoopCheck = false
		defer func() { s.cfg.LoopCheck = saved }()
		r2 := s.router(t)
		before := len(s.sent(t))
		os.RemoveAll(filepath.Join(s.root, "example.test", "u"))
		s.script(t, "u", `redirect "other@remote.test";`)
		s.lmtp(t, r2, "sender@remote.test", []string{"u@example.test"}, "Delivered-To: u@example.test\r\n"+msg)
		if len(s.sent(t)) != before {
			t.Error("a looping redirect was sent")
		}
		if n := len(files(t, s.root, "example.test/u", "new")); n != 1 {
			t.Errorf("INBOX has %d after a refused redirect, want 1 (kept)", n)
		}
	})
	t.Run("max redirects", func(t *testing.T) {
		saved := s.cfg.Sieve.MaxRedirects
		defer func() { s.cfg.Sieve.MaxRedirects = saved }()
		s.cfg.Sieve.MaxRedirects = 1
		r2 := s.router(t)
		os.RemoveAll(filepath.Join(s.root, "example.test", "u"))
		s.script(t, "u", `redirect "a@remote.test"; redirect "b@remote.test";`)
		before, errs := len(s.sent(t)), s.event("runtime_error")
		if got := s.lmtp(t, r2, "sender@remote.test", []string{"u@example.test"}, msg)[0]; !strings.HasPrefix(got, "250 ") {
			t.Fatal(got)
		}
		if len(s.sent(t)) != before {
			t.Error("redirects past max_redirects were sent")
		}
		if n := len(files(t, s.root, "example.test/u", "new")); n != 1 || s.event("runtime_error") != errs+1 {
			t.Errorf("INBOX has %d, runtime errors %d; want the message kept and the error counted", n, s.event("runtime_error")-errs)
		}
	})
	t.Run("redirect fails", func(t *testing.T) {
		saved := s.cfg.Sieve.Sendmail
		defer func() { s.cfg.Sieve.Sendmail = saved }()
		s.cfg.Sieve.Sendmail = []string{"/bin/false"}
		r2 := s.router(t)
		os.RemoveAll(filepath.Join(s.root, "example.test", "u"))
		s.script(t, "u", `redirect "other@remote.test";`)
		if got := s.lmtp(t, r2, "sender@remote.test", []string{"u@example.test"}, msg)[0]; !strings.HasPrefix(got, "250 ") {
			t.Fatal(got)
		}
		if n := len(files(t, s.root, "example.test/u", "new")); n != 1 {
			t.Errorf("INBOX has %d after a failed redirect, want 1 (kept)", n)
		}
	})
}

// TestSieveVacationRemembered: a vacation reply is sent only when it can
// be remembered (an unwritable state_dir would otherwise answer every
// message), and a reply whose sendmail failed is tried again by the next
// message.
func TestSieveVacationRemembered(t *testing.T) {
	s := newSieveSetup(t, "u")
	s.script(t, "u", `require "vacation"; vacation :days 1 :addresses "u@example.test" "away";`)
	msg := "From: sender@remote.test\r\nTo: u@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
	send := func(t *testing.T, r *Router) {
		t.Helper()
		if got := s.lmtp(t, r, "sender@remote.test", []string{"u@example.test"}, msg)[0]; !strings.HasPrefix(got, "250 ") {
			t.Fatal(got)
		}
	}

	t.Run("state_dir unwritable", func(t *testing.T) {
		saved := s.cfg.Sieve.StateDir
		defer func() { s.cfg.Sieve.StateDir = saved }()
		// Nothing can be created under /proc, not even by root, and a
		// missing mark there reads as "not replied yet": the case of a
		// state_dir the process cannot write.
		if _, err := os.Stat("/proc/self"); err != nil {
			t.Skip("no /proc")
		}
		s.cfg.Sieve.StateDir = "/proc/lmtpd-test-no-such-dir/sieve"
		r := s.router(t)
		before := len(s.sent(t))
		send(t, r)
		send(t, r)
		if n := len(s.sent(t)) - before; n != 0 {
			t.Errorf("%d vacation replies sent that could not be remembered, want 0", n)
		}
		if !strings.Contains(s.log.String(), "vacation reply not sent: it cannot be remembered") {
			t.Errorf("no log line says why:\n%s", s.log.String())
		}
	})

	t.Run("sendmail fails, then works", func(t *testing.T) {
		saved := s.cfg.Sieve.Sendmail
		s.cfg.Sieve.Sendmail = []string{"/bin/false"}
		failing := s.router(t)
		s.cfg.Sieve.Sendmail = saved
		working := s.router(t)
		before := len(s.sent(t))
		send(t, failing)
		send(t, working)
		send(t, working)
		if n := len(s.sent(t)) - before; n != 1 {
			t.Errorf("%d vacation replies after a failed one, want 1 (the failed one forgotten, the sent one remembered)", n)
		}
	})
}

// TestSieveConfinement: no script path leaves its root: a directory's
// sieve field outside the home, a symbolic link out of the home, an
// include name, all keep the message in INBOX.
func TestSieveConfinement(t *testing.T) {
	s := newSieveSetup(t, "u")
	outside := filepath.Join(t.TempDir(), "evil.sieve")
	os.WriteFile(outside, []byte("discard;"), 0o600)
	st := &sieveStep{cfg: s.cfg.Sieve, root: s.root}
	st.tmpl, _ = parseScriptTemplate(DefaultSieveScript)
	d := Destination{Resolution: Resolution{User: "u", Domain: "example.test"}}
	d.Mailbox = "example.test/u"
	d.Sieve = outside
	if _, _, _, err := st.userScript(d); err == nil {
		t.Error("a sieve field outside the home was accepted")
	}
	d.Sieve = "../../x.sieve"
	if _, _, _, err := st.userScript(d); err == nil {
		t.Error("a relative sieve field leaving the home was accepted")
	}
	d.Sieve = "sieve/active.sieve"
	if p, _, _, err := st.userScript(d); err != nil || p != filepath.Join(s.root, "example.test/u/sieve/active.sieve") {
		t.Errorf("relative sieve field: %q, %v", p, err)
	}
	tm, _ := parseScriptTemplate("/srv/sieve/{domain}/{localpart}.sieve")
	st.tmpl = tm
	d.Sieve = ""
	d.User = "../../etc/passwd"
	p, _, root, err := st.userScript(d)
	if err != nil || root != "/srv/sieve" || !strings.HasPrefix(p, "/srv/sieve/example.test/") || strings.Contains(p, "/etc/") {
		t.Errorf("template with a hostile user name: %q under %q, %v", p, root, err)
	}
	for _, bad := range []string{"sieve", "{home}/../x", "{user}/x", "{home}/{x"} {
		if _, err := parseScriptTemplate(bad); err == nil {
			t.Errorf("template %q accepted", bad)
		}
	}

	// A symbolic link from the home to a script elsewhere is not followed
	// out of the root: the message is kept.
	r := s.router(t)
	home := filepath.Join(s.root, "example.test", "u")
	os.MkdirAll(home, 0o700)
	if err := os.Symlink(outside, filepath.Join(home, ".dovecot.sieve")); err != nil {
		t.Fatal(err)
	}
	got := s.lmtp(t, r, "sender@remote.test", []string{"u@example.test"}, "Subject: x\r\n\r\nx\r\n")
	if !strings.HasPrefix(got[0], "250 ") || len(files(t, s.root, "example.test/u", "new")) != 1 {
		t.Errorf("a script linked from outside the home was run: %q", got)
	}
}

// TestSieveIncludeAndChain: include :personal next to the user's script
// and :global in global_dir; before scripts run first and the chain stops
// once the implicit keep is cancelled.
func TestSieveIncludeAndChain(t *testing.T) {
	s := newSieveSetup(t, "u")
	global := t.TempDir()
	before := t.TempDir()
	os.WriteFile(filepath.Join(global, "spam.sieve"), []byte(`require ["fileinto", "mailbox"]; if header :contains "subject" "SPAM" { fileinto :create "Junk"; stop; }`), 0o600)
	os.WriteFile(filepath.Join(before, "10-flag.sieve"), []byte(`require "imap4flags"; if header :is "x-important" "yes" { addflag "\\Flagged"; keep; }`), 0o600)
	s.cfg.Sieve.GlobalDir = global
	s.cfg.Sieve.Before = []string{before}
	s.script(t, "u", `require ["include", "fileinto", "mailbox"]; include :global "spam"; include :personal "lists"; `)
	os.WriteFile(filepath.Join(s.root, "example.test/u/lists.sieve"), []byte(`require ["fileinto", "mailbox"]; if header :contains "list-id" "go" { fileinto :create "Go"; }`), 0o600)
	r := s.router(t)
	s.lmtp(t, r, "a@remote.test", []string{"u@example.test"}, "Subject: SPAM now\r\n\r\nx\r\n")
	s.lmtp(t, r, "a@remote.test", []string{"u@example.test"}, "Subject: hi\r\nList-Id: <go.lists>\r\n\r\nx\r\n")
	s.lmtp(t, r, "a@remote.test", []string{"u@example.test"}, "Subject: hi\r\nX-Important: yes\r\n\r\nx\r\n")
	if n := len(files(t, s.root, "example.test/u/.Junk", "new")); n != 1 {
		t.Errorf("Junk has %d, want 1 (include :global)", n)
	}
	if n := len(files(t, s.root, "example.test/u/.Go", "new")); n != 1 {
		t.Errorf("Go has %d, want 1 (include :personal)", n)
	}
	cur := files(t, s.root, "example.test/u", "cur")
	if len(cur) != 1 {
		t.Fatalf("INBOX cur has %d, want the flagged message (before script)", len(cur))
	}
	for name := range cur {
		if !strings.HasSuffix(name, ":2,F") {
			t.Errorf("flagged message %s", name)
		}
	}
}

// TestSieveSMTPFold: in SMTP one reply covers all recipients: a reject
// folds as a permanent failure of the transaction (protocol.WorseStatus),
// and nothing is stored for anyone.
func TestSieveSMTPFold(t *testing.T) {
	s := newSieveSetup(t, "a", "b")
	s.script(t, "b", `require "reject"; reject "no thanks";`)
	r := s.router(t)
	ctx := testCtx(t, &s.log)
	tx, err := r.Mail(ctx, conn(protocol.SMTP), addr("x@remote.test"), &protocol.MailParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	m := message(t, "x@remote.test", []string{"a@example.test", "b@example.test"}, "Subject: s\r\n\r\nbody\r\n")
	for _, rc := range m.Recipients {
		if err := tx.Rcpt(ctx, rc); err != nil {
			t.Fatal(err)
		}
	}
	err = tx.(protocol.Stager).Stage(ctx, m)
	checkCode(t, err, 550, protocol.EnhancedCode{5, 7, 1})
	if pe := protocol.AsError(err); pe == nil || pe.Message != "no thanks" {
		t.Errorf("reply %v, want the reason", err)
	}
	if n := len(files(t, s.root, "example.test/a", "new")) + len(files(t, s.root, "example.test/a", "tmp")); n != 0 {
		t.Errorf("a has %d files after a failed SMTP transaction", n)
	}
}

// upperStep is a Step of a caller's own: it answers for recipients whose
// address starts with "full" (as a quota step would) and adds a copy into
// a folder for the others.
type upperStep struct{}

func (upperStep) Name() string { return "test" }

func (upperStep) Apply(_ context.Context, m *Message, rcpt int, ds []Destination) StepResult {
	if strings.HasPrefix(m.Recipients[rcpt].Address.LocalPart, "full") {
		return StepResult{Err: protocol.NewError(552, protocol.EnhancedCode{5, 2, 2}, "Mailbox full"), LogKey: "test", LogValue: "full"}
	}
	c := ds[0]
	c.Folder, c.CreateFolder = ".Copy", true
	return StepResult{Destinations: append(ds, c), LogKey: "test", LogValue: "copied"}
}

func TestStepOfCaller(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(root)
	cfg.Domains = []Domain{{Name: "example.test", Users: []User{{Name: "ok"}, {Name: "full"}}}}
	p, err := Compile(cfg, PlanOptions{Steps: []Step{upperStep{}}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := &sieveSetup{root: root}
	got := s.lmtp(t, r, "x@remote.test", []string{"ok@example.test", "full@example.test"}, "Subject: s\r\n\r\nbody\r\n")
	if !strings.HasPrefix(got[0], "250 ") || got[1] != "552 5.2.2 <full@example.test> Mailbox full" {
		t.Errorf("replies %q", got)
	}
	if len(files(t, root, "example.test/ok", "new")) != 1 || len(files(t, root, "example.test/ok/.Copy", "new")) != 1 {
		t.Error("the step's extra copy is missing")
	}
	if !strings.Contains(s.log.String(), `"test":"full"`) || !strings.Contains(s.log.String(), `"test":"copied"`) {
		t.Errorf("outcome lines lack the step's field:\n%s", s.log.String())
	}
}

func TestApplyEdits(t *testing.T) {
	base := []byte("Received: x\nX-A: 1\nSubject: s\nX-A: 2\n  folded\nX-A: 3\n\n")
	got := string(applyEdits(base, []sieve.HeaderEdit{
		{Add: true, Name: "X-New", Value: "grüße"},
		{Name: "X-A", Delete: []int{2}},
		{Add: true, Last: true, Name: "X-Last", Value: "end"},
		{Name: "x-a", Delete: []int{2}},
	}))
	want := "X-New: =?utf-8?q?gr=C3=BC=C3=9Fe?=\nReceived: x\nX-A: 1\nSubject: s\nX-Last: end\n\n"
	if got != want {
		t.Errorf("applyEdits:\n%q\nwant\n%q", got, want)
	}
	if got := applyEdits([]byte("A: b\n"), []sieve.HeaderEdit{{Add: true, Last: true, Name: "C", Value: "d"}}); string(got) != "A: b\nC: d\n" {
		t.Errorf("a header without its empty line: %q", got)
	}
}

// TestSieveEditheader: the stored copy carries the script's header edits.
func TestSieveEditheader(t *testing.T) {
	s := newSieveSetup(t, "u")
	s.script(t, "u", `require ["editheader", "fileinto", "mailbox"]; addheader "X-Filtered" "yes"; deleteheader "X-Spam"; fileinto :create "F";`)
	r := s.router(t)
	s.lmtp(t, r, "a@remote.test", []string{"u@example.test"}, "X-Spam: no\r\nSubject: hi\r\n\r\nbody\r\n")
	f := files(t, s.root, "example.test/u/.F", "new")
	if len(f) != 1 {
		t.Fatalf(".F has %d", len(f))
	}
	for _, m := range f {
		if !strings.Contains(m, "\nX-Filtered: yes\nReceived: ") || strings.Contains(m, "X-Spam") || !strings.HasSuffix(m, "\nSubject: hi\n\nbody\n") {
			t.Errorf("stored copy:\n%s", m)
		}
	}
}

// TestSieveDuplicate: duplicate's mark is recorded only once the
// recipient was delivered: a message refused later (here by a caller's
// step) is not a duplicate when it comes again; a delivered one is.
func TestSieveDuplicate(t *testing.T) {
	s := newSieveSetup(t, "u", "full")
	script := `require "duplicate"; if duplicate { discard; stop; }`
	s.script(t, "u", script)
	s.script(t, "full", script)
	p, err := Compile(s.cfg, PlanOptions{Steps: []Step{upperStep{}}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	msg := "Message-ID: <dup@remote.test>\r\nSubject: d\r\n\r\nbody\r\n"
	for range 2 {
		got := s.lmtp(t, r, "a@remote.test", []string{"u@example.test", "full@example.test"}, msg)
		if !strings.HasPrefix(got[0], "250 ") || !strings.HasPrefix(got[1], "552 ") {
			t.Fatalf("replies %q", got)
		}
	}
	if n := len(files(t, s.root, "example.test/u", "new")); n != 1 {
		t.Errorf("u has %d copies, want 1 (the second is a duplicate)", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.stateDir, "example.test", "full")); len(ents) != 0 {
		t.Errorf("a refused recipient's duplicate mark was recorded: %d files", len(ents))
	}
	if !strings.Contains(s.log.String(), `"to":"full@example.test"`) || strings.Count(s.log.String(), `"sieve":"discard"`) != 1 {
		t.Errorf("log:\n%s", s.log.String())
	}
}

// TestSieveConcurrent: transactions at once share the script cache and
// the state directory (run with -race); every message is filed, and the
// script changed in the middle is compiled again without harm.
func TestSieveConcurrent(t *testing.T) {
	s := newSieveSetup(t, "u")
	s.script(t, "u", `require ["fileinto", "mailbox", "imap4flags"]; fileinto :create :flags "$Seen1" "C";`)
	r := s.router(t)
	ctx := testCtx(t, nil)
	const n = 16
	errs := make(chan error, n)
	for i := range n {
		if i == n/2 {
			s.script(t, "u", `require ["fileinto", "mailbox", "imap4flags"]; fileinto :create :flags "$Seen2" "C"; # v2`)
		}
		m := message(t, "x@remote.test", []string{"u@example.test"}, fmt.Sprintf("Message-ID: <%d@x>\r\nSubject: s\r\n\r\nbody\r\n", i))
		go func() {
			tx, err := r.Mail(ctx, conn(protocol.LMTP), addr("x@remote.test"), &protocol.MailParams{})
			if err != nil {
				errs <- err
				return
			}
			defer tx.Close()
			if err := tx.Rcpt(ctx, m.Recipients[0]); err != nil {
				errs <- err
				return
			}
			st := &statuses{}
			if err := tx.Data(ctx, m, st); err != nil {
				errs <- err
				return
			}
			e, _ := st.get(0)
			errs <- e
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := len(files(t, s.root, "example.test/u/.C", "cur")); got != n {
		t.Errorf(".C/cur has %d, want %d", got, n)
	}
}

// TestSieveSMTPRedirectAfterCommit: in SMTP a redirect is sent only once
// the transaction is committed. A first attempt whose Stage fails for
// another recipient sends nothing; the retry sends the redirect once.
func TestSieveSMTPRedirectAfterCommit(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		inbox        int // a's INBOX after the retry
	}{
		{"redirect only", `redirect "fwd@remote.test";`, 0},
		{"redirect copy", `require "copy"; redirect :copy "fwd@remote.test";`, 1},
		{"vacation", `require "vacation"; vacation :addresses ["a@example.test"] "away";`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSieveSetup(t, "a", "b")
			s.script(t, "a", tc.script)
			r := s.router(t)
			ctx := testCtx(t, &s.log)
			attempt := func(t *testing.T) (stageErr, commitErr error) {
				t.Helper()
				tx, err := r.Mail(ctx, conn(protocol.SMTP), addr("x@remote.test"), &protocol.MailParams{})
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Close()
				m := message(t, "x@remote.test", []string{"a@example.test", "b@example.test"}, "From: x@remote.test\r\nTo: a@example.test\r\nSubject: s\r\n\r\nbody\r\n")
				for _, rc := range m.Recipients {
					if err := tx.Rcpt(ctx, rc); err != nil {
						t.Fatal(err)
					}
				}
				if err := tx.(protocol.Stager).Stage(ctx, m); err != nil {
					return err, nil
				}
				return nil, tx.(protocol.Stager).Commit(ctx)
			}

			// b's mailbox cannot be written: a file where its maildir
			// should be, so b's staging fails after a's was staged.
			bdir := filepath.Join(s.root, "example.test", "b")
			if err := os.RemoveAll(bdir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bdir, []byte("not a maildir"), 0o600); err != nil {
				t.Fatal(err)
			}
			stageErr, _ := attempt(t)
			if stageErr == nil {
				t.Fatal("the first Stage succeeded; want a failure for b")
			}
			if n := len(s.sent(t)); n != 0 {
				t.Fatalf("sendmail got %d messages from a failed transaction, want 0:\n%s", n, s.log.String())
			}

			if err := os.Remove(bdir); err != nil {
				t.Fatal(err)
			}
			stageErr, commitErr := attempt(t)
			if stageErr != nil || commitErr != nil {
				t.Fatalf("retry: Stage %v, Commit %v", stageErr, commitErr)
			}
			sent := s.sent(t)
			if len(sent) != 1 {
				t.Fatalf("sendmail got %d messages after the retry, want 1", len(sent))
			}
			if n := len(files(t, s.root, "example.test/a", "new")); n != tc.inbox {
				t.Errorf("a's INBOX has %d, want %d", n, tc.inbox)
			}
		})
	}
}

// TestSieveSMTPRedirectFailsAfterCommit: a redirect whose sendmail fails
// once the SMTP transaction is committed is kept in INBOX, the whole
// message read from the spool that stays open until Commit returns.
func TestSieveSMTPRedirectFailsAfterCommit(t *testing.T) {
	s := newSieveSetup(t, "a")
	s.cfg.Sieve.Sendmail = []string{"/bin/false"}
	s.script(t, "a", `redirect "fwd@remote.test";`)
	r := s.router(t)
	ctx := testCtx(t, &s.log)
	tx, err := r.Mail(ctx, conn(protocol.SMTP), addr("x@remote.test"), &protocol.MailParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	body := strings.Repeat("a line of the body\r\n", 2000)
	m := message(t, "x@remote.test", []string{"a@example.test"}, "Subject: s\r\n\r\n"+body)
	if err := tx.Rcpt(ctx, m.Recipients[0]); err != nil {
		t.Fatal(err)
	}
	if err := tx.(protocol.Stager).Stage(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := tx.(protocol.Stager).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := files(t, s.root, "example.test/a", "new")
	if len(got) != 1 {
		t.Fatalf("a's INBOX has %d, want 1 (kept after the failed redirect):\n%s", len(got), s.log.String())
	}
	for _, text := range got {
		if !strings.HasSuffix(strings.ReplaceAll(text, "\r\n", "\n"), strings.ReplaceAll(body, "\r\n", "\n")) {
			t.Errorf("the kept copy lacks the body (%d bytes)", len(text))
		}
	}
	if !strings.Contains(s.log.String(), "kept in INBOX after a failed redirect") {
		t.Errorf("no log line for the fallback:\n%s", s.log.String())
	}
}
