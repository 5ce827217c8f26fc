package quota

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newMaildir makes an empty maildir with a folder and returns its path.
func newMaildir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"new", "cur", "tmp", ".Trash/new", ".Trash/cur", ".Trash/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// put stores a message of size bytes; named with ",S=" when sized.
func put(t *testing.T, dir, sub string, n, size int, sized bool) {
	t.Helper()
	name := fmt.Sprintf("1700000000.M%dP1Q1.host", n)
	if sized {
		name += fmt.Sprintf(",S=%d", size)
	}
	if sub == "cur" || strings.HasSuffix(sub, "/cur") {
		name += ":2,S"
	}
	if err := os.WriteFile(filepath.Join(dir, sub, name), make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func open(t *testing.T, dir string, l Limits, now time.Time) *Maildir {
	t.Helper()
	m, err := Open(dir, l, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestRecalculateCountsEveryFolder(t *testing.T) {
	dir := newMaildir(t)
	put(t, dir, "new", 1, 100, true)
	put(t, dir, "cur", 2, 200, true)
	put(t, dir, ".Trash/cur", 3, 300, true)
	put(t, dir, ".Trash/new", 4, 50, false) // no S=: stat
	// Not counted: tmp/, files in the top directory, non-folder entries.
	put(t, dir, "tmp", 5, 1000, true)
	os.WriteFile(filepath.Join(dir, ".notafolder"), []byte("x"), 0o600)
	l := Limits{Bytes: 10000, Messages: 100}
	u, err := open(t, dir, l, time.Now()).Usage()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{Bytes: 650, Messages: 4}); u != want {
		t.Fatalf("usage %+v, want %+v", u, want)
	}
	if got, want := readFile(t, dir), "10000S,100C\n650 4\n"; got != want {
		t.Fatalf("maildirsize %q, want %q", got, want)
	}
}

func TestAddAppends(t *testing.T) {
	dir := newMaildir(t)
	l := Limits{Bytes: 5000}
	m := open(t, dir, l, time.Now())
	// No file yet: Add recalculates, and the scan counts the message.
	put(t, dir, "new", 1, 100, true)
	if err := m.Add(Usage{100, 1}); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, dir), "5000S\n100 1\n"; got != want {
		t.Fatalf("after first add %q, want %q", got, want)
	}
	put(t, dir, "new", 2, 40, true)
	if err := m.Add(Usage{40, 1}); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, dir), "5000S\n100 1\n40 1\n"; got != want {
		t.Fatalf("after second add %q, want %q", got, want)
	}
	u, err := m.Usage()
	if err != nil || u != (Usage{140, 2}) {
		t.Fatalf("usage %+v, %v", u, err)
	}
}

// TestReadRules: when the file is trusted and when it is recalculated.
func TestReadRules(t *testing.T) {
	l := Limits{Bytes: 1000, Messages: 10}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	const actual = "1000S,10C\n300 2\n" // what a scan finds
	for _, tc := range []struct {
		name    string
		content string
		age     time.Duration
		want    Usage // usage reported
		recalc  bool
	}{
		{"trusted", "1000S,10C\n100 1\n50 1\n", 0, Usage{150, 2}, false},
		{"header only", "1000S,10C\n", 0, Usage{}, false},
		{"negative lines within", "1000S,10C\n300 3\n-100 -1\n", 0, Usage{200, 2}, false},
		{"courier padding", "1000S,10C\n     100      1\n", 0, Usage{100, 1}, false},
		{"partial last line ignored", "1000S,10C\n100 1\n50", 0, Usage{100, 1}, false},
		{"limits changed", "2000S,10C\n100 1\n", 0, Usage{300, 2}, true},
		{"no limits line", "", 0, Usage{300, 2}, true},
		{"no newline at all", "1000S,10C", 0, Usage{300, 2}, true},
		{"garbage line", "1000S,10C\n100 1\nabc\n", 0, Usage{300, 2}, true},
		{"one field", "1000S,10C\n100\n", 0, Usage{300, 2}, true},
		{"NUL", "1000S,10C\n100 1\n\x00\n", 0, Usage{300, 2}, true},
		{"negative total", "1000S,10C\n-5 0\n", 0, Usage{300, 2}, true},
		{"over quota, one fresh line: trusted", "1000S,10C\n5000 1\n", 0, Usage{5000, 1}, false},
		{"over quota, two lines", "1000S,10C\n900 1\n900 1\n", 0, Usage{300, 2}, true},
		{"over quota, stale", "1000S,10C\n5000 1\n", 16 * time.Minute, Usage{300, 2}, true},
		{"stale but within quota: trusted", "1000S,10C\n100 1\n", 24 * time.Hour, Usage{100, 1}, false},
		{"too long", "1000S,10C\n" + strings.Repeat("1 0\n", 1300), 0, Usage{300, 2}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newMaildir(t)
			put(t, dir, "new", 1, 100, true)
			put(t, dir, "cur", 2, 200, true)
			p := filepath.Join(dir, FileName)
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			mt := now.Add(-tc.age)
			os.Chtimes(p, mt, mt)
			u, err := open(t, dir, l, now).Usage()
			if err != nil {
				t.Fatal(err)
			}
			if u != tc.want {
				t.Errorf("usage %+v, want %+v", u, tc.want)
			}
			got := readFile(t, dir)
			if tc.recalc && got != actual {
				t.Errorf("not recalculated: %q", got)
			}
			if !tc.recalc && got != tc.content {
				t.Errorf("rewritten although trusted: %q", got)
			}
		})
	}
}

