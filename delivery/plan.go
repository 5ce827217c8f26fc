package delivery

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
)

// Plan is a compiled configuration: the routing table, the targets it
// delivers to and the warnings, built once per load by Compile and never
// changed afterwards. New and Router.Reload take it; check-config reads
// its Warnings. A Plan may be used by several Routers; transactions keep
// the plan they started with across a reload.
type Plan struct {
	tab      *table
	opts     PlanOptions
	warnings []string
}

// PlanOptions are the parts of a Plan that are not in its Config.
type PlanOptions struct {
	// Lookup, if set, is asked about local parts the configuration does
	// not list (see Lookup).
	Lookup Lookup
	// Steps are per-recipient steps run after the built-in ones (Sieve,
	// when SieveConfig.Enabled), in order; see Step.
	Steps []Step
}

// Compile validates cfg and compiles it into a Plan. It opens nothing: the
// maildir store and the dedup journal are opened by New and Reload. On
// error the result is nil and the error is an errors.Join of
// *ConfigError values, one per problem, in the order of the
// configuration.
func Compile(cfg Config, opts PlanOptions) (*Plan, error) {
	tab, err := compile(&cfg)
	if err != nil {
		return nil, err
	}
	return &Plan{tab: tab, opts: opts, warnings: tab.warnings()}, nil
}

// WithOptions returns a Plan with p's compiled configuration and opts:
// the table is shared, nothing is compiled again. A daemon compiles the
// configuration when it loads the file and gives the plan its Lookup
// (directories opened later) this way.
func (p *Plan) WithOptions(opts PlanOptions) *Plan {
	q := *p
	q.opts = opts
	return &q
}

// Config returns the configuration p was compiled from. The caller must
// not modify its slices and maps.
func (p *Plan) Config() Config { return p.tab.cfg }

// MaildirRoot returns the maildir root if a route delivers to maildir,
// else "": the directory that must exist and be writable.
func (p *Plan) MaildirRoot() string {
	if !p.tab.usesMaildir {
		return ""
	}
	return p.tab.cfg.Maildir.Root
}

// Warnings returns what is wrong with p's configuration without making it
// unusable, one sentence each: a postmaster that routes nowhere, maildir
// files a group may read in directories it cannot enter.
func (p *Plan) Warnings() []string { return p.warnings }

// Validate reports whether c can be used, with one *ConfigError per
// problem (joined with errors.Join). It is Compile without the plan.
func (c *Config) Validate() error {
	_, err := compile(c)
	return err
}

// ConfigError is one problem of a Config, found by Compile.
type ConfigError struct {
	// Key is the path to the setting at fault from the Config, each Go
	// field name in snake_case, slice indexes in decimal (from 0) and map
	// keys as they are: {"maildir", "root"}, {"domains", "2", "users",
	// "0", "route", "pipe"}, {"domains", "0", "aliases", "sales"}. A
	// problem of a whole list names the list ({"domains"}).
	Key []string
	// Err is the problem, worded to follow the key.
	Err error
}

// Error returns the key, dot-separated, and the problem.
func (e *ConfigError) Error() string { return strings.Join(e.Key, ".") + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *ConfigError) Unwrap() error { return e.Err }

// ConfigKey returns Key: the contract by which a configuration file maps
// the error back to the line it came from.
func (e *ConfigError) ConfigKey() []string { return e.Key }

// errRequired is the problem of a required setting left empty.
var errRequired = errors.New("required")

// key builds a ConfigError key from Go field names (turned into
// snake_case), indexes and map keys (given as they are, after a "=" mark:
// "=sales" is the map key "sales").
func key(parts ...any) []string {
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			out = append(out, strconv.Itoa(p))
		case string:
			if k, ok := strings.CutPrefix(p, "="); ok {
				out = append(out, k)
			} else {
				out = append(out, snake(p))
			}
		case []string:
			out = append(out, p...)
		}
	}
	return out
}

// snake turns a Go field name into snake_case: MaxMessageBytes is
// max_message_bytes.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
