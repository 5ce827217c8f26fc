package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
)

const lookupUsage = `lmtpd lookup [-config FILE] [-deliver] [-json] ADDRESS...

Prints, for each ADDRESS, what lmtpd would do with mail for it, without
delivering anything (as postmap -q and doveadm user do): the status
(deliver, unknown, tempfail), the directory that answered, and the final
recipients after aliases with their mailbox (absolute path), folder,
quota_bytes, quota_messages, sieve and forward, as far as they are known.
With -json, one JSON object per address on its own line. With -deliver,
the file is read as lmtpd deliver reads it (for Postfix's mailbox_command:
no [[listener]] needed, an address in a domain no [[domain]] serves is an
account of the first passwd directory, its mailbox in its home), so the
answer is deliver's for the same recipients.

The exit status follows sysexits(3), as lmtpd deliver's: 0 when every
address resolves, 75 (EX_TEMPFAIL) when a lookup failed for now (a
directory down), else 67 (EX_NOUSER) when an address is unknown or
refused; 78 (EX_CONFIG) for a configuration that does not load, 64 for a
bad command line.`

// lookupResult is what lmtpd lookup prints for one address.
type lookupResult struct {
	Address    string            `json:"address"`
	Status     string            `json:"status"` // deliver, unknown, tempfail
	Reply      string            `json:"reply,omitempty"`
	Directory  string            `json:"directory,omitempty"`
	Recipients []lookupRecipient `json:"recipients,omitempty"`
}

// lookupRecipient is one final recipient of a lookupResult.
type lookupRecipient struct {
	Address       string `json:"address"`
	Target        string `json:"target"`
	Mailbox       string `json:"mailbox,omitempty"`
	Folder        string `json:"folder,omitempty"`
	QuotaBytes    *int64 `json:"quota_bytes,omitempty"`
	QuotaMessages *int64 `json:"quota_messages,omitempty"`
	Sieve         string `json:"sieve,omitempty"`
	Forward       string `json:"forward,omitempty"`
}

// answeringLookup is the daemon's domainLookup that also notes the names
// of the directories that answered (a user or an alias found).
type answeringLookup struct {
	*domainLookup
	mu    sync.Mutex
	names []string
}

func (l *answeringLookup) note(domain string) {
	g := l.reg.acquire()
	if g == nil {
		return
	}
	defer g.release()
	if d := g.domains[strings.ToLower(domain)]; d != nil {
		l.mu.Lock()
		if !containsString(l.names, d.Name()) {
			l.names = append(l.names, d.Name())
		}
		l.mu.Unlock()
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (l *answeringLookup) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	r, err := l.domainLookup.LookupUser(ctx, k)
	if err == nil {
		l.note(k.Domain)
	}
	return r, err
}

func (l *answeringLookup) LookupAlias(ctx context.Context, k directory.Key) ([]string, error) {
	t, err := l.domainLookup.LookupAlias(ctx, k)
	if err == nil && len(t) > 0 {
		l.note(k.Domain)
	}
	return t, err
}

// take returns the names noted since the last call and forgets them.
func (l *answeringLookup) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.names
	l.names = nil
	return n
}

