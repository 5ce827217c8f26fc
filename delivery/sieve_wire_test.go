package delivery

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
)

// sieveSetup is a maildir root for example.test with Sieve on, a test
// sendmail that writes each message it is given (argv, then stdin) to a
// file in outDir, and a log buffer.
type sieveSetup struct {
	root, outDir, stateDir string
	cfg                    Config
	log                    bytes.Buffer
	mu                     sync.Mutex
	events                 map[string]int
}

func newSieveSetup(t *testing.T, users ...string) *sieveSetup {
	t.Helper()
	s := &sieveSetup{root: t.TempDir(), outDir: t.TempDir(), stateDir: filepath.Join(t.TempDir(), "state"), events: map[string]int{}}
	bin := filepath.Join(t.TempDir(), "sendmail")
	script := "#!/bin/sh\nf=\"" + s.outDir + "/$$.$(date +%s%N)\"\nfor a in \"$@\"; do printf 'ARG %s\\n' \"$a\"; done > \"$f.tmp\"\necho >> \"$f.tmp\"\ncat >> \"$f.tmp\"\nmv \"$f.tmp\" \"$f.mail\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s.cfg = testConfig(s.root)
	var us []User
	for _, u := range users {
		us = append(us, User{Name: u})
	}
	s.cfg.Domains = []Domain{{Name: "example.test", Users: us}}
	s.cfg.Sieve = SieveConfig{Enabled: true, Sendmail: []string{bin, "-i", "-f", "{sender}", "--", "{recipient}"}, StateDir: s.stateDir}
	return s
}

// script writes user's .dovecot.sieve (the default template: {home} is
// the maildir) the way ManageSieve and editors do, by renaming a finished
// file over it, so a delivery running meanwhile reads the old script or
// the new one, never half of one.
func (s *sieveSetup) script(t *testing.T, user, src string) {
	t.Helper()
	dir := filepath.Join(s.root, "example.test", user)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".dovecot.sieve.tmp")
	if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ".dovecot.sieve")); err != nil {
		t.Fatal(err)
	}
}

func (s *sieveSetup) router(t *testing.T) *Router {
	return newRouter(t, s.cfg, Options{ObserveSieve: func(e string) {
		s.mu.Lock()
		s.events[e]++
		s.mu.Unlock()
	}})
}

func (s *sieveSetup) event(e string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events[e]
}

