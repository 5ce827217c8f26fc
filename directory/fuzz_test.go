package directory

import (
	"strings"
	"testing"
)

// FuzzNewRecord feeds Dovecot-style and lmtpd field values through the
// field parsers (sizes, quota rules, mail locations, variables, ~).
func FuzzNewRecord(f *testing.F) {
	f.Add("maildir:~/Maildir", "/var/vmail/%d/%n", "*:storage=1G:messages=10", "1G", "file:~/s;active=~/.dovecot.sieve", "5000")
	f.Add("mbox:~/mail", "", "Trash:storage=+10%", "x", "", "-1")
	f.Add("%{home}/M", "%h", "*:bytes=99999999999999T", "1b", "%", "")
	f.Fuzz(func(t *testing.T, mail, home, rule, qbytes, sieve, uid string) {
		k := Key{Address: "a@d", LocalPart: "a", Domain: "d"}
		r, unknown, err := NewRecord(k, map[string]string{"mail": mail, "home": home, "quota_rule": rule,
			"quota_bytes": qbytes, "sieve": sieve, "uid": uid, "other": "x"})
		if err != nil {
			return
		}
		if len(unknown) != 1 || unknown[0] != "other" {
			t.Fatalf("unknown = %q", unknown)
		}
		for _, p := range []string{r.Mailbox, r.Sieve} {
			if p == "~" || strings.HasPrefix(p, "~/") {
				t.Fatalf("~ left unexpanded in %q", p)
			}
		}
		for _, l := range []Limit{r.QuotaBytes, r.QuotaMessages} {
			if l.Value < 0 || (!l.Set && l.Value != 0) {
				t.Fatalf("limit %+v", l)
			}
		}
		if r.UID < -1 || r.GID != -1 {
			t.Fatalf("uid %d gid %d", r.UID, r.GID)
		}
	})
}
