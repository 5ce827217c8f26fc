package protocol

// Basic reply codes, RFC 5321 section 4.2.2 and 4.2.3, with the extensions
// that define more (RFC 4954 AUTH, RFC 3207 STARTTLS).
const (
	CodeHelp               = 214 // help message
	CodeReady              = 220 // <domain> Service ready
	CodeClosing            = 221 // <domain> Service closing transmission channel
	CodeAuthSucceeded      = 235 // RFC 4954 section 6
	CodeOK                 = 250 // Requested mail action okay, completed
	CodeCannotVerify       = 252 // Cannot VRFY user, but will accept message
	CodeAuthContinue       = 334 // RFC 4954 section 4
	CodeStartMailInput     = 354 // Start mail input; end with <CRLF>.<CRLF>
	CodeServiceUnavailable = 421 // Service not available, closing transmission channel
	CodeMailboxBusy        = 450 // Requested mail action not taken: mailbox unavailable
	CodeLocalError         = 451 // Requested action aborted: local error in processing
	CodeInsufficientSpace  = 452 // Requested action not taken: insufficient system storage
	CodeTempAuthFailure    = 454 // RFC 4954: temporary authentication failure; RFC 3207: TLS not available
	CodeParamsTemp         = 455 // Server unable to accommodate parameters
	CodeSyntaxError        = 500 // Syntax error, command unrecognized (also: line too long)
	CodeParamSyntax        = 501 // Syntax error in parameters or arguments
	CodeNotImplemented     = 502 // Command not implemented
	CodeBadSequence        = 503 // Bad sequence of commands
	CodeParamNotImpl       = 504 // Command parameter not implemented
	CodeAuthRequired       = 530 // RFC 4954 section 6 (also STARTTLS required, RFC 3207)
	CodeAuthFailed         = 535 // RFC 4954: authentication credentials invalid
	CodeEncryptionRequired = 538 // RFC 4954: mechanism needs an encrypted connection
	CodeMailboxUnavailable = 550 // Requested action not taken: mailbox unavailable
	CodeUserNotLocal       = 551 // User not local
	CodeExceededStorage    = 552 // Requested mail action aborted: exceeded storage allocation
	CodeMailboxNameInvalid = 553 // Requested action not taken: mailbox name not allowed
	CodeTransactionFailed  = 554 // Transaction failed (or, at greeting, no SMTP service here)
	CodeParamsNotRecog     = 555 // MAIL FROM/RCPT TO parameters not recognized or not implemented
)

