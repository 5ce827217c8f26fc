package delivery

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/delivery/spool"
)

// Config is the routing and delivery configuration of a Router. It is made
// of plain values so that cmd/lmtpd can decode its TOML file into it: start
// from DefaultConfig, which holds the defaults documented on each field,
// and decode over it. Zero values are taken literally, except where a
// field says otherwise. Compile validates and compiles it into a Plan.
type Config struct {
	// Domains are the domains served, matched case-insensitively (RFC 5321
	// section 2.4). Address literals ("[192.0.2.1]") may be listed too.
	// The first domain is where the bare "Postmaster" recipient goes unless
	// Postmaster says otherwise. At least one is required.
	Domains []Domain
	// DetailDelimiter is the set of characters that separate a local part
	// from its detail (address extension): with "+", bob+lists is user
	// bob, detail "lists". Each character is a delimiter and the first
	// occurrence splits, as Postfix's recipient_delimiter. "" turns details
	// off. DefaultConfig: "+".
	DetailDelimiter string
	// CaseSensitive makes user, alias and detail matching case-sensitive.
	// By default (false) local parts match case-insensitively; the
	// spelling the client used is kept for headers and pipe variables.
	CaseSensitive bool
	// DeliveredTo says when "Delivered-To: <recipient>" is added at the
	// top of a delivered copy (see DeliveredToMode). "" means
	// DeliveredToSingle, the default.
	DeliveredTo DeliveredToMode
	// LoopCheck refuses delivery to a recipient for whom the message
	// already carries a Delivered-To field, with 554 5.4.6. It works
	// whatever DeliveredTo says. DefaultConfig: true.
	LoopCheck bool
	// Postmaster is the address the bare "Postmaster" recipient (RFC 5321
	// section 4.5.1) is delivered to, routed like any recipient. Empty
	// means postmaster@ the first domain; if that does not route anywhere
	// (no such user, alias or catch-all), "RCPT TO:<Postmaster>" is refused
	// with 550 5.1.1 and Warnings says so. An explicit address must route.
	// postmaster@ any domain served that has no route of its own for it
	// goes here too (RFC 5321 section 4.5.1).
	Postmaster string
	// Maildir configures maildir delivery, the default backend.
	Maildir MaildirConfig
	// Spool configures the one copy of each message kept while it is
	// delivered.
	Spool SpoolConfig
	// Quota configures mailbox quota for maildir destinations (off by
	// default).
	Quota QuotaConfig
	// Dedup configures idempotent delivery (off by default).
	Dedup DedupConfig
	// Sieve configures Sieve filtering of maildir recipients (off by
	// default; see SieveConfig).
	Sieve SieveConfig
	// Forward holds the connection settings for the LMTP servers that
	// directory records name in their forward field (the proxy case: such
	// a user's mail goes to that server, whatever the route); Address is
	// not used. A server a route names has the route's settings.
	Forward LMTP
}

// Domain is one served domain.
type Domain struct {
	// Name is the domain name, case-insensitive. Required.
	Name string
	// Users are the mailboxes of the domain.
	Users []User
	// AnyUser accepts every local part as a user (after Users and
	// Aliases, which still apply), each with its own mailbox from the
	// domain's route. It excludes CatchAll. Only ASCII user names are
	// accepted this way unless UTF8LocalParts is set: anything else gets
	// 553 5.6.7, so that no sender can create a look-alike mailbox
	// ("аlice" with a Cyrillic а).
	AnyUser bool
	// UTF8LocalParts lets AnyUser accept non-ASCII user names (RFC 6531)
	// that are in the canonical form of the PRECIS UsernameCasePreserved
	// profile (RFC 8265: NFC, no width or compatibility variants such as
	// the Kelvin sign, letters, digits and ASCII punctuation only); they
	// are matched with Unicode case folding (UsernameCaseMapped), and one
	// that would fold into an ASCII name is refused. Look-alikes across
	// scripts remain possible: turn it on only where users need it.
	UTF8LocalParts bool
	// Aliases maps a local part to one or more targets: a user of this
	// domain ("bob"), or of another served domain ("bob@example.net"),
	// optionally with a detail ("bob+sales"). A target must be a user
	// (listed, or in an AnyUser domain); aliases do not chain. A detail of
	// the recipient that the alias did not match is passed on to the
	// targets, as Postfix's propagate_unmatched_extensions does.
	Aliases map[string][]string
	// CatchAll are the targets of every local part that matches nothing
	// else ("@domain" in Postfix virtual(5)), in the form of alias targets.
	CatchAll []string
	// Route is the backend of users that do not name their own; its zero
	// value is a maildir at Config.Maildir.Template.
	Route Route
}

