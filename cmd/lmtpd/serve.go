package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/policy"
	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/sasl"
	"github.com/lmtpd/lmtpd/socketmap"
)

const serveUsage = "lmtpd [serve] [-config FILE]\n\nRuns the daemon. SIGTERM or SIGINT stop it gracefully (a second one at once),\nSIGHUP reloads routing, users, credentials and certificates."

func cmdServe(args []string, stderr *os.File) int {
	fs := newFlagSet("serve", serveUsage, stderr)
	file := fs.String("config", "", "configuration `file` (default: the embedded one)")
	if st := parseFlags(fs, args); st >= 0 {
		return st
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exUsage
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		printConfigError(stderr, err)
		return exConfig
	}
	log, out, err := openLog(cfg.Log, cfg.logLevel, stderr)
	if err != nil {
		printConfigError(stderr, cfg.syslogError(err))
		return exConfig
	}
	defer out.close()
	d := &daemon{configFile: *file, cfg: cfg, log: log, out: out, notify: newNotifier()}
	return d.run()
}

// daemon is the running server: the listeners and their protocol
// servers, the delivery router they share, the credential store and the
// certificate, and what SIGHUP swaps.
type daemon struct {
	configFile string
	cfg        *config // the running configuration; only the main goroutine uses it
	log        zerolog.Logger
	out        *logOutput
	notify     *notifier

	router       *delivery.Router
	store        *sasl.Store
	dirs         *dirRegistry  // the [[directory]] tables, open (directories.go)
	dirAuth      *dirAuth      // AUTH against [auth] directory (dirauth.go)
	domainLookup *domainLookup // [[domain]] directory users, the plan's Lookup (directories.go)
	senders      *restrictSender
	certs        *certStore
	metrics      *metrics
	servers      []*listenerServer
	// authLimiter bounds AUTH verifications over all listeners; made with
	// the first listener, from [server] (a change needs a restart).
	authLimiter *protocol.AuthLimiter

	serveErr chan error
	stopBg   context.CancelFunc
	bg       sync.WaitGroup
	// abandoned is set when shutdown gave up on connections that did not
	// end: nothing may wait for them any more.
	abandoned bool
}

// listenerServer is one listener and its server: a *protocol.Server for
// LMTP and SMTP, a *policy.Server for Postfix's policy delegation.
type listenerServer struct {
	cfg       listenerConfig
	srv       server // *protocol.Server, *policy.Server or *socketmap.Server
	ln        net.Listener
	addr      string // what it listens on, for logs
	activated bool
}

// server is what the daemon needs of a listener's server: protocol.Server,
// policy.Server, socketmap.Server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// configFail reports a start-up problem at a key of the configuration file
// and returns EX_CONFIG.
func (d *daemon) configFail(key string, err error) int {
	e := &configError{File: d.cfg.file, Line: d.cfg.locs[d.cfg.file].line(key), Key: key, Err: err}
	d.log.Error().Str("file", e.File).Int("line", e.Line).Str("key", key).Err(err).Msg("cannot start: " + e.Error())
	return exConfig
}

