package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/protocol"
)

const deliverUsage = `lmtpd deliver [-config FILE] [-f SENDER] [-loop-check] [-log stderr|syslog] [--] RECIPIENT...

Delivers one message, read from standard input, to each RECIPIENT with the
routing and backends of the configuration, as a local delivery agent (for
Postfix's mailbox_command, or procmail-style use):

    mailbox_command = /usr/bin/lmtpd deliver -config /etc/lmtpd-deliver.toml -f "$SENDER" -- "$RECIPIENT"

The configuration needs no [[listener]]. Postfix's local(8) runs the
command as the recipient, for a domain it found in mydestination: a
RECIPIENT whose domain no [[domain]] serves is therefore an account of
this machine when the configuration has a [[directory]] with driver
"passwd" (the first, if several; without one, such a domain is not
served: 5.1.2, exit 68, and a file with neither a [[domain]] nor such a
directory serves nothing and does not validate: exit 78). The account's mail goes to its home, {home}/Maildir unless the
directory's mailbox says otherwise, created without following links and
owned by the account. Run by anyone but root, deliver writes into no home
but its own account's (another one's is 4.3.5, temporary). A
configuration without [delivery.maildir] root is fine for that: the
invoking account's home then only holds the temporary file of a big
message. It must be readable by every account (not in /etc/lmtpd, which
is lmtpd's alone) and hold no secrets.

A leading mbox "From sender date" line is dropped (its sender is used when
-f is absent). No Delivered-To field is added for a recipient that the
topmost Delivered-To field already names (local(8) adds it before running
the command).

Standard error carries the delivery status and nothing else, since
Postfix's local(8) and pipe(8) report what the command prints as the
reason of a deferral or bounce: nothing when every recipient got the
message, else one line "X.Y.Z reason" (with several recipients, one
"X.Y.Z <recipient>: reason" each, the deciding one first), such as
"5.1.1 No such user here" or "4.3.5 cannot store into ~/Maildir/tmp:
permission denied". Postfix takes that leading code as the delivery
status (its class deciding defer or bounce). The log, JSON lines as the
daemon's, goes to syslog (facility [log] facility, default mail) when
standard error is not a terminal, to standard error after the status
lines when it is; [log] output in the file, or -log, chooses instead.
With no syslog daemon to take it, the log is lost (check-config -deliver
warns). Check a configuration as deliver loads it with "lmtpd
check-config -deliver", and what it does for an address with "lmtpd
lookup -deliver".

The exit status follows sysexits(3): 0 delivered to every recipient; 75 (EX_TEMPFAIL) if
any recipient failed temporarily (a directory down, a maildir or home
that is read-only or not writable, a link in the home), or if the system
is not ready for the configuration (a maildir root that is read-only,
missing or cannot be created, a file it names that cannot be read: 4.3.5,
as the daemon answers); otherwise, for the first permanent
failure, 67 (EX_NOUSER) unknown user or bad address, 68 (EX_NOHOST) domain
not served, 73 (EX_CANTCREAT) mailbox full or unavailable or message too
big, 77 (EX_NOPERM) refused by policy, 65 (EX_DATAERR) bad message, 78
(EX_CONFIG) a configuration that does not parse or validate, 69 (EX_UNAVAILABLE) anything else; 64 for
a bad command line, 66 (EX_NOINPUT) for unreadable input.`