// Enhanced status codes, RFC 3463 section 3 and the RFC 5248 registry,
// named for what they say. Names of failure codes start with Temp (class
// 4, persistent transient failure) or Perm (class 5, permanent failure);
// the same subject.detail often exists in both classes. A code not listed
// here is written as a literal EnhancedCode{c, s, d}.
var (
	// Class 2, success (RFC 3463 section 3.1).
	ECOK               = EnhancedCode{2, 0, 0} // X.0.0 Other undefined status
	ECAddressOK        = EnhancedCode{2, 1, 0} // X.1.0 Other address status
	ECDestinationValid = EnhancedCode{2, 1, 5} // X.1.5 Destination address valid
	ECProtocolOK       = EnhancedCode{2, 5, 0} // X.5.0 Other or undefined protocol status
	ECSecurityOK       = EnhancedCode{2, 7, 0} // X.7.0 Other or undefined security status (RFC 4954 section 6: AUTH succeeded)

	// Addressing status, X.1.XXX (RFC 3463 section 3.2).
	ECPermBadDestMailbox = EnhancedCode{5, 1, 1} // X.1.1 Bad destination mailbox address
	ECPermBadDestSystem  = EnhancedCode{5, 1, 2} // X.1.2 Bad destination system address
	ECPermBadDestSyntax  = EnhancedCode{5, 1, 3} // X.1.3 Bad destination mailbox address syntax
	ECPermBadSender      = EnhancedCode{5, 1, 7} // X.1.7 Bad sender's mailbox address syntax

	// Mailbox status, X.2.XXX (RFC 3463 section 3.3).
	ECPermMailbox        = EnhancedCode{5, 2, 0} // X.2.0 Other or undefined mailbox status
	ECTempMailboxFull    = EnhancedCode{4, 2, 2} // X.2.2 Mailbox full
	ECPermMailboxFull    = EnhancedCode{5, 2, 2} // X.2.2 Mailbox full
	ECPermMessageTooLong = EnhancedCode{5, 2, 3} // X.2.3 Message length exceeds administrative limit

	// Mail system status, X.3.XXX (RFC 3463 section 3.4).
	ECTempSystem        = EnhancedCode{4, 3, 0} // X.3.0 Other or undefined mail system status
	ECPermSystem        = EnhancedCode{5, 3, 0} // X.3.0 Other or undefined mail system status
	ECTempSystemFull    = EnhancedCode{4, 3, 1} // X.3.1 Mail system full
	ECTempNotAccepting  = EnhancedCode{4, 3, 2} // X.3.2 System not accepting network messages
	ECTempMessageTooBig = EnhancedCode{4, 3, 4} // X.3.4 Message too big for system
	ECPermMessageTooBig = EnhancedCode{5, 3, 4} // X.3.4 Message too big for system
	ECTempMisconfigured = EnhancedCode{4, 3, 5} // X.3.5 System incorrectly configured
	ECPermMisconfigured = EnhancedCode{5, 3, 5} // X.3.5 System incorrectly configured

	// Network and routing status, X.4.XXX (RFC 3463 section 3.5).
	ECTempBadConnection = EnhancedCode{4, 4, 2} // X.4.2 Bad connection
	ECPermLoop          = EnhancedCode{5, 4, 6} // X.4.6 Routing loop detected
	ECTempTimeExpired   = EnhancedCode{4, 4, 7} // X.4.7 Delivery time expired

	// Mail delivery protocol status, X.5.XXX (RFC 3463 section 3.6).
	ECTempProtocol       = EnhancedCode{4, 5, 0} // X.5.0 Other or undefined protocol status
	ECPermProtocol       = EnhancedCode{5, 5, 0} // X.5.0 Other or undefined protocol status
	ECPermInvalidCommand = EnhancedCode{5, 5, 1} // X.5.1 Invalid command
	ECPermSyntax         = EnhancedCode{5, 5, 2} // X.5.2 Syntax error
	ECTempTooManyRcpts   = EnhancedCode{4, 5, 3} // X.5.3 Too many recipients
	ECPermInvalidArgs    = EnhancedCode{5, 5, 4} // X.5.4 Invalid command arguments
	ECPermAuthLineLong   = EnhancedCode{5, 5, 6} // X.5.6 Authentication exchange line is too long (RFC 4954 section 6)

	// Message content or media status, X.6.XXX (RFC 3463 section 3.7).
	ECPermMedia     = EnhancedCode{5, 6, 0} // X.6.0 Other or undefined media error
	ECPermNeedsUTF8 = EnhancedCode{5, 6, 7} // X.6.7 Non-ASCII addresses not permitted for that sender/recipient (RFC 6531 section 3.5)

	// Security or policy status, X.7.XXX (RFC 3463 section 3.8).
	ECTempSecurity           = EnhancedCode{4, 7, 0}  // X.7.0 Other or undefined security status
	ECPermSecurity           = EnhancedCode{5, 7, 0}  // X.7.0 Other or undefined security status
	ECPermNotAuthorized      = EnhancedCode{5, 7, 1}  // X.7.1 Delivery not authorized, message refused
	ECPermAuthInvalid        = EnhancedCode{5, 7, 8}  // X.7.8 Authentication credentials invalid (RFC 4954 section 6)
	ECPermEncryptionRequired = EnhancedCode{5, 7, 11} // X.7.11 Encryption required for requested authentication mechanism (RFC 4954 section 6)
)