// run starts everything, waits for signals and returns the exit status.
func (d *daemon) run() int {
	cfg := d.cfg
	activated, err := activatedListeners()
	if err != nil {
		d.log.Error().Err(err).Msg("cannot start")
		return exOSErr
	}
	if err := prepareDelivery(&cfg.dcfg); err != nil {
		return d.configFail("delivery.maildir.root", err)
	}
	var dopts delivery.Options
	if cfg.Metrics.Address != "" {
		d.metrics = newMetrics()
		dopts.OnQuota = d.metrics.quotaEvent
		dopts.Observe = d.metrics.observe
		dopts.ObserveSieve = d.metrics.sieveEvent
	}
	d.dirs = &dirRegistry{}
	gen, err := openDirectories(cfg, d.log, d.dirObserver())
	if err != nil {
		key := "directory"
		if oe, ok := err.(*dirOpenError); ok {
			key = oe.key
		}
		return d.configFail(key, err)
	}
	d.dirs.replace(gen)
	defer d.dirs.close()
	if d.metrics != nil {
		d.metrics.watchDirectories(d.dirs)
	}
	// [[domain]] directory: users of the directory are users of the
	// domain, delivered by the domain's route.
	d.domainLookup = &domainLookup{reg: d.dirs}
	d.dirAuth = newDirAuth(d.dirs)
	if d.router, err = delivery.New(cfg.plan.WithOptions(delivery.PlanOptions{Lookup: d.domainLookup}), dopts); err != nil {
		return d.configFail("domain", err)
	}
	d.logWarnings(cfg)
	defer d.router.Close()
	d.store = cfg.store // loadConfig built and checked it
	if d.store == nil { // no users
		if d.store, err = sasl.NewStore(cfg.users); err != nil {
			return d.configFail("auth", err)
		}
	}
	d.senders = &restrictSender{}
	d.senders.policy.Store(&senderPolicy{byUser: cfg.addresses, on: cfg.Auth.RestrictSender})
	d.certs = &certStore{}
	if cfg.TLS.CertFile != "" {
		if err := d.certs.load(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return d.configFail("tls.cert_file", err)
		}
	}
	var backend protocol.Backend = d.router
	if d.metrics != nil {
		backend = d.metrics.wrapBackend(backend)
	}
	d.senders.next = backend

	defer d.closeListeners()
	for i := range cfg.Listeners {
		if st := d.openListener(i, activated); st != exOK {
			return st
		}
	}
	for name, l := range activated {
		l.Close()
		return d.configFail("listener", fmt.Errorf("systemd passed a socket named %q but no listener has that name", name))
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stopBg = cancel
	defer cancel()
	if d.metrics != nil {
		ln, err := net.Listen("tcp", cfg.Metrics.Address)
		if err != nil {
			return d.configFail("metrics.address", err)
		}
		d.bg.Add(1)
		go func() {
			defer d.bg.Done()
			d.metrics.serve(ctx, ln, &d.log)
		}()
	}
	if cfg.TLS.CertFile != "" {
		d.bg.Add(1)
		go func() {
			defer d.bg.Done()
			d.certs.watch(ctx, certPollInterval, &d.log)
		}()
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	d.serveErr = make(chan error, len(d.servers))
	for _, s := range d.servers {
		go func() {
			err := s.srv.Serve(s.ln)
			if !errors.Is(err, protocol.ErrServerClosed) && !errors.Is(err, policy.ErrServerClosed) && !errors.Is(err, socketmap.ErrServerClosed) {
				d.serveErr <- fmt.Errorf("listener %s: %w", s.cfg.Name, err)
			}
		}()
	}
	if d.metrics != nil {
		d.metrics.setUp(true)
	}
	d.logStart()
	d.logAccessWarnings(cfg)
	if err := d.notify.notify("READY=1\nSTATUS=serving"); err != nil {
		d.log.Warn().Err(err).Msg("cannot notify systemd")
	}

	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload()
				continue
			}
			d.log.Info().Str("signal", s.String()).Dur("grace_ms", time.Duration(d.cfg.Server.ShutdownGrace)).Msg("shutting down: no new connections, transactions in flight may finish")
			return d.shutdown(sigs, exOK)
		case err := <-d.serveErr:
			d.log.Error().Err(err).Msg("a listener failed; shutting down")
			return d.shutdown(sigs, exFailure)
		}
	}
}

