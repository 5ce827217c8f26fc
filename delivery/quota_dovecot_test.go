package delivery

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lmtpd/lmtpd/internal/dovecottest"
	"github.com/lmtpd/lmtpd/quota"
)

// TestQuotaDovecotAgrees: lmtpd delivers over LMTP into a maildir that a
// private Dovecot serves with "quota = maildir:User quota" and the same
// limit. doveadm quota get reports what lmtpd stored, byte for byte (in
// its KiB) and message for message; once the user is over quota lmtpd
// refuses at RCPT; doveadm expunge appends its negative change and
// lmtpd's next RCPT sees the lower usage and accepts; after doveadm's own
// recalculation both still agree.
func TestQuotaDovecotAgrees(t *testing.T) {
	l := quota.Limits{Bytes: 15000}
	d := dovecottest.Start(t, "bob", l.Bytes, l.Messages)
	root := filepath.Dir(d.Mail)
	cfg := quotaTestConfig(root, l.Bytes, quota.Grace{Percent: 50})
	cfg.Maildir.Template = "{user}"
	r := newRouter(t, cfg, Options{})
	w := startWire(t, r)
	for range 3 {
		w.deliver("s@example.test", []string{"bob@example.org"}, body(6000))
	}
	stored := sizeOf(t, d.Mail)
	kib, msgs := d.Quota()
	if msgs != stored.Messages || kib != (stored.Bytes+1023)/1024 {
		t.Fatalf("doveadm: %d KiB in %d messages; lmtpd stored %+v (maildirsize %q)", kib, msgs, stored, readMaildirsize(t, d.Mail))
	}
	if stored.Bytes < l.Bytes {
		t.Fatalf("setup: bob holds %+v, want him over %d", stored, l.Bytes)
	}
	rcpt, _ := w.try("", []string{"bob@example.org"}, body(10))
	wantReplies(t, "RCPT over quota", rcpt, "552 5.2.2 ")

	d.Doveadm("expunge", "-u", d.User, "mailbox", "INBOX", "uid", "1")
	after := sizeOf(t, d.Mail)
	if after.Messages != 2 {
		t.Fatalf("after doveadm expunge bob holds %+v", after)
	}
	rcpt, data := w.try("", []string{"bob@example.org"}, "Subject: small\r\n\r\nhi\r\n")
	wantReplies(t, "RCPT after expunge", rcpt, "250 ")
	wantReplies(t, "DATA after expunge", data, "250 ")
	final := sizeOf(t, d.Mail)
	if _, sum := maildirsizeSum(t, d.Mail); sum != final {
		t.Fatalf("maildirsize says %+v, the maildir holds %+v (%q)", sum, final, readMaildirsize(t, d.Mail))
	}
	kib, msgs = d.Quota()
	if msgs != final.Messages || kib != (final.Bytes+1023)/1024 {
		t.Fatalf("doveadm: %d KiB in %d messages; the maildir holds %+v", kib, msgs, final)
	}
	d.Doveadm("quota", "recalc", "-u", d.User)
	if kib2, msgs2 := d.Quota(); kib2 != kib || msgs2 != msgs {
		t.Fatalf("after doveadm's recalculation: %d KiB %d messages, before %d %d", kib2, msgs2, kib, msgs)
	}
	if u, err := r.quota.Usage(d.Mail, l); err != nil || u != final {
		t.Fatalf("lmtpd after Dovecot's recalculation: %+v %v, want %+v", u, err, final)
	}
}

func readMaildirsize(t *testing.T, dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, quota.FileName))
	return string(b)
}
