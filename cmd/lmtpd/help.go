package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// command is one subcommand as "lmtpd -h", the manual page lmtpd(8) and the
// shell completion scripts list it. Its flags and long description come
// from the command's own "-h" output (commandHelp), so the three cannot
// disagree with what the command accepts.
type command struct {
	Name    string
	Summary string
}

// commands lists every subcommand run dispatches, in the order shown.
var commands = []command{
	{"serve", "run the daemon (the default command)"},
	{"check-config", "validate the configuration and print it with defaults filled in"},
	{"deliver", "deliver one message from standard input (local delivery agent)"},
	{"lookup", "print what lmtpd would do with mail for each address (status, directory, final recipients), without delivering"},
	{"hash-password", "read a password and print a password hash (any -scheme), or password_hash and scram lines"},
	{"quota", "print users' mailbox usage and limits (-recalc recalculates maildirsize)"},
	{"sievec", "check Sieve scripts and print their errors"},
	{"sieve-test", "run a Sieve script against a message and print its actions"},
	{"version", "print the version, the commit and the Go release"},
	{"completion", "print a bash or zsh completion script"},
	{"help", "list the commands, or show a command's usage"},
}

// mainUsage is what "lmtpd -h", "lmtpd --help" and "lmtpd help" print.
var mainUsage = func() string {
	var b strings.Builder
	b.WriteString("Usage: lmtpd [command] [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-14s %s\n", c.Name, c.Summary)
	}
	b.WriteString(`
Run "lmtpd help COMMAND" or "lmtpd COMMAND -h" for a command's flags.
"lmtpd --version" prints the version. Without a command, lmtpd serves:
"lmtpd -config /etc/lmtpd/lmtpd.toml" is "lmtpd serve -config ...".
Without -config, lmtpd uses its embedded default: LMTP on ./run/lmtp.sock,
SMTP on 127.0.0.1:2525, any user at localhost and example.test, maildirs
under ./mail. Manual pages: lmtpd(8), lmtpd.toml(5).
`)
	return b.String()
}()

// cmdHelp prints the command list, or with a command name that command's
// usage (as "lmtpd COMMAND -h" does, on standard error).
func cmdHelp(args []string, stdout io.Writer, stderr *os.File) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stdout, mainUsage)
		return exOK
	case len(args) == 1 && findCommand(args[0]) != nil && args[0] != "help":
		return run([]string{args[0], "-h"}, nil, stdout, stderr)
	}
	fmt.Fprintf(stderr, "Usage: lmtpd help [COMMAND]\n\nCommands: %s\n", strings.Join(commandNames(), ", "))
	return exUsage
}

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].Name == name {
			return &commands[i]
		}
	}
	return nil
}

func commandNames() []string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.Name
	}
	return names
}

// flagHelp is one flag as the flag package's PrintDefaults shows it.
type flagHelp struct {
	Name  string // without the dash
	Arg   string // value placeholder ("file", "NAME"); "" for a boolean
	Usage string // the text, default included, lines joined with spaces
}

// usageHelp is a command's "-h" output taken apart.
type usageHelp struct {
	Synopsis    string   // the "Usage:" line without "Usage: "
	Description []string // the lines between synopsis and flags
	Flags       []flagHelp
}

// flagLine matches PrintDefaults' first line of a flag: two spaces, the
// flag, an optional placeholder, and for a one-letter boolean the usage
// after a tab.
var flagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9-]*)(?: ([^\t]+))?(?:\t(.*))?$`)

// commandHelp runs "lmtpd NAME -h" in process and takes its output apart.
func commandHelp(name string) (usageHelp, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return usageHelp{}, err
	}
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		r.Close()
		out <- string(b)
	}()
	var stdout strings.Builder
	st := run([]string{name, "-h"}, nil, &stdout, w)
	w.Close()
	text := <-out + stdout.String()
	if st != exOK {
		return usageHelp{}, fmt.Errorf("lmtpd %s -h: exit status %d", name, st)
	}
	return parseUsage(text)
}

// parseUsage takes apart a usage text: "Usage: SYNOPSIS", free text, then
// the flags in PrintDefaults' layout.
func parseUsage(text string) (usageHelp, error) {
	var h usageHelp
	sc := bufio.NewScanner(strings.NewReader(text))
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "Usage: ") {
		return h, fmt.Errorf("usage text does not start with \"Usage: \": %q", text)
	}
	h.Synopsis = strings.TrimPrefix(sc.Text(), "Usage: ")
	inFlags := false
	for sc.Scan() {
		line := sc.Text()
		if m := flagLine.FindStringSubmatch(line); m != nil {
			inFlags = true
			h.Flags = append(h.Flags, flagHelp{Name: m[1], Arg: m[2], Usage: m[3]})
			continue
		}
		if inFlags {
			if !strings.HasPrefix(line, "    \t") || len(h.Flags) == 0 {
				return h, fmt.Errorf("unexpected line among the flags: %q", line)
			}
			f := &h.Flags[len(h.Flags)-1]
			f.Usage = strings.TrimSpace(f.Usage + " " + strings.TrimPrefix(line, "    \t"))
			continue
		}
		h.Description = append(h.Description, line)
	}
	for len(h.Description) > 0 && strings.TrimSpace(h.Description[0]) == "" {
		h.Description = h.Description[1:]
	}
	for len(h.Description) > 0 && strings.TrimSpace(h.Description[len(h.Description)-1]) == "" {
		h.Description = h.Description[:len(h.Description)-1]
	}
	return h, sc.Err()
}
