package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

// Defaults for the zero values of Command's fields.
const (
	// DefaultTimeout is the time limit of a command whose Timeout is zero.
	// It is Postfix's command_time_limit (1000s) rounded down: long enough
	// for a filter that scans a large message, short enough that a hung
	// command does not hold a session for ever.
	DefaultTimeout = 10 * time.Minute
	// DefaultMaxOutput is the number of output bytes kept when MaxOutput is
	// zero: Postfix keeps 4096.
	DefaultMaxOutput = 4096
	// DefaultDir is the working directory when Dir is empty.
	DefaultDir = "/"
)

// SearchPath is where a command name without a slash is looked up, and the
// PATH the command receives. Both are fixed so that neither lmtpd's own
// environment nor a client can choose which program runs.
const SearchPath = "/usr/bin:/bin"

// waitDelay bounds how long Run waits, after the command exited or was
// killed, for its output pipe to close and its input copy to stop. A
// grandchild that escaped the process group (setsid) or that the command
// left running in the background can hold the pipe open for ever; after
// waitDelay the pipes are closed and Run returns.
var waitDelay = 2 * time.Second

// ErrTimeout is in the cause chain (errors.Is) of the error Run returns when
// the command exceeded its time limit.
var ErrTimeout = errors.New("pipe: command timed out")

// geteuid is os.Geteuid, replaceable in tests.
var geteuid = os.Geteuid

// Vars are the values of one delivery that placeholders and environment
// variables expand to. They come from the envelope and the connection and
// are treated as client data: see the package documentation for how they are
// sanitised. The zero value expands every placeholder to an empty argument
// and {size} to "0".
type Vars struct {
	// Sender is the envelope sender, MAIL FROM (RFC 5321 section 4.1.1.2),
	// without angle brackets; "" for the null reverse-path. Placeholder
	// {sender}, variable SENDER.
	Sender string
	// Recipient is the recipient address as RCPT TO gave it. Placeholder
	// {recipient}, variable RECIPIENT.
	Recipient string
	// OriginalRecipient is the ORCPT address (RFC 3461 section 4.2) or,
	// without one, the address before alias expansion. Placeholder
	// {original_recipient}, variable ORIGINAL_RECIPIENT.
	OriginalRecipient string
	// User is the local part without the detail. Placeholder {user},
	// variable USER (as in Postfix local(8); the run-as account is in
	// LOGNAME).
	User string
	// Detail is the address extension after the delimiter, "" if none.
	// Placeholder {detail}, variable EXTENSION.
	Detail string
	// Domain is the recipient's domain. Placeholder {domain}, variable
	// DOMAIN.
	Domain string
	// Size is the size in bytes of what the command reads on its standard
	// input. Placeholder {size}, variable SIZE; a negative value expands as
	// 0.
	Size int64
	// ClientAddress is the SMTP/LMTP client's IP address (XFORWARD ADDR
	// when the client sent one), "" for a client on a unix socket, which
	// has no network address. Placeholder {client_address}, variable
	// CLIENT_ADDRESS.
	ClientAddress string
	// ClientHelo is the name the client gave in HELO/EHLO/LHLO. Placeholder
	// {client_helo}, variable CLIENT_HELO.
	ClientHelo string
	// SessionID identifies the session in lmtpd's log. Placeholder
	// {session}, variable SESSION_ID.
	SessionID string
}

