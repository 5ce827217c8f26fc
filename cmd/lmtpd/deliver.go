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

    mailbox_command = /usr/local/bin/lmtpd deliver -config /etc/lmtpd/lmtpd.toml -f "$SENDER" -- "$RECIPIENT"

A leading mbox "From sender date" line is dropped (its sender is used when
-f is absent). Each failed recipient is reported on standard error as
"X.Y.Z text", which Postfix uses as the delivery status. The exit status
follows sysexits(3): 0 delivered to every recipient; 75 (EX_TEMPFAIL) if
any recipient failed temporarily, or if the system is not ready for the
configuration (a maildir root that is read-only, missing or cannot be
created, a file it names that cannot be read: 4.3.5, as the daemon
answers); otherwise, for the first permanent
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
	cfg, err := loadConfig(*file)
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
