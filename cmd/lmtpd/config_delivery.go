package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/delivery/pipe"
)

// validateDelivery checks the delivery section and the domains, and
// builds c.dcfg.
func (c *config) validateDelivery(ec *errorCollector) {
	dc := &c.Delivery
	oneOf(ec, "delivery.delivered_to", dc.DeliveredTo, deliveredTos)
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
		},
		Spool: delivery.SpoolConfig{Threshold: int64(dc.Spool.Threshold), Dir: dc.Spool.Dir},
		Dedup: delivery.DedupConfig{Enabled: dc.Dedup.Enabled, Path: dc.Dedup.Path, Window: time.Duration(dc.Dedup.Window)},
	}
	if d.Spool.Threshold == 0 {
		d.Spool.Threshold = -1 // 0 in the file: always a file
	}
	if dc.Dedup.Enabled && dc.Dedup.Path == "" {
		ec.add("delivery.dedup.path", errors.New("required when dedup is enabled"))
	}
	if len(c.Domains) == 0 {
		ec.add("domain", errors.New("at least one [[domain]] is required"))
	}
	usesMaildir := false
	route := func(key string, r routeConfig) delivery.Route {
		out := delivery.Route{Maildir: r.Maildir}
		if r.Maildir != "" {
			usesMaildir = true
		}
		if r.Pipe == nil {
			return out
		}
		if r.Maildir != "" {
			ec.add(key, errors.New("a route has either maildir or pipe, not both"))
		}
		p := r.Pipe
		cmd := pipe.Command{
			Argv: p.Argv, Timeout: time.Duration(p.Timeout), User: p.User, Group: p.Group,
			MaxOutput: int(p.MaxOutput), Dir: p.Dir, AllowLeadingDash: p.AllowLeadingDash,
		}
		if err := cmd.Validate(); err != nil {
			ec.add(joinKey(key, "pipe"), err)
		}
		if p.MaxProcesses < 1 {
			ec.add(joinKey(key, "pipe.max_processes"), fmt.Errorf("%d: want at least 1", p.MaxProcesses))
		}
		if p.MaxWait <= 0 {
			ec.add(joinKey(key, "pipe.max_wait"), fmt.Errorf("%v: want a positive duration", time.Duration(p.MaxWait)))
		}
		out.Pipe = &delivery.Pipe{Command: cmd, PerMessage: p.PerMessage,
			MaxProcesses: p.MaxProcesses, MaxWait: time.Duration(p.MaxWait)}
		return out
	}
	for i := range c.Domains {
		dm := &c.Domains[i]
		key := indexKey("domain", i)
		if dm.Name == "" {
			ec.add(joinKey(key, "name"), errors.New("required"))
		}
		out := delivery.Domain{Name: dm.Name, AnyUser: dm.AnyUser, UTF8LocalParts: dm.UTF8LocalParts, Aliases: dm.Aliases, CatchAll: dm.CatchAll}
		out.Route = route(joinKey(key, "route"), dm.Route)
		if out.Route.Pipe == nil {
			usesMaildir = true // the domain's users deliver to maildir unless they say otherwise
		}
		for _, u := range dm.Users {
			out.Users = append(out.Users, delivery.User{Name: u})
		}
		for j, u := range dm.User {
			uk := indexKey(joinKey(key, "user"), j)
			if u.Name == "" {
				ec.add(joinKey(uk, "name"), errors.New("required"))
			}
			r := route(joinKey(uk, "route"), u.Route)
			out.Users = append(out.Users, delivery.User{Name: u.Name, Route: r, CreateFolders: u.CreateFolders})
		}
		d.Domains = append(d.Domains, out)
	}
	if usesMaildir {
		if dc.Maildir.Root == "" {
			ec.add("delivery.maildir.root", errors.New("required: a domain or user delivers to maildir"))
		} else if err := checkWritableDir(dc.Maildir.Root); err != nil {
			ec.add("delivery.maildir.root", &systemError{err})
		}
	}
	if dc.Spool.Dir != "" {
		if err := checkWritableDir(dc.Spool.Dir); err != nil {
			ec.add("delivery.spool.dir", &systemError{err})
		}
	}
	c.dcfg = d
	if len(ec.errs) > 0 {
		return
	}
	// What is left is the delivery package's own cross-checks (aliases
	// that name no user, the postmaster, templates). Its errors name the
	// domain, alias or setting, which gives the key and so the line.
	if err := d.Validate(); err != nil {
		for _, e := range splitJoined(err) {
			ec.add(c.deliveryErrorKey(e.Error()), e)
		}
	}
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

// deliveryErrorKey finds the configuration key a delivery.Config.Validate
// message is about, from the way that package words them ("domain NAME:
// alias A: ...", "postmaster ...", "maildir template: ...").
func (c *config) deliveryErrorKey(msg string) string {
	for _, p := range []struct{ prefix, key string }{
		{"postmaster", "delivery.postmaster"},
		{"detail delimiter", "delivery.detail_delimiter"},
		{"maildir template", "delivery.maildir.template"},
		{"maildir root", "delivery.maildir.root"},
		{"maildir max message", "delivery.maildir.max_message_size"},
		{"spool dir", "delivery.spool.dir"},
		{"dedup journal", "delivery.dedup.path"},
		{"dedup window", "delivery.dedup.window"},
	} {
		if strings.HasPrefix(msg, p.prefix) {
			return p.key
		}
	}
	rest, ok := strings.CutPrefix(msg, "domain ")
	if !ok {
		return "domain"
	}
	name, detail, _ := strings.Cut(rest, ":")
	name, twice := strings.CutSuffix(name, " listed twice")
	for i := range c.Domains {
		if twice {
			i = len(c.Domains) - 1 - i // the second listing is the mistake
		}
		if !strings.EqualFold(c.Domains[i].Name, name) {
			continue
		}
		key := indexKey("domain", i)
		detail = strings.TrimSpace(detail)
		switch {
		case strings.HasPrefix(detail, "catch-all"):
			return joinKey(key, "catch_all")
		case strings.HasPrefix(detail, "alias "):
			a, _, _ := strings.Cut(strings.TrimPrefix(detail, "alias "), " ")
			return joinKey(joinKey(key, "aliases"), strings.TrimSuffix(a, ":"))
		}
		return key
	}
	return "domain"
}
