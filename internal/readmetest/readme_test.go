package readmetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBlock reads blocks from a README of its own, in a module of its
// own, from a directory below the module's root.
func TestBlock(t *testing.T) {
	root := writeModule(t, "# x\n\n## First\n\ntext\n\n```sql\nSELECT 1;\n```\n\n```toml\na = 1\n```\n\n"+
		"## Second\n\n```toml\nb = 2\nc = 3\n```\n")
	sub := filepath.Join(root, "tests", "peers")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)

	if got, want := Path(t), filepath.Join(root, "README.md"); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		heading, lang, want string
	}{
		{"## First", "sql", "SELECT 1;\n"},
		{"## First", "toml", "a = 1\n"}, // the first toml block after the heading
		{"## Second", "toml", "b = 2\nc = 3\n"},
	} {
		if got := Block(t, tc.heading, tc.lang); got != tc.want {
			t.Errorf("Block(%q, %q) = %q, want %q", tc.heading, tc.lang, got, tc.want)
		}
	}
}

// TestBlockMissing: a heading or block the README lacks fails the test
// with a message that names it.
func TestBlockMissing(t *testing.T) {
	root := writeModule(t, "## Only\n\n```sql\nx\n```\n")
	t.Chdir(root)
	for _, tc := range []struct {
		heading, lang, want string
	}{
		{"## Missing", "sql", `no heading "## Missing"`},
		{"## Only", "toml", `no toml block after "## Only"`},
	} {
		r := &recorder{TB: t}
		func() {
			defer func() { recover() }()
			Block(r, tc.heading, tc.lang)
		}()
		if !strings.Contains(r.msg, tc.want) {
			t.Errorf("Block(%q, %q) failed with %q, want it to say %q", tc.heading, tc.lang, r.msg, tc.want)
		}
	}
}

// recorder is a testing.TB whose Fatalf records the message and stops
// the call (by panicking, which the caller recovers) instead of failing
// the real test.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}

// writeModule makes a directory with a go.mod and the given README.md
// and returns it.
func writeModule(t *testing.T, readme string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "README.md"), []byte(readme), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}
