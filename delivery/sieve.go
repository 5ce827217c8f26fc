package delivery

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/sieve"
)

// sieveStep is the built-in Step that runs the Sieve scripts of each
// maildir destination (SieveConfig) and carries out their actions:
//
//   - keep and the implicit keep store into the destination's own folder
//     (INBOX, or its detail folder); fileinto "A.B" stores into the
//     Maildir++ folder ".A.B" (hierarchy separator ".", non-ASCII names
//     in modified UTF-7 as IMAP shows them, RFC 3501 section 5.1.3),
//     created only with :create or [delivery.maildir] create_folders,
//     else the copy goes to INBOX and the fallback is logged, as
//     Pigeonhole does. Flags of imap4flags become maildir info and
//     dovecot-keywords letters. All copies of one message are one staged
//     file, hard-linked, made durable before the reply.
//   - reject and ereject answer for the recipient: 550 5.7.1 and the
//     reason as one line of printable ASCII. In SMTP, where one reply
//     covers every recipient, the reject is folded like any other
//     permanent failure of one recipient (protocol.WorseStatus): the
//     transaction fails as a whole with it unless another recipient has
//     a temporary failure, and the client bounces the message to its
//     sender with the reason.
//   - discard accepts with nothing stored.
//   - redirect sends the message as received through Sendmail with the
//     original envelope sender, with a Delivered-To of the user on top;
//     it is refused (and the message kept) when the message already has
//     that Delivered-To (a loop). A redirect that cannot be sent keeps
//     the message in INBOX and is logged, as Pigeonhole does.
//   - vacation sends its reply through Sendmail from the null sender;
//     once sent, the sender is remembered in StateDir for the period, and
//     asked again just before sending, so that a user filtered twice for
//     one message (bob+a and bob+b) replies once. A reply that cannot be
//     sent is logged; the message is delivered anyway.
//   - editheader: each stored or redirected copy carries the edits made
//     before its action (the implicit keep all of them), RFC 5293
//     section 5; a copy's header is then its own (Destination.Header).
//   - duplicate marks are recorded in StateDir once the recipient was
//     delivered (StepResult.Done; RFC 7352 section 3), so a message that
//     failed is not taken for a duplicate when it is retried.
//   - notify is logged, not sent; fileinto :specialuse stores into the
//     named mailbox.
//
// Redirects and vacation replies are sent only once the recipient is
// delivered (StepResult.Done with a nil status, the point where duplicate
// marks are recorded), and before its status is handed on:
//
//   - LMTP reports a recipient right after the commit that makes its
//     copies durable, so the sends happen then, before its reply is
//     written.
//   - SMTP has one reply for the message: the hooks see nil only when
//     every recipient was committed and no earlier recipient's hook
//     failed (a later one's failure still defers the message after the
//     earlier hooks sent: the resend skips their redirects through
//     redirectMemory, and their vacation replies through :days). A
//     commit that fails part way (some recipients stored, then a
//     failure: 4xx, and the client resends the whole message) sends
//     nothing and records no duplicate mark; the resend that succeeds
//     sends each redirect and reply once. A Stage that fails sends
//     nothing either.
//   - A redirect whose sendmail fails at that point is stored into INBOX
//     by a late Stage and Commit of its own (keepLate). If that store
//     fails too, the recipient's status becomes ErrRedirectNotKept, 451
//     4.3.0 with the cause logged: in LMTP that recipient's reply (the
//     others keep theirs), in SMTP the one reply (a temporary failure
//     wins the fold). The client retries, so the message is never lost;
//     the price is a duplicate of what was already stored for the
//     recipient (a redirect :copy's keep, a fileinto), which the retry
//     stores again. A redirect refused outright (a loop, a bad address)
//     is kept at once, at staging.
//   - A redirect sent is remembered in the user's state for
//     redirectMemory, keyed by sender, Message-ID, content digest and
//     address (a message without a Message-ID is not remembered), so the resend of a message deferred after some of its
//     redirects went out (another redirect or recipient failed) does not
//     send them twice. Vacation replies are remembered by their own
//     tracking (:days), and duplicate marks are recorded only for a
//     recipient whose sends all succeeded, so a deferred message is not
//     taken for a duplicate when it comes back.
type sieveStep struct {
	cfg     SieveConfig
	tmpl    *scriptTemplate
	root    string // maildir root
	create  bool   // MaildirConfig.CreateFolders
	host    string
	delim   string
	cache   *scriptCache
	now     func() time.Time
	observe func(action string) // counts actions and errors, for metrics

	optsOnce sync.Once
	opts     *sieve.Options // see options
	marks    markCache      // vacation and duplicate marks read, for every tracker of filter
	pathsMu  sync.Mutex
	paths    map[userScriptKey]userScriptPath // userScript's answers (tmpl and root never change)
}