// openListener opens listener i (a systemd socket if one has its name)
// and creates its server.
func (d *daemon) openListener(i int, activated map[string]net.Listener) int {
	lc := d.cfg.Listeners[i]
	key := indexKey("listener", i)
	ls := &listenerServer{cfg: lc, addr: lc.Address}
	var err error
	if l, ok := activated[lc.Name]; ok {
		delete(activated, lc.Name)
		ls.ln, ls.activated = l, true
		ls.addr = l.Addr().Network() + ":" + l.Addr().String()
		if l.Addr().Network() == "tcp" {
			ls.addr = l.Addr().String()
		}
	} else if ls.ln, err = listenConfigured(&lc); err != nil {
		return d.configFail(joinKey(key, "address"), fmt.Errorf("cannot listen on %s: %w", lc.Address, err))
	}
	if d.metrics != nil {
		ls.ln = d.metrics.wrapListener(ls.ln, lc.Name)
	}
	if lc.Protocol == "policy" {
		d.openPolicy(ls)
		return exOK
	}
	if lc.Protocol == "socketmap" {
		logger := d.log.With().Str("listener", lc.Name).Logger()
		ls.srv = &socketmap.Server{Handler: &socketmapHandler{r: d.router}, Logger: &logger, MaxConnections: lc.MaxConnections}
		d.servers = append(d.servers, ls)
		return exOK
	}
	var tlsCfg *tls.Config
	if lc.TLS != "none" {
		var onHello func()
		var onDone func(tls.ConnectionState)
		if d.metrics != nil {
			onHello, onDone = d.metrics.tlsHooks(lc.Name)
		}
		tlsCfg = d.certs.tlsConfig(onHello, onDone)
	}
	if lc.TLS == "implicit" {
		ls.ln = tls.NewListener(ls.ln, tlsCfg)
	}
	logger := d.log.With().Str("listener", lc.Name).Logger()
	srv := &protocol.Server{
		Protocol:             protocol.SMTP,
		Hostname:             d.cfg.Server.Hostname,
		Backend:              d.senders,
		Logger:               &logger,
		RequireTLS:           lc.RequireTLS,
		RequireAuth:          lc.Auth == "required",
		MaxAuthFailures:      lc.MaxAuthFailures,
		AuthFailureDelay:     orNegative(time.Duration(lc.AuthFailureDelay)),
		MaxAuthFailuresPerIP: orNegative(lc.MaxAuthFailuresIP),
		AuthFailureWindow:    time.Duration(lc.AuthFailureWindow),
		DataTotalTimeout:     orNegative(time.Duration(lc.DataTotalTimeout)),
		Software:             "lmtpd",
		OnOutcome:            routerLogsOutcomes,
		MaxMessageBytes:      int64(orNegative(lc.MaxMessageSize)),
		MaxRecipients:        lc.MaxRecipients,
		MaxLineLength:        lc.MaxLineLength,
		MaxTextLineLength:    orNegative(lc.MaxTextLineLength),
		MaxHeaderBytes:       int(lc.MaxHeaderSize),
		MaxReceivedHeaders:   lc.MaxReceivedHeaders,
		MaxErrors:            lc.MaxErrors,
		MaxConnections:       lc.MaxConnections,
		MaxConnectionsPerIP:  orNegative(*lc.MaxConnectionsPerIP),
		MaxRefusedRecipients: orNegative(lc.MaxRefusedRcpts),
		MinDataRate:          orNegative(lc.MinDataRate),
		CommandTimeout:       time.Duration(lc.CommandTimeout),
		DataTimeout:          time.Duration(lc.DataTimeout),
		FinalReplyTimeout:    time.Duration(lc.FinalReplyTimeout),
		TLSHandshakeTimeout:  time.Duration(lc.TLSHandshakeTimeout),
		TrustedNetworks:      d.cfg.trusted[i],
	}
	if lc.Protocol == "lmtp" {
		srv.Protocol = protocol.LMTP
	}
	if lc.TLS == "starttls" {
		srv.TLSConfig = tlsCfg
	}
	if lc.BareLineEndings == "normalize" {
		srv.BareLineEndings = protocol.NormalizeBareLineEndings
	}
	if lc.Auth != "off" {
		a := &authenticator{store: d.store, insecure: lc.InsecureAuth, tlsOnly: lc.RequireTLSForAuth, dirs: d.dirAuth}
		if d.metrics != nil {
			a.outcome = d.metrics.authOutcome(lc.Name)
		}
		srv.Auth = a
		if d.authLimiter == nil {
			d.authLimiter = protocol.NewAuthLimiter(d.cfg.Server.MaxAuthVerifications, orNegative(time.Duration(d.cfg.Server.AuthQueueTimeout)))
			// The verification term of the ceiling in config.example.toml;
			// users added by SIGHUP with larger hashes raise it.
			d.log.Info().Int("max_auth_verifications", d.authLimiter.Max()).
				Int64("auth_verify_memory_mib", 4*int64(d.authLimiter.Max())*d.store.MaxVerifyMemory()>>20).
				Msg("AUTH: password checks at once bounded; their memory (4 × max_auth_verifications × the largest argon2id m) stays within auth_verify_memory_mib")
		}
		srv.AuthLimiter = d.authLimiter
	}
	ls.srv = srv
	d.servers = append(d.servers, ls)
	return exOK
}

