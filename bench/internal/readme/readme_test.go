package readme

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(path, []byte("# x\n<!-- b -->\nold\n<!-- e -->\ntail\n"), 0o644)
	if err := Rewrite(path, "<!-- b -->", "<!-- e -->", []byte("new")); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if want := "# x\n<!-- b -->\nnew\n<!-- e -->\ntail\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if err := Rewrite(path, "<!-- missing -->", "<!-- e -->", nil); err == nil {
		t.Error("missing marker not reported")
	}
}

func TestMachine(t *testing.T) {
	if m := Machine(); !strings.Contains(m, "CPUs") || !strings.Contains(m, "go1.") {
		t.Errorf("Machine() = %q", m)
	}
}
