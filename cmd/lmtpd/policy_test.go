package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/policy"
)

// quotaFixture is a configuration with quota on (10000 bytes per user, no
// grace) whose maildir root holds bob at 9000 bytes, carol with a maildir
// that cannot be scanned (cur/ is a file) and dave with no limit.
func quotaFixture(t *testing.T, overQuota string) (file, root string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "mail")
	file = filepath.Join(dir, "lmtpd.toml")
	text := fmt.Sprintf(`
[[listener]]
address = "unix:%[1]s/lmtp.sock"

[delivery.maildir]
root = "%[2]s"

[quota]
enabled = true
storage = 10000
grace = "0"
over_quota = %[3]q

[[domain]]
name = "example.org"
users = ["bob", "carol"]
[[domain.user]]
name = "dave"
quota_bytes = 0
`, dir, root, overQuota)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"example.org/bob/new", "example.org/bob/cur", "example.org/carol/new"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "example.org/bob/new/1700000000.M1P1Q1.host,S=9000"), make([]byte, 9000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "example.org/carol/cur"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, root
}

// TestQuotaPolicy serves the policy handler on a unix socket and sends it
// requests as Postfix's check_policy_service does, on one connection.
func TestQuotaPolicy(t *testing.T) {
	for _, mode := range []struct {
		overQuota, full string
	}{
		{"reject", "552 5.2.2 Mailbox full"},
		{"defer", "452 4.2.2 Mailbox full"},
	} {
		t.Run(mode.overQuota, func(t *testing.T) {
			file, _ := quotaFixture(t, mode.overQuota)
			cfg, err := loadConfig(file)
			if err != nil {
				t.Fatal(err)
			}
			router, err := delivery.New(cfg.plan, delivery.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer router.Close()
			var refused []delivery.QuotaEvent
			h := &quotaPolicy{router: router, onQuota: func(e delivery.QuotaEvent) { refused = append(refused, e) }}
			log := zerolog.New(zerolog.ConsoleWriter{Out: testWriter{t}, NoColor: true})
			srv := &policy.Server{Handler: h, Logger: &log}
			sock := filepath.Join(t.TempDir(), "policy.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			defer srv.Close()
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			ask := func(attrs ...string) string {
				t.Helper()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				req := "request=smtpd_access_policy\n" + strings.Join(attrs, "\n") + "\n\n"
				if _, err := c.Write([]byte(req)); err != nil {
					t.Fatal(err)
				}
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if empty, err := br.ReadString('\n'); err != nil || empty != "\n" {
					t.Fatalf("no empty line after %q: %q %v", line, empty, err)
				}
				return strings.TrimSuffix(strings.TrimPrefix(line, "action="), "\n")
			}
			for _, tc := range []struct {
				name  string
				attrs []string
				want  string
			}{
				{"within quota", []string{"protocol_state=RCPT", "recipient=bob@example.org"}, "DUNNO"},
				{"within quota with size", []string{"protocol_state=RCPT", "recipient=bob@example.org", "size=900"}, "DUNNO"},
				{"size past the limit", []string{"protocol_state=RCPT", "recipient=bob@example.org", "size=1500"}, mode.full},
				{"detail", []string{"protocol_state=RCPT", "recipient=Bob+lists@Example.ORG", "size=1500"}, mode.full},
				{"unlimited user", []string{"protocol_state=RCPT", "recipient=dave@example.org", "size=99999999"}, "DUNNO"},
				{"unknown user", []string{"protocol_state=RCPT", "recipient=nobody@example.org"}, "DUNNO"},
				{"domain not served", []string{"protocol_state=RCPT", "recipient=bob@example.net", "size=99999999"}, "DUNNO"},
				{"other state", []string{"protocol_state=DATA", "recipient=bob@example.org", "size=99999999"}, "DUNNO"},
				{"maildir cannot be scanned", []string{"protocol_state=RCPT", "recipient=carol@example.org"}, "DEFER_IF_PERMIT Service temporarily unavailable"},
				{"still served after the failure", []string{"protocol_state=RCPT", "recipient=bob@example.org"}, "DUNNO"},
			} {
				if got := ask(tc.attrs...); got != tc.want {
					t.Errorf("%s: action=%s, want %s", tc.name, got, tc.want)
				}
			}
			if len(refused) != 2 || refused[0].Stage != "policy" || refused[0].Temporary != (mode.overQuota == "defer") {
				t.Errorf("quota events %+v, want two policy refusals", refused)
			}
		})
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestQuotaCommand: lmtpd quota prints usage and limits, as text and
// JSON, and -recalc rewrites maildirsize.
func TestQuotaCommand(t *testing.T) {
	file, root := quotaFixture(t, "reject")
	var out bytes.Buffer
	st := run([]string{"quota", "-config", file, "bob@example.org", "dave@example.org"}, nil, &out, os.Stderr)
	if st != exOK {
		t.Fatalf("status %d\n%s", st, out.String())
	}
	want := []string{
		"bob@example.org: storage 9000 of 10000 bytes (90%), messages 1 (unlimited), maildir " + filepath.Join(root, "example.org/bob"),
		"dave@example.org: no quota (unlimited, or not delivered to a maildir)",
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}

	// Another message arrives behind lmtpd's back; -recalc counts it.
	if err := os.WriteFile(filepath.Join(root, "example.org/bob/new/1700000001.M2P1Q1.host,S=2000"), make([]byte, 2000), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if st := run([]string{"quota", "-config", file, "-json", "-recalc", "bob@example.org"}, nil, &out, os.Stderr); st != exOK {
		t.Fatalf("status %d\n%s", st, out.String())
	}
	var r quotaReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Bytes != 11000 || r.Messages != 2 || r.LimitBytes != 10000 || !r.OverQuota {
		t.Errorf("after -recalc: %+v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "example.org/bob/maildirsize")); string(b) != "10000S\n11000 2\n" {
		t.Errorf("maildirsize %q", b)
	}

	for _, tc := range []struct {
		args   []string
		status int
	}{
		{[]string{"nobody@example.org"}, exNoUser},
		{[]string{"carol@example.org"}, exTempFail},
		{[]string{"not-an-address"}, exUsage},
	} {
		out.Reset()
		if st := run(append([]string{"quota", "-config", file}, tc.args...), nil, &out, os.Stderr); st != tc.status {
			t.Errorf("%v: status %d, want %d\n%s", tc.args, st, tc.status, out.String())
		}
	}
}

// FuzzPolicyAddress: any recipient Postfix may send becomes an address
// whose decoded local part and domain are what Postfix sent, or is
// refused.
func FuzzPolicyAddress(f *testing.F) {
	for _, s := range []string{"bob@example.org", `"john doe"@example.org`, "john doe@example.org", `a"b\c@d`, "@x", "x@", "", "a@b@c", ".a@b", "ü@b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := policyAddress(s)
		if !ok {
			return
		}
		if got := a.DecodedLocalPart() + "@" + a.Domain; got != s {
			t.Fatalf("policyAddress(%q) = %q (%q)", s, got, a.String())
		}
	})
}