func cmdDeliver(args []string, stdin io.Reader, stderr *os.File) int {
	fs := newFlagSet("deliver", deliverUsage, stderr)
	file := fs.String("config", "", "configuration `file` (default: the embedded one)")
	from := fs.String("f", "", "envelope `sender` (default: from the mbox From line, else the null sender <>)")
	loopCheck := fs.Bool("loop-check", false, "refuse a recipient already named in a Delivered-To field (off: the MTA calling deliver has checked, and has added its own Delivered-To)")
	logTo := fs.String("log", "", "send the log to `output`, syslog or stderr (default: [log] output if the file sets it, else syslog when standard error is not a terminal, stderr when it is; on stderr it follows the status lines)")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "lmtpd deliver: no recipient given")
		fs.Usage()
		return exUsage
	}
	if *logTo != "" && !slices.Contains(logOutputs, *logTo) {
		fmt.Fprintf(stderr, "lmtpd deliver: -log %q: want stderr or syslog\n", *logTo)
		return exUsage
	}
	term := isTerminal(stderr)
	// A configuration that is wrong as written is EX_CONFIG, which the MTA
	// bounces (5.3.5). Anything else that stops delivery here is a state
	// of the system (a read-only or missing maildir root, a file that
	// cannot be read) that the daemon would answer 451 4.3.5 for: it is
	// EX_TEMPFAIL, and the MTA retries. Before the configuration is
	// loaded there is no log: the errors follow the status line.
	cfg, err := loadDeliverConfigLog(*file, fs.Args(), deliverLog{Flag: *logTo, Terminal: term})
	if err != nil {
		if systemCondition(err) {
			lines := configErrorLines(err)
			fmt.Fprintln(stderr, systemFailureLine(lines[0]))
			for _, l := range lines[1:] {
				fmt.Fprintln(stderr, "lmtpd: "+l)
			}
			return exTempFail
		}
		printConfigError(stderr, err)
		return exConfig
	}
	cfg.dcfg.LoopCheck = *loopCheck
	log, flush := deliverLogger(cfg, stderr, term)
	defer flush()
	// From here on a system condition is one status line; the errors are
	// in the log.
	tempFail := func(err error) int {
		lines := configErrorLines(err)
		fmt.Fprintln(stderr, systemFailureLine(lines[0]))
		for _, l := range lines {
			log.Error().Str("error", l).Msg("cannot deliver: the system is not ready for the configuration")
		}
		return exTempFail
	}
	if err := prepareDelivery(&cfg.dcfg); err != nil {
		return tempFail(err)
	}
	// loadConfig validated the configuration: what fails here is opening
	// what it names.
	// The [[domain]] directories, as the daemon uses them.
	gen, err := openDirectories(cfg, log, nil)
	if err != nil {
		return tempFail(err)
	}
	dirs := &dirRegistry{}
	dirs.replace(gen)
	defer func() { dirs.close(); <-gen.closed }()
	plan := cfg.plan
	if cfg.dcfg.LoopCheck != cfg.plan.Config().LoopCheck {
		// -loop-check changed the configuration loadConfig compiled.
		if plan, err = delivery.Compile(cfg.dcfg, delivery.PlanOptions{}); err != nil {
			return tempFail(err)
		}
	}
	router, err := delivery.New(plan.WithOptions(delivery.PlanOptions{Lookup: &domainLookup{reg: dirs}}), delivery.Options{QuietFlush: true})
	if err != nil {
		return tempFail(err)
	}
	defer router.Close()

	ld := &localDelivery{
		srv: &protocol.Server{
			Hostname:  cfg.Server.Hostname,
			Software:  "lmtpd deliver",
			Backend:   router,
			Logger:    &log,
			OnOutcome: routerLogsOutcomes,
		},
		sender: *from,
		rcpts:  fs.Args(),
		check:  ownHomeOnly(router.Resolve, deliverUID()),
	}
	results, st := ld.run(context.Background(), stdin)
	var lines []string
	if st >= 0 {
		for _, r := range results {
			if r != nil {
				lines = append(lines, r.Error())
			}
		}
	} else {
		st, lines = deliverOutcome(fs.Args(), results)
	}
	for _, l := range lines {
		fmt.Fprintln(stderr, l)
	}
	logDeliverExit(log, fs.Args(), st, lines)
	return st
}

