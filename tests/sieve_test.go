//go:build linux

package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// sieveConfig is baseConfig with users alice, bob, carol and dave, Sieve
// on with the default script template ({home}/.dovecot.sieve, home being
// the maildir), and sendmail a test script that writes each message it is
// given (argv, a blank line, then stdin) to a file in outDir.
func sieveConfig(t *testing.T, dir, outDir string) string {
	t.Helper()
	sendmail := writeScript(t, dir, "sendmail", `f="`+outDir+`/$$.$(date +%s%N)"
for a in "$@"; do printf 'ARG %s\n' "$a"; done > "$f.tmp"
echo >> "$f.tmp"
cat >> "$f.tmp"
mv "$f.tmp" "$f.mail"
`)
	return baseConfig(dir, `[[domain]]
name = "example.test"
users = ["alice", "bob", "carol", "dave"]

[sieve]
enabled = true
sendmail = ["`+sendmail+`", "-i", "-f", "{sender}", "--", "{recipient}"]
state_dir = "`+dir+`/sieve-state"
`)
}

// userScript writes user's ~/.dovecot.sieve (home is the maildir).
func userScript(t *testing.T, dir, user, src string) {
	t.Helper()
	home := filepath.Join(dir, "mail", "example.test", user)
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, home, ".dovecot.sieve", src)
}

