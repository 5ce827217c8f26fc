package main

import (
	"crypto/tls"
	"errors"
	"reflect"

	"github.com/lmtpd/lmtpd/delivery"
)

// reload re-reads the configuration on SIGHUP and applies what can change
// while running: routing and delivery (Router.Reload), the directories
// (new pools replace the old, which close after their lookups in flight),
// users and credentials (Store.Replace), the sender policy, the
// certificate and the log level. The new configuration is validated as a
// whole first; if any part is wrong, the error is logged and the running
// configuration stays, untouched. Changes to listeners, the server
// hostname, the metrics address or the log format need a restart; they
// are logged and ignored.
//
// Transactions already started keep the routing they started with; a
// session open across the reload sees the new one at its next MAIL.
func (d *daemon) reload() {
	if err := d.notify.notify(reloadingMessage()); err != nil {
		d.log.Warn().Err(err).Msg("cannot notify systemd")
	}
	defer func() {
		if err := d.notify.notify("READY=1\nSTATUS=serving"); err != nil {
			d.log.Warn().Err(err).Msg("cannot notify systemd")
		}
	}()
	d.log.Info().Str("config", d.cfg.file).Msg("SIGHUP: reloading the configuration")
	cfg, err := loadConfig(d.configFile)
	if err != nil {
		var ce configErrors
		if errors.As(err, &ce) {
			for _, e := range ce {
				d.log.Error().Str("file", e.File).Int("line", e.Line).Str("key", e.Key).Err(e.Err).Msg(e.Error())
			}
		}
		d.log.Error().Msg("reload failed: the configuration is invalid; keeping the running one")
		return
	}
	var cert *tls.Certificate
	if cfg.TLS.CertFile != "" {
		if cert, err = loadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			d.log.Error().Err(err).Msg("reload failed: the certificate cannot be loaded; keeping the running configuration")
			return
		}
	}
	// The file system is prepared as at start-up (the same function), so
	// that a new maildir root exists before any delivery uses it; if it
	// cannot be, the reload is refused and the running root stays.
	if err := prepareDelivery(&cfg.dcfg); err != nil {
		d.log.Error().Str("key", "delivery.maildir.root").Err(err).Msg("reload failed: the maildir root cannot be prepared; keeping the running configuration")
		return
	}
	// New directories (new pools, a passwd-file read again) are opened
	// before anything changes; they replace the running ones only once
	// the router has taken the new configuration.
	gen, err := openDirectories(cfg, d.log, d.dirObserver())
	if err != nil {
		d.log.Error().Err(err).Msg("reload failed: a directory cannot be opened; keeping the running configuration")
		return
	}
	// loadConfig compiled the plan; the router opens what it needs and
	// may fail (a maildir root that cannot be opened): do it first, before
	// anything else changes. The plan's Lookup reads d.dirs, which holds
	// the new directories from the next line on.
	if err := d.router.Reload(cfg.plan.WithOptions(delivery.PlanOptions{Lookup: d.domainLookup})); err != nil {
		gen.retire()
		d.log.Error().Err(err).Msg("reload failed: delivery configuration refused; keeping the running configuration")
		return
	}
	// The old directories close once the lookups in flight on them end
	// (dirGeneration); later lookups use the new ones.
	d.dirs.replace(gen)
	d.logWarnings(cfg)
	d.logAccessWarnings(cfg)
	// loadConfig built and checked a store of the new users: swap them in.
	if cfg.store != nil {
		d.store.ReplaceWith(cfg.store)
	} else if err := d.store.Replace(cfg.users); err != nil { // no users: cannot fail
		d.log.Error().Err(err).Msg("reload: users could not be replaced; the old users stay (routing was reloaded)")
	}
	d.senders.policy.Store(&senderPolicy{byUser: cfg.addresses, on: cfg.Auth.RestrictSender})
	if cert != nil {
		d.certs.set(cert, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	}
	d.out.setLevel(cfg.logLevel)

	old := d.cfg
	restart := func(what string) {
		d.log.Warn().Str("changed", what).Msg("this change needs a restart; it is ignored until then")
	}
	if !reflect.DeepEqual(old.Listeners, cfg.Listeners) {
		restart("listener")
	}
	if old.Server.Hostname != cfg.Server.Hostname {
		restart("server.hostname")
	}
	if old.Metrics != cfg.Metrics {
		restart("metrics")
	}
	if old.Log.Format != cfg.Log.Format {
		restart("log.format")
	}
	if old.Log.Output != cfg.Log.Output || old.Log.Facility != cfg.Log.Facility || old.Log.SyslogSocket != cfg.Log.SyslogSocket {
		restart("log.output, log.facility, log.syslog_socket")
	}
	cfg.Log.Output, cfg.Log.Facility, cfg.Log.SyslogSocket = old.Log.Output, old.Log.Facility, old.Log.SyslogSocket
	if (old.TLS.CertFile == "") != (cfg.TLS.CertFile == "") {
		restart("tls")
	}
	if old.Server.MaxAuthVerifications != cfg.Server.MaxAuthVerifications || old.Server.AuthQueueTimeout != cfg.Server.AuthQueueTimeout {
		restart("server.max_auth_verifications, server.auth_queue_timeout")
	}
	cfg.Server.MaxAuthVerifications, cfg.Server.AuthQueueTimeout = old.Server.MaxAuthVerifications, old.Server.AuthQueueTimeout
	// What stays from the old configuration is what the running servers
	// use; keep those parts so that the next reload compares against them.
	cfg.Listeners, cfg.Server.Hostname, cfg.Metrics, cfg.Log.Format, cfg.trusted = old.Listeners, old.Server.Hostname, old.Metrics, old.Log.Format, old.trusted
	d.cfg = cfg
	d.log.Info().Int("auth_users", len(cfg.users)).Int("domains", len(cfg.Domains)).Int("mail_users", mailUsers(cfg)).Int("directories", len(cfg.dirSpecs)).
		Msg("configuration reloaded")
}

// mailUsers counts the mail users the configuration lists by name over
// its domains (users = [...] and [[domain.user]]); a domain with any_user
// accepts others besides.
func mailUsers(cfg *config) int {
	n := 0
	for _, dm := range cfg.Domains {
		n += len(dm.Users) + len(dm.User)
	}
	return n
}
