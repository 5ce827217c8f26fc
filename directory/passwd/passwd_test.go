package passwd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/directory"
)

func key(local string) directory.Key {
	return directory.Key{Address: local + "@localhost", LocalPart: local, Domain: "localhost"}
}

func TestFile(t *testing.T) {
	d, err := New(Options{Name: "system", Path: "testdata/passwd", Exclude: []string{"erin"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		local string
		want  *directory.Record
	}{
		{"alice", &directory.Record{Mailbox: "/home/alice/Maildir", Home: "/home/alice", UID: 1000, GID: 1000, Trusted: true}},
		{"bob", &directory.Record{Mailbox: "/home/bob/Maildir", Home: "/home/bob", UID: 1001, GID: 100, Trusted: true}},
		{"root", nil},     // uid below min_uid
		{"daemon", nil},   // system account
		{"postfix", nil},  // system account
		{"nobody", nil},   // above max_uid
		{"erin", nil},     // excluded
		{"carol", nil},    // home is /
		{"dave", nil},     // home is relative
		{"mallory", nil},  // no such account
		{"Alice", nil},    // names are case-sensitive
		{"../alice", nil}, // hostile
		{"alice\x00", nil},
		{"+@netgroup", nil},
		{"x' OR '1'='1", nil},
		{strings.Repeat("a", 1000), nil},
		{"", nil},
	}
	for _, tc := range tests {
		got, err := d.LookupUser(ctx, key(tc.local))
		if tc.want == nil {
			if !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("LookupUser(%q) = %+v, %v; want ErrNotFound", tc.local, got, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, *tc.want) {
			t.Errorf("LookupUser(%q) = %+v, %v\nwant %+v", tc.local, got, err, *tc.want)
		}
	}
	if _, err := d.LookupPassword(ctx, key("alice")); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("LookupPassword: %v", err)
	}
	if _, err := d.LookupAlias(ctx, key("alice")); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("LookupAlias: %v", err)
	}
	if err := d.Check(ctx); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestOptions(t *testing.T) {
	ctx := context.Background()
	d, err := New(Options{Path: "testdata/passwd", MinUID: 1001, MaxUID: 1001, Mailbox: "{home}/Mail/inbox"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.LookupUser(ctx, key("alice")); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("alice below min_uid 1001: %v", err)
	}
	if r, err := d.LookupUser(ctx, key("bob")); err != nil || r.Mailbox != "/home/bob/Mail/inbox" {
		t.Errorf("bob: %+v, %v", r, err)
	}
	for _, mb := range []string{"/var/mail/{home}", "{home}", "{home}/", "{home}/../x", "{home}/a/../../x", "{home}//x", "{home}/{user}", "Maildir"} {
		if _, err := New(Options{Path: "testdata/passwd", Mailbox: mb}); err == nil {
			t.Errorf("mailbox %q accepted", mb)
		}
	}
	if _, err := New(Options{Path: "testdata/passwd", MinUID: 2000, MaxUID: 1000}); err == nil {
		t.Error("min_uid above max_uid accepted")
	}
	if _, err := New(Options{Path: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("missing file accepted")
	}
}

func TestFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	t0 := time.Now().Add(-time.Hour)
	write := func(s string, mt time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, mt, mt)
	}
	write("a:x:1000:1000::/home/a:/bin/sh\n", t0)
	d, err := New(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := d.LookupUser(ctx, key("a")); err != nil {
		t.Fatal(err)
	}
	write("b:x:1000:1000::/home/b:/bin/sh\n", t0.Add(time.Minute))
	if _, err := d.LookupUser(ctx, key("b")); err != nil {
		t.Errorf("after the change: %v", err)
	}
	write("broken line\n", t0.Add(2*time.Minute))
	if _, err := d.LookupUser(ctx, key("b")); err == nil || errors.Is(err, directory.ErrNotFound) {
		t.Errorf("broken file: %v, want an error", err)
	}
	os.Remove(path)
	if err := d.Check(ctx); err == nil {
		t.Error("Check passed with the file gone")
	}
}

// The name service (no Path): root exists everywhere; it is a user only
// when min_uid allows uid 0 and it is not excluded.
func TestNameService(t *testing.T) {
	ctx := context.Background()
	d, err := New(Options{Name: "system", Exclude: []string{"root"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if _, err := d.LookupUser(ctx, key("root")); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("root: %v, want ErrNotFound", err)
	}
	if _, err := d.LookupUser(ctx, key("no-such-user-lmtpd")); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("unknown user: %v, want ErrNotFound", err)
	}
	all, err := New(Options{MinUID: -1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := all.LookupUser(ctx, key("root"))
	if err != nil || r.UID != 0 || r.Home == "" || r.Mailbox != filepath.Join(r.Home, "Maildir") || !r.Trusted {
		t.Errorf("root with min_uid 0: %+v, %v", r, err)
	}
}

func FuzzParse(f *testing.F) {
	seed, _ := os.ReadFile("testdata/passwd")
	f.Add(seed)
	f.Add([]byte("a:x:1:1::/h:/bin/sh\n#\n\n+x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parse("fuzz", data)
		if err != nil {
			return
		}
		// A Dir over these accounts never gives a mailbox outside the
		// account's home.
		d := &Dir{min: 0, max: 1 << 30, maildir: "Maildir"}
		for name, a := range users {
			r, err := d.record(&a)
			if err != nil {
				continue
			}
			if r.UID != a.uid || !strings.HasPrefix(r.Mailbox, r.Home+"/") || !filepath.IsAbs(r.Home) {
				t.Fatalf("%q: record %+v from %+v", name, r, a)
			}
		}
	})
}