// Command is a delivery command and how to run it. The zero value of every
// field but Argv works. A Command is safe for concurrent use by many Run and
// RunMulti calls as long as nobody modifies it meanwhile; it holds no state
// between runs, so a changed program, user or directory is noticed at the
// next run.
type Command struct {
	// Argv is the program and its arguments; it must not be empty and no
	// shell is involved. Argv[0] is used literally (no placeholders): an
	// absolute path, or a name without '/' looked up in SearchPath. Each
	// further element is a template: the placeholders {sender} {recipient}
	// {original_recipient} {user} {detail} {domain} {size}
	// {client_address} {client_helo} {session} are replaced by the
	// corresponding Vars value, and the element stays exactly one argument
	// whatever the value contains. "{{" and "}}" are literal braces; any
	// other brace is an error. The element "{recipients}", on its own,
	// becomes one argument per recipient (see RunMulti).
	Argv []string
	// Timeout limits the command's run time; zero means DefaultTimeout.
	// When it expires everything the command started (its process group,
	// and what left the group; see the package documentation) is killed
	// with SIGKILL and Run fails with 451 4.3.0 "Delivery command timed
	// out after ...".
	Timeout time.Duration
	// User runs the command as this user (a name or a numeric uid) with
	// the user's primary group only, as Postfix pipe(8) user= does, and
	// adds HOME, LOGNAME and SHELL from the user's passwd entry to the
	// environment. It needs lmtpd to run as root; if set otherwise, Run
	// fails with 451 4.3.5. Empty: the command runs as lmtpd.
	User string
	// Group overrides the user's primary group (a name or a numeric gid).
	// It requires User.
	Group string
	// MaxOutput is the number of bytes of standard output and standard
	// error, combined, kept for Result.Output and the reply text; the
	// rest is read and discarded. Zero means DefaultMaxOutput.
	MaxOutput int
	// Dir is the working directory, an absolute path; empty means
	// DefaultDir.
	Dir string
	// AllowLeadingDash passes values that start an argument with '-' on to
	// the command instead of refusing the delivery. Set it only when every
	// placeholder that starts an argument comes after a "--" or the
	// command otherwise takes no options there. Postfix's allow_min_user.
	AllowLeadingDash bool
}

// Result describes a finished run; Run and RunMulti return it with their
// error, whatever the outcome, for the log.
type Result struct {
	// ExitCode is the command's exit status, or -1 when it did not start
	// or was killed by a signal (including a time-limit or cancellation
	// kill).
	ExitCode int
	// Output is the start of what the command wrote to standard output and
	// standard error, at most MaxOutput bytes, sanitised: bytes outside
	// printable US-ASCII other than line feed and tab are replaced by '?',
	// trailing white space is removed.
	Output string
	// OutputTotal is the number of bytes the command wrote in all, of
	// which Output kept at most MaxOutput.
	OutputTotal int64
	// Duration is the time Run or RunMulti took, the command's run time
	// included.
	Duration time.Duration
	// Leftover is the number of processes the command started that were
	// still running when it ended (in its process group, escaped from it
	// with setsid, or orphaned) and were killed then. For the log.
	Leftover int
}

func (c *Command) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Command) maxOutput() int {
	if c.MaxOutput > 0 {
		return c.MaxOutput
	}
	return DefaultMaxOutput
}

func (c *Command) dir() string {
	if c.Dir != "" {
		return c.Dir
	}
	return DefaultDir
}

// prepared is what Run needs from the configuration, resolved.
type prepared struct {
	path  string
	args  []argTemplate
	runAs *runAs
}

// prepare checks the configuration and resolves the program, the argument
// templates and the run-as user. Errors are configuration errors.
func (c *Command) prepare() (*prepared, error) {
	if len(c.Argv) == 0 {
		return nil, errors.New("pipe: empty argv")
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("pipe: negative timeout %v", c.Timeout)
	}
	if c.MaxOutput < 0 {
		return nil, fmt.Errorf("pipe: negative max output %d", c.MaxOutput)
	}
	if !filepath.IsAbs(c.dir()) {
		return nil, fmt.Errorf("pipe: working directory %q is not an absolute path", c.Dir)
	}
	path, err := lookPath(c.Argv[0])
	if err != nil {
		return nil, err
	}
	args, err := parseArgs(c.Argv)
	if err != nil {
		return nil, err
	}
	ra, err := lookupRunAs(c.User, c.Group)
	if err != nil {
		return nil, err
	}
	return &prepared{path: path, args: args, runAs: ra}, nil
}

