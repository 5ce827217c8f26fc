package main

// The manual pages contrib/man/lmtpd.8 and contrib/man/lmtpd.toml.5 are
// generated here: lmtpd(8) from the command list of "lmtpd -h" and each
// command's "-h" output, lmtpd.toml(5) from config.example.toml. "make man"
// (go test -run TestManPages -args -update) rewrites them; without
// -update the test fails when a committed page differs from what the
// sources give.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// update (-update) rewrites the generated files under contrib/ (make man)
// as well as the golden files (config_files_test.go).
var update = updateGolden

// roffEscape makes text safe in a roff text line.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// writeText writes free text: paragraphs separated by blank lines (para
// starts a new one: ".PP", or ".IP" inside a tagged paragraph), lines
// indented by two or more spaces kept as they are (examples).
func writeText(b *bytes.Buffer, lines []string, para string) {
	pre := false
	for i, l := range lines {
		indented := strings.HasPrefix(l, "  ")
		switch {
		case strings.TrimSpace(l) == "":
			if pre {
				b.WriteString(".fi\n.in\n")
				pre = false
			}
			if i > 0 && i < len(lines)-1 {
				b.WriteString(para + "\n")
			}
			continue
		case indented && !pre:
			b.WriteString(".in +4n\n.nf\n")
			pre = true
		case !indented && pre:
			b.WriteString(".fi\n.in\n")
			pre = false
		}
		if pre {
			l = strings.TrimPrefix(strings.TrimPrefix(l, "  "), "  ")
		}
		b.WriteString(roffEscape(l) + "\n")
	}
	if pre {
		b.WriteString(".fi\n.in\n")
	}
}

// manLmtpd8 renders lmtpd(8).
func manLmtpd8() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(".\\\" Generated from lmtpd's usage texts (cmd/lmtpd, make man); do not edit.\n")
	b.WriteString(".TH LMTPD 8 \"\" \"lmtpd\" \"System Manager's Manual\"\n.SH NAME\nlmtpd \\- LMTP and SMTP delivery agent\n.SH SYNOPSIS\n")
	helps := map[string]usageHelp{}
	for _, c := range commands {
		if c.Name == "help" {
			continue
		}
		h, err := commandHelp(c.Name)
		if err != nil {
			return nil, err
		}
		helps[c.Name] = h
		fmt.Fprintf(&b, ".B %s\n.br\n", roffEscape(h.Synopsis))
	}
	b.WriteString(".B lmtpd help \\fR[\\fPCOMMAND\\fR]\\fP\n.br\n.B lmtpd \\-h \\fR|\\fP \\-\\-help \\fR|\\fP \\-\\-version\n")
	b.WriteString(".SH DESCRIPTION\n")
	writeText(&b, []string{
		"lmtpd accepts mail over LMTP (RFC 2033) or SMTP (RFC 5321) from an MTA such as Postfix, or directly,",
		"and delivers it to maildirs and pipe commands as its configuration, lmtpd.toml(5), says.",
		"It runs as a daemon (serve, the default command) or delivers one message from standard input (deliver).",
	}, ".PP")
	b.WriteString(".PP\nThe commands, as \\fBlmtpd \\-h\\fP lists them:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roffEscape(c.Name), roffEscape(c.Summary))
	}
	b.WriteString(".SH COMMANDS\n")
	for _, c := range commands {
		h, ok := helps[c.Name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, ".SS %s\n", roffEscape(c.Name))
		fmt.Fprintf(&b, ".B %s\n.PP\n", roffEscape(h.Synopsis))
		writeText(&b, h.Description, ".PP")
		for _, f := range h.Flags {
			arg := ""
			if f.Arg != "" {
				arg = " \\fI" + roffEscape(f.Arg) + "\\fP"
			}
			fmt.Fprintf(&b, ".TP\n\\fB\\-%s\\fP%s\n%s\n", roffEscape(f.Name), arg, roffEscape(f.Usage))
		}
	}
	b.WriteString(`.SH EXIT STATUS
As sysexits(3): 0 success, 64 (EX_USAGE) a bad command line, 78 (EX_CONFIG)
a configuration error; \fBdeliver\fP's further statuses are described under
\fBdeliver\fP above.
.SH FILES
.TP
.I /etc/lmtpd/lmtpd.toml
the configuration, lmtpd.toml(5); every key with its default is in
/usr/share/doc/lmtpd/examples/lmtpd.toml (config.example.toml in the source).
.TP
.I /usr/lib/systemd/system/lmtpd.service\fR, \fPlmtpd.socket
the service, and socket activation on /var/spool/postfix/private/lmtpd.
.TP
.I /usr/lib/sysusers.d/lmtpd.conf\fR, \fP/usr/lib/tmpfiles.d/lmtpd.conf
the user lmtpd, the maildir root /var/mail/vhosts and lmtpd's access to Postfix's private directory.
.SH SEE ALSO
lmtpd.toml(5), postconf(5), lmtp(8), pipe(8), sysexits(3), systemd.socket(5)
`)
	return b.Bytes(), nil
}

