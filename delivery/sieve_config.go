package delivery

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/lmtpd/lmtpd/delivery/maildir"
)

// SieveConfig turns on Sieve filtering (package sieve) for maildir
// recipients: the scripts run at DATA, between resolution and grouping
// (see Step), and delivery carries out their actions. Recipients routed to
// a pipe or a target of the caller's own are not filtered.
type SieveConfig struct {
	// Enabled turns filtering on. The other fields are checked only then.
	Enabled bool
	// Script is the template of the user's active script; "" means
	// DefaultSieveScript. Placeholders: {home} (the directory's home
	// field, else the user's maildir), {mailbox} (the user's maildir, an
	// absolute path), {localpart}, {domain}, {address} (each one path
	// element, escaped as maildir templates are). A directory record's
	// sieve field replaces it (relative to {home}). The script must lie
	// under its root: {home} or {mailbox} when the template starts with
	// one, else the directory before the first placeholder.
	Script string
	// Before and After are the administrator's scripts run before and
	// after the user's (Pigeonhole's sieve_before and sieve_after): each
	// a file, or a directory whose *.sieve files run in name order.
	// Absolute paths.
	Before, After []string
	// GlobalDir holds the scripts of include :global (NAME.sieve);
	// absolute, "" means none.
	GlobalDir string
	// Sendmail is the command redirect and vacation send mail with, an
	// argv run without a shell; "{sender}" and "{recipient}" in its
	// arguments become the envelope sender ("<>" for the null sender) and
	// the recipient. Required; argv[0] must be an absolute path.
	Sendmail []string
	// StateDir keeps what vacation and duplicate remember, one directory
	// per user, durable across restarts. Required, absolute.
	StateDir string
	// MaxRedirects and MaxActions bound one run (0: the sieve defaults,
	// 4 and 32).
	MaxRedirects, MaxActions int
	// Spamtest and Virustest say where spamtest (and spamtestplus) and
	// virustest read the verdict of the filters that ran before
	// delivery; the zero value answers "0", not tested (RFC 5235).
	Spamtest, Virustest SieveScoreTest
}

// DefaultSieveScript is Dovecot's default place of the active script.
const DefaultSieveScript = "{home}/.dovecot.sieve"

// sievePlaceholders are the placeholders of SieveConfig.Script.
var sievePlaceholders = []string{"home", "mailbox", "localpart", "domain", "address"}

// check appends the problems of c to fail.
func (c *SieveConfig) check(fail func(k []string, format string, args ...any)) {
	if !c.Enabled {
		return
	}
	if _, err := parseScriptTemplate(c.script()); err != nil {
		fail(key("Sieve", "Script"), "%v", err)
	}
	for i, p := range c.Before {
		if !filepath.IsAbs(p) {
			fail(key("Sieve", "Before", i), "%q is not an absolute path", p)
		}
	}
	for i, p := range c.After {
		if !filepath.IsAbs(p) {
			fail(key("Sieve", "After", i), "%q is not an absolute path", p)
		}
	}
	if c.GlobalDir != "" && !filepath.IsAbs(c.GlobalDir) {
		fail(key("Sieve", "GlobalDir"), "%q is not an absolute path", c.GlobalDir)
	}
	switch {
	case len(c.Sendmail) == 0:
		fail(key("Sieve", "Sendmail"), "required: redirect and vacation send mail with it")
	case !filepath.IsAbs(c.Sendmail[0]):
		fail(key("Sieve", "Sendmail"), "the command %q is not an absolute path (no shell and no PATH search)", c.Sendmail[0])
	}
	switch {
	case c.StateDir == "":
		fail(key("Sieve", "StateDir"), "required: vacation and duplicate remember senders there")
	case !filepath.IsAbs(c.StateDir):
		fail(key("Sieve", "StateDir"), "%q is not an absolute path", c.StateDir)
	}
	if c.MaxRedirects < 0 {
		fail(key("Sieve", "MaxRedirects"), "%d is negative", c.MaxRedirects)
	}
	if c.MaxActions < 0 {
		fail(key("Sieve", "MaxActions"), "%d is negative", c.MaxActions)
	}
	c.Spamtest.check("Spamtest", 10, fail)
	c.Virustest.check("Virustest", 5, fail)
}

func (c *SieveConfig) script() string {
	if c.Script == "" {
		return DefaultSieveScript
	}
	return c.Script
}

// scriptTemplate is a parsed SieveConfig.Script: literal text and
// placeholders, alternating (parts[0] literal, parts[1] placeholder, ...).
type scriptTemplate struct {
	parts []string
}

func parseScriptTemplate(s string) (*scriptTemplate, error) {
	t := &scriptTemplate{}
	rest := s
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("sieve script template %q: unclosed {", s)
		}
		name := rest[i+1 : i+j]
		ok := false
		for _, p := range sievePlaceholders {
			ok = ok || p == name
		}
		if !ok {
			return nil, fmt.Errorf("sieve script template %q: unknown placeholder {%s} (want one of {%s})", s, name, strings.Join(sievePlaceholders, "} {"))
		}
		t.parts = append(t.parts, rest[:i], name)
		rest = rest[i+j+1:]
	}
	first := ""
	if len(t.parts) > 1 {
		first = t.parts[1]
	}
	if t.parts[0] == "" && first != "home" && first != "mailbox" {
		return nil, fmt.Errorf("sieve script template %q: must start with {home}, {mailbox} or an absolute path", s)
	}
	if t.parts[0] != "" && !filepath.IsAbs(t.parts[0]) {
		return nil, fmt.Errorf("sieve script template %q: must start with {home}, {mailbox} or an absolute path", s)
	}
	if strings.Contains(s, "..") {
		return nil, fmt.Errorf("sieve script template %q: must not contain \"..\"", s)
	}
	return t, nil
}

// expand returns the script's path and the root it must lie under. home
// and mailbox are absolute paths; the other values become one escaped
// path element each.
func (t *scriptTemplate) expand(vals map[string]string) (path, root string) {
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		v := vals[p]
		if p != "home" && p != "mailbox" {
			v = maildir.EscapeElement(v)
		}
		b.WriteString(v)
	}
	path = filepath.Clean(b.String())
	switch {
	case t.parts[0] == "" && len(t.parts) > 1:
		root = filepath.Clean(vals[t.parts[1]])
	default:
		root = t.parts[0]
		if len(t.parts) > 1 { // a placeholder follows: its directory
			root = filepath.Dir(root + "x")
		} else {
			root = filepath.Dir(root)
		}
	}
	return path, root
}
