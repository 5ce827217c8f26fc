package delivery

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/lmtpd/lmtpd/delivery/spool"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
)

// Target delivers messages to one kind of destination: a maildir store, a
// pipe command, and later a remote LMTP server. The router resolves each
// recipient to one or more Destinations, each naming its Target; for a
// message, it gives each Target the destinations that can share one staged
// copy (equal Group), in one Stage call, and commits or aborts what was
// staged. The router knows no kind of target: it only groups, orders and
// collects one Result per destination.
//
// A Target is built once per configuration (see Compile) and used by many
// transactions at once, so its methods must be safe for concurrent use.
type Target interface {
	// Kind names the kind of target for logs and metrics ("maildir",
	// "pipe").
	Kind() string
	// Key identifies d's destination: recipients whose destinations have
	// the same Target and Key are one delivery, made once, whose outcome
	// they share (duplicate RCPTs, aliases). The key is also what the dedup
	// journal remembers, so it must be stable across restarts and differ
	// from every other target's keys (start it with something the target
	// alone uses).
	Key(d *Destination) string
	// Group says which destinations of one message can share one staged
	// copy: those of this Target with equal Group are staged by one Stage
	// call (all maildir copies of a message, to link one file; the
	// recipients of a per-message command, for one run).
	Group(d *Destination) string
	// Stage stages m for ds (one group, in RCPT order) and records each
	// destination's outcome in the Result of the same index (len(res) ==
	// len(ds)): a nil Err means staged, awaiting Commit. It returns what
	// commits or aborts the staged copies, or nil when nothing is left to
	// commit: each destination failed or was delivered for good (a Final
	// target). Stage must not keep m, ds or m's body readers past its
	// return; it may set LogKey, LogValue and Elapsed in res.
	Stage(ctx context.Context, m *Message, ds []*Destination, res []Result) Staged
}

// Staged is a group's staged copies between Target.Stage and Commit or
// Abort; exactly one of them is called, once.
type Staged interface {
	// Commit makes the staged copies durable and sets the Result of every
	// destination that Stage left with a nil Err (a failure there, or nil
	// for delivered). res is the slice given to Stage.
	Commit(ctx context.Context, res []Result)
	// Abort removes the staged copies; nothing was delivered.
	Abort()
}

// Final is implemented by targets whose Stage delivers for good: a command
// that exited 0, a remote server that answered 250 cannot be undone, and
// such a Stage returns a nil Staged. The router stages final targets after
// every other target's copies are staged (protocol.Stager, SMTP) or
// committed (Data, LMTP), so that a failure elsewhere is known before they
// run.
type Final interface {
	Target
	// Final reports whether Stage is irreversible.
	Final() bool
}

// Result is the outcome of one destination, filled in by its Target.
type Result struct {
	// Err is nil when staged (after Stage) or delivered (after Commit),
	// else the failure, a *protocol.Error (others are answered with a
	// generic temporary reply).
	Err error
	// Elapsed is the time this destination's delivery took, for the log
	// and metrics.
	Elapsed time.Duration
	// LogKey and LogValue say where the copy went for the outcome log
	// line ("file" and the maildir file, "command" and argv[0]); LogKey ""
	// adds nothing.
	LogKey, LogValue string
}

// Resolution is what a recipient resolved to at RCPT time: the user, and
// the fields a directory returns for it (directory.Record: mailbox path,
// quota, Sieve script, forward host). Fields a target does not use are
// ignored by it.
type Resolution struct {
	// Record holds the directory's fields. Record.Mailbox is the maildir
	// path under the maildir root, expanded from the route's template
	// unless the Lookup gave one, or, for a Trusted record, an absolute
	// path inside Record.Home (use it through the maildir target, which
	// confines it there). Without a record, UID and GID are -1.
	directory.Record
	// User is the canonical user name (local part without the detail),
	// Detail the detail, Domain the lower-cased domain.
	User, Detail, Domain string
	// Folder is the Maildir++ folder (".lists") for the detail, or "" for
	// INBOX; CreateFolder says whether it may be created.
	Folder       string
	CreateFolder bool
}

// Destination is one final destination of a recipient: who delivers
// (Target) and to whom. A recipient may have several (an alias with
// several targets).
type Destination struct {
	// Target delivers to it.
	Target Target
	// Address is the address delivered to: the Delivered-To field and a
	// pipe command's RECIPIENT.
	Address string
	Resolution
	// Flags are IMAP flags and keywords the copy is stored with (Sieve
	// imap4flags); targets that cannot store flags ignore them.
	Flags []string
	// Header, if not nil, replaces the header as received in this copy
	// (LF line endings, with the terminating empty line): a Sieve script
	// edited it (editheader). Return-Path and Delivered-To still go on
	// top.
	Header []byte
	// Rcpts are the indexes in Message.Recipients of the recipients that
	// reach this destination, in RCPT order; the router sets them for
	// Stage.
	Rcpts []int

	// unit is the destination as resolved at RCPT that this one comes
	// from, when recipients share it (see share.go): steps copy it along
	// with the rest. 0 for none.
	unit int
}