// logDeliverExit logs what deliver told the MTA: the exit status and
// the status lines. The router logs each message it delivered, deferred
// or bounced; this line also covers the recipients refused before that
// (an unknown user, a home not deliver's own). Info for a success or a
// permanent failure (as the router's "bounced"), warn for a temporary one.
func logDeliverExit(log zerolog.Logger, rcpts []string, st int, lines []string) {
	ev := log.Info()
	if st == exTempFail {
		ev = log.Warn()
	}
	ev = ev.Str("proto", "local").Strs("to", rcpts).Int("exit", st)
	if len(lines) > 0 {
		ev = ev.Strs("status", lines)
	}
	ev.Msg("deliver done")
}

// deliverLogger returns lmtpd deliver's logger, to where cfg.Log.Output
// says (deliverLog chose it), and the function that finishes the log
// when deliver is done: the lines for standard error are held back until
// then, since the MTA reads the delivery status from the start of the
// output. When the syslog daemon cannot be reached, the log is lost: the
// status line still says why a delivery failed, and "lmtpd check-config
// -deliver" warns about it.
func deliverLogger(cfg *config, stderr *os.File, term bool) (zerolog.Logger, func()) {
	if cfg.Log.Output == "syslog" {
		log, out, err := openLog(cfg.Log, cfg.logLevel, stderr)
		if err != nil {
			if term {
				fmt.Fprintf(stderr, "lmtpd deliver: no log: %v\n", cfg.syslogError(err))
			}
			return zerolog.Nop(), func() {}
		}
		return log, func() { out.close() }
	}
	var buf bytes.Buffer
	log, _ := newLogger(cfg.Log.Format, cfg.logLevel, &buf, term)
	return log, func() { stderr.Write(buf.Bytes()) }
}

// configErrorLines returns the lines of a configuration or system error,
// one per problem: "file:line: key: text".
func configErrorLines(err error) []string {
	var ce configErrors
	if errors.As(err, &ce) && len(ce) > 0 {
		lines := make([]string, len(ce))
		for i, e := range ce {
			lines[i] = e.Error()
		}
		return lines
	}
	return []string{err.Error()}
}

// systemFailureLine is the status line of a delivery that cannot start
// because the system is not ready for the configuration (a maildir root
// that cannot be created, a file that cannot be read): 4.3.5, as the
// daemon answers, with the first problem.
func systemFailureLine(problem string) string {
	return protocol.ECTempMisconfigured.String() + " cannot deliver: " + problem
}

// localDelivery runs one message from standard input through the
// protocol core's local entry point (protocol.Server.DeliverLocal), which
// reads the header, stamps the Received field and runs the Router's
// transaction as a session would.
type localDelivery struct {
	srv    *protocol.Server
	sender string
	rcpts  []string
	// check, if not nil, may refuse a recipient before the transaction
	// (ownHomeOnly).
	check func(context.Context, protocol.Address) error
}

// run delivers and returns one result per recipient (nil: delivered), or
// a non-negative exit status when the message could not be read at all.
func (ld *localDelivery) run(ctx context.Context, stdin io.Reader) ([]error, int) {
	br := bufio.NewReaderSize(stdin, 64<<10)
	mboxFrom, err := skipMboxFrom(br)
	if err != nil {
		return []error{fmt.Errorf("4.3.0 cannot read the message: %v", err)}, exNoInput
	}
	sender := ld.sender
	if sender == "" {
		sender = mboxFrom
	}
	var from protocol.Address
	if s := strings.Trim(sender, "<>"); s != "" && s != "MAILER-DAEMON" {
		if from, err = protocol.ParseAddress(s); err != nil {
			return []error{fmt.Errorf("5.1.7 bad sender address %q: %v", sender, protocol.AsError(err).Message)}, exUsage
		}
	}
	results := make([]error, len(ld.rcpts))
	env := protocol.LocalEnvelope{From: from, Origin: localOrigin()}
	var index []int // env.Recipients -> argument index
	for i, s := range ld.rcpts {
		a, err := protocol.ParseAddress(strings.Trim(s, "<>"))
		if err == nil && ld.check != nil {
			err = ld.check(ctx, a)
		}
		if err != nil {
			results[i] = err
			continue
		}
		env.Recipients = append(env.Recipients, a)
		index = append(index, i)
	}
	statuses, err := ld.srv.DeliverLocal(ctx, env, br)
	if err != nil {
		if errors.Is(err, protocol.ErrHeaderTooBig) {
			return []error{errors.New("5.3.4 message header too big")}, exDataErr
		}
		return []error{fmt.Errorf("4.3.0 cannot read the message: %v", err)}, exNoInput
	}
	for j, i := range index {
		results[i] = statuses[j]
	}
	return results, -1
}