func TestUnreadableIsRecalculated(t *testing.T) {
	dir := newMaildir(t)
	put(t, dir, "new", 1, 10, true)
	// A directory where the file should be cannot be read or replaced:
	// that is an error (usage unknown), not a verdict.
	if err := os.Mkdir(filepath.Join(dir, FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, FileName, "x"), nil, 0o600)
	if _, err := open(t, dir, Limits{Bytes: 100}, time.Now()).Usage(); err == nil {
		t.Fatal("no error for a maildirsize that cannot be replaced")
	}
}

func TestSymlinkedFolderStaysInside(t *testing.T) {
	dir := newMaildir(t)
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(outside, "cur"), 0o700)
	put(t, outside, "cur", 9, 1<<20, true)
	if err := os.Symlink(outside, filepath.Join(dir, ".Evil")); err != nil {
		t.Fatal(err)
	}
	put(t, dir, "new", 1, 10, true)
	_, err := open(t, dir, Limits{Bytes: 100}, time.Now()).Usage()
	// Either the link is skipped or the scan fails; it never counts
	// (or reads) what is outside the maildir.
	if err == nil {
		if got := readFile(t, dir); strings.Contains(got, "1048576") {
			t.Fatalf("counted a folder outside the maildir: %q", got)
		}
	}
}

func TestMaildirsizeIsRelative(t *testing.T) {
	// Symlinking maildirsize itself out of the maildir is refused.
	dir := newMaildir(t)
	target := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(target, []byte("1000S\n1 1\n"), 0o600)
	os.Symlink(target, filepath.Join(dir, FileName))
	m := open(t, dir, Limits{Bytes: 1000}, time.Now())
	_ = m.Add(Usage{5, 1})
	if b, _ := os.ReadFile(target); string(b) != "1000S\n1 1\n" {
		t.Fatalf("wrote through a symlink out of the maildir: %q", b)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"1000S,10C\n100 1\n", "0S\n", "5C\n-1 -1\n", "", "1000S\n\x00", "1S\n   1    1\n2 2",
	} {
		f.Add([]byte(s))
	}
	l := Limits{Bytes: 1000, Messages: 10}
	f.Fuzz(func(t *testing.T, b []byte) {
		u, n, ok := parse(b, l)
		if !ok {
			return
		}
		if u.Bytes < 0 || u.Messages < 0 || n < 0 {
			t.Fatalf("accepted negative totals: %+v %d", u, n)
		}
		if strings.Count(string(b), "\n") < n+1 {
			t.Fatalf("%d change lines from %q", n, b)
		}
	})
}

func timeNow() time.Time { return time.Now() }

// TestRecalculateOwner: as root, maildirsize gets the owner of the maildir
// (the mail user), so that the user's IMAP server can read and replace it.
func TestRecalculateOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	dir := newMaildir(t)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	put(t, dir, "new", 1, 100, true)
	if _, err := open(t, dir, Limits{Bytes: 1000}, timeNow()).Recalculate(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
		t.Fatalf("maildirsize owned by %d:%d, want the maildir's 65534:65534", st.Uid, st.Gid)
	}
}
