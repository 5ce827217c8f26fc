package delivery

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/quota"
)

// quotaTestConfig is testConfig with quota on: limit bytes per user, the
// given grace, no message limit.
func quotaTestConfig(root string, limit int64, grace quota.Grace) Config {
	cfg := testConfig(root)
	cfg.Quota = QuotaConfig{Enabled: true, Limits: quota.Limits{Bytes: limit}, Grace: grace}
	return cfg
}

// reply reads one reply and returns its last line without CRLF.
func (w *wireClient) reply() string {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := w.br.ReadString('\n')
		if err != nil {
			w.t.Fatalf("S: %q: %v", line, err)
		}
		if len(line) >= 4 && line[3] == '-' {
			continue
		}
		return strings.TrimRight(line, "\r\n")
	}
}

// try sends one transaction whatever the replies: MAIL with params, each
// RCPT, and DATA if a recipient was accepted. It returns the RCPT replies
// and, per accepted recipient, the DATA reply.
func (w *wireClient) try(params string, rcpts []string, text string) (rcpt, data []string) {
	w.t.Helper()
	w.send("MAIL FROM:<s@example.test>" + params)
	w.expect("250")
	accepted := 0
	for _, r := range rcpts {
		w.send("RCPT TO:<" + r + ">")
		rp := w.reply()
		rcpt = append(rcpt, rp)
		if strings.HasPrefix(rp, "250") {
			accepted++
		}
	}
	if accepted == 0 {
		w.send("RSET")
		w.expect("250")
		return rcpt, nil
	}
	w.send("DATA")
	w.expect("354")
	w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.c.Write([]byte(strings.ReplaceAll(text, "\r\n.", "\r\n..") + ".\r\n")); err != nil {
		w.t.Fatal(err)
	}
	for range accepted {
		data = append(data, w.reply())
	}
	return rcpt, data
}

// body returns a message text of about n bytes.
func body(n int) string {
	line := strings.Repeat("x", 78) + "\r\n"
	return "Subject: quota\r\n\r\n" + strings.Repeat(line, n/len(line)+1)
}

// sizeOf returns the bytes and messages the maildir at dir holds, by
// scanning its files (INBOX and folders).
func sizeOf(t testing.TB, dir string) quota.Usage {
	t.Helper()
	var u quota.Usage
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		if d := filepath.Base(filepath.Dir(p)); d == "new" || d == "cur" {
			u.Bytes += fi.Size()
			u.Messages++
		}
		return nil
	})
	return u
}

// maildirsizeSum returns the limits line and the sum of the change lines
// of dir's maildirsize, as the file says (no recalculation).
func maildirsizeSum(t testing.TB, dir string) (string, quota.Usage) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, quota.FileName))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Scan()
	head := sc.Text()
	var u quota.Usage
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			t.Fatalf("maildirsize line %q", sc.Text())
		}
		nb, _ := strconv.ParseInt(f[0], 10, 64)
		nm, _ := strconv.ParseInt(f[1], 10, 64)
		u = u.Add(quota.Usage{Bytes: nb, Messages: nm})
	}
	return head, u
}

func wantReplies(t testing.TB, what string, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: replies %q, want %q", what, got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("%s: reply %d is %q, want %q (all: %q)", what, i, got[i], want[i], got)
		}
	}
}

// TestQuotaWire: a user near the limit. RCPT with a SIZE= that would take
// the user past it gets 552 5.2.2 while the second recipient goes on;
// without SIZE the DATA reply of that recipient is the 552, the other
// recipient's 250, and nothing is stored for the refused one; a message
// that fits still goes in, and maildirsize counts exactly what is stored.
func TestQuotaWire(t *testing.T) {
	root := t.TempDir()
	const limit = 10000
	r := newRouter(t, quotaTestConfig(root, limit, quota.Grace{}), Options{})
	w := startWire(t, r)
	bob := filepath.Join(root, "example.org/bob")
	for range 2 {
		w.deliver("s@example.test", []string{"bob@example.org"}, body(4000))
	}
	before := sizeOf(t, bob)
	if before.Bytes < 8000 || before.Bytes >= limit {
		t.Fatalf("setup: bob holds %+v", before)
	}

	rcpt, data := w.try(" SIZE=4500", []string{"bob@example.org", "alice@example.org"}, body(4000))
	wantReplies(t, "RCPT with SIZE", rcpt, "552 5.2.2 ", "250 ")
	wantReplies(t, "DATA after a refused RCPT", data, "250 ")
	if !strings.Contains(rcpt[0], "Mailbox full") {
		t.Errorf("RCPT reply %q lacks the text", rcpt[0])
	}

	rcpt, data = w.try("", []string{"bob@example.org", "alice@example.org"}, body(4000))
	wantReplies(t, "RCPT without SIZE", rcpt, "250 ", "250 ")
	wantReplies(t, "DATA without SIZE", data, "552 5.2.2 ", "250 ")
	if got := sizeOf(t, bob); got != before {
		t.Fatalf("bob holds %+v after a refusal, had %+v", got, before)
	}
	if files := maildirFiles(t, root, "example.org/Alice"); len(files) != 2 {
		t.Fatalf("alice has %d messages, want 2", len(files))
	}

	// A small message still fits.
	w.deliver("s@example.test", []string{"bob@example.org"}, "Subject: small\r\n\r\nhi\r\n")
	head, sum := maildirsizeSum(t, bob)
	if head != "10000S" || sum != sizeOf(t, bob) {
		t.Fatalf("maildirsize %q %+v, stored %+v", head, sum, sizeOf(t, bob))
	}
}

