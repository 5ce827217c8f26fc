package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/BurntSushi/toml"
	"github.com/rs/zerolog"
)

const checkConfigUsage = "lmtpd check-config [-config FILE] [-q] [-secrets]\n\nValidates the configuration (the embedded default without -config) and prints\nit with every default filled in and relative paths made absolute; password\nhashes and SCRAM keys are shown as \"(hidden)\" unless -secrets is given.\nWarnings (a valid configuration that breaks a rule, such as a postmaster that\nroutes nowhere) go to standard error. It also checks what start-up would fail on, for the\naccount lmtpd runs as ([server] user, else the one running check-config): each\nunix socket's directory reachable (every directory above it searchable) and\nwritable, socket_owner and socket_group ones it may give, the maildir root and\nspool directory writable; and it warns when [server] mta_user (default postfix)\ncould not connect to a socket. Exit status 0 if it is valid, 78 (EX_CONFIG)\nwith one line per problem if not. Whether a listener's address is free is\nfound out only by serve, which then exits 78 too.\n\nEach [[directory]] is connected to once (a database ping, an LDAP bind and\nsearch of the root DSE, the file read) unless -offline is given; a\ndirectory that fails is reported with its name on standard error and the\nexit status is 75 (EX_TEMPFAIL): the file is valid, the directory is not\nreachable now."

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", checkConfigUsage, stderr)
	file := fs.String("config", "", "configuration `file` (default: the embedded one)")
	quiet := fs.Bool("q", false, "print nothing but warnings when the configuration is valid")
	secrets := fs.Bool("secrets", false, "print password hashes, SCRAM keys and directory passwords (the output then reads back as a configuration)")
	offline := fs.Bool("offline", false, "do not connect to the directories")
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
	status := exOK
	if !*offline && !checkDirectories(cfg, stderr) {
		status = exTempFail
	}
	if *quiet {
		return status
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
	return status
}

// checkDirectories opens each directory of cfg, makes one round trip to
// it (directory.Directory.Check under its timeout), closes it, and
// reports each failure on w with the directory's name and key. It
// reports whether all answered.
func checkDirectories(cfg *config, w io.Writer) bool {
	ok := true
	for _, s := range cfg.dirSpecs {
		d, err := s.open(zerolog.New(w).Level(zerolog.WarnLevel))
		if err == nil {
			timeout := s.cache.Timeout
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			err = d.Check(ctx)
			if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("no answer within %v (timeout): %w", timeout, err)
			}
			cancel()
			d.Close()
		}
		if err != nil {
			ok = false
			line := cfg.locs[cfg.file].line(s.key)
			fmt.Fprintf(w, "%s:%d: %s: directory %q does not answer: %v\n", cfg.file, line, s.key, s.name, stripDirName(s.name, err))
		}
	}
	return ok
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
	cp.Directories = slices.Clone(c.Directories)
	for i := range cp.Directories {
		dc := &cp.Directories[i]
		if dc.BindPassword != "" {
			dc.BindPassword = hiddenSecret
		}
		dc.DSN = redactDSN(dc.DSN)
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