func (s *sieveStep) Name() string { return "sieve" }

// options returns the options every script of s runs with, built once.
func (s *sieveStep) options() *sieve.Options {
	s.optsOnce.Do(func() {
		s.opts = s.cfg.ScriptOptions()
		s.opts.SubaddressDelimiters = s.delim
	})
	return s.opts
}

// ErrSieveReject is the reply of a recipient whose script rejected the
// message (RFC 5429): 550 5.7.1 with the script's reason.
var ErrSieveReject = protocol.NewError(protocol.CodeMailboxUnavailable, protocol.ECPermNotAuthorized, "Message rejected")

// ErrRedirectNotKept is the status of a recipient whose redirect could
// not be sent and whose message could not be kept in INBOX instead
// either: 451 4.3.0, so the client retries rather than the message being
// lost. The copies already stored for the recipient (a redirect :copy's
// keep) are stored again by the retry; redirects already sent are not
// sent again (see redirectMemory). The reply's text does not mention the
// redirect (it may reach the sender in a delay notice; what the user's
// filter does is theirs), the log line and the wrapped cause do.
var ErrRedirectNotKept = protocol.NewError(protocol.CodeLocalError, protocol.ECTempSystem, "Message could not be stored, try again later")

// Apply runs the scripts of every maildir destination of the recipient.
func (s *sieveStep) Apply(ctx context.Context, m *Message, rcpt int, ds []Destination) StepResult {
	var out []Destination
	var logs []string
	var done []func(context.Context, error) error
	for _, d := range ds {
		if d.Target == nil || d.Target.Kind() != "maildir" {
			out = append(out, d)
			continue
		}
		got, summary, marks, sends, err := s.filter(ctx, m, rcpt, d)
		if err == nil && (len(marks) > 0 || len(sends) > 0) {
			tr := newStateTracker(s.cfg.StateDir, d.Domain, d.User, s.now)
			done = append(done, func(ctx context.Context, status error) error {
				if status != nil {
					return nil
				}
				var failed error
				for _, send := range sends {
					if err := send(ctx); err != nil && failed == nil {
						failed = err
					}
				}
				if failed != nil {
					// The recipient is deferred and its message comes
					// back: it must not be taken for a duplicate then.
					return failed
				}
				for _, mk := range marks {
					if err := tr.Mark(mk.Key, mk.Period, mk.Last); err != nil {
						zerolog.Ctx(ctx).Warn().Err(err).Str("to", d.Address).Msg("sieve: cannot record a duplicate mark in state_dir")
					}
				}
				return nil
			})
		}
		if summary != "" {
			logs = append(logs, summary)
		}
		if err != nil {
			if len(ds) == 1 {
				return StepResult{Err: err, LogKey: "sieve", LogValue: strings.Join(logs, ";")}
			}
			// One of several destinations (an alias) rejected: the others
			// still get the message, and the reject is only logged.
			zerolog.Ctx(ctx).Info().Str("to", d.Address).Msg("sieve: reject of one destination of an alias: nothing stored for it")
			continue
		}
		out = append(out, got...)
	}
	res := StepResult{Destinations: out}
	if len(done) > 0 {
		res.Done = func(ctx context.Context, err error) error {
			// Every destination's hook runs (they are different users'
			// actions); the first failure is the recipient's.
			var first error
			for _, f := range done {
				if ferr := f(ctx, err); ferr != nil && first == nil {
					first = ferr
				}
			}
			return first
		}
	}
	if len(logs) > 0 {
		res.LogKey, res.LogValue = "sieve", strings.Join(logs, ";")
	}
	return res
}

