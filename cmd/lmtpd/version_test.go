package main

import (
	"bytes"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// runCapture runs lmtpd's command line in process.
func runCapture(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	errFile, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	var stdout bytes.Buffer
	st := run(args, nil, &stdout, errFile)
	b, err := os.ReadFile(errFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	return st, stdout.String(), string(b)
}

func TestVersionFlags(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "0123456789ab-dirty"
	want := "lmtpd v1.2.3\ncommit 0123456789ab-dirty\nbuilt with " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		st, out, errOut := runCapture(t, args...)
		if st != exOK || out != want || errOut != "" {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want %q", args, st, out, errOut, want)
		}
	}
	if st, _, _ := runCapture(t, "version", "extra"); st != exUsage {
		t.Errorf("version extra: status %d, want %d", st, exUsage)
	}
}

// TestVersionFallback: without -ldflags the version and commit come from
// the build information, or say so.
func TestVersionFallback(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "", ""
	b := readBuildInfo()
	if b.Version == "" || b.Commit == "" || b.Go != runtime.Version() {
		t.Errorf("build info %+v", b)
	}
	if !regexp.MustCompile(`^(devel|v\d+\.\d+\.\d+.*)$`).MatchString(b.Version) {
		t.Errorf("version %q is neither a module version nor devel", b.Version)
	}
	if !regexp.MustCompile(`^([0-9a-f]{7,40}(-dirty)?|unknown)$`).MatchString(b.Commit) {
		t.Errorf("commit %q", b.Commit)
	}
}

// TestMainHelp: -h, -help, --help and help list every command on stdout;
// help COMMAND shows that command's usage.
func TestMainHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}, {"help"}} {
		st, out, _ := runCapture(t, args...)
		if st != exOK || !strings.HasPrefix(out, "Usage: lmtpd [command]") {
			t.Errorf("%q: status %d, stdout %q", args, st, out)
			continue
		}
		for _, c := range commands {
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(c.Name) + ` +\S`).MatchString(out) {
				t.Errorf("%q: command %s not listed", args, c.Name)
			}
		}
	}
	if st, _, errOut := runCapture(t, "help", "deliver"); st != exOK || !strings.HasPrefix(errOut, "Usage: lmtpd deliver ") {
		t.Errorf("help deliver: status %d, stderr %q", st, errOut)
	}
	for _, args := range [][]string{{"help", "nope"}, {"help", "a", "b"}, {"help", "help"}} {
		if st, _, _ := runCapture(t, args...); st != exUsage {
			t.Errorf("%q: status %d, want %d", args, st, exUsage)
		}
	}
}

// TestCommandsDispatch: every listed command is one run knows (its -h
// works), so the list, the man page and the completion cannot name a
// command that does not exist.
func TestCommandsDispatch(t *testing.T) {
	for _, c := range commands {
		if c.Name == "help" {
			continue
		}
		h, err := commandHelp(c.Name)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if !strings.HasPrefix(h.Synopsis, "lmtpd ") || !strings.Contains(h.Synopsis, c.Name) {
			t.Errorf("%s: synopsis %q", c.Name, h.Synopsis)
		}
	}
	// And the other way round: every command run's switch knows is listed.
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	body, _, _ := strings.Cut(string(src[bytes.Index(src, []byte("\nfunc run(")):]), "\n}\n")
	cases := regexp.MustCompile(`case "([a-z][a-z0-9-]*)":`).FindAllStringSubmatch(body, -1)
	if len(cases) == 0 {
		t.Fatal("no command cases found in main.go's run")
	}
	for _, m := range cases {
		if findCommand(m[1]) == nil {
			t.Errorf("run dispatches %q, which commands (help.go) does not list", m[1])
		}
	}
	if st, _, _ := runCapture(t, "completion", "fish"); st != exUsage {
		t.Errorf("completion fish: status %d, want %d", st, exUsage)
	}
}
