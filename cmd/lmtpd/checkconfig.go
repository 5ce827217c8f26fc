package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/rs/zerolog"
)

const checkConfigUsage = "lmtpd check-config [-config FILE] [-deliver] [-q] [-secrets]\n\nValidates the configuration (the embedded default without -config) and prints\nit with every default filled in and relative paths made absolute; password\nhashes and SCRAM keys are shown as \"(hidden)\" unless -secrets is given.\nWarnings (a valid configuration that breaks a rule, such as a postmaster that\nroutes nowhere) go to standard error. It also checks what start-up would fail on, for the\naccount lmtpd runs as ([server] user, else the one running check-config): each\nunix socket's directory reachable (every directory above it searchable) and\nwritable, socket_owner and socket_group ones it may give, the maildir root and\nspool directory writable; and it warns when [server] mta_user (default postfix)\ncould not connect to a socket. Exit status 0 if it is valid, 78 (EX_CONFIG)\nwith one line per problem if not. Whether a listener's address is free is\nfound out only by serve, which then exits 78 too.\n\nEach [[directory]] is connected to once (a database ping, an LDAP bind and\nsearch of the root DSE, the file read) unless -offline is given; a\ndirectory that fails is reported with its name on standard error and the\nexit status is 75 (EX_TEMPFAIL): the file is valid, the directory is not\nreachable now.\n\nWith -deliver, the file is checked as lmtpd deliver loads it (for Postfix's\nmailbox_command): no [[listener]] is needed, a recipient in a domain no\n[[domain]] serves (localhost stands for them) is an account of the first\npasswd directory, and the log\ngoes where deliver sends it under an MTA ([log] output, else syslog; a\nsyslog daemon that cannot be reached is a warning: deliver's log would be\nlost). Without -deliver, a file that fails only for want of a [[listener]]\nbut loads as deliver's gets a line saying so."

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check-config", checkConfigUsage, stderr)
	file := fs.String("config", "", "configuration `file` (default: the embedded one)")
	quiet := fs.Bool("q", false, "print nothing but warnings when the configuration is valid")
	secrets := fs.Bool("secrets", false, "print password hashes, SCRAM keys and directory passwords (the output then reads back as a configuration)")
	offline := fs.Bool("offline", false, "do not connect to the directories")
	deliver := fs.Bool("deliver", false, "check the file as lmtpd deliver loads it (no [[listener]] needed; the log as deliver's under an MTA)")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exUsage
	}
	var cfg *config
	var err error
	if *deliver {
		cfg, err = loadDeliverConfigLog(*file, deliverCheckRecipients, deliverLog{})
	} else {
		cfg, err = loadConfig(*file)
	}
	if err != nil {
		printConfigError(stderr, err)
		if !*deliver {
			if h := deliverOnlyHint(*file, err); h != "" {
				fmt.Fprintln(stderr, h)
			}
		}
		return exConfig
	}
	// deliver's own choice of syslog is checked below, as a warning.
	autoSyslog := cfg.deliverLogAuto && cfg.Log.Output == "syslog"
	if autoSyslog {
		cfg.Log.Output = "stderr"
	}
	ec := &errorCollector{file: cfg.file, loc: cfg.locs[cfg.file]}
	cfg.checkStartup(ec)
	if autoSyslog {
		cfg.Log.Output = "syslog"
	}
	if err := ec.err(); err != nil {
		printConfigError(stderr, err)
		return exConfig
	}
	if autoSyslog {
		if w, err := dialSyslog(cfg.Log); err != nil {
			fmt.Fprintf(stderr, "%s: warning: lmtpd deliver run by an MTA logs to syslog (the file sets no [log] output), and %v: its log would be lost (its status line still reaches the MTA); start a syslog daemon, or set [log] output = \"stderr\" to have the log follow the status line\n", cfg.file, cfg.syslogError(err).Err)
		} else {
			w.Close()
		}
	}
	for _, w := range cfg.plan.Warnings() {
		if *deliver && strings.Contains(w, "RFC 5321 section 4.5.1") {
			// deliver answers no RCPT TO:<Postmaster>: the MTA does,
			// and Postfix's aliases give postmaster to a person.
			continue
		}
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
	if *deliver && !cfg.setsKey("delivery.maildir.root") {
		// The root deliver chose for this account (its home, for the
		// temporary file of a big message) is each recipient's own
		// under the MTA: the file has none.
		cp := *show
		cp.Delivery.Maildir.Root = ""
		show = &cp
	}
	text, err := show.effective()
	if err != nil {
		fmt.Fprintf(stderr, "lmtpd: %v\n", err)
		return exSoftware
	}
	if *deliver {
		fmt.Fprintf(stdout, "# Effective configuration of %s for lmtpd deliver: every default filled in,\n# as for a recipient at localhost (a domain of the file's [[domain]] tables is\n# served by them; any other, by the passwd directory if there is one).\n", cfg.file)
	} else {
		fmt.Fprintf(stdout, "# Effective configuration of %s: every default filled in.\n", cfg.file)
	}
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
