package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/delivery/pipe"
)

// validateDelivery builds c.dcfg from [delivery] and the [[domain]]
// tables and checks it: first what only this file can say (values the
// file gives a meaning of its own, directories on this system), then
// delivery's own checks, made once by compiling the plan (c.plan) that
// serve, reload and check-config use; its errors carry their keys.
func (c *config) validateDelivery(ec *errorCollector) {
	c.dcfg = c.deliveryConfig()
	before := len(ec.errs)
	c.checkDeliveryFile(ec)
	c.checkSieveFile(ec)
	plan, err := delivery.Compile(c.dcfg, delivery.PlanOptions{})
	if err != nil {
		c.addDeliveryErrors(ec, err)
		return
	}
	if len(ec.errs) == before {
		c.plan = plan
	}
}

// deliveryConfig maps [delivery] and the [[domain]] tables onto a
// delivery.Config. It checks nothing.
func (c *config) deliveryConfig() delivery.Config {
	dc := &c.Delivery
	d := delivery.Config{
		DetailDelimiter: dc.DetailDelimiter,
		CaseSensitive:   dc.CaseSensitive,
		DeliveredTo:     delivery.DeliveredToMode(dc.DeliveredTo),
		LoopCheck:       dc.LoopCheck,
		Postmaster:      dc.Postmaster,
		Maildir: delivery.MaildirConfig{
			Root:            dc.Maildir.Root,
			Template:        dc.Maildir.Template,
			DetailFolders:   dc.Maildir.DetailFolders,
			CreateFolders:   dc.Maildir.CreateFolders,
			MaxMessageBytes: int64(dc.Maildir.MaxMessageSize),
			Hostname:        dc.Maildir.Hostname,
			SpecialFolders:  append([]string{}, dc.Maildir.SpecialFolders...), // non-nil: [] means none
			Owner:           dc.Maildir.Owner,
			Group:           dc.Maildir.Group,
			FileMode:        fs.FileMode(dc.Maildir.FileMode),
			DirMode:         fs.FileMode(dc.Maildir.DirMode),
			Flush:           dc.Maildir.Flush,
		},
		Spool:   delivery.SpoolConfig{Threshold: int64(dc.Spool.Threshold), Dir: dc.Spool.Dir},
		Dedup:   delivery.DedupConfig{Enabled: dc.Dedup.Enabled, Path: dc.Dedup.Path, Window: time.Duration(dc.Dedup.Window)},
		Sieve:   c.Sieve.delivery(),
		Forward: dc.Forward.lmtp(),
	}
	if d.Spool.Threshold == 0 {
		d.Spool.Threshold = -1 // 0 in the file: always a file
	}
	d.Quota = c.quota // config_quota.go
	for _, dm := range c.Domains {
		out := delivery.Domain{Name: dm.Name, AnyUser: dm.AnyUser, UTF8LocalParts: dm.UTF8LocalParts,
			Aliases: dm.Aliases, CatchAll: dm.CatchAll, Route: dm.Route.route()}
		// users come first, [[domain.user]] after them: deliveryKey
		// relies on this order.
		for _, u := range dm.Users {
			out.Users = append(out.Users, delivery.User{Name: u})
		}
		for _, u := range dm.User {
			out.Users = append(out.Users, delivery.User{Name: u.Name, Route: u.Route.route(), CreateFolders: u.CreateFolders})
		}
		d.Domains = append(d.Domains, out)
	}
	return d
}

// route maps a route table onto a delivery.Route.
func (r routeConfig) route() delivery.Route {
	out := delivery.Route{Maildir: r.Maildir}
	if p := r.Pipe; p != nil {
		out.Pipe = &delivery.Pipe{
			Command: pipe.Command{
				Argv: p.Argv, Timeout: time.Duration(p.Timeout), User: p.User, Group: p.Group,
				MaxOutput: int(p.MaxOutput), Dir: p.Dir, AllowLeadingDash: p.AllowLeadingDash,
			},
			PerMessage: p.PerMessage, MaxProcesses: p.MaxProcesses, MaxWait: time.Duration(p.MaxWait),
		}
	}
	if r.LMTP != nil {
		l := r.LMTP.lmtp()
		out.LMTP = &l
	}
	return out
}

// checkDeliveryFile makes the checks that belong to the configuration
// file, not to the delivery package: values to which the file gives a
// meaning of its own (a pipe's max_processes and max_wait, where 0 would
// mean "the default" to package delivery but is refused in the file), and
// the state of this system (directories that must be writable: a
// systemError, temporary for deliver).
func (c *config) checkDeliveryFile(ec *errorCollector) {
	c.checkRemoteFile(ec)
	eachRoute(c.Domains, func(key string, r routeConfig) {
		if p := r.Pipe; p != nil {
			// Negative values are delivery's to refuse; 0, which it
			// would take for its default, is refused here.
			if p.MaxProcesses == 0 {
				ec.add(joinKey(key, "pipe.max_processes"), fmt.Errorf("%d: want at least 1", p.MaxProcesses))
			}
			if p.MaxWait == 0 {
				ec.add(joinKey(key, "pipe.max_wait"), fmt.Errorf("%v: want a positive duration", time.Duration(p.MaxWait)))
			}
		}
	})
	if root := c.dcfg.Maildir.Root; root != "" && domainsUseMaildir(c.Domains) {
		if err := checkWritableDir(root); err != nil {
			ec.add("delivery.maildir.root", &systemError{err})
		}
	}
	if dir := c.dcfg.Spool.Dir; dir != "" {
		if err := checkWritableDir(dir); err != nil {
			ec.add("delivery.spool.dir", &systemError{err})
		}
	}
}