// scriptRun is one script of a destination's chain.
type scriptRun struct {
	script *sieve.Script
	path   string
}

// filter runs d's script chain and returns the destinations its actions
// store into, the summary for the log line, the duplicate marks to record
// and the redirects and replies to send once delivered, and a reject.
func (s *sieveStep) filter(ctx context.Context, m *Message, rcpt int, d Destination) ([]Destination, string, []sieve.Mark, []func(context.Context) error, error) {
	log := zerolog.Ctx(ctx)
	keep := func(flags []string) []Destination {
		k := d
		k.Flags = flags
		return []Destination{k}
	}
	chain, userDir, ok := s.chain(ctx, d)
	if !ok {
		return keep(nil), "keep(error)", nil, nil, nil
	}
	if len(chain) == 0 {
		return []Destination{d}, "", nil, nil, nil
	}
	msg := s.message(m)
	addr := d.User + "@" + d.Domain
	tr := newStateTracker(s.cfg.StateDir, d.Domain, d.User, s.now)
	tr.marks = &s.marks
	env := &sieve.Env{
		Envelope: sieve.Envelope{From: m.From, To: m.Recipients[rcpt].Address.String(), OrigTo: m.Recipients[rcpt].Params.OriginalRecipient},
		Now:      s.now(),
		Environment: map[string]string{
			"domain": d.Domain, "host": s.host, "phase": "during",
		},
		Tracker:       tr,
		Mailboxes:     &mailboxChecker{root: s.root, maildir: d.Mailbox},
		Loader:        &scriptLoader{cache: s.cache, personal: userDir, global: s.cfg.GlobalDir},
		UserAddresses: []string{addr, d.Address},
		CharsetReader: charset.Reader,
	}
	if c := m.Conn; c != nil {
		env.Environment["remote-host"] = c.Hostname
		env.Environment["remote-ip"] = clientIP(c.RemoteAddr)
	}
	opts := s.options()
	var all sieve.Result
	all.ImplicitKeep = true
	var edits [][]sieve.HeaderEdit // per action of all: the edits its copy carries
	for _, sc := range chain {
		res, err := sc.script.Execute(ctx, msg, env, opts)
		if err != nil {
			log.Error().Err(err).Str("script", sc.path).Str("to", d.Address).
				Msg("sieve: run-time error; the message is kept in INBOX")
			s.count("runtime_error")
			return keep(nil), "keep(error)", nil, nil, nil
		}
		for _, a := range res.Actions {
			edits = append(edits, res.HeaderEdits[:min(a.Edits, len(res.HeaderEdits))])
		}
		all.Actions = append(all.Actions, res.Actions...)
		all.Marks = append(all.Marks, res.Marks...)
		all.ImplicitKeep, all.ImplicitKeepFlags, all.HeaderEdits = res.ImplicitKeep, res.ImplicitKeepFlags, res.HeaderEdits
		if !res.ImplicitKeep {
			// Pigeonhole's multiscript rule: the next script runs only
			// while the implicit keep stands.
			break
		}
	}
	var out []Destination
	var sends []func(context.Context) error
	kept := false // a failed redirect was kept in INBOX (once for all of them)
	store := func(mailbox string, flags []string, create bool, ed []sieve.HeaderEdit) {
		c := d
		c.Flags = flags
		if len(ed) > 0 {
			c.Header = applyEdits(m.base, ed)
		}
		if !strings.EqualFold(mailbox, "INBOX") {
			f, err := sieveFolder(mailbox)
			if err != nil {
				log.Info().Err(err).Str("to", d.Address).Msg("sieve: fileinto a mailbox name that cannot be a folder: kept in INBOX")
				c.Folder = ""
			} else {
				c.Folder, c.CreateFolder = f, create || s.create
				if !c.CreateFolder && !s.folderExists(c.Mailbox, f) {
					log.Info().Str("to", d.Address).Str("mailbox", mailbox).Str("folder", f).
						Msg("sieve: fileinto a folder that does not exist, without :create: kept in INBOX")
					c.Folder = ""
				}
			}
		}
		out = append(out, c)
	}
	for i, a := range all.Actions {
		s.count(string(a.Kind))
		switch a.Kind {
		case sieve.ActKeep:
			store("INBOX", a.Flags, false, edits[i])
		case sieve.ActFileinto:
			store(a.Mailbox, a.Flags, a.Create, edits[i])
		case sieve.ActDiscard:
		case sieve.ActReject, sieve.ActEreject:
			return nil, all.Summary(), nil, nil, protocol.WrapError(ErrSieveReject.Code, ErrSieveReject.EnhancedCode, sanitizeReason(a.Reason), fmt.Errorf("sieve %s by %s", a.Kind, d.Address))
		case sieve.ActRedirect:
			if err := s.checkRedirect(m, d, a.Address); err != nil {
				log.Warn().Err(err).Str("to", d.Address).Str("redirect", a.Address).Msg("sieve: redirect refused; the message is kept in INBOX")
				store("INBOX", nil, false, nil)
				continue
			}
			addr, ed := a.Address, edits[i]
			sends = append(sends, func(ctx context.Context) error {
				err := s.redirect(ctx, m, d, addr, ed, tr)
				if err == nil {
					return nil
				}
				zerolog.Ctx(ctx).Warn().Err(err).Str("to", d.Address).Str("redirect", addr).Msg("sieve: redirect failed; the message is kept in INBOX")
				if kept {
					return nil // one copy in INBOX for all the failed redirects
				}
				if kerr := s.keepLate(ctx, m, d); kerr != nil {
					return protocol.WrapError(ErrRedirectNotKept.Code, ErrRedirectNotKept.EnhancedCode, ErrRedirectNotKept.Message,
						fmt.Errorf("redirect to %s: %v; keeping it in INBOX instead: %w", addr, err, kerr))
				}
				kept = true
				return nil
			})
		case sieve.ActVacation:
			v := a.Vacation
			sends = append(sends, func(ctx context.Context) error {
				log := zerolog.Ctx(ctx)
				// The script looked at the mark before any reply of this
				// message went out: the same user filtered again for
				// another address of the message (bob+a and bob+b, see
				// share.go), or another delivery meanwhile, may have
				// replied since. One reply per period, as the script
				// would have decided had it run after that one.
				if seen, err := tr.Seen(ctx, v.TrackKey, v.Period); err == nil && seen {
					log.Debug().Str("to", d.Address).Str("reply_to", v.To).Msg("sieve: vacation reply sent meanwhile; not sent again")
					return nil
				}
				// The reply is remembered before it is sent: one that
				// cannot be remembered (a state_dir the process cannot
				// write, e.g. lmtpd deliver run as the user) is not sent,
				// or the sender would get a reply to every message. A
				// reply whose sending fails is forgotten again, so the
				// next message may try once more.
				if err := tr.Mark(v.TrackKey, v.Period, true); err != nil {
					log.Warn().Err(err).Str("to", d.Address).Str("reply_to", v.To).
						Msg("sieve: vacation reply not sent: it cannot be remembered in state_dir (unremembered, it would go to every message)")
					return nil
				}
				if err := s.vacation(ctx, v); err != nil {
					log.Warn().Err(err).Str("to", d.Address).Str("reply_to", v.To).Msg("sieve: vacation reply not sent")
					if err := tr.Unmark(v.TrackKey); err != nil {
						log.Warn().Err(err).Str("to", d.Address).Msg("sieve: cannot forget the unsent vacation reply in state_dir; the sender gets none until its period ends")
					}
				}
				return nil // a reply not sent loses no mail
			})
		default:
			log.Info().Str("action", string(a.Kind)).Str("to", d.Address).Msg("sieve: action not carried out by lmtpd")
		}
	}
	if all.ImplicitKeep {
		s.count("implicit_keep")
		store("INBOX", all.ImplicitKeepFlags, false, all.HeaderEdits)
	}
	return out, all.Summary(), all.Marks, sends, nil
}