// User is one mailbox.
type User struct {
	// Name is the local part, without domain. Required.
	Name string
	// Route overrides the domain's route when it is not the zero value.
	Route Route
	// CreateFolders, when set, says whether mail for user+detail may
	// create the missing folder ".detail" (see MaildirConfig): it
	// overrides MaildirConfig.CreateFolders for this user. Special folders
	// are never created or delivered into.
	CreateFolders *bool
}

// Route chooses the backend for a user or domain: Target when set, a pipe
// command when Pipe is set, a remote LMTP server when LMTP is set,
// otherwise maildir. At most one of Maildir, Pipe, LMTP and Target may be
// set. The zero value inherits (user from domain, domain
// from the global maildir template).
type Route struct {
	// Maildir is a maildir path template relative to Config.Maildir.Root
	// (see maildir.ParseTemplate: {domain} {user} {localpart} {detail});
	// "" inherits.
	Maildir string
	// Pipe delivers by running a command instead.
	Pipe *Pipe
	// LMTP hands the recipients to a remote LMTP server (see LMTP).
	LMTP *LMTP
	// Target delivers to a target of the caller's own (see Target); it
	// must be comparable (a pointer, typically), since destinations are
	// grouped by it.
	Target Target
}

// IsZero reports whether r inherits everything.
func (r Route) IsZero() bool {
	return r.Maildir == "" && r.Pipe == nil && r.Target == nil && r.LMTP == nil
}

// Pipe is a delivery command (see package pipe for placeholders, the
// environment and the exit status mapping).
type Pipe struct {
	pipe.Command
	// PerMessage runs the command once per message with all of its
	// recipients on this route ("{recipients}" in Argv), instead of once
	// per recipient. All those recipients then share one outcome, and no
	// Delivered-To field is added.
	PerMessage bool
	// MaxProcesses is how many runs of this route's command may be in
	// flight at once, over all sessions; a delivery that finds them all
	// busy waits in line. 0 means pipe.DefaultMaxProcesses (20).
	MaxProcesses int
	// MaxWait is how long a delivery waits for a free run before its
	// recipient gets 451 4.3.2 (try again later). 0 means
	// pipe.DefaultMaxWait (30s).
	MaxWait time.Duration
}

