//go:build linux

package peers

import (
	"context"
	dbsql "database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the SQLite directory the front reads

	"github.com/lmtpd/lmtpd/internal/readmetest"
	"github.com/lmtpd/lmtpd/protocol"
)

// receivedIDs matches the id clause of a Received field.
var receivedIDs = regexp.MustCompile(`(?m)^Received: [^\n]*(?:\n\t[^\n]*)*?\n\tid ([0-9a-z.]+)`)

// proxySend runs one LMTP transaction against the front's unix socket and
// returns one status line per recipient ("250", "451 4.4.1", ...).
func proxySend(t *testing.T, sock string, m testMessage, rcpts ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := protocol.Dial(ctx, "unix:"+sock, &protocol.ClientOptions{Protocol: protocol.LMTP, LocalName: "proxy-client.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit(ctx)
	from, _ := protocol.ParseAddress("sender@example.net")
	st, err := c.Send(ctx, from, nil, clientRcpts(t, rcpts...), strings.NewReader(string(m.Stored)))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	out := make([]string, len(st))
	for i, s := range st {
		out[i] = statusLine(s)
	}
	return out
}

// scalingOutHeading is the README section whose front configuration
// TestProxyThreeInstances runs.
const scalingOutHeading = "## Scaling out"

// proxyFront is one way of telling the front where alice and carol live:
// the README's passwd-file, the README's SQL user query over SQLite, or
// TOML routes. front returns the front's [[domain]] (and [[directory]])
// tables for backend A at aAddr (loopback TCP) and B at bAddr (unix:),
// with alice sent to A, carol to B and dave stored by the front itself.
type proxyFront struct {
	name  string
	front func(t *testing.T, dir, aAddr, bAddr string) string
}

// readmeFront returns the README's front configuration and the users
// file it names, pointed at dir/users, with the backends' addresses in
// place of the README's; dave, without a forward field, is added.
func readmeFront(t *testing.T, dir, aAddr, bAddr string) (conf, users string) {
	t.Helper()
	users = readmetest.Block(t, scalingOutHeading, "text")
	for _, r := range [][2]string{{"a.example:24", aAddr}, {"unix:/run/lmtpd/b.sock", bAddr}} {
		if !strings.Contains(users, "userdb_forward="+r[0]+"\n") {
			t.Fatalf("the README's users file has no userdb_forward=%s line; the test's edits do not apply:\n%s", r[0], users)
		}
		users = strings.Replace(users, "userdb_forward="+r[0]+"\n", "userdb_forward="+r[1]+"\n", 1)
	}
	conf = readmetest.Block(t, scalingOutHeading, "toml")
	file := filepath.Join(dir, "users")
	if !strings.Contains(conf, `path = "/etc/lmtpd/users"`) {
		t.Fatalf("the README's front configuration names no /etc/lmtpd/users; the test's edits do not apply:\n%s", conf)
	}
	conf = strings.Replace(conf, `path = "/etc/lmtpd/users"`, fmt.Sprintf("path = %q", file), 1)
	return conf, users
}

var proxyFronts = []proxyFront{
	{"passwd-file", func(t *testing.T, dir, aAddr, bAddr string) string {
		conf, users := readmeFront(t, dir, aAddr, bAddr)
		users += "dave@example.org:::::::\n"
		if err := os.WriteFile(filepath.Join(dir, "users"), []byte(users), 0o644); err != nil {
			t.Fatal(err)
		}
		return conf
	}},
	{"sqlite", func(t *testing.T, dir, aAddr, bAddr string) string {
		conf, _ := readmeFront(t, dir, aAddr, bAddr)
		readme, err := os.ReadFile("../../README.md")
		if err != nil {
			t.Fatal(err)
		}
		_, section, _ := strings.Cut(string(readme), "\n"+scalingOutHeading+"\n")
		section, _, _ = strings.Cut(section, "\n## ")
		m := regexp.MustCompile("`" + `(user_query = "[^"\n]*\bforward\b[^"\n]*")` + "`").FindStringSubmatch(section)
		if m == nil {
			t.Fatalf("README's %s has no user_query returning forward", scalingOutHeading)
		}
		db := filepath.Join(dir, "users.db")
		sqlDir := fmt.Sprintf("driver = \"sql\"\nsql_driver = \"sqlite\"\ndsn = %q\n%s\n", db, m[1])
		old := fmt.Sprintf("driver = \"passwd-file\"\npath = %q\n", filepath.Join(dir, "users"))
		if !strings.Contains(conf, old) {
			t.Fatalf("the README's front configuration changed; the test's edits do not apply:\n%s", conf)
		}
		conf = strings.Replace(conf, old, sqlDir, 1)
		writeForwardDB(t, db, map[string]string{"alice@example.org": aAddr, "carol@example.org": bAddr, "dave@example.org": ""})
		return conf
	}},
	{"toml-routes", func(t *testing.T, dir, aAddr, bAddr string) string {
		route := func(addr string) string {
			return fmt.Sprintf("route = { lmtp = { address = %q, connect_timeout = \"3s\", timeout = \"20s\" } }\n", addr)
		}
		return "[[domain]]\nname = \"example.org\"\n" +
			"[[domain.user]]\nname = \"alice\"\n" + route(aAddr) +
			"[[domain.user]]\nname = \"carol\"\n" + route(bAddr) +
			"[[domain.user]]\nname = \"dave\"\n"
	}},
}

// writeForwardDB creates a SQLite users table of the README's shape with
// a forward column: address -> forward (NULL for "").
func writeForwardDB(t *testing.T, file string, users map[string]string) {
	t.Helper()
	db, err := dbsql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE mailbox (username TEXT PRIMARY KEY, maildir TEXT NOT NULL, forward TEXT, active INTEGER NOT NULL DEFAULT 1)`); err != nil {
		t.Fatal(err)
	}
	for u, fwd := range users {
		local, domain, _ := strings.Cut(u, "@")
		var f any
		if fwd != "" {
			f = fwd
		}
		if _, err := db.Exec(`INSERT INTO mailbox (username, maildir, forward) VALUES (?, ?, ?)`, u, domain+"/"+local, f); err != nil {
			t.Fatal(err)
		}
	}
}

// TestProxyThreeInstances runs three lmtpd processes on loopback: a front
// that sends alice to backend A (LMTP over TCP) and carol to backend B
// (LMTP over its unix socket), by the forward field of a passwd-file or
// SQLite directory record as the README's "Scaling out" configures it, or
// by TOML routes. One transaction to alice, carol and an unknown user
// gets 250, 250, 550 in order, each copy stored by its backend with the
// front's Received field; with B killed, carol gets 451 4.4.1 and alice
// still 250; with B restarted, the next transaction delivers to both
// without restarting the front. A user without a forward is stored by
// the front itself.
func TestProxyThreeInstances(t *testing.T) {
	for _, pf := range proxyFronts {
		t.Run(pf.name, func(t *testing.T) {
			// The backends hold the mailboxes: their own configuration
			// routes their users locally.
			a := newDaemon(t, daemonOptions{Domains: "[[domain]]\nname = \"example.org\"\nusers = [\"alice\"]\n"})
			b := newDaemon(t, daemonOptions{Domains: "[[domain]]\nname = \"example.org\"\nusers = [\"carol\"]\n"})
			front := newDaemon(t, daemonOptions{Domains: pf.front(t, shortTempDir(t), a.LMTPAddr, "unix:"+b.Socket)})
			testProxyThreeInstances(t, front, a, b)
		})
	}
}

func testProxyThreeInstances(t *testing.T, front, a, b *daemon) {
	m := newMessage("proxy-1", "sender@example.net", "alice@example.org", 3000)
	got := proxySend(t, front.Socket, m, "alice@example.org", "carol@example.org", "nobody@example.org")
	if want := "250|250|550 5.1.1"; strings.Join(got, "|") != want {
		t.Fatalf("statuses %q, want %s", got, want)
	}
	var frontIDs []string
	for _, be := range []struct {
		d    *daemon
		rcpt string
	}{{a, "alice@example.org"}, {b, "carol@example.org"}} {
		f := findMessage(t, be.d.mailbox(be.rcpt), m.ID)
		stored := string(readFile(t, f))
		head, _, _ := strings.Cut(stored, "\nFrom: ")
		t.Logf("%s: stored by its backend with:\n%s", be.rcpt, head)
		// The backend's own Received field on top, then the front's: the
		// same field (the front's transaction id) in both backends' copies.
		ids := receivedIDs.FindAllStringSubmatch(head, -1)
		if len(ids) != 2 || ids[0][1] == ids[1][1] {
			t.Errorf("%s: Received ids %q, want the backend's and the front's", be.rcpt, ids)
		} else {
			frontIDs = append(frontIDs, ids[1][1])
		}
		if !strings.HasSuffix(stored, string(m.Stored)) {
			t.Errorf("%s: the stored message is not the message sent", be.rcpt)
		}
	}
	if len(frontIDs) == 2 && frontIDs[0] != frontIDs[1] {
		t.Errorf("the copies carry different front Received fields: %q", frontIDs)
	}
	if _, err := os.Stat(filepath.Join(front.Maildir, "example.org")); err == nil {
		t.Errorf("the front stored copies itself")
	}

	b.Kill()
	m2 := newMessage("proxy-2", "sender@example.net", "alice@example.org", 500)
	got = proxySend(t, front.Socket, m2, "alice@example.org", "carol@example.org")
	if want := "250|451 4.4.1"; strings.Join(got, "|") != want {
		t.Fatalf("B down: statuses %q, want %s", got, want)
	}
	findMessage(t, a.mailbox("alice@example.org"), m2.ID)

	b.Start()
	m3 := newMessage("proxy-3", "sender@example.net", "alice@example.org", 500)
	got = proxySend(t, front.Socket, m3, "alice@example.org", "carol@example.org")
	if want := "250|250"; strings.Join(got, "|") != want {
		t.Fatalf("B back: statuses %q, want %s", got, want)
	}
	findMessage(t, a.mailbox("alice@example.org"), m3.ID)
	findMessage(t, b.mailbox("carol@example.org"), m3.ID)
	if !front.logEventually(5*time.Second, `"server":["unix:`+b.Socket+`"]`, `"status":"451 4.4.1`) {
		t.Errorf("the front's log does not name backend B with the failure:\n%s", front.logTail(20))
	}

	// No forward: the front's own maildir.
	m4 := newMessage("proxy-4", "sender@example.net", "dave@example.org", 500)
	if got := proxySend(t, front.Socket, m4, "dave@example.org"); strings.Join(got, "|") != "250" {
		t.Fatalf("dave: statuses %q, want 250", got)
	}
	findMessage(t, front.mailbox("dave@example.org"), m4.ID)
}

// socketmapDaemon starts lmtpd with a socketmap listener on a unix
// socket Postfix's processes can reach, and returns the daemon and the
// socket path.
func socketmapDaemon(t *testing.T) (*daemon, string) {
	t.Helper()
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "map.sock")
	d := newDaemon(t, daemonOptions{
		Domains: testDomains("") + "[[domain]]\nname = \"lists.example.test\"\nusers = [\"owner\"]\naliases = { team = [\"owner\", \"bob@example.test\"] }\n",
		Extra:   fmt.Sprintf("[[listener]]\nname = \"map\"\nprotocol = \"socketmap\"\naddress = %q\nsocket_mode = \"0666\"\n\n", "unix:"+sock),
	})
	if err := makeTraversable(dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !fileExists(sock) {
		if time.Now().After(deadline) {
			t.Fatalf("no socketmap socket %s:\n%s", sock, d.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d, sock
}

// TestPostmapSocketmap: Postfix's own postmap -q reads lmtpd's tables.
func TestPostmapSocketmap(t *testing.T) {
	postmap := requirePeer(t, "postmap")
	_, sock := socketmapDaemon(t)
	// A configuration directory of our own: postmap reads main.cf, and the
	// machine's /etc/postfix may have none.
	conf := filepath.Join(shortTempDir(t), "etc")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, table, want string
		found            bool
	}{
		{"bob@example.test", "mailbox", "example.test/bob/", true},
		{"BOB@example.test", "mailbox", "example.test/bob/", true},
		{"nobody@example.test", "mailbox", "", false},
		{"example.test", "domain", "", true},
		{"example.com", "domain", "", false},
		{"team@lists.example.test", "alias", "owner@lists.example.test,bob@example.test", true},
		{"bob@example.test", "alias", "", false},
	}
	for _, tc := range tests {
		cmd := exec.Command(postmap, "-c", conf, "-q", tc.key, "socketmap:unix:"+sock+":"+tc.table)
		cmd.Env = cleanEnv()
		out, err := cmd.Output()
		var ee *exec.ExitError
		switch {
		case err == nil && tc.found:
			if got := strings.TrimSpace(string(out)); got != tc.want {
				t.Errorf("postmap -q %s %s: %q, want %q", tc.key, tc.table, got, tc.want)
			}
		case tc.found:
			t.Errorf("postmap -q %s %s: %v (%s)", tc.key, tc.table, err, out)
		case err == nil:
			t.Errorf("postmap -q %s %s: found %q, want not found", tc.key, tc.table, out)
		case !errorsAs(err, &ee) || ee.ExitCode() != 1:
			// postmap exits 1 for "not found", 2 and above for errors.
			t.Errorf("postmap -q %s %s: %v, want exit status 1 (not found); stderr %s", tc.key, tc.table, err, stderrOf(err))
		}
	}
}

func errorsAs(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*ee = e
	}
	return ok
}

func stderrOf(err error) string {
	if e, ok := err.(*exec.ExitError); ok {
		return string(e.Stderr)
	}
	return ""
}

// TestPostfixSocketmapLmtpd: a private Postfix takes its virtual domains,
// mailboxes and aliases from lmtpd's socketmap listener; an unknown
// recipient is refused at Postfix's RCPT with 550 5.1.1, known ones and
// an alias are accepted and delivered to lmtpd.
func TestPostfixSocketmapLmtpd(t *testing.T) {
	d, sock := socketmapDaemon(t)
	p := startPostfix(t, d, 50)
	if out, err := p.run(requirePeer(t, "postconf"), "-c", p.Etc, "-e",
		"virtual_mailbox_domains = socketmap:unix:"+sock+":domain",
		"virtual_mailbox_maps = socketmap:unix:"+sock+":mailbox",
		"virtual_alias_maps = socketmap:unix:"+sock+":alias"); err != nil {
		t.Fatalf("postconf: %v\n%s", err, out)
	}
	if out, err := p.run(p.postfixCmd, "-c", p.Etc, "reload"); err != nil {
		t.Fatalf("postfix reload: %v\n%s", err, out)
	}
	// Retry until an smtpd started after the reload uses the socketmap:
	// nobody@ is refused only then.
	deadline := time.Now().Add(postfixWait)
	var last string
	for {
		c := smtpDial(t, p.SMTPAddr)
		smtpCmd(t, c, "EHLO client.example.test", 250)
		smtpCmd(t, c, "MAIL FROM:<sender@example.test>", 250)
		c.PrintfLine("RCPT TO:<nobody@example.test>")
		code, msg, _ := c.ReadResponse(0)
		c.PrintfLine("QUIT")
		c.Close()
		last = fmt.Sprintf("%d %s", code, msg)
		if code == 550 {
			if !strings.HasPrefix(msg, "5.1.1 ") {
				t.Errorf("unknown recipient: %s, want 550 5.1.1", last)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix does not refuse nobody@ (last reply %s); maillog:\n%s", last, p.logTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}

	c := smtpDial(t, p.SMTPAddr)
	defer c.Close()
	smtpCmd(t, c, "EHLO client.example.test", 250)
	smtpCmd(t, c, "MAIL FROM:<sender@example.test>", 250)
	smtpCmd(t, c, "RCPT TO:<bob@example.test>", 250)
	smtpCmd(t, c, "RCPT TO:<team@lists.example.test>", 250)
	if msg := smtpCmd(t, c, "RCPT TO:<ghost@lists.example.test>", 550); !strings.HasPrefix(msg, "5.1.1 ") {
		t.Errorf("ghost@lists: 550 %s, want 5.1.1", msg)
	}
	m := newMessage("smap-1", "sender@example.test", "bob@example.test", 1500)
	smtpCmd(t, c, "DATA", 354)
	dw := c.DotWriter()
	dw.Write(m.Stored)
	dw.Close()
	if _, _, err := c.ReadResponse(250); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	smtpCmd(t, c, "QUIT", 221)
	findMessage(t, d.mailbox("bob@example.test"), m.ID)
	findMessage(t, d.mailbox("owner@lists.example.test"), m.ID)
	for _, line := range p.logLines() {
		if strings.Contains(line, "status=bounced") {
			t.Errorf("maillog: %s", line)
		}
	}
	if _, err := os.Stat(sock); err != nil {
		t.Error(err)
	}
}