// chain returns the scripts to run for d (before, the user's, after), the
// directory of the user's script (for include :personal), and false when
// one of them does not compile or cannot be read (the message is then
// kept).
func (s *sieveStep) chain(ctx context.Context, d Destination) ([]scriptRun, string, bool) {
	log := zerolog.Ctx(ctx)
	var out []scriptRun
	ok := true
	add := func(path string, sc *sieve.Script, err error) {
		switch {
		case err == nil:
			out = append(out, scriptRun{script: sc, path: path})
		case errors.Is(err, errNoScript):
		default:
			var el sieve.ErrorList
			if !errors.As(err, &el) { // compile errors were logged by the cache
				log.Error().Err(err).Str("script", path).Msg("sieve: cannot read the script; the message is kept in INBOX")
				s.count("read_error")
			}
			ok = false
		}
	}
	for _, p := range adminScripts(s.cfg.Before) {
		sc, err := s.cache.loadPath(ctx, p)
		add(p, sc, err)
	}
	path, rel, rootDir, err := s.userScript(d)
	userDir := ""
	if err != nil {
		log.Error().Err(err).Str("to", d.Address).Msg("sieve: the user's script is outside its root; the message is kept in INBOX")
		s.count("read_error")
		ok = false
	} else if sc, err, ok := s.cache.cached(path); ok {
		add(path, sc, err)
		userDir = filepath.Dir(path)
	} else if root, err := os.OpenRoot(rootDir); err == nil {
		sc, err := s.cache.load(ctx, root, rel, path)
		root.Close()
		add(path, sc, err)
		userDir = filepath.Dir(path)
	}
	for _, p := range adminScripts(s.cfg.After) {
		sc, err := s.cache.loadPath(ctx, p)
		add(p, sc, err)
	}
	return out, userDir, ok
}