// localOrigin names the local user who ran deliver, for the Received
// field: "alice uid 1000".
func localOrigin() string {
	who := fmt.Sprintf("uid %d", os.Getuid())
	if u, err := user.Current(); err == nil {
		who = u.Username + " " + who
	}
	return who
}

// skipMboxFrom drops a leading "From sender date" line (the mbox envelope
// line Postfix's local(8) and procmail prepend) and returns its sender.
func skipMboxFrom(br *bufio.Reader) (string, error) {
	p, err := br.Peek(5)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return "", err
	}
	if string(p) != "From " {
		return "", nil
	}
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	fields := strings.Fields(line)
	if len(fields) >= 2 {
		return fields[1], nil
	}
	return "", nil
}

// deliverOutcome turns per-recipient results into the exit status and
// the status lines, per Postfix's mailbox_command semantics: the status
// that decides is the one the SMTP reply would carry (protocol's fold rule:
// with several recipients, any temporary failure makes the whole delivery
// temporary, 75, and Postfix retries them all; otherwise the first
// permanent failure decides), and its exit status is protocol.ExitStatus.
// Its line comes first: Postfix's local(8) and pipe(8) take a leading
// "X.Y.Z text" of the command's output as the delivery status (its class
// deciding between defer and bounce, the code becoming the dsn= of the
// log line and of the notification, the text its reason), and only
// without one fall back to the exit status. A success prints nothing.
func deliverOutcome(rcpts []string, results []error) (int, []string) {
	decisive := protocol.DecidingStatus(results)
	if decisive < 0 {
		return exOK, nil
	}
	home := deliverHome()
	line := func(i int) string {
		if len(rcpts) == 1 {
			return statusLine("", results[i], home)
		}
		return statusLine(rcpts[i], results[i], home)
	}
	lines := []string{line(decisive)}
	for i, err := range results {
		if err != nil && i != decisive {
			lines = append(lines, line(i))
		}
	}
	return protocol.ExitStatus(results[decisive]), lines
}

// statusLine formats a failure as "X.Y.Z text", or "X.Y.Z <rcpt>: text"
// when rcpt is not "" (deliver was given several recipients): one line, a
// short reason for a person (failureText), no log fields.
func statusLine(rcpt string, err error, home string) string {
	e := protocol.AsError(err)
	if e == nil {
		e = protocol.NewError(protocol.CodeLocalError, protocol.EnhancedCode{4, 3, 0}, "temporary failure")
	}
	// One line, whatever a path or a reply holds.
	text := strings.NewReplacer("\r", " ", "\n", " ").Replace(failureText(e, home))
	if rcpt != "" {
		return fmt.Sprintf("%s <%s>: %s", e.Enhanced(), rcpt, text)
	}
	return fmt.Sprintf("%s %s", e.Enhanced(), text)
}

