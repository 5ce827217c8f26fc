package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/rs/zerolog"

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

// maxLocalHeaderBytes bounds the header read from standard input, as
// protocol.Server.MaxHeaderBytes does for the network.
const maxLocalHeaderBytes = protocol.DefaultMaxHeaderBytes

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
		e := protocol.WrapError(protocol.CodeLocalError, protocol.EnhancedCode{4, 3, 5}, "Mail system configuration error, try again later", err)
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
	router, err := delivery.New(cfg.dcfg, delivery.Options{Lookup: &domainLookup{reg: dirs}})
	if err != nil {
		return tempFail(err)
	}
	defer router.Close()

	ld := &localDelivery{
		router:   router,
		hostname: cfg.Server.Hostname,
		sender:   *from,
		rcpts:    fs.Args(),
	}
	ctx := log.WithContext(context.Background())
	results, st := ld.run(ctx, stdin)
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

// localDelivery runs one message from standard input through the Router,
// the way a protocol.Server session would: MAIL, a RCPT per recipient,
// then Data with the parsed header and a Received field.
type localDelivery struct {
	router   *delivery.Router
	hostname string
	sender   string
	rcpts    []string
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
	hdr, body, err := readLocalHeader(br, maxLocalHeaderBytes)
	if err != nil {
		if errors.Is(err, protocol.ErrHeaderTooBig) {
			return []error{errors.New("5.3.4 message header too big")}, exDataErr
		}
		return []error{fmt.Errorf("4.3.0 cannot read the message: %v", err)}, exNoInput
	}

	id := localID()
	l := zerolog.Ctx(ctx).With().Str("session", id).Str("proto", "local").Logger()
	ctx = l.WithContext(ctx)
	conn := &protocol.ConnState{ID: id, Protocol: protocol.LMTP, Hostname: "localhost", ESMTP: true}
	params := &protocol.MailParams{}
	tx, err := ld.router.Mail(ctx, conn, from, params)
	if err != nil {
		res := make([]error, len(ld.rcpts))
		for i := range res {
			res[i] = err
		}
		return res, -1
	}
	defer tx.Close()
	results := make([]error, len(ld.rcpts))
	var accepted []*protocol.Recipient
	var index []int // accepted recipient -> argument index
	for i, s := range ld.rcpts {
		a, err := protocol.ParseAddress(strings.Trim(s, "<>"))
		if err != nil {
			results[i] = err
			continue
		}
		rc := &protocol.Recipient{Address: a}
		if err := tx.Rcpt(ctx, rc); err != nil {
			results[i] = err
			continue
		}
		accepted = append(accepted, rc)
		index = append(index, i)
	}
	if len(accepted) == 0 {
		return results, -1
	}
	msg := &protocol.Message{ID: id + ".1", Conn: conn, From: from, Params: params, Recipients: accepted, Body: body}
	hdr.AddRaw(localReceived(ld.hostname, msg))
	msg.SetHeader(hdr)
	st := &statusList{errs: make([]error, len(accepted)), set: make([]bool, len(accepted))}
	derr := tx.Data(ctx, msg, st)
	for j, i := range index {
		if st.set[j] {
			results[i] = st.errs[j]
		} else {
			results[i] = derr
		}
	}
	return results, -1
}

// statusList is the StatusSetter of a local delivery.
type statusList struct {
	mu   sync.Mutex
	errs []error
	set  []bool
}

func (s *statusList) Set(i int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= 0 && i < len(s.set) && !s.set[i] {
		s.set[i], s.errs[i] = true, err
	}
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

// readLocalHeader reads the header the way the protocol server does: up
// to the blank line, or up to the first line that is not a header field
// (which then starts the body); at most max bytes. The fields keep their
// raw bytes.
func readLocalHeader(br *bufio.Reader, max int) (textproto.Header, io.Reader, error) {
	var raw []byte
	var pending []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer cannot be a header field we
			// keep; treat it as the start of the body.
			pending = append(pending, line...)
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return textproto.Header{}, nil, err
		}
		if len(raw)+len(line) > max {
			return textproto.Header{}, nil, protocol.ErrHeaderTooBig
		}
		if len(line) == 0 {
			break
		}
		blank := string(line) == "\n" || string(line) == "\r\n"
		cont := len(raw) > 0 && (line[0] == ' ' || line[0] == '\t')
		if blank {
			break
		}
		if !cont && !isFieldLine(line) {
			pending = append(pending, line...)
			break
		}
		raw = append(raw, line...)
		if err != nil {
			break
		}
	}
	if n := len(raw); n > 0 && raw[n-1] != '\n' {
		raw = append(raw, '\n')
	}
	raw = append(raw, '\n')
	hdr, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return textproto.Header{}, nil, err
	}
	var body io.Reader = br
	if len(pending) > 0 {
		body = io.MultiReader(bytes.NewReader(pending), br)
	}
	return hdr, body, nil
}