var (
	tomlSection = regexp.MustCompile(`^\[\[?[A-Za-z0-9_.]+\]\]?\s*$`)
	tomlKey     = regexp.MustCompile(`^([A-Za-z0-9_]+)\s*=\s*(.*)$`)
	tomlExample = regexp.MustCompile(`^(\s|\[|#|[A-Za-z0-9_.]+ = )`)
)

// manLmtpdToml5 renders lmtpd.toml(5) from config.example.toml: its
// opening comment is the description, each table a subsection, each key
// with its example value (the default) a tagged paragraph holding the
// comment above it.
func manLmtpdToml5(example []byte) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(".\\\" Generated from config.example.toml (make man); do not edit.\n")
	b.WriteString(".TH LMTPD.TOML 5 \"\" \"lmtpd\" \"File Formats Manual\"\n.SH NAME\nlmtpd.toml \\- lmtpd configuration file\n")
	b.WriteString(".SH SYNOPSIS\n.I /etc/lmtpd/lmtpd.toml\n.SH DESCRIPTION\n")
	b.WriteString("lmtpd(8) reads a TOML file given with \\fB\\-config\\fP. The keys below are\nthose of config.example.toml, each with its default value.\n.PP\n")
	var comment []string
	flush := func() {
		if len(comment) == 0 {
			return
		}
		var lines []string
		for _, c := range comment {
			if c != "" && tomlExample.MatchString(c) {
				c = "  " + c // commented-out configuration and formulas: as they are
			}
			lines = append(lines, c)
		}
		writeText(&b, lines, ".PP")
		b.WriteString(".PP\n")
		comment = nil
	}
	header, sections := true, 0
	sc := bufio.NewScanner(bytes.NewReader(example))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			comment = append(comment, strings.TrimPrefix(strings.TrimPrefix(line, "#"), " "))
		case strings.TrimSpace(line) == "":
			if header {
				comment = append(comment, "")
				continue
			}
			flush()
		case tomlSection.MatchString(line):
			if header {
				flush()
				b.WriteString(".SH KEYS\n")
				header = false
			}
			sections++
			fmt.Fprintf(&b, ".SS %s\n", roffEscape(strings.TrimSpace(line)))
			flush()
		default:
			m := tomlKey.FindStringSubmatch(line)
			if m == nil || header {
				return nil, fmt.Errorf("config.example.toml: cannot place line %q", line)
			}
			fmt.Fprintf(&b, ".TP\n\\fB%s\\fP = %s\n", roffEscape(m[1]), roffEscape(m[2]))
			writeText(&b, comment, ".IP")
			comment = nil
		}
	}
	flush()
	if sections == 0 {
		return nil, fmt.Errorf("config.example.toml: no tables")
	}
	b.WriteString(".SH SEE ALSO\nlmtpd(8), https://toml.io/en/v1.0.0\n")
	return b.Bytes(), sc.Err()
}

// checkGenerated compares a generated file with the committed one, or
// writes it with -update.
func checkGenerated(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make man)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date: run make man", path)
	}
}

func TestManPages(t *testing.T) {
	page8, err := manLmtpd8()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	page5, err := manLmtpdToml5(example)
	if err != nil {
		t.Fatal(err)
	}
	// Every command, every flag and every key of the example is in the pages.
	for _, c := range commands {
		if !bytes.Contains(page8, []byte(".SS "+roffEscape(c.Name)+"\n")) && c.Name != "help" {
			t.Errorf("lmtpd.8 lacks a section for %s", c.Name)
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^([A-Za-z0-9_]+) = `).FindAllSubmatch(example, -1) {
		if !bytes.Contains(page5, []byte(".TP\n\\fB"+roffEscape(string(m[1]))+"\\fP = ")) {
			t.Errorf("lmtpd.toml.5 lacks key %s", m[1])
		}
	}
	checkGenerated(t, "../../contrib/man/lmtpd.8", page8)
	checkGenerated(t, "../../contrib/man/lmtpd.toml.5", page5)

	// groff reads both without a warning (when it is installed).
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("groff not installed: pages not formatted")
		return
	}
	for name, page := range map[string][]byte{"lmtpd.8": page8, "lmtpd.toml.5": page5} {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", "-K", "utf8")
		cmd.Stdin = bytes.NewReader(page)
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff on %s: %v\n%s", name, err, out)
		}
	}
}

func TestParseUsage(t *testing.T) {
	text := "Usage: lmtpd x [-a FILE] [-q]\n\nDoes x.\n\n    example line\n  -a file\n    \tthe file (default \"y\")\n    \tsecond line\n  -q\tquiet\n"
	h, err := parseUsage(text)
	if err != nil {
		t.Fatal(err)
	}
	want := usageHelp{
		Synopsis:    "lmtpd x [-a FILE] [-q]",
		Description: []string{"Does x.", "", "    example line"},
		Flags:       []flagHelp{{"a", "file", "the file (default \"y\") second line"}, {"q", "", "quiet"}},
	}
	if fmt.Sprintf("%q", h) != fmt.Sprintf("%q", want) {
		t.Errorf("got  %q\nwant %q", h, want)
	}
	for _, bad := range []string{"", "usage: x\n", "Usage: x\n  -a\tA\nstray\n"} {
		if _, err := parseUsage(bad); err == nil {
			t.Errorf("parseUsage(%q): no error", bad)
		}
	}
}