// failureText is the reason of a failed delivery for its status line. A
// permanent failure is its reply text ("No such user here"). A temporary
// one caused by the file system says what could not be done where, with
// the system's reason, the home shown as "~": "cannot store into
// ~/Maildir/tmp: permission denied", "cannot create ~/Maildir: read-only
// file system", "~/Maildir/tmp: a symbolic link in the home is not
// followed"; that is what the user or the administrator has to fix, and
// the user reads it in the MTA's notice. Other causes (a directory's
// error, which may name hosts or accounts) stay in the log, and the
// reply text stands.
func failureText(e *protocol.Error, home string) string {
	if !e.Temporary() || e.Err == nil {
		return e.Message
	}
	tilde := func(p string) string {
		if home != "" && strings.HasPrefix(p, home+"/") {
			return "~/" + p[len(home)+1:]
		}
		return p
	}
	var le *maildir.LinkError
	if errors.As(e.Err, &le) {
		return tilde(filepath.Join(le.Home, le.Path)) + ": a symbolic link in the home is not followed"
	}
	var pe *fs.PathError
	if errors.As(e.Err, &pe) {
		return pathFailure(pe.Op, pe.Path, pe.Err, tilde)
	}
	var lke *os.LinkError
	if errors.As(e.Err, &lke) {
		return pathFailure(lke.Op, lke.New, lke.Err, tilde)
	}
	return e.Message
}

// pathFailure says that op on path failed with err: storing into a
// maildir's tmp, new or cur directory when path is a file there, else
// creating (mkdir) or opening (open, openat) path, else op itself.
func pathFailure(op, path string, err error, tilde func(string) string) string {
	reason := err.Error()
	var errno syscall.Errno
	if errors.As(err, &errno) {
		reason = errno.Error()
	}
	dir := filepath.Dir(path)
	switch base := filepath.Base(dir); {
	case (base == "tmp" || base == "new" || base == "cur") && op != "mkdir" && op != "mkdirat":
		return "cannot store into " + tilde(dir) + ": " + reason
	case op == "mkdir" || op == "mkdirat":
		return "cannot create " + tilde(path) + ": " + reason
	case op == "open" || op == "openat":
		return "cannot open " + tilde(path) + ": " + reason
	}
	return "cannot " + op + " " + tilde(path) + ": " + reason
}

// deliverHome is the home shown as "~" in status lines: $HOME, which
// Postfix's local(8) sets to the recipient's for a mailbox_command.
func deliverHome() string {
	h := filepath.Clean(os.Getenv("HOME"))
	if !filepath.IsAbs(h) || h == "/" {
		return ""
	}
	return h
}

// deliverUID is the uid deliver runs as; tests replace it.
var deliverUID = os.Getuid

// ownHomeOnly returns the check that keeps a deliver run by an account
// other than root to that account's own home: Postfix's local(8) runs a
// mailbox_command as the recipient, so a recipient that resolves to
// another account's home means deliver was started as someone else (an
// alias command runs as default_privs, say), and writing there would
// fail on its permissions anyway. Such a recipient gets 451 4.3.5 (the
// MTA defers while the administrator fixes it) before anything is
// written, with a text that says why. Root (uid 0) may deliver into any
// home: delivery gives the files to their owner. It fails closed: a
// recipient that cannot be resolved now gets Resolve's answer (451 4.3.0
// for a failed lookup, exit 75; 5.1.1 for an unknown user, as RCPT
// would), not a pass, since the transaction's own lookup a moment later
// could succeed and find another account's home. resolve is
// Router.Resolve.
func ownHomeOnly(resolve func(context.Context, protocol.Address) ([]delivery.Destination, error), uid int) func(context.Context, protocol.Address) error {
	if uid == 0 {
		return nil
	}
	return func(ctx context.Context, a protocol.Address) error {
		dests, err := resolve(ctx, a)
		if err != nil {
			if protocol.AsError(err) == nil {
				// Not an answer of the router's: the home is not
				// known now.
				return fmt.Errorf("%w: %w", delivery.ErrLookupFailed, err)
			}
			return err
		}
		for _, d := range dests {
			if d.Home != "" && d.UID >= 0 && d.UID != uid {
				return protocol.NewError(protocol.CodeLocalError, protocol.ECTempMisconfigured,
					fmt.Sprintf("lmtpd deliver runs as uid %d, not as the owner of %s (uid %d): it delivers into no home but its own account's", uid, d.Home, d.UID))
			}
		}
		return nil
	}
}