// userScript returns the path of d's script, the same path relative to
// its root, and the root: the directory's sieve field (relative to the
// home) or the configured template.
//
// The answer depends only on d's mailbox, home, sieve field and address,
// and is remembered by them: working it out again (expanding the template,
// cleaning the paths) cost more than the rest of finding the script.
func (s *sieveStep) userScript(d Destination) (path, rel, root string, err error) {
	k := userScriptKey{d.Mailbox, d.Home, d.Sieve, d.User, d.Domain}
	s.pathsMu.Lock()
	p, ok := s.paths[k]
	s.pathsMu.Unlock()
	if !ok {
		p.path, p.rel, p.root, p.err = s.expandUserScript(d)
		s.pathsMu.Lock()
		if s.paths == nil || len(s.paths) >= maxCachedScripts {
			s.paths = make(map[userScriptKey]userScriptPath)
		}
		s.paths[k] = p
		s.pathsMu.Unlock()
	}
	return p.path, p.rel, p.root, p.err
}

// userScriptKey is what userScript's answer depends on.
type userScriptKey struct{ mailbox, home, sieve, user, domain string }

// userScriptPath is one answer of userScript.
type userScriptPath struct {
	path, rel, root string
	err             error
}

// expandUserScript works out userScript's answer.
func (s *sieveStep) expandUserScript(d Destination) (path, rel, root string, err error) {
	mbox := maildirDir(s.root, d.Mailbox)
	home := d.Home
	if home == "" {
		home = mbox
	}
	if d.Sieve != "" {
		path, root = d.Sieve, home
		if !filepath.IsAbs(path) {
			path = filepath.Join(home, path)
		}
	} else {
		path, root = s.tmpl.expand(map[string]string{
			"home": home, "mailbox": mbox, "localpart": d.User, "domain": d.Domain, "address": d.User + "@" + d.Domain,
		})
	}
	path = filepath.Clean(path)
	rel, err = filepath.Rel(root, path)
	if err != nil || !filepath.IsLocal(rel) {
		return "", "", "", fmt.Errorf("sieve script %q is not under %q", path, root)
	}
	return path, rel, root, nil
}