// sent returns what the test sendmail got, oldest first.
func (s *sieveSetup) sent(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(s.outDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".mail") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(s.outDir, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// lmtp runs one LMTP transaction over a unix socket to a protocol.Server
// in front of r, logging into s.log, and returns the RCPT replies and the
// per-recipient DATA replies.
func (s *sieveSetup) lmtp(t *testing.T, r *Router, from string, rcpts []string, text string) []string {
	t.Helper()
	return s.dialogue(t, r, protocol.LMTP, from, rcpts, text)
}

// dialogue is lmtp in either protocol: in SMTP (EHLO) there is one DATA
// reply.
func (s *sieveSetup) dialogue(t *testing.T, r *Router, proto protocol.Protocol, from string, rcpts []string, text string) []string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(&lockedBuffer{b: &s.log})
	srv := &protocol.Server{Protocol: proto, Hostname: "lda.example.test", Backend: r, Logger: &log}
	go srv.Serve(l)
	defer srv.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	reply := func() string {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading a reply: %v\n%s", err, s.log.String())
			}
			if len(line) >= 4 && line[3] == '-' {
				continue
			}
			return strings.TrimRight(line, "\r\n")
		}
	}
	send := func(l string) {
		if _, err := c.Write([]byte(l + "\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	reply()
	if proto == protocol.LMTP {
		send("LHLO client.example.test")
	} else {
		send("EHLO client.example.test")
	}
	reply()
	send("MAIL FROM:<" + from + ">")
	if r := reply(); !strings.HasPrefix(r, "250") {
		t.Fatalf("MAIL: %s", r)
	}
	for _, rc := range rcpts {
		send("RCPT TO:<" + rc + ">")
		if r := reply(); !strings.HasPrefix(r, "250") {
			t.Fatalf("RCPT %s: %s", rc, r)
		}
	}
	send("DATA")
	if r := reply(); !strings.HasPrefix(r, "354") {
		t.Fatalf("DATA: %s", r)
	}
	if _, err := c.Write([]byte(text + ".\r\n")); err != nil {
		t.Fatal(err)
	}
	var out []string
	for range rcpts {
		out = append(out, reply())
		if proto != protocol.LMTP {
			break
		}
	}
	send("QUIT")
	return out
}

// files returns the names and contents of the messages in root/rel/sub.
func files(t *testing.T, root, rel, sub string) map[string]string {
	t.Helper()
	dir := filepath.Join(root, rel, sub)
	ents, _ := os.ReadDir(dir)
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

const sieveMsg = "From: Sender <sender@remote.test>\r\nTo: alice@example.test, bob@example.test, carol@example.test\r\n" +
	"Subject: [go] release\r\nMessage-ID: <m1@remote.test>\r\n\r\nhello\r\n"

// TestWireSieve: one LMTP message to three recipients whose scripts
// fileinto, ereject and vacation: three replies, the folder file, the
// vacation reply as the test sendmail got it, and no second reply to the
// same sender.
func TestWireSieve(t *testing.T) {
	s := newSieveSetup(t, "alice", "bob", "carol")
	s.script(t, "alice", `require ["fileinto", "mailbox"]; if header :contains "subject" "[go]" { fileinto :create "Lists.go"; }`)
	s.script(t, "bob", "require \"ereject\";\nereject text:\nNot from you.\nGo away\r\n.\n;\n")
	s.script(t, "carol", `require "vacation"; vacation :days 3 :subject "Away" :addresses ["carol@example.test"] "I am away until Monday.";`)
	r := s.router(t)
	rcpts := []string{"alice@example.test", "bob@example.test", "carol@example.test"}
	got := s.lmtp(t, r, "sender@remote.test", rcpts, sieveMsg)
	if !strings.HasPrefix(got[0], "250 ") || !strings.HasPrefix(got[2], "250 ") {
		t.Errorf("alice and carol: %q, want 250", got)
	}
	if got[1] != "550 5.7.1 <bob@example.test> Not from you. Go away" {
		t.Errorf("bob: %q, want 550 5.7.1 with the reason on one line", got[1])
	}
	if f := files(t, s.root, "example.test/alice/.Lists.go", "new"); len(f) != 1 {
		t.Errorf("alice's .Lists.go/new has %d messages, want 1", len(f))
	}
	if f := files(t, s.root, "example.test/alice", "new"); len(f) != 0 {
		t.Errorf("alice's INBOX has %d messages, want 0", len(f))
	}
	if f := files(t, s.root, "example.test/bob", "new"); len(f) != 0 {
		t.Errorf("bob's INBOX has %d messages after ereject, want 0", len(f))
	}
	if f := files(t, s.root, "example.test/carol", "new"); len(f) != 1 {
		t.Errorf("carol's INBOX has %d messages, want 1 (vacation keeps)", len(f))
	}
	sent := s.sent(t)
	if len(sent) != 1 {
		t.Fatalf("sendmail got %d messages, want 1 vacation reply: %q", len(sent), sent)
	}
	reply := sent[0]
	for _, want := range []string{
		"ARG -f\nARG <>\nARG --\nARG sender@remote.test\n",
		"\nTo: <sender@remote.test>\n", "\nSubject: Away\n", "\nAuto-Submitted: auto-replied (vacation)\n",
		"\nIn-Reply-To: <m1@remote.test>\n", "\nReferences: <m1@remote.test>\n", "\nFrom: carol@example.test\n",
		"\n\nI am away until Monday.\n",
	} {
		if !strings.Contains(reply, want) {
			t.Errorf("vacation reply lacks %q:\n%s", want, reply)
		}
	}
	logs := s.log.String()
	for _, want := range []string{`"sieve":"fileinto:Lists.go"`, `"sieve":"ereject"`, `"sieve":"vacation:sender@remote.test,keep"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("outcome lines lack %s:\n%s", want, logs)
		}
	}
	if s.event("fileinto") != 1 || s.event("ereject") != 1 || s.event("vacation") != 1 {
		t.Errorf("events %v, want one fileinto, ereject and vacation", s.events)
	}

	// The same sender again: carol's script runs, no second reply.
	got = s.lmtp(t, r, "sender@remote.test", []string{"carol@example.test"}, strings.Replace(sieveMsg, "<m1@", "<m2@", 1))
	if !strings.HasPrefix(got[0], "250 ") {
		t.Errorf("carol, second message: %q", got[0])
	}
	if sent := s.sent(t); len(sent) != 1 {
		t.Errorf("sendmail got %d messages after a second message from the same sender, want still 1", len(sent))
	}
	if f := files(t, s.root, "example.test/carol", "new"); len(f) != 2 {
		t.Errorf("carol's INBOX has %d messages, want 2", len(f))
	}
	// Remembered on disk, per user, in the state directory (beside the
	// time of the last prune).
	ents, err := os.ReadDir(filepath.Join(s.stateDir, "example.test", "carol"))
	ents = slices.DeleteFunc(ents, func(e os.DirEntry) bool { return e.Name() == pruneMarker })
	if err != nil || len(ents) != 1 {
		t.Errorf("state of carol: %v entries, %v; want 1", len(ents), err)
	}
}

// TestWireSieveBroken: a script that does not compile keeps the message in
// INBOX, is logged with file:line:column once per version and counted;
// once fixed it applies at the next message, no reload.
func TestWireSieveBroken(t *testing.T) {
	s := newSieveSetup(t, "dave")
	s.script(t, "dave", "require \"fileinto\";\nif true {\n  fileinto \"X\";\n")
	r := s.router(t)
	for range 2 {
		if got := s.lmtp(t, r, "sender@remote.test", []string{"dave@example.test"}, sieveMsg); !strings.HasPrefix(got[0], "250 ") {
			t.Fatalf("dave: %q", got[0])
		}
	}
	if f := files(t, s.root, "example.test/dave", "new"); len(f) != 2 {
		t.Errorf("dave's INBOX has %d messages, want 2", len(f))
	}
	path := filepath.Join(s.root, "example.test", "dave", ".dovecot.sieve")
	if n := strings.Count(s.log.String(), path+":4:1: "); n != 1 {
		t.Errorf("the compile error is logged %d times with %s:4:1, want once:\n%s", n, path, s.log.String())
	}
	if s.event("compile_error") != 1 {
		t.Errorf("compile errors counted %d, want 1", s.event("compile_error"))
	}
	// Fixed: the next message is filed, without a reload. The mtime may
	// not change within the file system's granularity; the size does.
	s.script(t, "dave", "require [\"fileinto\", \"mailbox\"];\nif true {\n  fileinto :create \"Fixed\";\n}\n")
	s.lmtp(t, r, "sender@remote.test", []string{"dave@example.test"}, sieveMsg)
	if f := files(t, s.root, "example.test/dave/.Fixed", "new"); len(f) != 1 {
		t.Errorf("after the fix .Fixed has %d messages, want 1", len(f))
	}
}
