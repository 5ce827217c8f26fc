package main

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestCompletionFiles: the committed scripts under contrib/completion are
// what "lmtpd completion" prints ("make man" rewrites them too).
func TestCompletionFiles(t *testing.T) {
	for file, gen := range map[string]func() (string, error){
		"../../contrib/completion/lmtpd.bash": bashCompletion,
		"../../contrib/completion/_lmtpd":     zshCompletion,
	} {
		script, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		checkGenerated(t, file, []byte(script))
	}
}

// bashComplete sources the bash script and returns the completions for
// the command line words (the last one being completed).
func bashComplete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, "'"+w+"'")
	}
	prog := script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		strconv.Itoa(len(words)-1) + "\n_lmtpd\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func TestBashCompletion(t *testing.T) {
	script, err := bashCompletion()
	if err != nil {
		t.Fatal(err)
	}
	got := bashComplete(t, script, "lmtpd", "")
	for _, c := range commands {
		if !slices.Contains(got, c.Name) {
			t.Errorf("lmtpd <TAB>: %q missing from %q", c.Name, got)
		}
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"lmtpd", "check"}, []string{"check-config"}},
		{[]string{"lmtpd", "check-config", "-"}, []string{"-config", "-deliver", "-offline", "-q", "-secrets"}},
		{[]string{"lmtpd", "deliver", "-"}, []string{"-config", "-f", "-log", "-loop-check"}},
		{[]string{"lmtpd", "completion", ""}, []string{"bash", "zsh"}},
		{[]string{"lmtpd", "help", "hash"}, []string{"hash-password"}},
		{[]string{"lmtpd", "deliver", "-f", ""}, nil},
		{[]string{"lmtpd", "--ver"}, []string{"--version"}},
	} {
		if got := bashComplete(t, script, tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.words, got, tc.want)
		}
	}
	// -config completes file names.
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/lmtpd.toml", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got = bashComplete(t, script, "lmtpd", "serve", "-config", dir+"/lm")
	if !slices.Equal(got, []string{dir + "/lmtpd.toml"}) {
		t.Errorf("-config file completion: %q", got)
	}
}

// TestZshCompletion: every command is in the zsh script, and zsh (when
// installed) parses it.
func TestZshCompletion(t *testing.T) {
	script, err := zshCompletion()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(script, "\t\t'"+c.Name+":") || !strings.Contains(script, "\t"+c.Name+")\n") {
			t.Errorf("zsh script lacks command %s", c.Name)
		}
	}
	if !strings.HasPrefix(script, "#compdef lmtpd\n") {
		t.Error("zsh script does not start with #compdef")
	}
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Log("zsh not installed: script not parsed")
		return
	}
	if out, err := exec.Command(zsh, "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("zsh -n: %v\n%s", err, out)
	}
}
