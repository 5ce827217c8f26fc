// Package pipe delivers a message by running a command with the message on
// its standard input, the way Postfix pipe(8) does: an argument vector, never
// a shell; placeholders expanded from the envelope, each into exactly one
// argument; a clean environment; the exit status mapped through the
// sysexits(3) table; a time limit that kills the whole process group.
//
// # Outcome
//
// [Command.Run] returns a nil error when the command exits with status 0,
// whatever it printed and whether or not it read all of its input (a program
// may decide from the header alone; Postfix counts that as delivered too).
// Every failure is a *[protocol.Error] whose Code and EnhancedCode are the
// reply to send for the recipient and whose Message is safe to send: printable
// US-ASCII on one line, at most a few hundred characters. The cause (Err) is
// for the log only.
//
// A non-zero exit status is mapped as Postfix sys_exits.c maps it
// ([protocol.ExitStatusError] holds the one table; RFC 3463
// codes; EX_* names from sysexits.h):
//
//	64 EX_USAGE       5.3.0    72 EX_OSFILE     5.3.0
//	65 EX_DATAERR     5.6.0    73 EX_CANTCREAT  5.2.0
//	66 EX_NOINPUT     5.3.0    74 EX_IOERR      5.3.0
//	67 EX_NOUSER      5.1.1    75 EX_TEMPFAIL   4.3.0
//	68 EX_NOHOST      5.1.2    76 EX_PROTOCOL   5.5.0
//	69 EX_UNAVAILABLE 5.3.0    77 EX_NOPERM     5.7.0
//	70 EX_SOFTWARE    5.3.0    78 EX_CONFIG     5.3.5
//	71 EX_OSERR       4.3.0    any other        5.3.0
//
// If the command exits non-zero and its output, after leading white space,
// starts with "4.X.Y text" or "5.X.Y text" (X and Y one to three digits,
// followed by white space or the end of the line), that enhanced code
// overrides the exit status and the rest of that line is the reply text, as
// in Postfix pipe_command.c. Output is never consulted when the exit status is
// 0, nor when the command died of a signal.
//
// A command killed by a signal, one that exceeds its time limit, and one
// interrupted because the caller's context ended are all temporary failures,
// 451 4.3.0. A run that found every slot of its [Limiter] busy for the whole
// wait does not start and gets 451 4.3.2. Postfix bounces a command that exceeds its time limit; a hung
// command is not a fact about the recipient, so we defer instead.
//
// The basic reply code follows from the enhanced code by one rule
// ([protocol.BasicCode])
// (RFC 5321 section 4.2.2 and 4.2.3, RFC 3463 section 3):
//
//	4.2.2, 4.3.1          452 insufficient system storage (mailbox full, disk full)
//	4.2.x otherwise       450 mailbox unavailable
//	4.x.x otherwise       451 local error in processing
//	5.2.2, 5.2.3, 5.3.4   552 exceeded storage allocation
//	5.1.x, 5.2.x, 5.7.x   550 mailbox unavailable (address, mailbox, policy)
//	5.x.x otherwise       554 transaction failed (system, protocol, content)
//
// A command that cannot be started because the configuration is wrong (no
// such program, not executable, unknown run-as user, missing directory) is
// 451 4.3.5, as Postfix answers "mail system configuration error"; any other
// failure to start is 451 4.3.0.
//
// # Output
//
// Standard output and standard error go to one pipe that is read until the
// command and everything holding the pipe is gone, so a chatty command never
// blocks; only the first [Command.MaxOutput] bytes are kept (Postfix keeps the
// first 4096 too: that is where a status line is). [Result.Output] holds them
// with every byte outside printable US-ASCII, other than line feed and tab,
// replaced by '?'. A failure's reply text quotes that output folded onto one
// line and cut to 200 characters.
//
// # Arguments and environment
//
// The environment is exactly SENDER, RECIPIENT, ORIGINAL_RECIPIENT, USER (the
// recipient's local part without detail), EXTENSION (the detail), DOMAIN,
// SIZE, CLIENT_ADDRESS, CLIENT_HELO, SESSION_ID, PATH=/usr/bin:/bin and
// LMTPD_PIPE_RUN (a random token per run, see below), plus
// HOME, LOGNAME and SHELL of the run-as user when [Command.User] is set.
// Nothing is inherited from lmtpd's own environment.
//
// CLIENT_ADDRESS and {client_address} are the client's IP address as text
// (XFORWARD ADDR when the client sent it), and empty when the client came
// over a unix socket: such a peer has no network address (Go reports it as
// "@", which is no address at all). Postfix does two things here: its
// smtpd(8) calls a non-Internet client "localhost"/127.0.0.1 (marked "XXX
// bogus" in smtpd_peer.c), while pipe(8) and local(8) expand the client
// attributes of locally submitted mail, which has none, to empty. We take
// the empty value: a filter that trusts 127.0.0.1 must not mistake a
// unix-socket client for a loopback TCP connection, and a filter that needs
// the real origin gets it through XFORWARD from the MTA in front. The working directory is
// [Command.Dir], "/" by default.
//
// Values from the envelope and the connection are client data. Before they
// reach an argument or the environment, every C0 control character (NUL, CR,
// LF, TAB ...), DEL, C1 control character and byte that is not part of valid
// UTF-8 is replaced by '_'; valid UTF-8 (RFC 6531 addresses) is kept.
//
// A value that would begin an argument with '-' is refused rather than passed
// on, because the command could not tell it from an option ("-oQ/tmp" as a
// sender was the classic sendmail hole). This is Postfix's allow_min_user =
// no, which bounces such recipients with 5.1.3. The refusal is 550 5.1.3 for
// the recipient-derived placeholders, 550 5.1.7 for {sender} and 554 5.5.4 for
// the connection's values; the command does not run. A value inside an
// argument ("--to={recipient}") or after a literal prefix is not affected.
// [Command.AllowLeadingDash] turns the check off for commands that put "--"
// before their operands.
//
// # Concurrency
//
// A [Limiter] bounds how many runs of one command are in flight; the caller
// (package delivery, one Limiter per pipe route) takes a slot before Run.
// Deliveries that find every slot busy wait in line, first come first
// served, for at most the Limiter's wait, and are then deferred with 451
// 4.3.2, so 150 parallel sessions cost at most the limit in processes
// ([DefaultMaxProcesses], [DefaultMaxWait]).
//
// # Nothing outlives a run
//
// Everything a command starts is killed with SIGKILL when the time limit
// expires or the caller's context ends, and again after the command
// exited, whatever its status: a delivery command's work is done when it
// exits, and a process it leaves behind would run uncounted by the
// Limiter, outside any time limit ([Result.Leftover] counts them). Three
// nets catch them, each for what the previous one misses:
//
//   - The command runs in a process group of its own (setpgid); kill(2) on
//     the negative group id reaches every member, background jobs included.
//   - While the command is alive (a time limit or cancellation), its
//     descendants are found by walking the parent links in /proc, which
//     finds a child that left the group with setsid().
//   - Every process of the run carries LMTPD_PIPE_RUN=<random token> in
//     its environment, which children inherit; /proc/PID/environ of the
//     run-as user's processes is searched for it. This finds processes
//     that both left the group and were orphaned (the daemon's double
//     fork), which nothing else leads to.
//
// Each round kills what it found and looks again, until a round finds
// nothing new (a killed process forks no more). The alternatives were
// weighed: PR_SET_CHILD_SUBREAPER would make lmtpd the parent of every
// orphan, but it is process-wide and lmtpd would have to reap processes
// that os/exec does not know about; a cgroup per run (cgroup.kill) is exact
// but needs a delegated, writable cgroup v2 subtree, which containers and
// plain service setups often lack; a PID namespace needs CAP_SYS_ADMIN or an
// unprivileged user namespace, which changes what setuid to the run-as user
// means. What the chosen way cannot catch: a process that clears its
// environment (execve with a new one, "env -i") and also escapes group and
// tree; run lmtpd under a service manager that kills its whole cgroup on
// stop (systemd's KillMode=control-group) for that last case. Scanning
// /proc lists it once per run and reads /proc/PID/stat only of pids
// allocated since the command started (pids are handed out cyclically,
// so they lie between the command's pid and the last pid given, as long
// as the clone counter shows the allocator has not gone round; otherwise
// every process); the environment only of processes that started no
// earlier than the command (older ones cannot be its descendants, and
// that also keeps a reused pid out). BenchmarkReapScan (the full scan)
// measured about 1.4 ms with 120 processes on a shared 2-core machine
// under a load of 10; with the pid window BenchmarkRunTrue is about
// 1.2 ms a run against 0.8 to 1.0 ms for os/exec alone.
//
// # Platform
//
// The package needs a Unix system: it puts the command into its own process
// group (setpgid) and switches user and group with setuid/setgid when lmtpd
// runs as root. The /proc walk and the token search need Linux; elsewhere
// only the process group is killed.
package pipe