// Lookup is a source of users beyond the configuration, such as a
// directory (every directory.Directory is one). It is consulted for a
// local part the configured users do not list, after them (and after
// its aliases, when it is an AliasLookup) and before the configured
// aliases, with the local part without its detail. It may change its
// answers at any time: it is asked at every RCPT.
type Lookup interface {
	// LookupUser returns the record of the user k names (k.Domain
	// lower-cased, k.LocalPart folded as configured), directory.ErrNotFound
	// if there is none, or another error when the answer is not known now:
	// the recipient then gets 451 4.3.0, never a permanent refusal. A
	// record's Mailbox, when set, replaces the route's template; it must
	// be a relative path under the maildir root, unless the record is
	// Trusted (the system's accounts): then it may be an absolute path
	// inside its Home, where delivery never follows a symbolic link (see
	// package maildir, "Homes"). A record's UID and GID, when set, own
	// the files and directories its delivery creates (both 0 count as
	// unset).
	LookupUser(ctx context.Context, k directory.Key) (directory.Record, error)
}

// AliasLookup is a Lookup that also knows aliases, found by type
// assertion. It is asked about a recipient's local part (without its
// detail) after the configured users and before LookupUser, as Postfix
// applies virtual_alias_maps before the mailbox lookup, so a Postfix
// Admin mailbox with forwarding (alice → alice, bob@other) delivers to
// both.
type AliasLookup interface {
	// LookupAlias returns the targets of the alias k names (several rows
	// or comma-separated values, split by directory.SplitAliasTargets or
	// not), directory.ErrNotFound when k is no alias, or another error
	// when the answer is not known now (451 4.3.0).
	LookupAlias(ctx context.Context, k directory.Key) ([]string, error)
}

// Message is the message a Target stages: the envelope, the header fields
// lmtpd adds, and the body, spooled once for all targets.
type Message struct {
	// ID is the server's message id, for logs.
	ID string
	// From is the envelope sender ("" for the null sender).
	From string
	// Conn is the client's connection (nil for a local delivery).
	Conn *protocol.ConnState
	// Recipients are the message's recipients in RCPT order; Rcpts of a
	// destination index them.
	Recipients []*protocol.Recipient

	body   *spool.Spool
	hdr    *textproto.Header    // the header as received, for Fields
	from   protocol.Address     // the reverse-path, for a remote server
	params *protocol.MailParams // the MAIL parameters, for a remote server
	proto  *protocol.Message    // the message as received, for the proxy loop guard
	rp     []byte               // the Return-Path field
	base   []byte               // the header as received, LF line endings
	nDests int
	mode   DeliveredToMode
	// topDT is the address of the topmost Delivered-To field as
	// received, "" without one.
	topDT string
}

// Body returns a new reader of the body (LF line endings), valid until the
// Stage call that was given m returns.
func (m *Message) Body() *io.SectionReader { return m.body.NewReader() }

// Spool returns the spooled body, for targets that copy it as a whole
// (maildir's copy_file_range); valid until Stage returns.
func (m *Message) Spool() *spool.Spool { return m.body }

// BodySize is the size of the body in bytes.
func (m *Message) BodySize() int64 { return m.body.Size() }

// DeliveredTo reports whether a copy gets the Delivered-To field under the
// configured mode (see DeliveredToMode): own is true for a copy that only
// its recipient sees (a per-recipient command's input), false for a copy
// that may be shared (a maildir file hard-linked into several mailboxes).
func (m *Message) DeliveredTo(own bool) bool {
	switch m.mode {
	case DeliveredToAlways:
		return true
	case DeliveredToNever:
		return false
	}
	return m.nDests == 1 || own
}

// Header returns the header of d's copy, LF line endings: Return-Path, then
// "Delivered-To: d.Address" if deliveredTo, then the header as received.
// The field is left out when the topmost Delivered-To as received already
// names d.Address (case-insensitively): the MTA that handed the message
// over recorded this very delivery (Postfix's local(8) and pipe(8) flag D
// add it before running a command such as lmtpd deliver), and a second
// field for the same hop says nothing more.
func (m *Message) Header(d *Destination, deliveredTo bool) []byte {
	if deliveredTo && m.topDT != "" && strings.EqualFold(m.topDT, d.Address) {
		deliveredTo = false
	}
	base := m.base
	if d.Header != nil {
		base = d.Header
	}
	h := make([]byte, 0, len(m.rp)+len(base)+len(d.Address)+16)
	h = append(h, m.rp...)
	if deliveredTo {
		h = append(h, "Delivered-To: "...)
		h = append(h, headerValue(d.Address)...)
		h = append(h, '\n')
	}
	return append(h, base...)
}

// OriginalRecipient returns the address the client gave for recipient i:
// its ORCPT parameter (RFC 3461) if any, else the RCPT address.
func (m *Message) OriginalRecipient(i int) string {
	rc := m.Recipients[i]
	if rc.Params.OriginalRecipient != "" {
		return rc.Params.OriginalRecipient
	}
	return rc.Address.String()
}

// isFinal reports whether t's Stage is irreversible.
func isFinal(t Target) bool {
	f, ok := t.(Final)
	return ok && f.Final()
}
