package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"

	"github.com/BurntSushi/toml"
)

const checkConfigUsage = "lmtpd check-config [-config FILE] [-q] [-secrets]\n\nValidates the configuration (the embedded default without -config) and prints\nit with every default filled in and relative paths made absolute; password\nhashes and SCRAM keys are shown as \"(hidden)\" unless -secrets is given.\nWarnings (a valid configuration that breaks a rule, such as a postmaster that\nroutes nowhere) go to standard error. It also checks what start-up would fail on, for the\naccount lmtpd runs as ([server] user, else the one running check-config): each\nunix socket's directory reachable (every directory above it searchable) and\nwritable, socket_owner and socket_group ones it may give, the maildir root and\nspool directory writable; and it warns when [server] mta_user (default postfix)\ncould not connect to a socket. Exit status 0 if it is valid, 78 (EX_CONFIG)\nwith one line per problem if not. Whether a listener's address is free is\nfound out only by serve, which then exits 78 too."

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", checkConfigUsage, stderr)
	file := fs.String("config", "", "configuration `file` (default: the embedded one)")
	quiet := fs.Bool("q", false, "print nothing but warnings when the configuration is valid")
	secrets := fs.Bool("secrets", false, "print password hashes and SCRAM keys (the output then reads back as a configuration)")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exUsage
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		printConfigError(stderr, err)
		return exConfig
	}
	ec := &errorCollector{file: cfg.file, loc: cfg.locs[cfg.file]}
	cfg.checkStartup(ec)
	if err := ec.err(); err != nil {
		printConfigError(stderr, err)
		return exConfig
	}
	for _, w := range cfg.plan.Warnings() {
		fmt.Fprintf(stderr, "%s: warning: %s\n", cfg.file, w)
	}
	for _, w := range cfg.warnings {
		fmt.Fprintln(stderr, warningText(w))
	}
	if *quiet {
		return exOK
	}
	show := cfg
	if !*secrets {
		show = cfg.withoutSecrets()
	}
	text, err := show.effective()
	if err != nil {
		fmt.Fprintf(stderr, "lmtpd: %v\n", err)
		return exSoftware
	}
	fmt.Fprintf(stdout, "# Effective configuration of %s: every default filled in.\n", cfg.file)
	stdout.Write(text)
	return exOK
}

// hiddenSecret stands for a password hash or SCRAM key in check-config's
// output.
const hiddenSecret = "(hidden)"

// withoutSecrets returns a copy of c whose users' password hashes and
// SCRAM keys read hiddenSecret, so that check-config's output can be
// pasted into a bug report or a log.
func (c *config) withoutSecrets() *config {
	cp := *c
	cp.Auth.Users = slices.Clone(c.Auth.Users)
	for i := range cp.Auth.Users {
		u := &cp.Auth.Users[i]
		if u.PasswordHash != "" {
			u.PasswordHash = hiddenSecret
		}
		if u.Scram != "" {
			u.Scram = hiddenSecret
		}
	}
	return &cp
}

// effective returns the configuration as TOML, defaults included; it
// decodes back to the same configuration.
func (c *config) effective() ([]byte, error) {
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// warningText formats a warning at a key as file:line: key: warning: text.
func warningText(w *configError) string {
	e := *w
	e.Err = fmt.Errorf("warning: %w", w.Err)
	return e.Error()
}
