// Package sieve implements the Sieve mail filtering language for lmtpd: a
// lexer and parser with line:column positions, a checker that validates a
// script before it runs, an immutable compiled form (Script), and an
// interpreter that returns the list of actions a script decides on.
//
// The package decides, delivery acts: it imports neither delivery nor
// protocol and does no I/O of its own. What needs I/O reaches the caller
// through small interfaces in Env: a ScriptLoader for include, a Tracker
// that answers "seen before?" for vacation and duplicate, a MailboxChecker
// for mailboxexists. Storing, sending and remembering happen outside, after
// Execute returned.
//
// # Implemented
//
//   - RFC 5228, the base language: require, if/elsif/else, stop, keep,
//     discard, redirect; the tests address, header, exists, size, allof,
//     anyof, not, true, false; :is, :contains, :matches; i;octet and
//     i;ascii-casemap; string lists, text: strings with dot-stuffing, both
//     kinds of comments; RFC 2047 words decoded before matching; the
//     implicit keep of section 2.10.2.
//   - fileinto; envelope; encoded-character (section 2.4.2.4).
//   - RFC 5429 reject and ereject; RFC 4790 i;ascii-numeric; RFC 5232
//     imap4flags; RFC 3894 copy; RFC 5233 subaddress; RFC 5231 relational;
//     RFC 5229 variables.
//   - RFC 5173 body (:raw, :content, :text); RFC 5230 vacation and RFC 6131
//     vacation-seconds; RFC 5260 date and index; RFC 5490 mailbox
//     (mailboxexists, :create, and the metadata tests of section 4 as
//     mboxmetadata and servermetadata); RFC 6609 include (with return and global);
//     RFC 7352 duplicate; RFC 5293 editheader; RFC 5183 environment;
//     draft-ietf-sieve-regex (regex, :quoteregex); RFC 5463 ihave (and its
//     error command); RFC 5235 spamtest, spamtestplus and virustest;
//     RFC 5435 enotify with the mailto method of RFC 5436 (notify,
//     valid_notify_method, notify_method_capability, :encodeurl); RFC 5703
//     mime, foreverypart and extracttext (not replace and enclose); RFC
//     8579 special-use (fileinto :specialuse, specialuse_exists).
//
// # Invariants callers rely on
//
//   - Compile either returns a Script or an ErrorList whose entries print
//     as "file:line:column: message" (lines and columns from 1, columns in
//     bytes). Everything that can be checked without the message is checked
//     here: require only at the top, known extensions and their use,
//     argument and tag types per command and test, conflicting tags,
//     comparators, relational operators, constant regular expressions,
//     redirect, vacation and notify addresses, addheader names, zones,
//     include names (no "/", no leading "."), variable names, the fields
//     the address test may read (Pigeonhole's list). Where Pigeonhole only
//     warns (a header name that cannot occur, an unknown date part,
//     fileinto ""), lmtpd accepts too: a script that compiles under
//     Pigeonhole must compile here, or its user would lose the filtering.
//     Matching follows Pigeonhole too where the RFCs leave room: "?" of
//     :matches is one octet (the comparators work on octets, RFC 4790),
//     header values unfold with a leading tab turned into a space, and the
//     null address "<>" is seen by address :all.
//   - A Script is never modified after Compile: any number of goroutines
//     may Execute it at once, so a caller caches it (by path and mtime).
//   - Execute returns either the whole Result or a *RuntimeError with a
//     Result that holds only the implicit keep (RFC 5228 section 2.10.6):
//     actions are deferred, so none of a failed run is carried out.
//   - Every run is bounded: Options limits actions, redirects, include
//     depth, variable size and count, run-time regular expressions and a
//     step budget where a step stands for about a microsecond of CPU at
//     worst (Options.MaxSteps says what costs how much; the default is
//     about 0.1 s). :matches runs in O(n·m) without recursion and :regex
//     uses Go's RE2, linear in the input, so no script can stall delivery.
//     The parser bounds nesting at 64 levels.
//   - Action conflicts (RFC 5228 section 4, RFC 5429 section 2.1, RFC 5230
//     section 4.7): reject or ereject together with keep, fileinto,
//     redirect (even with :copy) or vacation, a second reject, a second
//     vacation are run-time errors. Storing twice into one mailbox stores
//     once with the later flags (INBOX case-insensitive), redirecting twice
//     to one address sends once.
//   - Vacation is listed only when a reply is due: VacationAllowed (RFC
//     5230 section 4.5) passed and the Tracker has not seen the sender for
//     the handle within the period. Delivery records Vacation.TrackKey after
//     sending; duplicate's Result.Marks are recorded after delivery (RFC
//     7352 section 3).
//
// # Where lmtpd knowingly differs from Pigeonhole
//
//   - envelope "to" is the ORCPT original recipient (RFC 3461) when the
//     client sent one, else the RCPT TO address; Pigeonhole uses the final
//     recipient unless configured otherwise. lmtpd sits behind Postfix,
//     which rewrites the recipient and keeps the user's address in ORCPT,
//     so envelope :detail "to" sees the +detail the sender used (RFC 5228
//     section 5.4 leaves the choice to the implementation).
//     The envelope part "orig_to" names the ORCPT alone (empty when absent);
//     Pigeonhole refuses that part name.
//   - Pigeonhole bounds a run by CPU time (sieve_max_cpu_time, 30 s);
//     lmtpd by a deterministic step budget, so a message is filtered the
//     same way on a busy and an idle machine. A :regex over more than
//     ~400 KB of text exceeds the default budget and keeps the message.
//   - Column numbers: Pigeonhole reports lines only; lmtpd reports
//     line:column.
//   - Variable references with a namespace ("${a.b}") stay literal; Pigeonhole
//     reports an unknown namespace at compile time. RFC 5229 section 3
//     allows either for unsupported namespaces.
//   - The variable size limit (Options.MaxVariableSize) is a run-time error,
//     where Pigeonhole truncates the value (RFC 5229 section 6 leaves it
//     open); an error keeps the message, a truncated value could file it
//     wrongly.
//   - :regex uses Go's RE2 syntax, not POSIX extended expressions
//     (draft-ietf-sieve-regex section 3): the common subset behaves alike;
//     back-references are refused at compile time. With i;ascii-casemap the
//     match is case-insensitive for all of Unicode, not ASCII only.
//   - body :text turns text/html into text by dropping tags (RFC 5173
//     section 5.3 leaves the conversion open); Pigeonhole uses its own HTML
//     parser. Only the first Options.MaxBodySize bytes (1 MiB) are searched.
//   - Charsets: without Env.CharsetReader only UTF-8, US-ASCII and
//     ISO-8859-1 are converted (delivery passes go-message's charset
//     reader); Pigeonhole converts everything iconv knows.
//   - Editheader: adding or deleting a protected field (Received,
//     Auto-Submitted) is ignored silently; Pigeonhole ignores it with a
//     warning. RFC 5293 section 8 asks for the refusal, not for the warning.
//   - vacation :seconds below the minimum period (1 day by default) is
//     raised to it, as Pigeonhole does with its default settings; RFC 6131
//     section 2 allows 0. The default handle hashes reason, subject, from
//     and :mime (RFC 5230 section 4.2); Pigeonhole concatenates them.
//   - duplicate asked twice for one ID in one run answers the same both
//     times (RFC 7352 section 3 leaves this open).
//   - lmtpd has :quoteregex (draft-ietf-sieve-regex section 4) and ereject
//     (RFC 5429 section 2.1), which the Pigeonhole of Debian 12 (0.5.19)
//     refuses as unknown, and special-use (RFC 8579), which it lacks too:
//     these follow the RFCs alone; scripts written for it are unaffected.
//   - lmtpd sieve-test lists a vacation only when a reply would be sent
//     (the rules of RFC 5230 section 4.5 and the tracking applied);
//     Pigeonhole's sieve-test lists every vacation the script executes.
//   - extracttext cuts a text longer than Options.MaxVariableSize at that
//     size, as Pigeonhole truncates; set reports it as an error (above).
//   - Flags keep the case first written (Pigeonhole lowercases system flags
//     in its listing; IMAP treats them case-insensitively either way).
//   - spamtest and virustest without a pattern read the first number in
//     the field's value ("5.5 (required 5)" is 5.5); Pigeonhole requires
//     the whole value to be the number, else "0". A strlen status is the
//     value's length whatever its characters; Pigeonhole requires them
//     all alike. The scale is Pigeonhole's (RFC 5235 leaves it open):
//     1 + floor(9 * status/max), or 4 for virustest, and floor(100 *
//     status/max) for :percent.
//   - An address with UTF-8 in it (RFC 6532) is an address for the address
//     test, with or without angle brackets; Pigeonhole (0.5.19) takes it
//     for an invalid one, seen only whole by :all.
package sieve