// Validate reports whether the command can run: Argv is not empty, Argv[0]
// is a literal absolute path or a name found in SearchPath and is an
// executable regular file, every placeholder is known and every brace
// balanced, Timeout and MaxOutput are not negative, Dir is an existing
// directory, and User and Group exist and lmtpd runs as root if they are
// set. It is meant for checking configuration at start-up; Run checks the
// same again, since files and accounts can change.
func (c *Command) Validate() error {
	if _, err := c.prepare(); err != nil {
		return err
	}
	fi, err := os.Stat(c.dir())
	if err != nil {
		return fmt.Errorf("pipe: working directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("pipe: working directory %q is not a directory", c.dir())
	}
	return nil
}

// lookPath resolves argv[0]: an absolute path as it is, a name without '/'
// in SearchPath. The result must be an executable regular file.
func lookPath(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("pipe: empty program name")
	case strings.ContainsAny(name, "{}"):
		return "", fmt.Errorf("pipe: program %q: placeholders are not allowed in argv[0]", name)
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("pipe: program %q contains a NUL byte", name)
	case strings.ContainsRune(name, '/'):
		if !filepath.IsAbs(name) {
			return "", fmt.Errorf("pipe: program %q: a path must be absolute", name)
		}
		if err := checkExecutable(name); err != nil {
			return "", fmt.Errorf("pipe: program: %w", err)
		}
		return name, nil
	}
	var firstErr error
	for _, dir := range filepath.SplitList(SearchPath) {
		p := filepath.Join(dir, name)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if firstErr == nil || !errors.Is(err, os.ErrNotExist) {
			firstErr = err
		}
	}
	return "", fmt.Errorf("pipe: program %q not found in %s (%w)", name, SearchPath, firstErr)
}

// checkExecutable reports whether p is a regular file with an execute bit.
// Whether the run-as user may execute it is left to execve.
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", p)
	}
	return nil
}

// Run runs the command once for the recipient in v, with stdin as its
// standard input, and waits for it to finish. The placeholder {recipients}
// expands to v.Recipient alone.
//
// The error is nil when the command exited with status 0 and its input
// could be read without error; otherwise it is a *protocol.Error for this
// recipient (see the package documentation for the mapping). The Result is
// valid in both cases.
//
// Run reads stdin until the command exits or stops reading (a command that
// exits 0 without reading all of it has delivered) and does not use it after
// returning; it neither closes nor drains it. A read error from stdin fails
// the delivery with 451 4.3.0 even if the command then exits 0, since the
// command saw a truncated message. stdin must not block indefinitely (a
// spool file or buffer, not the network); nil means an empty input.
//
// Cancelling ctx kills the process group and fails with 451 4.3.0.
// Whatever the outcome, processes the command left running when it ended
// are killed before Run returns (Result.Leftover).
func (c *Command) Run(ctx context.Context, v Vars, stdin io.Reader) (Result, error) {
	return c.run(ctx, &v, []string{v.Recipient}, stdin)
}

// RunMulti runs the command once for a message with many recipients, as
// Postfix pipe(8) does with a destination recipient limit above one: the
// element "{recipients}" becomes one argument per recipient, in order; the
// other placeholders and the environment expand from v as given (a router
// usually sets Domain for a per-domain command and leaves the per-recipient
// fields empty). There is one outcome for all recipients. recipients must
// not be empty. Everything else is as for Run.
func (c *Command) RunMulti(ctx context.Context, v Vars, recipients []string, stdin io.Reader) (Result, error) {
	if len(recipients) == 0 {
		return Result{ExitCode: -1}, protocol.WrapError(protocol.CodeLocalError, protocol.ECTempSystem,
			"Delivery command has no recipients", errors.New("pipe: RunMulti called without recipients"))
	}
	return c.run(ctx, &v, recipients, stdin)
}

// Reply texts. They name no program, path or user: those are in the cause.
const (
	msgMisconfigured = "Delivery command misconfigured"
	msgNoStart       = "Delivery command could not be started"
	msgInterrupted   = "Delivery command interrupted"
	msgReadError     = "Error reading message for delivery command"
)

