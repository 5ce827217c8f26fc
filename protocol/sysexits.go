package protocol

import "strconv"

// Exit statuses of sysexits(3): the contract between an MTA and a local
// delivery program, in both directions. A delivery program (pipe(8)'s
// command, Postfix's mailbox_command) reports its outcome with one of
// them; ExitStatusError turns it into a reply, ExitStatus turns a reply
// into one.
const (
	ExitOK          = 0  // EX_OK: successful termination
	ExitUsage       = 64 // EX_USAGE: command line usage error
	ExitDataErr     = 65 // EX_DATAERR: data format error
	ExitNoInput     = 66 // EX_NOINPUT: cannot open input
	ExitNoUser      = 67 // EX_NOUSER: addressee unknown
	ExitNoHost      = 68 // EX_NOHOST: host name unknown
	ExitUnavailable = 69 // EX_UNAVAILABLE: service unavailable
	ExitSoftware    = 70 // EX_SOFTWARE: internal software error
	ExitOSErr       = 71 // EX_OSERR: system error
	ExitOSFile      = 72 // EX_OSFILE: critical OS file missing
	ExitCantCreat   = 73 // EX_CANTCREAT: can't create (user) output file
	ExitIOErr       = 74 // EX_IOERR: input/output error
	ExitTempFail    = 75 // EX_TEMPFAIL: temporary failure, try again
	ExitProtocol    = 76 // EX_PROTOCOL: remote error in protocol
	ExitNoPerm      = 77 // EX_NOPERM: permission denied
	ExitConfig      = 78 // EX_CONFIG: configuration error
)

// sysexits is the table of Postfix's sys_exits.c: for each status of
// sysexits.h its name, Postfix's description and the enhanced code a
// delivery program's exit with it is answered with.
var sysexits = map[int]struct {
	name, text string
	ec         EnhancedCode
}{
	ExitUsage:       {"EX_USAGE", "command line usage error", ECPermSystem},
	ExitDataErr:     {"EX_DATAERR", "data format error", ECPermMedia},
	ExitNoInput:     {"EX_NOINPUT", "cannot open input", ECPermSystem},
	ExitNoUser:      {"EX_NOUSER", "user unknown", ECPermBadDestMailbox},
	ExitNoHost:      {"EX_NOHOST", "host name unknown", ECPermBadDestSystem},
	ExitUnavailable: {"EX_UNAVAILABLE", "service unavailable", ECPermSystem},
	ExitSoftware:    {"EX_SOFTWARE", "internal software error", ECPermSystem},
	ExitOSErr:       {"EX_OSERR", "system resource problem", ECTempSystem},
	ExitOSFile:      {"EX_OSFILE", "critical OS file missing", ECPermSystem},
	ExitCantCreat:   {"EX_CANTCREAT", "can't create user output file", ECPermMailbox},
	ExitIOErr:       {"EX_IOERR", "input/output error", ECPermSystem},
	ExitTempFail:    {"EX_TEMPFAIL", "temporary failure", ECTempSystem},
	ExitProtocol:    {"EX_PROTOCOL", "remote error in protocol", ECPermProtocol},
	ExitNoPerm:      {"EX_NOPERM", "permission denied", ECPermSecurity},
	ExitConfig:      {"EX_CONFIG", "local configuration error", ECPermMisconfigured},
}

// ExitStatusError returns the reply for a delivery program that exited
// with a non-zero status, as Postfix's sys_exits.c maps it: the table's
// enhanced code, the basic code that BasicCode derives from it, and as
// Message the status described, "temporary failure (exit status 75,
// EX_TEMPFAIL)". A status outside sysexits.h is a permanent 5.3.0,
// "unknown mail system error (exit status N)", as in Postfix.
func ExitStatusError(status int) *Error {
	ec, text := ECPermSystem, "unknown mail system error (exit status "+strconv.Itoa(status)+")"
	if e, ok := sysexits[status]; ok {
		ec, text = e.ec, e.text+" (exit status "+strconv.Itoa(status)+", "+e.name+")"
	}
	return NewError(BasicCode(ec), ec, text)
}

// ExitStatus returns the exit status with which a local delivery program
// reports err to the MTA that ran it, the other direction of
// ExitStatusError and, where one exists, the inverse of Postfix's table:
// ExitOK for nil; ExitTempFail for every temporary failure and for an
// error that is not an *Error (the MTA retries); for a permanent one, by
// its enhanced code, ExitNoHost for X.1.2, ExitNoUser for other X.1.X
// (address), ExitCantCreat for X.2.X (mailbox) and X.3.4 (too big),
// ExitConfig for X.3.5, ExitDataErr for X.6.X (content), ExitNoPerm for
// X.7.X (policy), ExitProtocol for X.5.X, and ExitUnavailable for
// anything else.
func ExitStatus(err error) int {
	if err == nil {
		return ExitOK
	}
	e := AsError(err)
	if e == nil || e.Temporary() {
		return ExitTempFail
	}
	ec := e.EnhancedCode
	switch {
	case ec == ECPermBadDestSystem:
		return ExitNoHost
	case ec[1] == 1:
		return ExitNoUser
	case ec[1] == 2, ec == ECPermMessageTooBig:
		return ExitCantCreat
	case ec == ECPermMisconfigured:
		return ExitConfig
	case ec[1] == 6:
		return ExitDataErr
	case ec[1] == 7:
		return ExitNoPerm
	case ec[1] == 5:
		return ExitProtocol
	}
	return ExitUnavailable
}

// BasicCode returns the RFC 5321 reply code for an enhanced code of class
// 4 or 5 (RFC 5321 section 4.2.2 and 4.2.3, RFC 3463 section 3), for a
// reply that only an enhanced code describes (a delivery program's exit
// status or output):
//
//	4.2.2, 4.3.1          452 insufficient system storage (mailbox full, disk full)
//	4.2.x otherwise       450 mailbox unavailable
//	4.x.x otherwise       451 local error in processing
//	5.2.2, 5.2.3, 5.3.4   552 exceeded storage allocation
//	5.1.x, 5.2.x, 5.7.x   550 mailbox unavailable (address, mailbox, policy)
//	5.x.x otherwise       554 transaction failed (system, protocol, content)
func BasicCode(ec EnhancedCode) int {
	if ec[0] == 4 {
		switch {
		case ec == ECTempMailboxFull || ec == ECTempSystemFull:
			return CodeInsufficientSpace // 452
		case ec[1] == 2:
			return CodeMailboxBusy // 450
		default:
			return CodeLocalError // 451
		}
	}
	switch {
	case ec == ECPermMailboxFull || ec == ECPermMessageTooLong || ec == ECPermMessageTooBig:
		return CodeExceededStorage // 552
	case ec[1] == 1 || ec[1] == 2 || ec[1] == 7:
		return CodeMailboxUnavailable // 550
	default:
		return CodeTransactionFailed // 554
	}
}
