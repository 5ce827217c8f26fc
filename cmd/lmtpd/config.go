// Loading the configuration file, in the order it happens; each step has
// its file and each check is made in one of them:
//
//   - config.go (this file): read the file or the embedded default, run
//     the steps below, make relative paths absolute.
//   - config_types.go: the types the TOML decodes into and their
//     defaults; decode.go decodes strictly (unknown keys, wrong types),
//     locate.go finds the line of a key, values.go reads durations, sizes
//     and modes.
//   - config_validate.go: the checks of [log], [server] and [metrics],
//     and checks shared by the others (enumerations, addresses, writable
//     directories).
//   - config_listeners.go: each [[listener]] checked, its defaults by
//     protocol applied, its trusted networks parsed.
//   - config_delivery.go: [delivery] and [[domain]] mapped onto
//     delivery.Config and checked; package delivery's own validation
//     errors mapped back to keys.
//   - config_users.go: [[auth.user]] and auth.users_file read and checked
//     with package sasl's checks, then the listeners that need users.
//   - config_directory.go: each [[directory]] checked for its driver and
//     built once (then closed) so the driver's own checks run at load;
//     the [[domain]] and [auth] keys that name a directory. The daemon
//     opens them (directories.go) and AUTH uses them (dirauth.go).
//   - config_errors.go: every problem becomes a configError,
//     file:line: key: message.

package main

import (
	_ "embed"
	"os"
	"path/filepath"
	"strings"
)

// defaultConfigText is the configuration used when no -config is given:
// LMTP on ./run/lmtp.sock, SMTP on 127.0.0.1:2525, any user at localhost
// and example.test delivered to ./mail/{domain}/{user}.
//
//go:embed default.toml
var defaultConfigText string

// embeddedName names the embedded default in messages.
const embeddedName = "(embedded default)"

// loadConfig reads, decodes and validates the configuration in file, or
// the embedded default when file is "". Relative paths in the embedded
// default are resolved against the working directory. The error, if any,
// is a configErrors listing every problem with file, line and key.
func loadConfig(file string) (*config, error) { return loadConfigWith(file, nil) }

// loadConfigWith is loadConfig with adjust, if not nil, applied to the
// decoded configuration before it is validated (lmtpd deliver's
// loadDeliverConfig).
func loadConfigWith(file string, adjust func(*config)) (*config, error) {
	text, base, name := defaultConfigText, "", embeddedName
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, configErrors{{File: file, Err: err}}
		}
		text, name = string(b), file
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, configErrors{{File: file, Err: err}}
		}
		base = filepath.Dir(abs)
	} else {
		wd, err := os.Getwd()
		if err != nil {
			return nil, configErrors{{File: name, Err: err}}
		}
		base = wd
	}
	return parseConfigWith(name, text, base, file == "", adjust)
}

// parseConfig decodes and validates text; base resolves relative paths.
func parseConfig(name, text, base string, embedded bool) (*config, error) {
	return parseConfigWith(name, text, base, embedded, nil)
}

// parseConfigWith is parseConfig with adjust applied before validation.
func parseConfigWith(name, text, base string, embedded bool, adjust func(*config)) (*config, error) {
	c := defaultConfig()
	if err := decodeStrict(name, text, c); err != nil {
		return nil, err
	}
	c.file, c.embedded = name, embedded
	c.locs = map[string]*locator{name: newLocator(text)}
	ec := &errorCollector{file: name, loc: c.locs[name]}
	c.resolvePaths(base)
	if adjust != nil {
		adjust(c)
	}
	c.validate(ec)
	if err := ec.err(); err != nil {
		return nil, err
	}
	// Users come from a second file that has its own name and lines.
	if err := c.loadUsers(); err != nil {
		return nil, err
	}
	ec = &errorCollector{file: name, loc: c.locs[name]}
	c.validateAuth(ec)
	return c, ec.err()
}

// resolvePaths makes the file paths of the configuration absolute.
func (c *config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for i := range c.Listeners {
		if p, ok := c.Listeners[i].isUnix(); ok && p != "" && !filepath.IsAbs(p) {
			c.Listeners[i].Address = "unix:" + filepath.Join(base, p)
		}
	}
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.Auth.UsersFile)
	for i := range c.Quota.Warnings {
		abs(&c.Quota.Warnings[i].Message)
	}
	abs(&c.Delivery.Maildir.Root)
	abs(&c.Delivery.Spool.Dir)
	abs(&c.Delivery.Dedup.Path)
	for i := range c.Directories {
		dc := &c.Directories[i]
		abs(&dc.Path)
		abs(&dc.BindPasswordFile)
		abs(&dc.TLSCAFile)
		if dc.SQLDriver == "sqlite" && dc.DSN != ":memory:" && !strings.HasPrefix(dc.DSN, "file:") {
			abs(&dc.DSN) // a plain file name, as the paths above
		}
	}
	c.Sieve.resolvePaths(abs)
}
