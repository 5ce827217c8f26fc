package delivery

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/protocol"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func dedupConfig(root, journal string) Config {
	cfg := testConfig(root)
	cfg.Dedup = DedupConfig{Enabled: true, Path: journal, Window: time.Hour}
	return cfg
}

func TestDedup(t *testing.T) {
	withID := "Message-ID: <m1@example.com>\r\n" + testText
	tests := []struct {
		name       string
		first      string
		second     string
		advance    time.Duration
		restart    bool
		wantCopies int
	}{
		{"same Message-ID", withID, withID, 0, false, 1},
		{"same Message-ID after restart", withID, withID, 0, true, 1},
		{"same Message-ID after the window", withID, withID, 2 * time.Hour, false, 2},
		{"no Message-ID, same body", testText, testText, 0, false, 1},
		{"no Message-ID, other body", testText, testText + "more\r\n", 0, false, 2},
		{"other Message-ID", withID, "Message-ID: <m2@example.com>\r\n" + testText, 0, false, 2},
		// A reused Message-ID is not a resend when the content differs.
		{"same Message-ID, other body", withID, withID + "more\r\n", 0, false, 2},
		{"same Message-ID, other header field", withID, "Message-ID: <m1@example.com>\r\nX-Other: 1\r\n" + testText, 0, false, 2},
		{"same Message-ID, header only, resent", "Message-ID: <m1@example.com>\r\n", "Message-ID: <m1@example.com>\r\n", 0, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			jpath := filepath.Join(t.TempDir(), "journal")
			clock := &fakeClock{t: time.Now()}
			opts := Options{Now: clock.now}
			r := newRouter(t, dedupConfig(root, jpath), opts)
			rcpts := []string{"bob@example.org", "zed@example.net"}
			_, _, err := run(t, testCtx(t, nil), r, protocol.LMTP, "a@b", rcpts, tt.first)
			if err != nil {
				t.Fatal(err)
			}
			clock.add(tt.advance)
			if tt.restart {
				r.Close()
				r = newRouter(t, dedupConfig(root, jpath), opts)
			}
			var logs bytes.Buffer
			st, _, err := run(t, testCtx(t, &logs), r, protocol.LMTP, "a@b", rcpts, tt.second)
			if err != nil {
				t.Fatal(err)
			}
			for i := range rcpts {
				if e, ok := st.get(i); !ok || e != nil {
					t.Errorf("resend, recipient %d: %v (set %v), want 250", i, e, ok)
				}
			}
			for _, d := range []string{"example.org/bob", "example.net/zed"} {
				if n := len(maildirFiles(t, root, d)); n != tt.wantCopies {
					t.Errorf("%s has %d copies, want %d", d, n, tt.wantCopies)
				}
			}
			if dup := strings.Contains(logs.String(), `"duplicate":true`); dup != (tt.wantCopies == 1) {
				t.Errorf("log marks duplicate: %v, want %v", dup, tt.wantCopies == 1)
			}
		})
	}
}

func TestDedupFailureNotRecorded(t *testing.T) {
	root := t.TempDir()
	jpath := filepath.Join(t.TempDir(), "journal")
	text := "Message-ID: <m1@example.com>\r\n" + testText
	ffs := &failFS{FS: maildir.NewRootFS(root), match: "bob", err: syscall.ENOSPC}
	r := newRouter(t, dedupConfig(root, jpath), Options{FS: ffs})
	st, _, _ := run(t, testCtx(t, nil), r, protocol.LMTP, "a@b", []string{"bob@example.org"}, text)
	e, _ := st.get(0)
	checkCode(t, e, 452, protocol.EnhancedCode{4, 3, 1})
	ffs.match = "\x00never"
	st, _, _ = run(t, testCtx(t, nil), r, protocol.LMTP, "a@b", []string{"bob@example.org"}, text)
	if e, _ := st.get(0); e != nil {
		t.Fatal(e)
	}
	if n := len(maildirFiles(t, root, "example.org/bob")); n != 1 {
		t.Errorf("retry after a failure: %d copies, want 1", n)
	}
}

func TestJournalFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	key := func(s string) string { return dedupKey(s, "", "") }
	old, live := key("old"), key("live")
	content := "1699990000 " + old + "\n" + // older than the window
		"1699999990 " + live + "\n" +
		"garbage\n" +
		"1699999991 " + live[:20] // torn by a crash
	os.WriteFile(path, []byte(content), 0o600)
	j, err := openJournal(path, time.Hour, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if j.has(old, time.Hour) || !j.has(live, time.Hour) {
		t.Errorf("has(old) %v has(live) %v", j.has(old, time.Hour), j.has(live, time.Hour))
	}
	b, _ := os.ReadFile(path)
	if string(b) != "1699999990 "+live+"\n" {
		t.Errorf("journal not compacted on open:\n%s", b)
	}
	// Compaction while running: many adds, then expiry.
	for i := 0; i < 1500; i++ {
		if err := j.add(time.Hour, key(strings.Repeat("x", i))); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(2 * time.Hour)
	for i := 0; i < 1100; i++ {
		j.add(time.Hour, key(strings.Repeat("y", i)))
	}
	b, _ = os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n > 2*1100+1024 {
		t.Errorf("journal has %d lines after compaction", n)
	}
	if j.has(key("x"), time.Hour) {
		t.Error("expired entry still present")
	}
	if _, err := openJournal(filepath.Join(dir, "missing", "journal"), time.Hour, clock); err == nil {
		t.Error("journal in a missing directory opened")
	}
}

func TestDedupValidate(t *testing.T) {
	cfg := testConfig("/srv/mail")
	cfg.Dedup = DedupConfig{Enabled: true}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "dedup.path: required") {
		t.Errorf("Validate = %v", err)
	}
	cfg.Dedup = DedupConfig{Window: -time.Second}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "dedup window") {
		t.Errorf("Validate = %v", err)
	}
}

// TestDedupOldJournal: a journal written before content digests (keys of
// Message-ID, sender and destination only) still loads, and its entries
// never suppress a delivery, since they cannot tell a resend from another
// message with the same Message-ID.
func TestDedupOldJournal(t *testing.T) {
	root := t.TempDir()
	jpath := filepath.Join(t.TempDir(), "journal")
	clock := &fakeClock{t: time.Now()}
	// The old key of <m1@example.com> from a@b to bob's INBOX.
	old := dedupKey("<m1@example.com>", "a@b", "m"+"example.org/bob"+"\x00")
	line := fmt.Sprintf("%d %s\n", clock.now().Unix(), old)
	if err := os.WriteFile(jpath, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRouter(t, dedupConfig(root, jpath), Options{Now: clock.now})
	text := "Message-ID: <m1@example.com>\r\n" + testText
	if _, _, err := run(t, testCtx(t, nil), r, protocol.LMTP, "a@b", []string{"bob@example.org"}, text); err != nil {
		t.Fatal(err)
	}
	if n := len(maildirFiles(t, root, "example.org/bob")); n != 1 {
		t.Fatalf("bob has %d copies, want 1 (an old journal entry suppressed it)", n)
	}
	r.Close()
	b, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) || strings.Count(string(b), "\n") != 2 {
		t.Errorf("journal after the upgrade:\n%s", b)
	}
}

// TestJournalAddDurable: add returns only after an fsync that started
// after its lines were written, and concurrent adds share fsyncs (group
// commit). The sync seam reads the file when it "flushes", so a key in
// that snapshot is one a real fsync would have covered.
func TestJournalAddDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := openJournal(path, time.Hour, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	var mu sync.Mutex
	synced := map[string]bool{}
	syncs := 0
	j.syncFile = func(f *os.File) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond) // a slow disk: let adds pile up
		mu.Lock()
		syncs++
		for _, line := range strings.Split(string(b), "\n") {
			if _, k, ok := strings.Cut(line, " "); ok {
				synced[k] = true
			}
		}
		mu.Unlock()
		return f.Sync()
	}
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := dedupKey(fmt.Sprint("m", i), "s@example.com", "d")
			if err := j.add(time.Hour, k); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			ok := synced[k]
			mu.Unlock()
			if !ok {
				errs <- fmt.Errorf("add of %s returned before an fsync covered it", k)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if syncs >= n {
		t.Errorf("%d fsyncs for %d concurrent adds: no group commit", syncs, n)
	}
	t.Logf("%d concurrent adds, %d fsyncs", n, syncs)
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if err := j.add(time.Hour, dedupKey("late", "s", "d")); err == nil {
		t.Error("add after close: no error")
	}
}