// dirObserver returns the directories' metrics observer, or nil without
// metrics.
func (d *daemon) dirObserver() directory.Observer {
	if d.metrics == nil {
		return nil
	}
	return d.metrics
}

// orNegative maps the configuration's 0 ("none") to the protocol
// package's negative value ("none"; its 0 means "default").
func orNegative[T ~int | ~int64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// closeListeners closes listeners whose servers never started serving (a
// failed start-up); Serve closes the others itself. After a shutdown that
// left connections hung, only the listeners are closed: Server.Close
// would wait for the hung connections.
func (d *daemon) closeListeners() {
	for _, s := range d.servers {
		if !d.abandoned {
			s.srv.Close()
		}
		s.ln.Close()
	}
}

// unwindTimeout bounds how long shutdown waits, once the grace period is
// over and every connection has been closed and its delivery context
// cancelled, for the connections to end (a pipe command to be killed and
// reaped, a maildir delivery to remove its file from tmp/). A connection
// that has not ended by then is stuck on something that heeds neither its
// context nor its closed socket; lmtpd exits without it. So the process
// exits at most shutdown_grace + unwindTimeout after the signal.
const unwindTimeout = 5 * time.Second

// shutdown stops every server gracefully within the grace period; a
// second SIGTERM or SIGINT stops at once. Past the grace period the
// servers close their connections and cancel the deliveries in flight
// (Server.Shutdown's context ends); past unwindTimeout more, lmtpd exits
// whatever a connection is still doing.
func (d *daemon) shutdown(sigs <-chan os.Signal, status int) int {
	if err := d.notify.notify("STOPPING=1"); err != nil {
		d.log.Warn().Err(err).Msg("cannot notify systemd")
	}
	if d.metrics != nil {
		d.metrics.setUp(false)
	}
	grace := time.Duration(d.cfg.Server.ShutdownGrace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for _, s := range d.servers {
			wg.Go(func() {
				if err := s.srv.Shutdown(ctx); err != nil {
					d.log.Warn().Str("listener", s.cfg.Name).Err(err).Msg("grace period over: closed the connections still open and cancelled their deliveries")
				}
			})
		}
		wg.Wait()
	}()
	hard := time.NewTimer(grace + unwindTimeout)
	defer hard.Stop()
	for {
		select {
		case <-done:
			d.stopBg()
			d.bg.Wait()
			d.log.Info().Msg("stopped")
			return status
		case <-hard.C:
			// Something ignores both its closed connection and its
			// cancelled context. Waiting longer would let it hold the
			// shutdown forever: exit. Whatever it was writing is in a
			// maildir's tmp/ at most (a message reaches new/ only whole,
			// fsynced, by a link), and the MTA, never answered, retries.
			d.abandoned = true
			d.log.Error().Dur("grace_ms", grace).Dur("unwind_ms", unwindTimeout).
				Msg("connections still busy after the grace period although closed and cancelled: exiting without them")
			d.stopBg()
			return exFailure
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue
			}
			d.log.Warn().Str("signal", s.String()).Msg("second signal: exiting now, transactions in flight are not answered")
			// Exit without waiting for anything: only the listeners are
			// closed, which removes their socket files.
			for _, s := range d.servers {
				s.ln.Close()
			}
			os.Exit(exFailure)
		}
	}
}