// TestQuotaWireGraceAndOver: with grace, a message that crosses the limit
// is taken while the result stays within limit + grace; then the user is
// over quota, and every RCPT, with SIZE or without, gets 552 5.2.2.
func TestQuotaWireGraceAndOver(t *testing.T) {
	root := t.TempDir()
	const limit = 10000
	r := newRouter(t, quotaTestConfig(root, limit, quota.Grace{Percent: 20}), Options{})
	w := startWire(t, r)
	bob := filepath.Join(root, "example.org/bob")
	for range 2 {
		w.deliver("s@example.test", []string{"bob@example.org"}, body(4000))
	}
	// About 8.4k + 2.2k: past the limit, within limit + 20%.
	rcpt, data := w.try(" SIZE=2200", []string{"bob@example.org"}, body(2000))
	wantReplies(t, "RCPT within grace", rcpt, "250 ")
	wantReplies(t, "DATA within grace", data, "250 ")
	u := sizeOf(t, bob)
	if u.Bytes < limit || u.Bytes > limit*12/10 {
		t.Fatalf("bob holds %+v: the test wants him past the limit, within grace", u)
	}
	rcpt, _ = w.try("", []string{"bob@example.org", "alice@example.org"}, body(10))
	wantReplies(t, "RCPT over quota", rcpt, "552 5.2.2 ", "250 ")
	rcpt, _ = w.try(" SIZE=10", []string{"bob@example.org"}, body(10))
	wantReplies(t, "RCPT over quota with SIZE", rcpt, "552 5.2.2 ")
	if got := sizeOf(t, bob); got != u {
		t.Fatalf("bob holds %+v, had %+v", got, u)
	}
}

// TestQuotaWireDefer: over_quota = "defer" answers 452 4.2.2, at RCPT and
// at DATA.
func TestQuotaWireDefer(t *testing.T) {
	root := t.TempDir()
	cfg := quotaTestConfig(root, 5000, quota.Grace{})
	cfg.Quota.Defer = true
	r := newRouter(t, cfg, Options{})
	w := startWire(t, r)
	w.deliver("s@example.test", []string{"bob@example.org"}, body(3000))
	rcpt, _ := w.try(" SIZE=3000", []string{"bob@example.org"}, body(3000))
	wantReplies(t, "RCPT", rcpt, "452 4.2.2 ")
	rcpt, data := w.try("", []string{"bob@example.org", "alice@example.org"}, body(3000))
	wantReplies(t, "RCPT", rcpt, "250 ", "250 ")
	wantReplies(t, "DATA", data, "452 4.2.2 ", "250 ")
}

// TestQuotaWireLimitsOrder: a domain's limit overrides the default, a
// configured user's the domain's, and a message limit refuses the next
// message whatever its size.
func TestQuotaWireLimitsOrder(t *testing.T) {
	root := t.TempDir()
	cfg := quotaTestConfig(root, 1000, quota.Grace{})
	cfg.Quota.Domains = map[string]QuotaOverride{"example.org": {Bytes: limit(100000)}}
	cfg.Quota.Users = map[string]QuotaOverride{"Alice@example.org": {Bytes: limit(0), Messages: limit(1)}}
	r := newRouter(t, cfg, Options{})
	w := startWire(t, r)
	// bob: the domain's 100000, not the default 1000.
	w.deliver("s@example.test", []string{"bob@example.org"}, body(3000))
	// alice: no byte limit, one message.
	w.deliver("s@example.test", []string{"alice@example.org"}, body(3000))
	rcpt, _ := w.try("", []string{"alice@example.org", "bob@example.org"}, body(10))
	wantReplies(t, "RCPT", rcpt, "552 5.2.2 ", "250 ")
	// example.net (any user): the default 1000.
	rcpt, _ = w.try(" SIZE=3000", []string{"zed@example.net"}, body(10))
	wantReplies(t, "RCPT", rcpt, "552 5.2.2 ")
	if head, _ := maildirsizeSum(t, filepath.Join(root, "example.org/Alice")); head != "1C" {
		t.Errorf("alice's maildirsize limits %q, want 1C", head)
	}
}

