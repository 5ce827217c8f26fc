//go:build linux

package peers

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lmtpdBin is the lmtpd binary TestMain built; coverDir receives the
// coverage counters of every lmtpd process that exits normally.
var (
	lmtpdBin string
	coverDir string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "lmtpd-peers-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The binary and the scripts lmtpd runs must be reachable by any user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 1
	}
	lmtpdBin = filepath.Join(dir, "lmtpd")
	start := time.Now()
	if err := buildLmtpd(lmtpdBin); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Printf("peers: built %s (cover, race=%v) in %v\n", lmtpdBin, raceEnabled, time.Since(start).Round(time.Millisecond))
	}
	coverDir = os.Getenv("LMTPD_E2E_COVERDIR")
	if coverDir == "" {
		coverDir = filepath.Join(dir, "cover")
	}
	if err := os.MkdirAll(coverDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		return 1
	}
	code := m.Run()
	if testing.Verbose() {
		out, err := exec.Command(goTool(), "tool", "covdata", "percent", "-i", coverDir).CombinedOutput()
		if err == nil {
			fmt.Printf("peers: lmtpd coverage over these tests:\n%s", out)
		}
	}
	return code
}

// buildLmtpd builds cmd/lmtpd with coverage of the whole module, and with
// the race detector when this test binary has it.
func buildLmtpd(out string) error {
	args := []string{"build", "-cover", "-coverpkg=github.com/lmtpd/lmtpd/...", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/lmtpd/lmtpd/cmd/lmtpd")
	cmd := exec.Command(goTool(), args...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// goTool returns the go command: $GOROOT/bin/go when GOROOT is set in the
// environment, else go from PATH (runtime.GOROOT is deprecated: the root a
// test binary was built with says nothing reliable about this machine).
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

// fileExists reports whether p names an existing file.
func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ci reports whether a missing peer must fail rather than skip.
func ci() bool { return os.Getenv("CI") == "true" }

// requirePeer returns the path of the program name, looked up on PATH and
// in /usr/sbin and /usr/local/sbin. When it is missing the test is skipped
// with a message saying what to install, or fails when CI=true.
func requirePeer(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	missingPeer(t, "%s is not installed (run `make test` as root, or apt-get install postfix swaks python3)", name)
	return ""
}

// requireRoot skips (or fails in CI) when the test needs root: a private
// Postfix instance runs its master as root.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		missingPeer(t, "%s needs root (euid is %d)", why, os.Geteuid())
	}
}

// missingPeer skips the test loudly, or fails it when CI=true.
func missingPeer(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "PEER MISSING: " + fmt.Sprintf(format, args...)
	if ci() {
		t.Fatal(msg + " (CI=true: a missing peer is a failure)")
	}
	fmt.Fprintf(os.Stderr, "*** %s: SKIPPED: %s\n", t.Name(), msg)
	t.Skip(msg)
}