// logStart writes the start-up lines: version, listeners, backends, and
// for the embedded default how to try it.
func (d *daemon) logStart() {
	cfg := d.cfg
	var serving []string
	for _, s := range d.servers {
		serving = append(serving, strings.ToUpper(s.cfg.Protocol)+" on "+s.addr)
	}
	var domains, pipes []string
	for _, dm := range cfg.Domains {
		s := dm.Name
		if dm.AnyUser {
			s += " (any user)"
		}
		domains = append(domains, s)
		if dm.Route.Pipe != nil && len(dm.Route.Pipe.Argv) > 0 {
			pipes = append(pipes, dm.Route.Pipe.Argv[0])
		}
		for _, u := range dm.User {
			if u.Route.Pipe != nil && len(u.Route.Pipe.Argv) > 0 {
				pipes = append(pipes, u.Route.Pipe.Argv[0])
			}
		}
	}
	ev := d.log.Info().Str("version", versionString()).Str("config", cfg.file).Strs("domains", domains)
	if root := cfg.dcfg.Maildir.Root; root != "" {
		ev = ev.Str("maildir", root+"/"+cfg.dcfg.Maildir.Template)
	}
	if len(pipes) > 0 {
		ev = ev.Strs("pipe", pipes)
	}
	if cfg.Metrics.Address != "" {
		ev = ev.Str("metrics", "http://"+cfg.Metrics.Address+"/metrics")
	}
	if len(cfg.dirSpecs) > 0 {
		var names []string
		for _, s := range cfg.dirSpecs {
			names = append(names, s.name)
		}
		ev = ev.Strs("directories", names)
	}
	ev.Msgf("lmtpd %s serving %s, delivering for %s", versionString(), strings.Join(serving, " and "), strings.Join(domains, ", "))
	if cfg.embedded {
		d.log.Info().Msgf("embedded default configuration: mail for any user at localhost or example.test goes to the maildir %s/{domain}/{user} (run lmtpd -config FILE for your own; see config.example.toml)", cfg.dcfg.Maildir.Root)
		for _, s := range d.servers {
			switch {
			case s.cfg.Protocol == "smtp" && !strings.HasPrefix(s.addr, "unix:"):
				d.log.Info().Msgf("try SMTP: swaks --server %s --from you@example.org --to bob@example.test", s.addr)
			case s.cfg.Protocol == "lmtp" && strings.HasPrefix(s.addr, "unix:"):
				d.log.Info().Msgf(`try LMTP: printf 'LHLO me\r\nMAIL FROM:<you@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: test\r\n\r\nHello.\r\n.\r\nQUIT\r\n' | nc -U %s`, strings.TrimPrefix(s.addr, "unix:"))
			}
		}
	}
	for _, s := range d.servers {
		ev := d.log.Info().Str("listener", s.cfg.Name).Str("protocol", strings.ToUpper(s.cfg.Protocol)).
			Str("address", s.addr).Str("tls", s.cfg.TLS).Str("auth", s.cfg.Auth)
		if s.activated {
			ev = ev.Bool("systemd", true)
		}
		ev.Msg("listening")
	}
}

// logWarnings logs what is wrong with a valid configuration.
func (d *daemon) logWarnings(cfg *config) {
	for _, w := range cfg.plan.Warnings() {
		d.log.Warn().Str("config", cfg.file).Msg(w)
	}
}

// routerLogsOutcomes is the listeners' protocol.Server.OnOutcome:
// delivery.Router writes the administrator's info line per recipient
// itself (with the backend and the file it stored), so the hook adds
// nothing, and its presence moves the server's own line to debug level.
func routerLogsOutcomes(context.Context, *protocol.Outcome) {}

// logAccessWarnings logs the configuration's warnings about this system
// (a socket the MTA could not connect to), after the start-up line.
func (d *daemon) logAccessWarnings(cfg *config) {
	if m := cfg.runUserMismatch(); m != "" {
		d.log.Warn().Str("key", "server.user").Msg(m)
	}
	for _, w := range cfg.warnings {
		d.log.Warn().Str("file", w.File).Int("line", w.Line).Str("key", w.Key).Err(w.Err).Msg(warningText(w))
	}
}