// isFieldLine reports whether line starts with a field name and a colon
// (RFC 5322 section 2.2).
func isFieldLine(line []byte) bool {
	i := 0
	for i < len(line) && line[i] > 32 && line[i] < 127 && line[i] != ':' {
		i++
	}
	return i > 0 && i < len(line) && line[i] == ':'
}

// localID returns a random id for the log and the Received field.
func localID() string {
	var b [5]byte
	rand.Read(b[:])
	return "l" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// localReceived returns the Received field of a local delivery (RFC 5321
// section 4.4): "from" names the local user who ran deliver, there is no
// "with" (no network protocol was used), and "for" names the recipient
// when there is one.
func localReceived(hostname string, msg *protocol.Message) []byte {
	if hostname == "" {
		hostname, _ = os.Hostname()
		if hostname == "" {
			hostname = "localhost"
		}
	}
	who := fmt.Sprintf("uid %d", os.Getuid())
	if u, err := user.Current(); err == nil {
		who = u.Username + " " + who
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: by %s (lmtpd deliver, from %s)\r\n\tid %s", sanitizeWord(hostname), sanitizeWord(who), msg.ID)
	if len(msg.Recipients) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitizeWord(msg.Recipients[0].Address.String()))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", time.Now().Format("Mon, 02 Jan 2006 15:04:05 -0700 (MST)"))
	return []byte(b.String())
}

// sanitizeWord keeps s from breaking the header: control characters,
// parentheses, brackets and semicolons become '_'.
func sanitizeWord(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || strings.ContainsRune("()[];<>", r) {
			return '_'
		}
		return r
	}, s)
}

// deliverOutcome turns per-recipient results into the exit status and
// the status lines, per Postfix's mailbox_command semantics: with several
// recipients, any temporary failure makes the whole delivery temporary
// (75: Postfix retries them all); otherwise the first permanent failure
// decides. Its line comes first, since Postfix reads the status from the
// start of the output.
func deliverOutcome(rcpts []string, results []error) (int, []string) {
	var lines []string
	first, firstTemp := -1, -1
	for i, err := range results {
		if err == nil {
			continue
		}
		if first < 0 {
			first = i
		}
		e := protocol.AsError(err)
		if (e == nil || e.Temporary()) && firstTemp < 0 {
			firstTemp = i
		}
	}
	if first < 0 {
		return exOK, nil
	}
	decisive := first
	if firstTemp >= 0 {
		decisive = firstTemp
	}
	lines = append(lines, statusLine(rcpts[decisive], results[decisive]))
	for i, err := range results {
		if err != nil && i != decisive {
			lines = append(lines, statusLine(rcpts[i], err))
		}
	}
	if firstTemp >= 0 {
		return exTempFail, lines
	}
	return exitStatus(results[decisive]), lines
}

// statusLine formats a recipient's failure as "X.Y.Z <rcpt>: text".
func statusLine(rcpt string, err error) string {
	e := protocol.AsError(err)
	if e == nil {
		return fmt.Sprintf("4.3.0 <%s>: temporary failure", rcpt)
	}
	ec := e.EnhancedCode
	if ec.IsZero() {
		ec = protocol.EnhancedCode{e.Code / 100, 0, 0}
	}
	return fmt.Sprintf("%s <%s>: %s", ec, rcpt, e.Message)
}

// exitStatus maps a permanent failure to a sysexits status by its
// enhanced code (RFC 3463), the inverse of Postfix's sys_exits table
// where one exists.
func exitStatus(err error) int {
	e := protocol.AsError(err)
	if e == nil || e.Temporary() {
		return exTempFail
	}
	ec := e.EnhancedCode
	switch {
	case ec == protocol.EnhancedCode{5, 1, 2}:
		return exNoHost
	case ec[1] == 1:
		return exNoUser
	case ec[1] == 2, ec == protocol.EnhancedCode{5, 3, 4}:
		return exCantCreat
	case ec == protocol.EnhancedCode{5, 3, 5}:
		return exConfig
	case ec[1] == 6:
		return exDataErr
	case ec[1] == 7:
		return exNoPerm
	case ec[1] == 5:
		return exProtocol
	}
	return exUnavailable
}