// sentMail returns what the test sendmail got, oldest first.
func sentMail(t *testing.T, outDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(outDir)
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
		b, err := os.ReadFile(filepath.Join(outDir, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestSieveEndToEnd: the real binary with [sieve] on, LMTP to three users
// whose scripts fileinto (with :flags), ereject and vacation: one reply
// per recipient (250, 550 5.7.1 with the reason, 250), the file in
// .Lists.go/cur with the info ":2,S", the vacation reply captured by the
// test sendmail with its headers; a second message from the same sender
// gets no second reply; a script that does not compile keeps the message
// in INBOX and is logged once with line:column.
func TestSieveEndToEnd(t *testing.T) {
	dir := tempDir(t)
	outDir := filepath.Join(dir, "sent")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgFile := writeFile(t, dir, "lmtpd.toml", sieveConfig(t, dir, outDir))
	userScript(t, dir, "alice", `require ["fileinto", "imap4flags", "mailbox"];
if header :contains "Subject" "[go-nuts]" {
  fileinto :create :flags "\\Seen" "Lists.go";
}
`)
	userScript(t, dir, "bob", `require "ereject";
ereject "I do not take mail from you";
`)
	userScript(t, dir, "carol", `require "vacation";
vacation :days 3 :subject "Away" :addresses ["carol@example.test"] "I am away until Monday.";
`)
	userScript(t, dir, "dave", "require \"fileinto\";\n\nif header :is \"Subject\" {\n  keep;\n}\n")

	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")

	// One message to the three (no List-Id: vacation does not answer
	// list mail, RFC 5230 section 4.5).
	msg := "From: Sender <sender@remote.test>\r\nTo: alice@example.test, bob@example.test, carol@example.test\r\n" +
		"Subject: [go-nuts] hello\r\nMessage-ID: <m1@remote.test>\r\n\r\nHello.\r\n"
	c := dial(t, "unix", filepath.Join(dir, "lmtp.sock"))
	c.cmd("LHLO test", "250 ")
	c.send("sender@remote.test", []string{"alice@example.test", "bob@example.test", "carol@example.test"}, msg,
		"250 2.0.0 <alice@example.test>", "550 5.7.1 <bob@example.test> I do not take mail from you", "250 2.0.0 <carol@example.test>")

	// alice: the folder, in cur/ with \Seen as maildir info.
	cur, err := os.ReadDir(filepath.Join(dir, "mail", "example.test", "alice", ".Lists.go", "cur"))
	if err != nil || len(cur) != 1 {
		t.Fatalf(".Lists.go/cur: %v, %d files, want 1", err, len(cur))
	}
	if name := cur[0].Name(); !strings.HasSuffix(name, ":2,S") {
		t.Errorf("folder file %s, want the info :2,S", name)
	}
	if n := len(mailFiles(t, filepath.Join(dir, "mail", "example.test", "alice"))); n != 0 {
		t.Errorf("alice's INBOX has %d messages, want 0 (fileinto cancels the implicit keep)", n)
	}
	// bob: nothing stored.
	if n := len(mailFiles(t, filepath.Join(dir, "mail", "example.test", "bob"))); n != 0 {
		t.Errorf("bob's INBOX has %d messages after ereject", n)
	}
	// carol: kept, and one vacation reply.
	if n := len(mailFiles(t, filepath.Join(dir, "mail", "example.test", "carol"))); n != 1 {
		t.Errorf("carol's INBOX has %d messages, want 1", n)
	}
	sent := sentMail(t, outDir)
	if len(sent) != 1 {
		t.Fatalf("sendmail got %d messages, want 1 vacation reply:\n%q", len(sent), sent)
	}
	reply := strings.ReplaceAll(sent[0], "\r\n", "\n")
	for _, want := range []string{
		"ARG -f\nARG <>\nARG --\nARG sender@remote.test\n", // the null envelope sender, argv without a shell
		"\nTo: <sender@remote.test>\n", "\nSubject: Away\n",
		"\nAuto-Submitted: auto-replied (vacation)\n",
		"\nIn-Reply-To: <m1@remote.test>\n", "\nReferences: <m1@remote.test>\n",
		"I am away until Monday.",
	} {
		if !strings.Contains(reply, want) {
			t.Errorf("vacation reply lacks %q:\n%s", want, reply)
		}
	}

	// The same sender again: delivered, no second reply (:days 3).
	c.send("sender@remote.test", []string{"carol@example.test"},
		"From: sender@remote.test\r\nTo: carol@example.test\r\nSubject: again\r\nMessage-ID: <m2@remote.test>\r\n\r\nAgain.\r\n",
		"250 2.0.0 <carol@example.test>")
	if n := len(mailFiles(t, filepath.Join(dir, "mail", "example.test", "carol"))); n != 2 {
		t.Errorf("carol's INBOX has %d messages, want 2", n)
	}
	if n := len(sentMail(t, outDir)); n != 1 {
		t.Errorf("sendmail got %d messages after the second one, want still 1", n)
	}

	// dave's script does not compile (header without a key list): the
	// message goes to INBOX, and the error is logged once, with
	// line:column, however many messages arrive.
	for i := 0; i < 2; i++ {
		c.send("sender@remote.test", []string{"dave@example.test"}, testMessage, "250 2.0.0 <dave@example.test>")
	}
	if n := len(mailFiles(t, filepath.Join(dir, "mail", "example.test", "dave"))); n != 2 {
		t.Errorf("dave's INBOX has %d messages, want 2 (implicit keep)", n)
	}
	p.waitLog(0, "script does not compile")
	var errLines []string
	for _, l := range strings.Split(p.log(), "\n") {
		if strings.Contains(l, "script does not compile") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 {
		t.Fatalf("%d compile error lines, want 1:\n%s", len(errLines), strings.Join(errLines, "\n"))
	}
	// The test header starts on line 3, column 4.
	if !regexp.MustCompile(`dave/\.dovecot\.sieve:3:4: test header`).MatchString(errLines[0]) || !strings.Contains(errLines[0], `"session":`) {
		t.Errorf("compile error without file:line:column of the bad test: %s", errLines[0])
	}
	if !strings.Contains(p.log(), `"sieve":"ereject"`) {
		t.Error("bob's outcome line lacks sieve=ereject")
	}
}

// TestSieveSpamtestEndToEnd: the real binary with [sieve] spamtest_header
// set reads the MTA's X-Spam-Score: a script's spamtest :value "ge" "5"
// files a message scored 7.5 of 10 into Junk, and keeps one scored 2.0
// and one without the field (spamtest "0", not tested) in INBOX.
func TestSieveSpamtestEndToEnd(t *testing.T) {
	dir := tempDir(t)
	outDir := filepath.Join(dir, "sent")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := sieveConfig(t, dir, outDir) + "spamtest_header = \"X-Spam-Score\"\nspamtest_max_value = 10\n"
	cfgFile := writeFile(t, dir, "lmtpd.toml", cfg)
	userScript(t, dir, "alice", `require ["spamtest", "fileinto", "mailbox", "relational", "comparator-i;ascii-numeric"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" {
  fileinto :create "Junk";
}
`)
	p := start(t, dir, nil, "-config", cfgFile)
	p.waitLog(0, "listening")
	c := dial(t, "unix", filepath.Join(dir, "lmtp.sock"))
	c.cmd("LHLO test", "250 ")
	for i, score := range []string{"7.5", "2.0", ""} {
		hdr := ""
		if score != "" {
			hdr = "X-Spam-Score: " + score + "\r\n"
		}
		c.send("sender@remote.test", []string{"alice@example.test"},
			hdr+"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: s"+string(rune('0'+i))+"\r\n\r\nHello.\r\n",
			"250 2.0.0 <alice@example.test>")
	}
	alice := filepath.Join(dir, "mail", "example.test", "alice")
	junk := mailFiles(t, filepath.Join(alice, ".Junk"))
	if len(junk) != 1 || !strings.Contains(junk[0], "X-Spam-Score: 7.5") {
		t.Errorf("Junk has %d messages, want the one scored 7.5: %q", len(junk), junk)
	}
	if n := len(mailFiles(t, alice)); n != 2 {
		t.Errorf("INBOX has %d messages, want 2 (scored 2.0, not scored)", n)
	}
	if !strings.Contains(p.log(), `"sieve":"fileinto:Junk"`) {
		t.Errorf("no outcome line with sieve=fileinto:Junk:\n%s", p.log())
	}
}