func limit(v int64) directory.Limit { return directory.Limit{Value: v, Set: true} }

// TestQuotaWireWarning: crossing a threshold delivers the warning once,
// with its placeholders filled in; later deliveries above it do not
// repeat it, and maildirsize counts the warning too.
func TestQuotaWireWarning(t *testing.T) {
	root := t.TempDir()
	cfg := quotaTestConfig(root, 20000, quota.Grace{})
	cfg.Quota.Warnings = []QuotaWarning{{Percent: 50, Message: []byte("From: postmaster@example.org\r\nTo: {user}\r\nSubject: {percent}% of your mailbox used\r\n\r\nYou use {usage} of {limit}.\r\n")}}
	var mu sync.Mutex
	var events []QuotaEvent
	r := newRouter(t, cfg, Options{OnQuota: func(e QuotaEvent) { mu.Lock(); events = append(events, e); mu.Unlock() }})
	w := startWire(t, r)
	bob := filepath.Join(root, "example.org/bob")
	warnings := func() []string {
		var out []string
		for _, f := range maildirFiles(t, root, "example.org/bob") {
			if strings.Contains(f, "of your mailbox used") {
				out = append(out, f)
			}
		}
		return out
	}
	w.deliver("s@example.test", []string{"bob@example.org"}, body(6000))
	if n := len(warnings()); n != 0 {
		t.Fatalf("%d warnings below the threshold", n)
	}
	w.deliver("s@example.test", []string{"bob@example.org"}, body(6000))
	ws := warnings()
	if len(ws) != 1 {
		t.Fatalf("%d warnings after crossing 50%%, want 1", len(ws))
	}
	for _, want := range []string{"To: bob@example.org\n", "Subject: 50% of your mailbox used\n", "of 19.5 KiB.\n", "\nDate: ", "Message-ID: <quota."} {
		if !strings.Contains("\n"+ws[0], want) {
			t.Errorf("warning lacks %q:\n%s", want, ws[0])
		}
	}
	w.deliver("s@example.test", []string{"bob@example.org"}, body(2000))
	if n := len(warnings()); n != 1 {
		t.Fatalf("%d warnings after a further delivery, want still 1", n)
	}
	_, sum := maildirsizeSum(t, bob)
	if stored := sizeOf(t, bob); sum != stored || stored.Messages != 4 {
		t.Fatalf("maildirsize says %+v, the maildir holds %+v (3 messages and the warning)", sum, stored)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 1 || events[0].Kind != "warning" {
		t.Fatalf("events %+v, want one warning", events)
	}
}

// TestQuotaWireConcurrent: 8 connections deliver to one user near the
// limit at once. The stored total never exceeds limit + grace + one
// message, and maildirsize agrees with a recalculation afterwards.
func TestQuotaWireConcurrent(t *testing.T) {
	root := t.TempDir()
	const limit, msg = 60000, 2000
	grace := quota.Grace{Percent: 5}
	r := newRouter(t, quotaTestConfig(root, limit, grace), Options{})
	bob := filepath.Join(root, "example.org/bob")
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted, refused := 0, 0
	for range 8 {
		w := startWire(t, r)
		wg.Go(func() {
			for range 8 {
				rcpt, data := w.try("", []string{"bob@example.org"}, body(msg))
				mu.Lock()
				switch {
				case strings.HasPrefix(rcpt[0], "552 5.2.2"):
					refused++
				case len(data) == 1 && strings.HasPrefix(data[0], "250"):
					accepted++
				case len(data) == 1 && strings.HasPrefix(data[0], "552 5.2.2"):
					refused++
				default:
					t.Errorf("replies %q %q", rcpt, data)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if refused == 0 {
		t.Fatalf("nothing refused (%d accepted): the test did not reach the limit", accepted)
	}
	stored := sizeOf(t, bob)
	one := stored.Bytes / stored.Messages
	t.Logf("8 connections: %d accepted, %d refused; stored %d bytes in %d messages (limit %d, grace %d%%)",
		accepted, refused, stored.Bytes, stored.Messages, limit, grace.Percent)
	if max := int64(limit) + limit*grace.Percent/100 + one; stored.Bytes > max {
		t.Fatalf("stored %d bytes, more than limit + grace + one message (%d)", stored.Bytes, max)
	}
	if stored.Messages != int64(accepted) {
		t.Fatalf("%d messages stored, %d accepted", stored.Messages, accepted)
	}
	_, sum := maildirsizeSum(t, bob)
	m, err := quota.Open(bob, quota.Limits{Bytes: limit}, quota.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	recalc, err := m.Recalculate()
	if err != nil || recalc != sum || recalc != stored {
		t.Fatalf("maildirsize %+v, recalculation %+v (%v), stored %+v", sum, recalc, err, stored)
	}
}

// TestQuotaWireUnreadable: a maildir whose usage cannot be known (cur/ is
// not a directory) defers its recipient with 451 4.3.0, never refuses it,
// and the other recipient is delivered; a damaged maildirsize is only
// recalculated.
func TestQuotaWireUnreadable(t *testing.T) {
	root := t.TempDir()
	r := newRouter(t, quotaTestConfig(root, 100000, quota.Grace{}), Options{})
	w := startWire(t, r)
	bob := filepath.Join(root, "example.org/bob")
	os.MkdirAll(filepath.Join(bob, "new"), 0o700)
	if err := os.WriteFile(filepath.Join(bob, "cur"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rcpt, data := w.try("", []string{"bob@example.org", "alice@example.org"}, body(100))
	wantReplies(t, "RCPT", rcpt, "451 4.3.0 ", "250 ")
	wantReplies(t, "DATA", data, "250 ")

	alice := filepath.Join(root, "example.org/Alice")
	if err := os.WriteFile(filepath.Join(alice, quota.FileName), []byte("garbage\x00\n-5 x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.deliver("s@example.test", []string{"alice@example.org"}, body(100))
	if head, sum := maildirsizeSum(t, alice); head != "100000S" || sum != sizeOf(t, alice) {
		t.Fatalf("maildirsize %q %+v after a damaged one, the maildir holds %+v", head, sum, sizeOf(t, alice))
	}
}

// TestQuotaWireSymlinkOutside: a maildir replaced by a symbolic link to a
// directory outside the root is neither read nor written by quota: the
// recipient is deferred and nothing appears there.
func TestQuotaWireSymlinkOutside(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	for _, d := range []string{"new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(outside, d), 0o700)
	}
	os.MkdirAll(filepath.Join(root, "example.org"), 0o700)
	if err := os.Symlink(outside, filepath.Join(root, "example.org/bob")); err != nil {
		t.Fatal(err)
	}
	r := newRouter(t, quotaTestConfig(root, 100000, quota.Grace{}), Options{})
	w := startWire(t, r)
	rcpt, _ := w.try("", []string{"bob@example.org"}, body(100))
	wantReplies(t, "RCPT", rcpt, "451 4.3.0 ")
	if _, err := os.Stat(filepath.Join(outside, quota.FileName)); err == nil {
		t.Fatal("quota wrote maildirsize outside the maildir root")
	}
}

// TestQuotaStageCommit: in SMTP (all or nothing) a recipient over quota at
// DATA fails the whole message with 552 5.2.2 and nothing is stored for
// anyone; the reservations of an aborted or closed transaction are
// released, so the room counts again; a committed one is counted once.
func TestQuotaStageCommit(t *testing.T) {
	root := t.TempDir()
	r := newRouter(t, quotaTestConfig(root, 4000, quota.Grace{}), Options{})
	ctx := testCtx(t, nil)
	stage := func(text string, rcpts ...string) (protocol.Transaction, error) {
		tx, _ := r.Mail(ctx, conn(protocol.SMTP), addr("a@b"), &protocol.MailParams{})
		for _, rc := range rcpts {
			if err := tx.Rcpt(ctx, &protocol.Recipient{Address: addr(rc)}); err != nil {
				t.Fatal(err)
			}
		}
		return tx, tx.(protocol.Stager).Stage(ctx, message(t, "a@b", rcpts, text))
	}
	bob := filepath.Join(root, "example.org/bob")
	usage := func() quota.Usage {
		u, err := r.quota.Usage(bob, quota.Limits{Bytes: 4000})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	tx, err := stage(body(5000), "zed@example.net", "bob@example.org")
	checkCode(t, err, 552, protocol.ECPermMailboxFull)
	tx.Close()
	if n := len(maildirFiles(t, root, "example.net/zed")); n != 0 {
		t.Fatalf("zed has %d messages after an all-or-nothing refusal", n)
	}

	// Staged, then closed without Commit: the room is free again.
	tx, err = stage(body(3000), "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if u := usage(); u.Messages != 1 {
		t.Fatalf("usage during the transaction %+v: the reservation should count", u)
	}
	tx.Close()
	if u := usage(); u != (quota.Usage{}) {
		t.Fatalf("usage after Close %+v, want nothing", u)
	}

	tx, err = stage(body(3000), "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.(protocol.Stager).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tx.Close()
	if u, stored := usage(), sizeOf(t, bob); u != stored || u.Messages != 1 {
		t.Fatalf("usage %+v after Commit, stored %+v", u, stored)
	}
}
