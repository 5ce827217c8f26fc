package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/protocol"
)

const deliverUsage = `lmtpd deliver [-config FILE] [-f SENDER] [-loop-check] [--] RECIPIENT...

Delivers one message, read from standard input, to each RECIPIENT with the
routing and backends of the configuration, as a local delivery agent (for
Postfix's mailbox_command, or procmail-style use):

    mailbox_command = /usr/bin/lmtpd deliver -config /etc/lmtpd-deliver.toml -f "$SENDER" -- "$RECIPIENT"

The configuration needs no [[listener]]. Postfix's local(8) runs the
command as the recipient, for a domain it found in mydestination: a
RECIPIENT whose domain no [[domain]] serves is therefore an account of
this machine when the configuration has a [[directory]] with driver
"passwd" (the first, if several; without one, such a domain is not
served). The account's mail goes to its home, {home}/Maildir unless the
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
the command). Each failed recipient is reported on standard error as
"X.Y.Z text", which Postfix uses as the delivery status. The exit status
follows sysexits(3): 0 delivered to every recipient; 75 (EX_TEMPFAIL) if
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
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "lmtpd deliver: no recipient given")
		fs.Usage()
		return exUsage
	}
	// A configuration that is wrong as written is EX_CONFIG, which the MTA
	// bounces (5.3.5). Anything else that stops delivery here is a state
	// of the system (a read-only or missing maildir root, a file that
	// cannot be read) that the daemon would answer 451 4.3.5 for: it is
	// EX_TEMPFAIL, and the MTA retries.
	tempFail := func(err error) int {
		e := protocol.ErrMisconfigured.Wrap(err)
		for _, r := range fs.Args() {
			fmt.Fprintln(stderr, statusLine(r, e))
		}
		printConfigError(stderr, err)
		return exTempFail
	}
	cfg, err := loadDeliverConfig(*file, fs.Args())
	if err != nil {
		if systemCondition(err) {
			return tempFail(err)
		}
		printConfigError(stderr, err)
		return exConfig
	}
	cfg.dcfg.LoopCheck = *loopCheck
	var logBuf bytes.Buffer
	// Log lines are held back until the status lines are out: Postfix
	// reads the delivery status from the start of the output.
	log, _ := newLogger(cfg.Log.Format, cfg.logLevel, &logBuf, isTerminal(stderr))
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
	router, err := delivery.New(plan.WithOptions(delivery.PlanOptions{Lookup: &domainLookup{reg: dirs}}), delivery.Options{})
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
		check:  ownHomeOnly(router, deliverUID()),
	}
	results, st := ld.run(context.Background(), stdin)
	if st >= 0 {
		for _, r := range results {
			if r != nil {
				fmt.Fprintf(stderr, "%s\n", r)
			}
		}
		stderr.Write(logBuf.Bytes())
		return st
	}
	status, lines := deliverOutcome(fs.Args(), results)
	for _, l := range lines {
		fmt.Fprintln(stderr, l)
	}
	stderr.Write(logBuf.Bytes())
	return status
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
// Its line comes first, since Postfix reads the status from the start of
// the output.
func deliverOutcome(rcpts []string, results []error) (int, []string) {
	decisive := protocol.DecidingStatus(results)
	if decisive < 0 {
		return exOK, nil
	}
	lines := []string{statusLine(rcpts[decisive], results[decisive])}
	for i, err := range results {
		if err != nil && i != decisive {
			lines = append(lines, statusLine(rcpts[i], err))
		}
	}
	return protocol.ExitStatus(results[decisive]), lines
}

// statusLine formats a recipient's failure as "X.Y.Z <rcpt>: text".
func statusLine(rcpt string, err error) string {
	e := protocol.AsError(err)
	if e == nil {
		return fmt.Sprintf("4.3.0 <%s>: temporary failure", rcpt)
	}
	return fmt.Sprintf("%s <%s>: %s", e.Enhanced(), rcpt, e.Message)
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
// home: delivery gives the files to their owner. Resolution errors are
// left to the transaction, which answers them as RCPT does.
func ownHomeOnly(r *delivery.Router, uid int) func(context.Context, protocol.Address) error {
	if uid == 0 {
		return nil
	}
	return func(ctx context.Context, a protocol.Address) error {
		dests, err := r.Resolve(ctx, a)
		if err != nil {
			return nil
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