// MaildirConfig configures maildir delivery.
type MaildirConfig struct {
	// Root is the directory every maildir is under; nothing outside it is
	// ever created or written. Required (absolute) if any route is a
	// maildir. A missing root makes deliveries fail with 451 4.3.5 until
	// it exists.
	Root string
	// Template is the default maildir path under Root. "" means
	// DefaultTemplate.
	Template string
	// DetailFolders delivers user+detail into the Maildir++ folder
	// ".detail" (sanitised by maildir.FolderName). DefaultConfig: false.
	DetailFolders bool
	// CreateFolders creates a missing detail folder for users that do not
	// set User.CreateFolders; when false, mail for a missing folder goes
	// to INBOX. Since the detail is chosen by whoever sends the mail,
	// creation lets any sender make folders in any mailbox: leave it off
	// and allow it per user. DefaultConfig: false.
	CreateFolders bool
	// SpecialFolders are folders a detail never delivers into, existing
	// or not: mail for user+Trash goes to INBOX, so that no sender can
	// drop mail into a user's Trash, Sent or Drafts, where it would look
	// like the user's own. A name matches case-insensitively, and so do
	// its subfolders (".Trash.x"); INBOX always counts. nil means
	// DefaultSpecialFolders; an empty, non-nil list means only INBOX
	// (for instance to let +Junk reach Junk, list the others without it).
	SpecialFolders []string
	// MaxMessageBytes, when positive, is the largest file a maildir
	// delivery may write (552 5.3.4 above it). 0: no limit.
	MaxMessageBytes int64
	// Hostname is written into maildir file names; "" means os.Hostname.
	Hostname string
	// Owner and Group (a name, or a numeric id) own the files and
	// directories maildir delivery creates, so that an IMAP server
	// running as another user, or in the group, can read them (Dovecot's
	// mail_uid and mail_gid). "" leaves lmtpd's own; a directory record's
	// uid and gid (directory.Record.UID, GID) win over them. Changing the
	// owner needs lmtpd to run as root (CAP_CHOWN); the group alone, that
	// lmtpd is a member of it. Names are resolved by Compile.
	Owner, Group string
	// FileMode and DirMode are the permissions of the files and
	// directories maildir delivery creates, such as 0640 and 0750 for a
	// reader in Group; set exactly (the umask does not apply). 0 means
	// 0600 and 0700. The owner must keep read and write (files) and
	// read, write and search (directories).
	FileMode, DirMode fs.FileMode
	// Flush is how a message and its entry in new/ are made durable,
	// with barriers shared by concurrent deliveries: "auto" ("" means
	// it: "ordered" where that is safe, "fsync" elsewhere), "fsync",
	// "syncfs" or "ordered" (see maildir.FlushMode for the trade-offs).
	Flush string
}

// SpoolConfig configures the message spool.
type SpoolConfig struct {
	// Threshold is how many bytes of a message stay in memory; larger
	// messages go to an unnamed temporary file. 0 means
	// spool.DefaultThreshold (256 KiB); negative spools everything to a
	// file.
	Threshold int64
	// Dir is where the temporary file is created. "" means Maildir.Root
	// (the same file system, so copies into maildirs can be done by
	// copy_file_range), or os.TempDir without a maildir root.
	Dir string
}

// DeliveredToMode says when a Delivered-To field is added.
//
// The field names the recipient, so a maildir copy that carries it is one
// recipient's own: several recipients of one message then get separate
// copies instead of one file hard-linked into each maildir. Dovecot
// therefore adds it only when a message has a single recipient; that is
// the default here too, for maildir copies. A pipe command always gets a
// copy of its own, and a pipe is how a message leaves lmtpd again (a
// forward, a list), so it gets the field whenever the mode is not "never",
// as Postfix's local(8) and pipe(8) (flag D) give it: the loop check sees
// it when the message comes back.
type DeliveredToMode string

// Delivered-To modes.
const (
	// DeliveredToSingle adds the field to a maildir copy when the message
	// goes to exactly one destination (duplicates of one recipient count
	// once), and to every per-recipient pipe command's input; a message
	// for several mailboxes is stored once and hard-linked, without it.
	DeliveredToSingle DeliveredToMode = "single"
	// DeliveredToAlways adds it to every copy, which makes every maildir
	// copy separate.
	DeliveredToAlways DeliveredToMode = "always"
	// DeliveredToNever never adds it.
	DeliveredToNever DeliveredToMode = "never"
)

// DefaultSpecialFolders are the special folders when
// MaildirConfig.SpecialFolders is nil: the special-use mailboxes of RFC
// 6154 under the names Dovecot, Thunderbird, Outlook and Apple Mail give
// them.
var DefaultSpecialFolders = []string{
	"Trash", "Sent", "Drafts", "Junk", "Spam", "Archive",
	"Sent Messages", "Sent Items", "Deleted Messages", "Deleted Items", "Junk E-mail",
}