// message returns m as the sieve package reads it.
func (s *sieveStep) message(m *Message) sieve.Message {
	hdr := make([]sieve.HeaderField, 0, m.hdr.Len())
	for f := m.hdr.Fields(); f.Next(); {
		hdr = append(hdr, sieve.HeaderField{Name: f.Key(), Value: f.Value()})
	}
	return sieve.NewMessage(hdr, int64(len(m.base))+m.BodySize(), func() (io.Reader, error) { return m.Body(), nil })
}

func (s *sieveStep) count(action string) {
	if s.observe != nil {
		s.observe(action)
	}
}

// sanitizeReason makes a reject reason one line of printable ASCII, at
// most 200 characters: line breaks and tabs become spaces, other bytes
// '?'.
func sanitizeReason(r string) string {
	var b strings.Builder
	space := false
	for _, c := range r {
		switch {
		case c == '\r' || c == '\n' || c == '\t' || c == ' ':
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		case c < 0x20 || c >= 0x7f:
			b.WriteByte('?')
		default:
			b.WriteRune(c)
		}
		space = false
		if b.Len() >= 200 {
			break
		}
	}
	out := strings.TrimSpace(b.String())
	if out == "" {
		out = "Message rejected"
	}
	return out
}

// sieveFolder maps a Sieve mailbox name (UTF-8, "." separated) to its
// Maildir++ folder, ".A.B", with each name in modified UTF-7 (RFC 3501
// section 5.1.3) as Dovecot stores it. Names that cannot be a folder
// (empty levels, "/", a leading ".", control characters) are refused.
func sieveFolder(name string) (string, error) {
	if name == "" || !utf8.ValidString(name) {
		return "", fmt.Errorf("mailbox name %q is not a folder name", name)
	}
	if len(name) > 5 && strings.EqualFold(name[:6], "INBOX.") {
		name = name[6:] // INBOX.A is A in Maildir++ (Dovecot's INBOX. prefix)
	}
	parts := strings.Split(name, ".")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "/\\") || strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return "", fmt.Errorf("mailbox name %q is not a folder name", name)
		}
	}
	f := "." + utf7Encode(strings.Join(parts, "."))
	if len(f) > 255 {
		return "", fmt.Errorf("mailbox name %q is too long", name)
	}
	return f, nil
}

// utf7Encode encodes s in IMAP's modified UTF-7 (RFC 3501 section
// 5.1.3): printable ASCII as itself ("&" as "&-"), other characters as
// "&" modified-base64 of UTF-16 "-".
func utf7Encode(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		u := utf16.Encode(run)
		buf := make([]byte, 2*len(u))
		for i, c := range u {
			buf[2*i], buf[2*i+1] = byte(c>>8), byte(c)
		}
		enc := base64.RawStdEncoding.EncodeToString(buf)
		b.WriteByte('&')
		b.WriteString(strings.ReplaceAll(enc, "/", ","))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		run = append(run, r)
	}
	flush()
	return b.String()
}

// maildirDir returns the directory of a destination's maildir: its
// Mailbox under the maildir root, or the Mailbox itself when it is
// absolute (a trusted directory record's, delivered inside its home).
func maildirDir(root, mailbox string) string {
	if filepath.IsAbs(mailbox) {
		return filepath.Clean(mailbox)
	}
	return filepath.Join(root, filepath.FromSlash(mailbox))
}

