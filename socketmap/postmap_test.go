package socketmap

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lmtpd/lmtpd/internal/wiretest"
)

// needPeer skips a test whose real peer is missing, or fails it under
// CI=true, where a skip must not pass for a success.
func needPeer(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf("SKIP (not under CI): "+format, args...)
}

// findPostmap returns Postfix's postmap, on PATH or in /usr/sbin.
func findPostmap(t *testing.T) string {
	if p, err := exec.LookPath("postmap"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/postmap"); err == nil {
		return "/usr/sbin/postmap"
	}
	needPeer(t, "postmap not found: install postfix (tests/install-deps.sh does)")
	return ""
}

// recordingHandler wraps the fake and records each key it was asked.
type recordingHandler struct {
	fake *fakeHandler
	mu   sync.Mutex
	keys []string
}

func (h *recordingHandler) Lookup(ctx context.Context, name, key string) (string, error) {
	h.mu.Lock()
	h.keys = append(h.keys, name+" "+key)
	h.mu.Unlock()
	return h.fake.Lookup(ctx, name, key)
}

// TestPostmap asks the server with Postfix's own client, postmap -q,
// through socketmap:unix:PATH:NAME, as Postfix's smtpd would for
// virtual_mailbox_maps = socketmap:unix:PATH:mailbox.
func TestPostmap(t *testing.T) {
	postmap := findPostmap(t)
	dir := t.TempDir()
	// A configuration directory of our own: postmap reads main.cf, and the
	// machine's /etc/postfix may have none.
	conf := filepath.Join(dir, "etc")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "map.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	log, logs := wiretest.Logger(t)
	h := &recordingHandler{fake: newFakeHandler()}
	s := &Server{Handler: h, Logger: log}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })

	run := func(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(postmap, append([]string{"-c", conf}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/bin", "LANG=C"}
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("postmap: %v", err)
		}
		return out.String(), errb.String(), code
	}
	table := func(name string) string { return "socketmap:unix:" + sock + ":" + name }

	t.Run("lookups", func(t *testing.T) { testPostmapLookups(t, run, table) })
	t.Run("several keys on one connection", func(t *testing.T) {
		before := sessions(t, logs.String())
		out, errOut, code := run(t, "bob@example.org\nnobody@example.org\npostmaster@example.org\n", "-q", "-", table("mailbox"))
		if code != 0 || out != "bob@example.org\texample.org/bob/\n" {
			t.Errorf("postmap -q -: stdout %q, exit %d, stderr %q", out, code, errOut)
		}
		after := sessions(t, logs.String())
		if n := len(after) - len(before); n != 1 {
			t.Errorf("postmap -q - used %d connections, want 1", n)
		}
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	t.Logf("requests the server received: %q", h.keys)
	for _, want := range []string{"mailbox bob@example.org", `mailbox "john doe"@example.org`, "alias postmaster@example.org"} {
		if !slices.Contains(h.keys, want) {
			t.Errorf("no request %q among %q", want, h.keys)
		}
	}
}

func testPostmapLookups(t *testing.T, run func(*testing.T, string, ...string) (string, string, int), table func(string) string) {
	for _, tc := range []struct {
		name, key, table string
		out              string // stdout
		code             int    // exit status: 0 found, 1 not found or failed
		stderr           string // a substring of Postfix's warning; "" for none
	}{
		{name: "mailbox found", key: "bob@example.org", table: "mailbox", out: "example.org/bob/\n"},
		{name: "domain found", key: "example.org", table: "domain", out: "example.org\n"},
		{name: "alias found", key: "postmaster@example.org", table: "alias", out: "bob@example.org,carol@example.org\n"},
		{name: "key with a space", key: `"john doe"@example.org`, table: "mailbox", out: "example.org/john.doe/\n"},
		{name: "not found", key: "nobody@example.org", table: "mailbox", code: 1},
		{name: "temporary", key: "temp@example.org", table: "mailbox", code: 1, stderr: "socketmap server temporary error: directory unavailable"},
		{name: "unrecognised error", key: "down@example.org", table: "mailbox", code: 1, stderr: "socketmap server temporary error: temporary lookup failure (session "},
		{name: "permanent", key: "perm@example.org", table: "mailbox", code: 1, stderr: "socketmap server permanent error: bad directory entry?line two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// postmap sleeps a second before exiting on a fatal error:
			// run the cases side by side. (The other PERM replies, an
			// unknown map and a value too large, are in the dialogues.)
			t.Parallel()
			out, errOut, code := run(t, "", "-q", tc.key, table(tc.table))
			failed := strings.Contains(errOut, "fatal: table "+table(tc.table)+": query error")
			if out != tc.out || code != tc.code || !strings.Contains(errOut, tc.stderr) ||
				(tc.stderr == "") != (errOut == "") || failed != (tc.stderr != "") {
				t.Errorf("postmap -q %s %s: stdout %q, exit %d, stderr %q; want %q, %d, %q",
					tc.key, table(tc.table), out, code, errOut, tc.out, tc.code, tc.stderr)
			}
		})
	}

}

// sessions returns the session ids that opened a connection in the log.
func sessions(t *testing.T, log string) map[string]bool {
	ids := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["message"] == "connection opened" {
			ids[m["session"].(string)] = true
		}
	}
	return ids
}