// DefaultTemplate is the maildir path used when neither the route nor
// MaildirConfig.Template names one.
const DefaultTemplate = "{domain}/{user}"

// DefaultConfig returns a Config with the documented defaults: detail
// delimiter "+", Delivered-To added, loop check on, case-insensitive
// matching, the default template. Domains and the maildir root are left
// for the caller.
func DefaultConfig() Config {
	return Config{
		DetailDelimiter: "+",
		DeliveredTo:     DeliveredToSingle,
		LoopCheck:       true,
		Maildir:         MaildirConfig{Template: DefaultTemplate},
	}
}

// fold returns the matching key of a local part: ASCII letters
// lower-cased, every other character as it is (see the package
// documentation, "Local parts"). strings.ToLower would fold the Kelvin sign
// into "k" and "İ" into "i", so that a non-ASCII spelling reached an ASCII
// mailbox.
func (c *Config) fold(s string) string {
	if c.CaseSensitive {
		return s
	}
	return lowerASCII(s)
}

// lowerASCII lower-cases A to Z and leaves every other byte alone.
func lowerASCII(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for j := i; j < len(b); j++ {
		if 'A' <= b[j] && b[j] <= 'Z' {
			b[j] += 'a' - 'A'
		}
	}
	return string(b)
}

// isASCII reports whether s is all ASCII.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// splitDetail splits a local part at the first delimiter character. A
// local part that starts with the delimiter has no detail (Postfix does
// the same, so "+foo" stays a user name).
func splitDetail(local, delims string) (user, detail string, ok bool) {
	if delims == "" {
		return local, "", false
	}
	i := strings.IndexAny(local, delims)
	if i <= 0 {
		return local, "", false
	}
	// Delimiters are ASCII (checkDelimiter), so one byte.
	return local[:i], local[i+1:], true
}

// checkName reports whether s is usable as a configured local part or
// domain: not empty, no '@', no white space or control characters.
func checkName(kind, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", kind)
	}
	if strings.ContainsFunc(s, func(r rune) bool {
		return r == '@' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar
	}) {
		return fmt.Errorf("%s %q contains '@', white space or a control character", kind, s)
	}
	return nil
}

func checkDelimiter(d string) error {
	for _, r := range d {
		if r >= 0x80 || r <= ' ' || r == 0x7f || strings.ContainsRune(`@".\()<>[]:;,`, r) {
			return fmt.Errorf("detail delimiter %q: %q is not allowed (use printable ASCII other than specials, such as + or -)", d, r)
		}
	}
	return nil
}

func checkAbs(what, p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s %q must be an absolute path", what, p)
	}
	return nil
}

// ErrNoDomains is the problem of a Config without domains.
var ErrNoDomains = errors.New("no domains configured")

// spoolOptions returns the spool settings.
func (c *Config) spoolOptions() spool.Options {
	dir := c.Spool.Dir
	if dir == "" {
		dir = c.Maildir.Root
	}
	return spool.Options{Threshold: c.Spool.Threshold, Dir: dir}
}

// storeKey identifies the maildir.Store a config needs; equal keys share
// a Store across reloads.
type storeKey struct {
	root, hostname    string
	maxBytes          int64
	uid, gid          int // resolved Owner and Group, -1 for none
	fileMode, dirMode fs.FileMode
	flush             maildir.FlushMode
}

// storeKey returns the store settings of c, with the owner and group
// resolved by compile.
func (c *Config) storeKey(uid, gid int) storeKey {
	k := storeKey{root: c.Maildir.Root, hostname: c.Maildir.Hostname, maxBytes: c.Maildir.MaxMessageBytes,
		uid: uid, gid: gid, fileMode: c.Maildir.FileMode, dirMode: c.Maildir.DirMode}
	k.flush, _ = maildir.ParseFlushMode(c.Maildir.Flush) // checked by compileOwner
	return k
}