// folderExists reports whether the Maildir++ folder f of maildir mbox
// (relative to the root) exists.
func (s *sieveStep) folderExists(mbox, f string) bool {
	fi, err := os.Stat(filepath.Join(maildirDir(s.root, mbox), f))
	return err == nil && fi.IsDir()
}

// mailboxChecker answers mailboxexists for one user's maildir.
type mailboxChecker struct{ root, maildir string }

func (c *mailboxChecker) MailboxExists(_ context.Context, name string) (bool, error) {
	dir := maildirDir(c.root, c.maildir)
	if !strings.EqualFold(name, "INBOX") {
		f, err := sieveFolder(name)
		if err != nil {
			return false, nil
		}
		dir = filepath.Join(dir, f)
	}
	fi, err := os.Stat(filepath.Join(dir, "cur"))
	return err == nil && fi.IsDir(), nil
}

// sendmail runs the Sendmail argv for one message.
func (s *sieveStep) sendmail(ctx context.Context, sender, recipient string, msg io.Reader) error {
	if sender == "" {
		sender = "<>"
	}
	argv := make([]string, len(s.cfg.Sendmail))
	for i, a := range s.cfg.Sendmail {
		a = strings.ReplaceAll(a, "{sender}", sender)
		argv[i] = strings.ReplaceAll(a, "{recipient}", recipient)
	}
	ctx, cancel := context.WithTimeout(ctx, sendmailTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = msg
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, n: 1024}
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", argv[0], err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// sendmailTimeout bounds one sendmail run.
const sendmailTimeout = 60 * time.Second

type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// checkRedirect refuses a redirect of the message to addr that loops (a
// Delivered-To of the user already present) or whose address could be
// taken for an option or break the argv.
func (s *sieveStep) checkRedirect(m *Message, d Destination, addr string) error {
	for _, v := range deliveredTo(m.hdr) {
		if strings.EqualFold(v, d.Address) {
			return fmt.Errorf("loop: the message already has Delivered-To: %s", d.Address)
		}
	}
	if strings.ContainsAny(addr, "\r\n\x00") || strings.HasPrefix(addr, "-") {
		return fmt.Errorf("redirect address %q refused", addr)
	}
	return nil
}

// redirect sends the message to addr with the original envelope sender
// (checkRedirect has passed), once: a redirect sent is remembered in d's
// state (tr) for redirectMemory under the message's key (sender,
// Message-ID, content, address), and a resend of the same message, after
// a deferral of this or another recipient, does not send it again. It
// runs from the recipient's Done hook, so m's body must still be readable
// then (the delivery keeps its spool open until the recipients are
// reported).
func (s *sieveStep) redirect(ctx context.Context, m *Message, d Destination, addr string, ed []sieve.HeaderEdit, tr *stateTracker) error {
	if err := s.checkRedirect(m, d, addr); err != nil {
		return err
	}
	key := redirectKey(m, addr)
	log := zerolog.Ctx(ctx)
	if key == "" {
		// Nothing tells a resend from another message with the same
		// text: send (a duplicate at worst, never a redirect lost).
	} else if seen, err := tr.Seen(ctx, key, redirectMemory); err != nil {
		log.Warn().Err(err).Str("to", d.Address).Msg("sieve: cannot read the redirects sent from state_dir")
	} else if seen {
		log.Info().Str("to", d.Address).Str("redirect", addr).Msg("sieve: redirect of this message sent by an earlier attempt; not sent again")
		return nil
	}
	hdr := "Delivered-To: " + headerValue(d.Address) + "\n"
	if err := s.sendmail(ctx, m.From, addr, io.MultiReader(strings.NewReader(hdr), bytes.NewReader(applyEdits(m.base, ed)), m.Body())); err != nil {
		return err
	}
	if key == "" {
		return nil
	}
	if err := tr.Mark(key, redirectMemory, true); err != nil {
		log.Warn().Err(err).Str("to", d.Address).Msg("sieve: cannot remember the redirect in state_dir; a resend of the message would redirect it again")
	}
	return nil
}

// redirectMemory is how long a redirect sent is remembered against a
// resend of the same message: Postfix's maximal_queue_lifetime default,
// beyond which a client no longer retries.
const redirectMemory = 5 * 24 * time.Hour

// redirectKey is the state key of the redirect of m to addr: the sender,
// the message's key as dedup computes it (Message-ID and a digest of the
// content as the client sent it, the server's own Received field left
// out), and the address; "" for a message without a Message-ID, which
// cannot be told from another with the same text.
func redirectKey(m *Message, addr string) string {
	if m.proto == nil || strings.TrimSpace(m.hdr.Get("Message-ID")) == "" {
		return ""
	}
	h := sha256.New()
	if _, err := io.Copy(h, m.Body()); err != nil {
		h.Write([]byte(err.Error())) // unreadable: a key of its own, never a false match
	}
	mk := messageKeyOf(m.proto, h.Sum(nil), m.BodySize())
	return "redirect\x00" + m.From + "\x00" + mk + "\x00" + strings.ToLower(addr)
}

// keepLate stores the message into d's INBOX, from the recipient's Done
// hook, before its status is handed on: the fallback of a redirect whose
// sendmail failed (Pigeonhole keeps such a message too). Its error (the
// copy could not be stored either) becomes the recipient's status, a
// temporary failure, so the message comes back (ErrRedirectNotKept).
func (s *sieveStep) keepLate(ctx context.Context, m *Message, d Destination) error {
	log := zerolog.Ctx(ctx)
	k := d
	k.Folder, k.CreateFolder, k.Flags, k.Header = "", false, nil, nil
	res := make([]Result, 1)
	st := d.Target.Stage(ctx, m, []*Destination{&k}, res)
	if st != nil {
		if res[0].Err == nil {
			st.Commit(ctx, res)
		} else {
			st.Abort()
		}
	}
	if res[0].Err != nil {
		log.Error().Err(res[0].Err).Str("to", d.Address).Msg("sieve: the redirect failed and the message could not be kept in INBOX either; the recipient is deferred")
		return res[0].Err
	}
	log.Info().Str("to", d.Address).Str(res[0].LogKey, res[0].LogValue).Msg("sieve: kept in INBOX after a failed redirect")
	return nil
}

// vacation sends the reply v from the null sender.
func (s *sieveStep) vacation(ctx context.Context, v *sieve.Vacation) error {
	if strings.ContainsAny(v.To, "\r\n\x00") || strings.HasPrefix(v.To, "-") || v.To == "" {
		return fmt.Errorf("vacation recipient %q refused", v.To)
	}
	var b strings.Builder
	hv := func(k, v string) {
		if v != "" {
			b.WriteString(k + ": " + headerValue(v) + "\n")
		}
	}
	hv("From", v.From)
	hv("To", "<"+v.To+">")
	hv("Subject", mime.QEncoding.Encode("utf-8", v.Subject))
	hv("Date", s.now().Format(time.RFC1123Z))
	var id [12]byte
	rand.Read(id[:])
	hv("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+s.host+">")
	hv("In-Reply-To", v.InReplyTo)
	hv("References", v.References)
	hv("Auto-Submitted", "auto-replied (vacation)")
	hv("Precedence", "bulk")
	hv("X-Auto-Response-Suppress", "All")
	hv("MIME-Version", "1.0")
	body := strings.ReplaceAll(v.Reason, "\r\n", "\n")
	if !v.Mime {
		hv("Content-Type", "text/plain; charset=utf-8")
		hv("Content-Transfer-Encoding", "8bit")
		b.WriteString("\n")
	}
	b.WriteString(body)
	if !strings.HasSuffix(body, "\n") {
		b.WriteString("\n")
	}
	return s.sendmail(ctx, "", v.To, strings.NewReader(b.String()))
}