// Replies built in several places; each is sent wrapped around its cause.
var (
	// errMisconfigured: a configuration change fixes it (RFC 3463 X.3.5).
	errMisconfigured = protocol.NewError(protocol.CodeLocalError, protocol.ECTempMisconfigured, msgMisconfigured)
	errNoStart       = protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, msgNoStart)
	errInterrupted   = protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, msgInterrupted)
	errReadError     = protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, msgReadError)
)

func (c *Command) run(ctx context.Context, v *Vars, recipients []string, stdin io.Reader) (Result, error) {
	start := time.Now()
	res := Result{ExitCode: -1}
	done := func(err error) (Result, error) {
		res.Duration = time.Since(start)
		return res, err
	}

	p, err := c.prepare()
	if err != nil {
		return done(errMisconfigured.Wrap(err))
	}
	args, err := expandArgs(append(make([]string, 0, len(p.args)+len(recipients)), c.Argv[0]), p.args,
		newValues(v, recipients, c.AllowLeadingDash))
	if err != nil {
		return done(err)
	}
	if err := context.Cause(ctx); err != nil {
		return done(errInterrupted.Wrap(fmt.Errorf("pipe: %s not started: %w", c.Argv[0], err)))
	}

	timeout := c.timeout()
	runCtx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, p.path)
	cmd.Args = args
	tr := tracked{uid: geteuid(), token: newRunToken()}
	if p.runAs != nil {
		tr.uid = int(p.runAs.cred.Uid)
	}
	cmd.Env = environ(v, p.runAs)
	if tr.token != "" {
		cmd.Env = append(cmd.Env, runTokenVar+"="+tr.token)
	}
	cmd.Dir = c.dir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.runAs != nil {
		cmd.SysProcAttr.Credential = p.runAs.cred
	}
	out := &boundedBuffer{max: c.maxOutput()}
	cmd.Stdout, cmd.Stderr = out, out // one pipe: same writer
	var in *recordingReader
	if stdin != nil {
		// Wrapped so that exec copies through a pipe even for an *os.File:
		// the command must not get the spool's descriptor (it could seek,
		// or write if it is open for writing).
		in = &recordingReader{r: stdin}
		cmd.Stdin = in
	}
	var killed atomic.Bool
	cmd.Cancel = func() error {
		// Setpgid made the command's pid its process group id; reap
		// signals the whole group (kill(2) with the negative pid), then
		// the command's descendants and everything carrying the run's
		// token, which finds those that left the group with setsid. The
		// command is not reaped yet, so its pid names it.
		t := tr // tr is not written after Start: no race with Run
		t.pid, t.pgid = cmd.Process.Pid, cmd.Process.Pid
		t.start = startTime(t.pid)
		others, group := reap(t)
		if !group && others == 0 {
			return os.ErrProcessDone
		}
		killed.Store(true)
		return nil
	}
	cmd.WaitDelay = waitDelay

	tr.forks = forkCount() // before Start: the run's clones come after
	if err := cmd.Start(); err != nil {
		return done(startError(c.Argv[0], err))
	}
	after := tr
	after.pgid = cmd.Process.Pid
	after.start = startTime(cmd.Process.Pid)
	waitErr := cmd.Wait()
	// Whatever the outcome, nothing the command started outlives the
	// delivery: a background process left by a command that exited, or a
	// straggler of a kill, is killed now. The command itself is reaped,
	// so the tree walk is off (pid 0: its pid may be reused); the group
	// and the token still lead to the rest.
	res.Leftover, _ = reap(after)
	res.Duration = time.Since(start)
	res.Output = sanitizeOutput(out.buf)
	res.OutputTotal = out.total
	var ws syscall.WaitStatus
	if cmd.ProcessState != nil {
		ws, _ = cmd.ProcessState.Sys().(syscall.WaitStatus)
	}
	if cmd.ProcessState == nil || !(ws.Exited() || ws.Signaled()) {
		// wait4 failed, or reported neither an exit nor a signal (which it
		// cannot without WUNTRACED). Unreachable in practice; make sure
		// nothing is left running and fail temporarily.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return res, errNoStart.Wrap(fmt.Errorf("pipe: waiting for %s: %v", c.Argv[0], waitErr))
	}
	if ws.Exited() {
		res.ExitCode = ws.ExitStatus()
	}
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		// The command finished its work; a kill racing with a clean exit,
		// or pipes held open by a leftover grandchild (exec.ErrWaitDelay),
		// change nothing about that.
		if in != nil && in.err != nil {
			return res, errReadError.Wrap(fmt.Errorf("pipe: %s exited 0 after a read error on its input: %w", c.Argv[0], in.err))
		}
		return res, nil
	case killed.Load():
		cause := context.Cause(runCtx)
		if errors.Is(cause, ErrTimeout) {
			return res, protocol.WrapError(protocol.CodeLocalError, protocol.ECTempSystem,
				"Delivery command timed out after "+timeout.String(),
				fmt.Errorf("pipe: %s killed after %v: %w", c.Argv[0], timeout, ErrTimeout))
		}
		return res, errInterrupted.Wrap(fmt.Errorf("pipe: %s killed: %w", c.Argv[0], cause))
	case ws.Signaled():
		sig := ws.Signal()
		return res, protocol.WrapError(protocol.CodeLocalError, protocol.ECTempSystem,
			withOutput(fmt.Sprintf("Delivery command killed by signal %d (%v)", int(sig), sig), res.Output),
			fmt.Errorf("pipe: %s: %w", c.Argv[0], waitErr))
	default:
		status := ws.ExitStatus()
		cause := fmt.Errorf("pipe: %s: %w", c.Argv[0], waitErr)
		if ec, text, ok := parseStatusOutput(res.Output); ok {
			if text = replyText(text); text == "" {
				text = fmt.Sprintf("Delivery command failed (exit status %d)", status)
			}
			return res, protocol.WrapError(protocol.BasicCode(ec), ec, text, cause)
		}
		e := protocol.ExitStatusError(status)
		return res, protocol.WrapError(e.Code, e.EnhancedCode, withOutput("Delivery command failed: "+e.Message, res.Output), cause)
	}
}

