// Package delivery is lmtpd's backend: it routes each recipient at RCPT
// time and delivers each message, read from the client once, to its
// targets (maildirs, package maildir; pipe commands, package pipe), with
// one honest status per recipient.
//
// # Shape
//
// Compile turns a Config into a Plan once per load: the routing table, the
// targets and the warnings, immutable, with every problem reported as a
// *ConfigError naming the setting by its key path. New and Router.Reload
// take the Plan; check-config reads Plan.Warnings.
//
// At RCPT, the table resolves a recipient to Destinations: a Target and a
// Resolution (user, detail, mailbox, folder, and the directory.Record
// fields a Lookup returns: quota, Sieve script, forward host). At DATA the
// body is spooled once; destinations with equal Target.Key are delivered
// once, and those with equal Target.Group are staged by one Target.Stage
// call, then committed or aborted. The router knows no kind of target:
// maildir and pipe are two implementations, a caller can route to its own
// (Route.Target), and a target whose Stage cannot be undone (Final: a
// command, a remote server) runs after the others are staged. Per-
// recipient steps (Step: Sieve, quota) run between resolution and
// grouping, once the message is spooled: each may change a recipient's
// Destinations (folder, flags, header, extra copies, none at all) or
// answer for it (a reject), without any target knowing. Sieve is the
// built-in one (SieveConfig); PlanOptions.Steps adds a caller's own.
//
// # Sieve
//
// With SieveConfig.Enabled, every maildir destination's scripts (before,
// the user's, after) run at DATA and delivery carries out their actions;
// sieve.go documents each action, the SMTP folding of reject, and what
// is not carried out. Scripts are read through an os.Root on their
// directory, so no script, include or symbolic link reaches outside its
// root, and are cached by path, modification time, size and inode. A
// script that does not compile or fails keeps the message in INBOX.
//
// # Routing
//
// Router implements protocol.Backend. A recipient is split into local
// part, detail (after Config.DetailDelimiter) and domain, and looked up in
// the order of Postfix virtual(8): user+detail@domain as a user,
// user@domain, the optional Lookup, an alias (user+detail, then user),
// any-user, the @domain catch-all. Refusals: unknown user 550 5.1.1; a
// domain not served 550 5.1.2 in LMTP and 554 5.7.1 "Relay access denied"
// in SMTP; a failed lookup 451 4.3.0 (never a permanent refusal); an
// address that cannot be a file name 553 5.1.3. The bare "Postmaster"
// (RFC 5321 section 4.5.1) goes to Config.Postmaster.
//
// A Lookup that is also an AliasLookup (a [[domain]] directory) is asked
// for aliases after the configured users and before its own users, as
// Postfix applies virtual_alias_maps before the mailbox lookup: a Postfix
// Admin mailbox with forwarding (alice → alice, bob@other) then delivers
// to both. Aliases expand recursively (directory.ExpandAliases: several
// rows or one comma-separated value; an alias to its own address is the
// mailbox itself, not a loop) to configured users, directory users and
// addresses of other served domains, each routed like a recipient of its
// own without the directory's aliases, an unmatched detail passed on. A
// loop, or more than 20 levels, is 554 5.4.6 (RFC 3463 X.4.6 routing
// loop: permanent, the directory answered); a target in a domain not
// served is 550 5.1.2 (lmtpd does not relay); a failed alias lookup is
// 451 4.3.0.
//
// # Local parts
//
// RFC 6531 leaves the matching of non-ASCII local parts to the server.
// lmtpd folds ASCII letters only (unless Config.CaseSensitive): A to Z
// match a to z, every other character matches only itself, byte for
// byte, without Unicode case folding or normalisation. So "admİn" (capital
// I with dot above) and "Kate" with the Kelvin sign are not "admin" and
// "kate" (strings.ToLower would have folded both into them), and a
// configured non-ASCII name must be written as clients will spell it.
//
// An any-user domain creates a mailbox for every local part it accepts,
// so it accepts only ASCII user names by default: anything else, such as
// "аlice" with a Cyrillic а, is refused with 553 5.6.7 (the RFC 6531 code
// for non-ASCII addresses not permitted). Domain.UTF8LocalParts accepts
// non-ASCII names that are canonical under the PRECIS UsernameCasePreserved
// profile (RFC 8265; golang.org/x/text/secure/precis): NFC, no width or
// compatibility variants, so no Kelvin sign, fullwidth letters or long s;
// letters, digits and ASCII punctuation. Others get 553 5.1.3. Such names
// are matched with Unicode case folding (UsernameCaseMapped: "JOSÉ" is
// "josé"), and one that would fold into an ASCII name is refused. Look-
// alikes across scripts stay possible with it: PRECIS does not address
// confusables. The detail is not restricted: it never names a mailbox, and
// a detail folder name is reduced to ASCII (maildir.FolderName).
//
// # Detail folders
//
// With MaildirConfig.DetailFolders, user+detail goes into the Maildir++
// folder ".detail" when it exists. The detail is the sender's choice, so
// a missing folder is created only for users whose configuration allows
// it (User.CreateFolders, defaulting to MaildirConfig.CreateFolders, off);
// otherwise the mail goes to INBOX. Special folders (SpecialFolders:
// Trash, Sent, Drafts, Junk and their usual variants, and INBOX) are never
// a detail's target, existing or not, so that nobody can drop mail where
// it would pass for the user's own or be thrown away: such mail goes to
// INBOX.
//
// # Delivery
//
// The body is spooled once (package spool) with its CRLF line endings
// turned into LF, then each distinct destination gets a copy that starts
// with Return-Path (any Return-Path in the message removed, RFC 5321
// section 4.4), Delivered-To when configured, and the header as received
// (the server's Received field first). Recipients that reach the same
// destination (duplicate RCPTs, aliases of one user, an alias and its
// user) share one delivery and its status, and the steps (Sieve) run on
// it once, for the first of them; the destination is matched as resolved
// at RCPT, detail included, since a script sees it (share.go, which also
// says how Dovecot and Postfix handle duplicates). A recipient with
// several destinations gets the worst outcome, a temporary failure before
// a permanent one. Maildir copies with identical bytes are hard links of
// one file.
//
// Transaction.Data (LMTP) reports each recipient through the StatusSetter
// as soon as all its destinations are done: maildir ones once the
// directory fsync that makes them durable returned, pipe ones when the
// command exits. The transaction also implements protocol.Stager (SMTP):
// Stage stages every target that can be undone (maildir copies written
// and fsynced into tmp/) and then runs the final ones (pipe commands);
// Commit commits (renames into new/). A pipe command's success cannot be
// undone, so in an all-or-nothing transaction where a later recipient
// fails, the command has delivered and a retry delivers to it again.
//
// # Quota
//
// With Config.Quota enabled, maildir destinations have Maildir++ quota
// (package quota; see QuotaConfig for where a user's limits come from). At
// RCPT a user at or over a limit, or whom MAIL's SIZE= would take past
// limit + grace, is refused (552 5.2.2, or 452 4.2.2 with Defer). At DATA
// the maildir target reserves room for each copy through the Router's
// quota.Tracker before writing it, so concurrent deliveries to one user
// see each other; a copy that does not fit is refused before anything is
// written for it, and a reservation is counted in maildirsize only after
// the commit that makes the copy durable, or released on abort. A maildir
// whose usage cannot be known defers the recipient (451 4.3.0). Crossing a
// warning threshold stores the warning in the user's INBOX once.
// Router.Quota answers the same question for the policy listener and
// "lmtpd quota". A recipient with several maildir destinations (an alias)
// gets the worst outcome, as always: if one of them is full at DATA while
// another was stored, the recipient is refused although one copy exists.
//
// Per-recipient errors are *protocol.Error values, each target classifying
// its own failures (maildir.Classify, the package pipe documentation); a
// message that cannot be spooled gets 452 4.3.1 (disk full), 451 4.3.5
// (spool directory missing or not writable, logged with what to fix) or
// 451 4.3.0. Each outcome is logged at info level on zerolog.Ctx(ctx), one
// line per recipient; one whose delivery was made for an earlier
// recipient of the message says so in "shared_with".
//
// # Owners and homes
//
// Maildir files and directories get MaildirConfig.Owner, Group, FileMode
// and DirMode, or the uid and gid of the recipient's directory record
// (directory.Record.UID, GID). A record marked Trusted (the system's
// accounts, package directory/passwd) may name an absolute mailbox inside
// its Home, "{home}/Maildir": it is delivered there as the user, owned by
// the record's uid and gid, without following any symbolic link under the
// home (see package maildir, "Homes"); a mailbox outside the home, or an
// absolute one from a record that is not trusted, is 451 4.3.5 at RCPT.
//
// # Remote LMTP
//
// A route with LMTP, or a Lookup record with a Forward field (the proxy
// case), hands the recipient to another LMTP server (remote.go): lmtpd,
// Dovecot. All remote destinations of a message are one group; its Stage
// runs one transaction per server, the servers concurrently, each reading
// its own reader of the spooled message (header as received, with the
// server's Received field, and body; the client restores CRLF). The
// target is Final: a server's 250 is the recipient's 250, and its
// refusal is relayed with its code, enhanced code and text. A server that
// cannot be reached or does not answer in time gives 451 4.4.1, one that
// drops the connection during the transaction 451 4.4.2, one whose
// connections stay busy 451 4.4.5, each for that server's recipients
// only. Connections are pooled per server across reloads and reset with
// RSET before reuse. Loops between proxies are refused with 554 5.4.6
// (protocol.ProxyHop: the XCLIENT TTL this server was given, or the run of
// its own Received fields on the message), and the hop count left goes to
// a server that lists XCLIENT TTL. Router.Resolve gives the routing without delivering,
// for lookups from outside (resolve.go).
package delivery
