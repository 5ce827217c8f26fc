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

// Enhanced status codes used by the core, RFC 3463 section 3 (and RFC 5248
// registry entries), named for what they say.
var (
	ecOK              = EnhancedCode{2, 0, 0}
	ecSenderOK        = EnhancedCode{2, 1, 0} // X.1.0 other address status
	ecRecipientOK     = EnhancedCode{2, 1, 5} // X.1.5 destination address valid
	ecCannotVerify    = EnhancedCode{2, 5, 0} // used with 252 (VRFY)
	ecClosing         = EnhancedCode{2, 0, 0}
	ecBadCommand      = EnhancedCode{5, 5, 1} // X.5.1 invalid command
	ecSyntax          = EnhancedCode{5, 5, 2} // X.5.2 syntax error
	ecTooManyRcpts    = EnhancedCode{4, 5, 3} // X.5.3 too many recipients
	ecBadArgs         = EnhancedCode{5, 5, 4} // X.5.4 invalid command arguments
	ecBadDest         = EnhancedCode{5, 1, 3} // X.1.3 bad destination mailbox address syntax
	ecBadSender       = EnhancedCode{5, 1, 7} // X.1.7 bad sender's mailbox address syntax
	ecNeedUTF8        = EnhancedCode{5, 6, 7} // X.6.7 non-ASCII address requires SMTPUTF8 (RFC 6531)
	ecSysNotAccepting = EnhancedCode{4, 3, 2} // X.3.2 system not accepting network messages
	ecTempSys         = EnhancedCode{4, 3, 0} // X.3.0 other or undefined mail system status
	ecPolicy          = EnhancedCode{5, 7, 0} // X.7.0 other security or policy status
	ecTempPolicy      = EnhancedCode{4, 7, 0}
	ecTimeout         = EnhancedCode{4, 4, 2} // X.4.2 bad connection
)