// eachRoute calls f with every route table of domains and its key.
func eachRoute(domains []domainConfig, f func(key string, r routeConfig)) {
	for i, dm := range domains {
		key := indexKey("domain", i)
		f(joinKey(key, "route"), dm.Route)
		for j, u := range dm.User {
			f(joinKey(indexKey(joinKey(key, "user"), j), "route"), u.Route)
		}
	}
}

// deliveryKeyed is what an error of package delivery's validation
// implements when it names the setting it is about: the path of keys
// into delivery.Config, from the top ("Domains", "0", "Aliases", "info").
// Field names may be given as Go names or snake_case; indexes in decimal.
// *delivery.ConfigError implements it.
type deliveryKeyed interface {
	error
	ConfigKey() []string
}

// addDeliveryErrors records the errors of delivery's validation, each at
// the key it is about.
func (c *config) addDeliveryErrors(ec *errorCollector, err error) {
	for _, e := range splitJoined(err) {
		var ke deliveryKeyed
		if errors.As(e, &ke) {
			cause := errors.Unwrap(ke)
			if cause == nil {
				cause = ke
			}
			if errors.Is(cause, delivery.ErrNoDomains) {
				cause = errors.New("at least one [[domain]] is required") // in the file's terms
			}
			ec.add(c.deliveryKey(ke.ConfigKey()), cause)
			continue
		}
		ec.add("delivery", e)
	}
}

// deliveryKey maps a path of keys into delivery.Config (see
// deliveryKeyed) to the key of the configuration file.
func (c *config) deliveryKey(path []string) string {
	if len(path) > 0 && path[0] == "sieve" {
		return sieveKey(path)
	}
	key := "delivery"
	var dm *domainConfig
	for i := 0; i < len(path); i++ {
		el := snakeCase(path[i])
		next := func() (int, bool) {
			if i+1 >= len(path) {
				return 0, false
			}
			n, err := strconv.Atoi(path[i+1])
			if err != nil || n < 0 {
				return 0, false
			}
			i++
			return n, true
		}
		switch {
		case el == "command":
			// pipe.Command is embedded in delivery.Pipe: its fields are
			// the pipe table's.
		case key == "delivery" && el == "quota":
			key = "quota" // [quota] is a table of its own
		case key == "delivery" && el == "domains":
			key = "domain"
			if n, ok := next(); ok {
				key = indexKey(key, n)
				if n < len(c.Domains) {
					dm = &c.Domains[n]
				}
			}
		case dm != nil && el == "users":
			// Users lists users = [...] first, then [[domain.user]]
			// (deliveryConfig).
			n, ok := next()
			switch {
			case !ok:
				key = joinKey(key, "users")
			case n < len(dm.Users):
				// A bare name in the users list: nothing below it.
				return indexKey(joinKey(key, "users"), n)
			default:
				key = indexKey(joinKey(key, "user"), n-len(dm.Users))
			}
			dm = nil
		case dm != nil && el == "aliases":
			key = joinKey(key, "aliases")
			if i+1 < len(path) {
				i++
				key = joinKey(key, path[i]) // an alias, as the file spells it
			}
		case el == "max_message_bytes":
			key = joinKey(key, "max_message_size")
		default:
			key = joinKey(key, el)
			if n, ok := next(); ok {
				key = indexKey(key, n)
			}
		}
	}
	return key
}

// snakeCase turns a Go field name into its TOML key: MaxWait becomes
// max_wait, UTF8LocalParts utf8_local_parts. A name already in snake
// case is returned as it is; so is anything else that is not a Go name
// (a map key such as an alias).
func snakeCase(s string) string {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		upper := ch >= 'A' && ch <= 'Z'
		if upper && i > 0 {
			prevLower := s[i-1] >= 'a' && s[i-1] <= 'z' || s[i-1] >= '0' && s[i-1] <= '9'
			nextLower := i+1 < len(s) && s[i+1] >= 'a' && s[i+1] <= 'z'
			if prevLower || (nextLower && s[i-1] >= 'A' && s[i-1] <= 'Z') {
				b.WriteByte('_')
			}
		}
		if upper {
			ch += 'a' - 'A'
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// splitJoined returns the errors joined in err (the delivery package
// wraps an errors.Join of one error per problem), or err alone.
func splitJoined(err error) []error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			return j.Unwrap()
		}
	}
	return []error{err}
}
