package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/lmtpd/lmtpd/protocol"
)

// loadDeliverConfig loads file for lmtpd deliver with recipients rcpts.
// It differs from loadConfig in two ways, both for Postfix's
// mailbox_command, which runs deliver as the recipient after local(8) has
// matched the recipient's domain against mydestination:
//
//   - no [[listener]] is needed: deliver listens on nothing;
//   - a recipient in a domain no [[domain]] serves is an account of this
//     machine when the configuration has a [[directory]] with driver
//     "passwd" (the first, if several): its domain is served from that
//     directory, so the account's mail goes to its home ("{home}/Maildir"
//     by default), owned by it. Without such a directory the domain stays
//     unserved (550 5.1.2, exit 68); and a file with no [[domain]] either
//     serves nothing: it does not validate ("at least one [[domain]] is
//     required", exit 78, as check-config -deliver says).
//
// A configuration that then has no [delivery.maildir] root and no
// configured domain that delivers to maildir (one that serves only the
// machine's accounts needs none: their mailboxes are in their homes) gets the invoking account's home as root, which then only
// holds the temporary file of a message too big for memory (on the same
// file system as ~/Maildir); a home that is not a writable directory is
// replaced by the temporary directory.
//
// Where the log goes is chosen by deliverLog (see there).
func loadDeliverConfig(file string, rcpts []string) (*config, error) {
	return loadDeliverConfigLog(file, rcpts, deliverLog{})
}

// loadDeliverConfigLog is loadDeliverConfig with the log's destination
// chosen by dl.
func loadDeliverConfigLog(file string, rcpts []string, dl deliverLog) (*config, error) {
	return loadConfigWith(file, func(c *config) {
		c.adjustLogForDeliver(dl)
		c.adjustForDeliver(rcpts)
	})
}

// deliverLog chooses where lmtpd deliver logs. Its standard output and
// error are the MTA's: Postfix's local(8) and pipe(8) put what the
// command prints into the delivery status (the defer or bounce reason
// that the sender and the administrator read), so deliver prints there
// only the one status line, and the structured log goes elsewhere, as
// dovecot-lda, procmail and maildrop do theirs. The destination is, in
// this order: the -log flag (Flag); [log] output, when the file sets it;
// else syslog (facility [log] facility, default mail, like Postfix's own
// lines) when standard error is not a terminal, and standard error (after
// the status lines) when it is (Terminal).
type deliverLog struct {
	Flag     string // -log: "stderr", "syslog", or "" when not given
	Terminal bool   // standard error is a terminal
}

// adjustLogForDeliver sets c.Log.Output as dl chooses, and notes in
// c.deliverLogAuto whether the choice is deliver's default rather than
// the file's or the flag's.
func (c *config) adjustLogForDeliver(dl deliverLog) {
	switch {
	case dl.Flag != "":
		c.Log.Output = dl.Flag
	case c.setsKey("log.output"):
		return
	default:
		c.deliverLogAuto = true
		c.Log.Output = "syslog"
		if dl.Terminal {
			c.Log.Output = "stderr"
		}
	}
	if c.Log.Output != "syslog" {
		// syslog_socket is for the syslog output deliver does not use
		// this time: no reason to refuse the file.
		c.Log.SyslogSocket = ""
	}
}

// setsKey reports whether the configuration file itself has the key path
// (as "[log]" then "output = ...", or a dotted key).
func (c *config) setsKey(path string) bool {
	l := c.locs[c.file]
	if l == nil {
		return false
	}
	_, ok := l.lines[path]
	return ok
}

// adjustForDeliver is loadDeliverConfig's change to the decoded file.
func (c *config) adjustForDeliver(rcpts []string) {
	c.deliverOnly = true
	system := ""
	for _, d := range c.Directories {
		if d.Driver == driverPasswd && d.Name != "" {
			system = d.Name
			break
		}
	}
	if system == "" {
		return
	}
	// Only the machine's accounts may do without a root: a configured
	// domain that delivers to maildir still needs the file's own.
	configuredMaildir := domainsUseMaildir(c.Domains)
	served := make(map[string]bool, len(c.Domains))
	for _, d := range c.Domains {
		served[strings.ToLower(d.Name)] = true
	}
	added := false
	for _, r := range rcpts {
		a, err := protocol.ParseAddress(strings.Trim(r, "<>"))
		if err != nil || a.Domain == "" || strings.HasPrefix(a.Domain, "[") {
			continue // refused as it is by the routing
		}
		dom := strings.ToLower(a.Domain)
		if served[dom] {
			continue
		}
		served[dom] = true
		c.Domains = append(c.Domains, domainConfig{Name: dom, Directory: system})
		added = true
	}
	if added && c.Delivery.Maildir.Root == "" && !configuredMaildir {
		c.Delivery.Maildir.Root = deliverSpoolHome()
	}
}

// domainsUseMaildir reports whether any of the domains, or a user of
// theirs, delivers to a maildir under the root: a domain's users do
// unless the domain names a pipe or an LMTP route, and a user with a
// maildir route of their own does.
func domainsUseMaildir(domains []domainConfig) bool {
	for _, dm := range domains {
		if dm.Route.Pipe == nil && dm.Route.LMTP == nil || dm.Route.Maildir != "" {
			return true
		}
		for _, u := range dm.User {
			if u.Route.Maildir != "" {
				return true
			}
		}
	}
	return false
}

// deliverSpoolHome returns the invoking account's home ($HOME, as
// Postfix's local(8) sets it, else the account database's), or the
// temporary directory when that is not a directory this process can
// write into.
func deliverSpoolHome() string {
	home := os.Getenv("HOME")
	if !filepath.IsAbs(home) {
		if u, err := user.Current(); err == nil {
			home = u.HomeDir
		}
	}
	if filepath.IsAbs(home) && filepath.Clean(home) != "/" {
		if fi, err := os.Stat(home); err == nil && fi.IsDir() && checkWritableDir(home) == nil {
			return filepath.Clean(home)
		}
	}
	return os.TempDir()
}

// deliverOnlyHint returns, for a file that loadConfig refused, a line
// saying that it is fit for lmtpd deliver when that is why (no
// [[listener]], and it loads as deliver loads it), else "". check-config
// and lookup print it after the errors.
func deliverOnlyHint(file string, err error) string {
	if file == "" || !strings.Contains(err.Error(), "at least one [[listener]] is required") {
		return ""
	}
	if _, derr := loadDeliverConfig(file, deliverCheckRecipients); derr != nil {
		return ""
	}
	return "lmtpd: " + file + " has no [[listener]], which serve needs; lmtpd deliver needs none and can use the file: give -deliver to check it as deliver loads it"
}

// deliverCheckRecipients stand for the recipients when a deliver
// configuration is checked without a delivery (check-config -deliver):
// local(8) gives deliver an address in a domain of mydestination, which
// always has localhost, so a file deliver can use for the machine's
// accounts serves it (from its passwd directory).
var deliverCheckRecipients = []string{"postmaster@localhost"}