func cmdLookup(args []string, stdout io.Writer, stderr *os.File) int {
	fs := newFlagSet("lookup", lookupUsage, stderr)
	file := fs.String("config", "", "configuration `file` (default: the embedded one)")
	asJSON := fs.Bool("json", false, "print one JSON object per address")
	deliver := fs.Bool("deliver", false, "read the file as lmtpd deliver does, for the same recipients")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "lmtpd lookup: no address given")
		fs.Usage()
		return exUsage
	}
	var cfg *config
	var err error
	if *deliver {
		cfg, err = loadDeliverConfig(*file, fs.Args())
	} else {
		cfg, err = loadConfig(*file)
	}
	if err != nil {
		printConfigError(stderr, err)
		if systemCondition(err) {
			return exTempFail
		}
		if !*deliver {
			if h := deliverOnlyHint(*file, err); h != "" {
				fmt.Fprintln(stderr, h)
			}
		}
		return exConfig
	}
	log, _ := newLogger(cfg.Log.Format, zerolog.WarnLevel, stderr, isTerminal(stderr))
	gen, err := openDirectories(cfg, log, nil)
	if err != nil {
		printConfigError(stderr, err)
		return exTempFail
	}
	dirs := &dirRegistry{}
	dirs.replace(gen)
	defer func() { dirs.close(); <-gen.closed }()
	lk := &answeringLookup{domainLookup: &domainLookup{reg: dirs}}
	router, err := delivery.New(cfg.plan.WithOptions(delivery.PlanOptions{Lookup: lk}), delivery.Options{})
	if err != nil {
		printConfigError(stderr, err)
		return exTempFail
	}
	defer router.Close()

	root := cfg.dcfg.Maildir.Root
	status := exOK
	enc := json.NewEncoder(stdout)
	for _, s := range fs.Args() {
		res := resolveForLookup(context.Background(), router, lk, root, s)
		switch res.Status {
		case "tempfail":
			status = exTempFail
		case "unknown":
			if status == exOK {
				status = exNoUser
			}
		}
		if *asJSON {
			if err := enc.Encode(res); err != nil {
				fmt.Fprintf(stderr, "lmtpd lookup: %v\n", err)
				return exIOErr
			}
			continue
		}
		printLookupText(stdout, res)
	}
	return status
}

// resolveForLookup asks router about s as RCPT would.
func resolveForLookup(ctx context.Context, router *delivery.Router, lk *answeringLookup, root, s string) lookupResult {
	res := lookupResult{Address: s}
	lk.take()
	a, err := protocol.ParseAddress(strings.Trim(s, "<>"))
	var ds []delivery.Destination
	if err == nil {
		ds, err = router.Resolve(ctx, a)
	}
	res.Directory = strings.Join(lk.take(), ",")
	if err != nil {
		res.Status = "unknown"
		var pe *protocol.Error
		if errors.As(err, &pe) {
			res.Reply = fmt.Sprintf("%d %s %s", pe.Code, pe.Enhanced(), pe.Message)
			if pe.Temporary() {
				res.Status = "tempfail"
			}
		} else {
			res.Status, res.Reply = "tempfail", err.Error()
		}
		return res
	}
	res.Status = "deliver"
	for _, d := range ds {
		r := lookupRecipient{Address: d.Address, Folder: d.Folder, Sieve: d.Sieve, Forward: d.Forward}
		if d.Target != nil {
			r.Target = d.Target.Kind()
		}
		if d.Mailbox != "" {
			r.Mailbox = d.Mailbox
			if !filepath.IsAbs(r.Mailbox) && root != "" {
				r.Mailbox = filepath.Join(root, r.Mailbox)
			}
		}
		if d.QuotaBytes.Set {
			v := d.QuotaBytes.Value
			r.QuotaBytes = &v
		}
		if d.QuotaMessages.Set {
			v := d.QuotaMessages.Value
			r.QuotaMessages = &v
		}
		res.Recipients = append(res.Recipients, r)
	}
	return res
}

// printLookupText prints res as lines of key=value: the address line,
// then one indented line per final recipient.
func printLookupText(w io.Writer, res lookupResult) {
	line := fmt.Sprintf("%s status=%s", res.Address, res.Status)
	if res.Directory != "" {
		line += " directory=" + res.Directory
	}
	if res.Reply != "" {
		line += fmt.Sprintf(" reply=%q", res.Reply)
	}
	fmt.Fprintln(w, line)
	for _, r := range res.Recipients {
		l := fmt.Sprintf("  %s target=%s", r.Address, r.Target)
		add := func(k, v string) {
			if v != "" {
				l += " " + k + "=" + v
			}
		}
		add("mailbox", r.Mailbox)
		add("folder", r.Folder)
		if r.QuotaBytes != nil {
			add("quota_bytes", fmt.Sprint(*r.QuotaBytes))
		}
		if r.QuotaMessages != nil {
			add("quota_messages", fmt.Sprint(*r.QuotaMessages))
		}
		add("sieve", r.Sieve)
		add("forward", r.Forward)
		fmt.Fprintln(w, l)
	}
}
