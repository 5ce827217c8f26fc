package quota

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lmtpd/lmtpd/internal/dovecottest"
)

// TestDovecotAgrees: lmtpd's deliveries and Dovecot's IMAP side keep one
// counter in maildirsize. lmtpd delivers and appends; doveadm reports the
// same usage; doveadm expunges; lmtpd sees the lower usage; Dovecot
// reads the file lmtpd recalculated and lmtpd reads Dovecot's.
func TestDovecotAgrees(t *testing.T) {
	l := Limits{Bytes: 1 << 20, Messages: 100}
	d := dovecottest.Start(t, "alice", l.Bytes, l.Messages)
	var tr Tracker
	sizes := []int64{1000, 2500, 40000, 7}
	var total int64
	for i, size := range sizes {
		r, err := tr.Reserve(d.Mail, l, Grace{}, size)
		if err != nil || r.Verdict != Fits {
			t.Fatalf("reserve %d: %+v %v", i, r, err)
		}
		msg := bytes.Repeat([]byte("y"), int(size))
		if hdr := "Subject: quota test\n\n"; size > int64(len(hdr)) {
			copy(msg, hdr)
		}
		name := fmt.Sprintf("17000000%02d.M%dP1Q1.host,S=%d", i, i, size)
		if err := os.WriteFile(filepath.Join(d.Mail, "new", name), msg, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := r.Commit(size); err != nil {
			t.Fatal(err)
		}
		total += size
	}
	// lmtpd wrote maildirsize (recalculated once, then appended): Dovecot
	// reads the same figure.
	kib, msgs := d.Quota()
	if msgs != int64(len(sizes)) || kib != (total+1023)/1024 {
		t.Fatalf("doveadm: %d KiB %d messages; lmtpd stored %d bytes in %d", kib, msgs, total, len(sizes))
	}
	u, err := tr.Usage(d.Mail, l)
	if err != nil || u != (Usage{total, int64(len(sizes))}) {
		t.Fatalf("lmtpd usage %+v %v, want %d/%d", u, err, total, len(sizes))
	}
	// Dovecot expunges the largest message and appends its change.
	d.Doveadm("expunge", "-u", d.User, "mailbox", "INBOX", "larger", "10000")
	u, err = tr.Usage(d.Mail, l)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{total - 40000, int64(len(sizes) - 1)}); u != want {
		t.Fatalf("after doveadm expunge lmtpd sees %+v, want %+v (maildirsize %q)", u, want, readFile(t, d.Mail))
	}
	// Both agree after Dovecot recalculates too.
	d.Doveadm("quota", "recalc", "-u", d.User)
	kib, msgs = d.Quota()
	if msgs != u.Messages || kib != (u.Bytes+1023)/1024 {
		t.Fatalf("after recalc doveadm says %d KiB %d messages, lmtpd %+v", kib, msgs, u)
	}
	if u2, err := tr.Usage(d.Mail, l); err != nil || u2 != u {
		t.Fatalf("lmtpd after Dovecot's recalc: %+v %v, want %+v", u2, err, u)
	}
}