// withOutput appends the command's output, on one line and shortened, to a
// reply text.
func withOutput(msg, output string) string {
	if o := replyText(output); o != "" {
		return msg + ": " + o
	}
	return msg
}

// startError classifies a failure to start the command. Errors that a
// configuration change fixes are 4.3.5 (RFC 3463: system incorrectly
// configured), the rest 4.3.0; both temporary.
func startError(name string, err error) *protocol.Error {
	cause := fmt.Errorf("pipe: starting %s: %w", name, err)
	for _, e := range []error{syscall.ENOENT, syscall.EACCES, syscall.EPERM, syscall.ENOEXEC,
		syscall.ENOTDIR, syscall.ELOOP, syscall.EISDIR, syscall.ENAMETOOLONG} {
		if errors.Is(err, e) {
			return errMisconfigured.Wrap(cause)
		}
	}
	return errNoStart.Wrap(cause)
}

// environ builds the command's whole environment: nothing is inherited.
func environ(v *Vars, ra *runAs) []string {
	env := make([]string, 0, 14)
	env = append(env,
		"SENDER="+sanitizeValue(v.Sender),
		"RECIPIENT="+sanitizeValue(v.Recipient),
		"ORIGINAL_RECIPIENT="+sanitizeValue(v.OriginalRecipient),
		"USER="+sanitizeValue(v.User),
		"EXTENSION="+sanitizeValue(v.Detail),
		"DOMAIN="+sanitizeValue(v.Domain),
		"SIZE="+strconv.FormatInt(max(v.Size, 0), 10),
		"CLIENT_ADDRESS="+sanitizeValue(v.ClientAddress),
		"CLIENT_HELO="+sanitizeValue(v.ClientHelo),
		"SESSION_ID="+sanitizeValue(v.SessionID),
		"PATH="+SearchPath,
	)
	if ra != nil {
		env = append(env, ra.env...)
	}
	return env
}
