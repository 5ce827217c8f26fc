package readmetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Block returns the first fenced block of lang (the word after the
// opening ```) after the line heading in README.md, without its fences.
// README.md is the one beside go.mod in the working directory or the
// nearest directory above it, so that tests in any package of the module
// find the same file. A README without the heading or the block fails t.
func Block(t testing.TB, heading, lang string) string {
	t.Helper()
	b, err := os.ReadFile(Path(t))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut("\n"+string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```"+lang+"\n")
	if !ok {
		t.Fatalf("README.md has no %s block after %q", lang, heading)
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// Path returns the path of the module's README.md: the directory holding
// go.mod, from the working directory (a test's package directory) up.
func Path(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "README.md")
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod in the working directory or above it")
		}
		dir = up
	}
}
