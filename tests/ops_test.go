//go:build linux

package tests

import (
	"bufio"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// readmeSnippet returns the first fenced block of the given language (""
// for an indented block is not supported) after the heading in README.md.
func readmeSnippet(t *testing.T, heading, lang string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no heading %q", heading)
	}
	s = s[i:]
	start := strings.Index(s, "\n```"+lang+"\n")
	if start < 0 {
		t.Fatalf("README.md has no ```%s block after %q", lang, heading)
	}
	s = s[start+len("\n```"+lang+"\n"):]
	end := strings.Index(s, "\n```")
	if end < 0 {
		t.Fatal("unterminated block in README.md")
	}
	return s[:end+1]
}

// unitValues reads a systemd unit or a tmpfiles/sysusers file: for a unit,
// every value of each key (repeated keys accumulate); comments skipped.
func unitValues(t *testing.T, file string) map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out[k] = append(out[k], strings.Fields(v)...)
	}
	return out
}

// fileLines returns the non-comment lines of a sysusers.d or tmpfiles.d
// file, split into fields.
func fileLines(t *testing.T, file string) [][]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, strings.Fields(l))
		}
	}
	return out
}

// TestUnitsMatchReadme: the systemd units, the sysusers.d and tmpfiles.d
// files and config.example.toml agree with the Postfix setup the README
// prints (its configuration and main.cf lines are read from README.md),
// and the README's configuration passes check-config. What broke in issue
// 17: a ReadWritePaths that was not the README's maildir root, a socket
// unit on a path Postfix's chrooted lmtp client cannot reach, no user.
func TestUnitsMatchReadme(t *testing.T) {
	readmeConf := readmeSnippet(t, "## Behind Postfix in five minutes", "toml")
	var conf struct {
		Listener []struct {
			Name, Address string
			SocketGroup   string `toml:"socket_group"`
			SocketMode    string `toml:"socket_mode"`
		}
		Delivery struct {
			Maildir struct{ Root string }
		}
	}
	if _, err := toml.Decode(readmeConf, &conf); err != nil {
		t.Fatalf("README's configuration: %v", err)
	}
	if len(conf.Listener) != 1 || !strings.HasPrefix(conf.Listener[0].Address, "unix:") {
		t.Fatalf("README's configuration has no unix listener: %+v", conf.Listener)
	}
	l := conf.Listener[0]
	sock := strings.TrimPrefix(l.Address, "unix:")
	root := conf.Delivery.Maildir.Root

	// main.cf names the socket relative to Postfix's queue directory, which
	// is also the chroot of its lmtp client.
	readme, _ := os.ReadFile("../README.md")
	m := regexp.MustCompile(`(?m)^\s+virtual_transport = lmtp:unix:(\S+)$`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no virtual_transport = lmtp:unix: line")
	}
	if got := path.Join("/var/spool/postfix", string(m[1])); got != sock {
		t.Errorf("main.cf's socket %s is not the configuration's %s", got, sock)
	}

	svc := unitValues(t, "../contrib/systemd/lmtpd.service")
	skt := unitValues(t, "../contrib/systemd/lmtpd.socket")
	var rw []string
	for _, p := range svc["ReadWritePaths"] {
		rw = append(rw, strings.TrimPrefix(p, "-"))
	}
	for _, want := range []string{root, path.Dir(sock)} {
		if !slices.Contains(rw, want) {
			t.Errorf("lmtpd.service ReadWritePaths %q lacks %s", rw, want)
		}
	}
	if !slices.Contains(svc["SupplementaryGroups"], l.SocketGroup) {
		t.Errorf("lmtpd.service SupplementaryGroups %q lacks the socket group %s", svc["SupplementaryGroups"], l.SocketGroup)
	}
	if !slices.Equal(svc["User"], []string{"lmtpd"}) || svc["ProtectSystem"][0] != "strict" {
		t.Errorf("lmtpd.service User %q ProtectSystem %q", svc["User"], svc["ProtectSystem"])
	}
	if !slices.Equal(skt["ListenStream"], []string{sock}) || !slices.Equal(skt["SocketGroup"], []string{l.SocketGroup}) ||
		!slices.Equal(skt["FileDescriptorName"], []string{l.Name}) || !slices.Equal(skt["SocketMode"], []string{l.SocketMode}) {
		t.Errorf("lmtpd.socket %v does not match the README's listener %+v", skt, l)
	}

	users := fileLines(t, "../contrib/systemd/lmtpd.sysusers.conf")
	if !slices.ContainsFunc(users, func(f []string) bool { return f[0] == "u" && f[1] == "lmtpd" }) {
		t.Error("lmtpd.sysusers.conf creates no user lmtpd")
	}
	tmp := fileLines(t, "../contrib/systemd/lmtpd.tmpfiles.conf")
	if !slices.ContainsFunc(tmp, func(f []string) bool { return f[0] == "d" && f[1] == root && f[3] == "lmtpd" }) {
		t.Errorf("lmtpd.tmpfiles.conf does not create %s for lmtpd", root)
	}
	if !slices.ContainsFunc(tmp, func(f []string) bool {
		return strings.HasPrefix(f[0], "a") && f[1] == path.Dir(sock) && strings.Contains(f[len(f)-1], "u:lmtpd:")
	}) {
		t.Errorf("lmtpd.tmpfiles.conf gives lmtpd no access to %s", path.Dir(sock))
	}

	// config.example.toml's listener and root are the same.
	var example struct {
		Listener []struct{ Address string }
		Delivery struct {
			Maildir struct{ Root string }
		}
	}
	if _, err := toml.DecodeFile("../config.example.toml", &example); err != nil {
		t.Fatal(err)
	}
	if example.Listener[0].Address != l.Address || example.Delivery.Maildir.Root != root {
		t.Errorf("config.example.toml: address %q root %q, README: %q %q", example.Listener[0].Address, example.Delivery.Maildir.Root, l.Address, root)
	}

	dir := tempDir(t)
	cfg := writeFile(t, dir, "lmtpd.toml", readmeConf)
	if status, _, stderr := run(t, dir, "", "check-config", "-q", "-config", cfg); status != 0 {
		t.Errorf("check-config on the README's configuration: status %d\n%s", status, stderr)
	}
}

// readmeBlockAfter returns the first fenced block of the given language
// after the first occurrence of marker in README.md (a heading or any
// text, such as the file name the block is for).
func readmeBlockAfter(t *testing.T, marker, lang string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("README.md does not say %q", marker)
	}
	s = s[i:]
	start := strings.Index(s, "\n```"+lang+"\n")
	if start < 0 {
		t.Fatalf("README.md has no ```%s block after %q", lang, marker)
	}
	s = s[start+len("\n```"+lang+"\n"):]
	end := strings.Index(s, "\n```")
	if end < 0 {
		t.Fatal("unterminated block in README.md")
	}
	return s[:end+1]
}

// readmeIndented returns the lines, unindented, of the README's indented
// (four spaces) block whose first line starts with first: main.cf lines
// and shell commands as the README prints them.
func readmeIndented(t *testing.T, first string) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "    "+first) || (i > 0 && strings.HasPrefix(lines[i-1], "    ")) {
			continue
		}
		var out []string
		for _, l := range lines[i:] {
			if !strings.HasPrefix(l, "    ") {
				break
			}
			out = append(out, strings.TrimSpace(l))
		}
		return out
	}
	t.Fatalf("README.md has no indented block starting with %q", first)
	return nil
}
