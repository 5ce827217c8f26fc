package main

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/delivery/spool"
	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/sasl"
)

// defaultConfigText is the configuration used when no -config is given:
// LMTP on ./run/lmtp.sock, SMTP on 127.0.0.1:2525, any user at localhost
// and example.test delivered to ./mail/{domain}/{user}.
//
//go:embed default.toml
var defaultConfigText string

// embeddedName names the embedded default in messages.
const embeddedName = "(embedded default)"

// config is the whole configuration file. Field comments give each key's
// default; config.example.toml explains them for administrators. Relative
// paths are resolved against the directory of the file (the working
// directory for the embedded default) when the file is loaded.
type config struct {
	Log       logConfig        `toml:"log"`
	Server    serverConfig     `toml:"server"`
	Listeners []listenerConfig `toml:"listener"`
	TLS       tlsConfig        `toml:"tls"`
	Auth      authConfig       `toml:"auth"`
	Delivery  deliveryConfig   `toml:"delivery"`
	Domains   []domainConfig   `toml:"domain"`
	Metrics   metricsConfig    `toml:"metrics"`

	// Derived by load.
	file      string                 // the file's path, or embeddedName
	embedded  bool                   // the embedded default
	dcfg      delivery.Config        // routing and delivery
	plan      *delivery.Plan         // dcfg compiled, once per load
	users     map[string]sasl.User   // credentials by configured name
	store     *sasl.Store            // users, checked; nil without users
	addresses map[string][]string    // sender addresses by prepared user name
	locs      map[string]*locator    // per file, for errors found after decoding
	logLevel  zerolog.Level          // parsed Log.Level
	trusted   map[int][]netip.Prefix // parsed TrustedNetworks by listener index
}

// logConfig is [log].
type logConfig struct {
	// Level is trace, debug, info, warn or error. Default info.
	Level string `toml:"level"`
	// Format is auto (console on a terminal, else JSON), json or console.
	Format string `toml:"format"`
}

// serverConfig is [server].
type serverConfig struct {
	// Hostname is the name in greetings and Received fields; "" means the
	// system's host name.
	Hostname string `toml:"hostname"`
	// ShutdownGrace is how long transactions in flight may take to finish
	// after SIGTERM. Default 30s.
	ShutdownGrace duration `toml:"shutdown_grace"`
	// MaxAuthVerifications bounds the AUTH steps in progress at once over
	// all listeners (protocol.AuthLimiter). Default 0: the usable cores.
	MaxAuthVerifications int `toml:"max_auth_verifications"`
	// AuthQueueTimeout is how long AUTH waits for a verification slot
	// before 454 4.7.0. Default 10s; 0: no waiting.
	AuthQueueTimeout duration `toml:"auth_queue_timeout"`
}

// listenerConfig is one [[listener]]: the address, TLS and AUTH modes,
// and every limit of protocol.Server under its snake_case name (see
// config.example.toml for each key and its default).
type listenerConfig struct {
	Name                string   `toml:"name"`
	Protocol            string   `toml:"protocol"`
	Address             string   `toml:"address"`
	SocketMode          fileMode `toml:"socket_mode"`
	SocketOwner         string   `toml:"socket_owner"`
	SocketGroup         string   `toml:"socket_group"`
	TLS                 string   `toml:"tls"`
	RequireTLS          bool     `toml:"require_tls"`
	Auth                string   `toml:"auth"`
	InsecureAuth        bool     `toml:"insecure_auth"`
	RequireTLSForAuth   bool     `toml:"require_tls_for_auth"`
	TrustedNetworks     []string `toml:"trusted_networks"`
	BareLineEndings     string   `toml:"bare_line_endings"`
	MaxMessageSize      size     `toml:"max_message_size"`
	MaxRecipients       int      `toml:"max_recipients"`
	MaxLineLength       int      `toml:"max_line_length"`
	MaxTextLineLength   int      `toml:"max_text_line_length"`
	MaxHeaderSize       size     `toml:"max_header_size"`
	MaxReceivedHeaders  int      `toml:"max_received_headers"`
	MaxErrors           int      `toml:"max_errors"`
	MaxConnections      int      `toml:"max_connections"`
	MaxConnectionsPerIP *int     `toml:"max_connections_per_ip"` // nil until validate: 20 for smtp, 0 for lmtp
	CommandTimeout      duration `toml:"command_timeout"`
	DataTimeout         duration `toml:"data_timeout"`
	DataTotalTimeout    duration `toml:"data_total_timeout"`
	FinalReplyTimeout   duration `toml:"final_reply_timeout"`
	TLSHandshakeTimeout duration `toml:"tls_handshake_timeout"`
	MaxAuthFailures     int      `toml:"max_auth_failures"`
	AuthFailureDelay    duration `toml:"auth_failure_delay"`
	MaxAuthFailuresIP   int      `toml:"max_auth_failures_per_ip"`
	AuthFailureWindow   duration `toml:"auth_failure_window"`
	MaxRefusedRcpts     int      `toml:"max_refused_recipients"`
	MinDataRate         int      `toml:"min_data_rate"`
}

// setDefaults fills in the protocol package's defaults.
func (l *listenerConfig) setDefaults() {
	*l = listenerConfig{
		Protocol:            "lmtp",
		SocketMode:          0o660,
		TLS:                 "none",
		Auth:                "off",
		TrustedNetworks:     []string{},
		BareLineEndings:     "reject",
		MaxMessageSize:      protocol.DefaultMaxMessageBytes,
		MaxRecipients:       protocol.DefaultMaxRecipients,
		MaxLineLength:       protocol.DefaultMaxLineLength,
		MaxTextLineLength:   protocol.DefaultMaxTextLineLength,
		MaxHeaderSize:       protocol.DefaultMaxHeaderBytes,
		MaxReceivedHeaders:  protocol.DefaultMaxReceivedHeaders,
		MaxErrors:           protocol.DefaultMaxErrors,
		MaxConnections:      protocol.DefaultMaxConnections,
		CommandTimeout:      duration(protocol.DefaultCommandTimeout),
		DataTimeout:         duration(protocol.DefaultDataTimeout),
		DataTotalTimeout:    duration(protocol.DefaultDataTotalTimeout),
		FinalReplyTimeout:   duration(protocol.DefaultFinalReplyTimeout),
		TLSHandshakeTimeout: duration(protocol.DefaultTLSHandshakeTimeout),
		MaxAuthFailures:     protocol.DefaultMaxAuthFailures,
		AuthFailureDelay:    duration(time.Second),
		MaxAuthFailuresIP:   protocol.DefaultMaxAuthFailuresPerIP,
		AuthFailureWindow:   duration(protocol.DefaultAuthFailureWindow),
		MaxRefusedRcpts:     protocol.DefaultMaxRefusedRecipients,
		MinDataRate:         protocol.DefaultMinDataRate,
	}
}

// isUnix reports whether the listener is a unix socket, and its path.
func (l *listenerConfig) isUnix() (string, bool) {
	return strings.CutPrefix(l.Address, "unix:")
}

// tlsConfig is [tls], shared by every TLS listener.
type tlsConfig struct {
	// CertFile and KeyFile are PEM files; both are needed by any listener
	// with tls other than "none".
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// authConfig is [auth]: the users of AUTH and the sender policy.
type authConfig struct {
	// UsersFile is an optional TOML file of [[user]] tables, read at start
	// and on SIGHUP.
	UsersFile string `toml:"users_file"`
	// RestrictSender refuses MAIL FROM addresses that are not the
	// authenticated user's.
	RestrictSender bool             `toml:"restrict_sender"`
	Users          []authUserConfig `toml:"user"`
}

// authUserConfig is one [[auth.user]] (or [[user]] in the users file):
// secrets as lmtpd hash-password prints them, and the sender addresses
// the user owns for restrict_sender.
type authUserConfig struct {
	Name         string   `toml:"name"`
	PasswordHash string   `toml:"password_hash"`
	Scram        string   `toml:"scram"`
	Addresses    []string `toml:"addresses"`
}

func (u *authUserConfig) setDefaults() { u.Addresses = []string{} }

// usersFile is the content of auth.users_file.
type usersFile struct {
	Users []authUserConfig `toml:"user"`
}

// deliveryConfig is [delivery], mapped onto delivery.Config.
type deliveryConfig struct {
	DetailDelimiter string        `toml:"detail_delimiter"`
	CaseSensitive   bool          `toml:"case_sensitive"`
	DeliveredTo     string        `toml:"delivered_to"`
	LoopCheck       bool          `toml:"loop_check"`
	Postmaster      string        `toml:"postmaster"`
	Maildir         maildirConfig `toml:"maildir"`
	Spool           spoolConfig   `toml:"spool"`
	Dedup           dedupConfig   `toml:"dedup"`
}

// maildirConfig is [delivery.maildir] (delivery.MaildirConfig).
type maildirConfig struct {
	Root           string   `toml:"root"`
	Template       string   `toml:"template"`
	DetailFolders  bool     `toml:"detail_folders"`
	CreateFolders  bool     `toml:"create_folders"`
	MaxMessageSize size     `toml:"max_message_size"`
	Hostname       string   `toml:"hostname"`
	SpecialFolders []string `toml:"special_folders"`
}

// spoolConfig is [delivery.spool] (delivery.SpoolConfig).
type spoolConfig struct {
	// Threshold: messages up to this size stay in memory; 0 spools every
	// message to a file.
	Threshold size   `toml:"threshold"`
	Dir       string `toml:"dir"`
}

// dedupConfig is [delivery.dedup] (delivery.DedupConfig).
type dedupConfig struct {
	Enabled bool     `toml:"enabled"`
	Path    string   `toml:"path"`
	Window  duration `toml:"window"`
}

// domainConfig is one [[domain]] (delivery.Domain); users come as a
// list of names (users) and as tables with their own route (user).
type domainConfig struct {
	Name     string              `toml:"name"`
	AnyUser  bool                `toml:"any_user"`
	Users    []string            `toml:"users"`
	User     []userConfig        `toml:"user"`
	Aliases  map[string][]string `toml:"aliases"`
	CatchAll []string            `toml:"catch_all"`
	Route    routeConfig         `toml:"route"`
	// UTF8LocalParts: any_user accepts non-ASCII user names too.
	UTF8LocalParts bool `toml:"utf8_local_parts"`
}

func (d *domainConfig) setDefaults() {
	d.Users, d.User, d.CatchAll, d.Aliases = []string{}, []userConfig{}, []string{}, map[string][]string{}
}

// userConfig is one [[domain.user]] (delivery.User).
type userConfig struct {
	Name          string      `toml:"name"`
	Route         routeConfig `toml:"route"`
	CreateFolders *bool       `toml:"create_folders"`
}

// routeConfig is a route table (delivery.Route): a maildir template or a
// pipe command; empty inherits.
type routeConfig struct {
	Maildir string      `toml:"maildir,omitempty"`
	Pipe    *pipeConfig `toml:"pipe,omitempty"`
}

// pipeConfig is a route's pipe table (pipe.Command and PerMessage).
type pipeConfig struct {
	Argv             []string `toml:"argv"`
	Timeout          duration `toml:"timeout"`
	User             string   `toml:"user"`
	Group            string   `toml:"group"`
	MaxOutput        size     `toml:"max_output"`
	Dir              string   `toml:"dir"`
	PerMessage       bool     `toml:"per_message"`
	AllowLeadingDash bool     `toml:"allow_leading_dash"`
	MaxProcesses     int      `toml:"max_processes"`
	MaxWait          duration `toml:"max_wait"`
}

func (p *pipeConfig) setDefaults() {
	*p = pipeConfig{Timeout: duration(pipe.DefaultTimeout), MaxOutput: pipe.DefaultMaxOutput, Dir: pipe.DefaultDir,
		MaxProcesses: pipe.DefaultMaxProcesses, MaxWait: duration(pipe.DefaultMaxWait)}
}

// metricsConfig is [metrics].
type metricsConfig struct {
	// Address is host:port of the HTTP listener for /metrics and
	// /healthz; "" turns it off.
	Address string `toml:"address"`
}

// defaultConfig returns the defaults every file is decoded over.
func defaultConfig() *config {
	d := delivery.DefaultConfig()
	return &config{
		Log:       logConfig{Level: "info", Format: "auto"},
		Server:    serverConfig{ShutdownGrace: duration(30 * time.Second), AuthQueueTimeout: duration(protocol.DefaultAuthQueueTimeout)},
		Listeners: []listenerConfig{},
		Auth:      authConfig{Users: []authUserConfig{}},
		Delivery: deliveryConfig{
			DetailDelimiter: d.DetailDelimiter,
			CaseSensitive:   d.CaseSensitive,
			DeliveredTo:     string(d.DeliveredTo),
			LoopCheck:       d.LoopCheck,
			Maildir:         maildirConfig{Template: delivery.DefaultTemplate, SpecialFolders: slices.Clone(delivery.DefaultSpecialFolders)},
			Spool:           spoolConfig{Threshold: spool.DefaultThreshold},
			Dedup:           dedupConfig{Window: duration(delivery.DefaultDedupWindow)},
		},
		Domains: []domainConfig{},
	}
}

// loadConfig reads, decodes and validates the configuration in file, or
// the embedded default when file is "". Relative paths in the embedded
// default are resolved against the working directory. The error, if any,
// is a configErrors listing every problem with file, line and key.
func loadConfig(file string) (*config, error) {
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
	return parseConfig(name, text, base, file == "")
}

// parseConfig decodes and validates text; base resolves relative paths.
func parseConfig(name, text, base string, embedded bool) (*config, error) {
	c := defaultConfig()
	if err := decodeStrict(name, text, c); err != nil {
		return nil, err
	}
	c.file, c.embedded = name, embedded
	c.locs = map[string]*locator{name: newLocator(text)}
	ec := &errorCollector{file: name, loc: c.locs[name]}
	c.resolvePaths(base)
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
	abs(&c.Delivery.Maildir.Root)
	abs(&c.Delivery.Spool.Dir)
	abs(&c.Delivery.Dedup.Path)
}

var (
	logLevels    = []string{"trace", "debug", "info", "warn", "error"}
	logFormats   = []string{"auto", "json", "console"}
	protocols    = []string{"lmtp", "smtp"}
	tlsModes     = []string{"none", "starttls", "implicit"}
	authModes    = []string{"off", "optional", "required"}
	bareEndPolys = []string{"reject", "normalize"}
	deliveredTos = []string{string(delivery.DeliveredToSingle), string(delivery.DeliveredToAlways), string(delivery.DeliveredToNever)}
)

// oneOf checks an enumerated value.
func oneOf(ec *errorCollector, key, v string, allowed []string) bool {
	if slices.Contains(allowed, v) {
		return true
	}
	ec.addf(key, "%q is not one of %s", v, strings.Join(quoteAll(allowed), ", "))
	return false
}

func quoteAll(s []string) []string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return q
}

// validate checks everything that does not depend on the users file and
// builds the delivery configuration.
func (c *config) validate(ec *errorCollector) {
	if oneOf(ec, "log.level", c.Log.Level, logLevels) {
		c.logLevel, _ = zerolog.ParseLevel(c.Log.Level)
	}
	oneOf(ec, "log.format", c.Log.Format, logFormats)
	if c.Server.Hostname != "" && strings.ContainsAny(c.Server.Hostname, " \t\r\n()[];") {
		ec.addf("server.hostname", "%q is not a host name", c.Server.Hostname)
	}
	c.validateListeners(ec)
	if c.Metrics.Address != "" {
		if err := checkTCPAddress(c.Metrics.Address); err != nil {
			ec.add("metrics.address", err)
		}
	}
	c.validateDelivery(ec)
}

func (c *config) validateListeners(ec *errorCollector) {
	if len(c.Listeners) == 0 {
		ec.add("listener", errors.New("at least one [[listener]] is required"))
	}
	names := make(map[string]bool)
	seenProto := make(map[string]bool)
	addrs := make(map[string]string)
	c.trusted = make(map[int][]netip.Prefix)
	needTLS := false
	for i := range c.Listeners {
		l := &c.Listeners[i]
		key := func(k string) string { return joinKey(indexKey("listener", i), k) }
		oneOf(ec, key("protocol"), l.Protocol, protocols)
		if l.Name == "" {
			l.Name = l.Protocol
			if seenProto[l.Protocol] {
				l.Name = l.Protocol + "-" + strconv.Itoa(i+1)
			}
		} else if strings.ContainsFunc(l.Name, func(r rune) bool { return r <= ' ' || r == ':' || r >= 0x7f }) {
			ec.addf(key("name"), "%q: a listener name must be printable ASCII without spaces or colons (systemd FileDescriptorName)", l.Name)
		}
		seenProto[l.Protocol] = true
		if names[l.Name] {
			ec.addf(key("name"), "listener name %q is used twice", l.Name)
		}
		names[l.Name] = true

		if p, ok := l.isUnix(); ok {
			if p == "" {
				ec.add(key("address"), errors.New("unix: needs a socket path"))
			}
			if l.SocketOwner != "" {
				if _, err := lookupUID(l.SocketOwner); err != nil {
					ec.add(key("socket_owner"), err)
				}
			}
			if l.SocketGroup != "" {
				if _, err := lookupGID(l.SocketGroup); err != nil {
					ec.add(key("socket_group"), err)
				}
			}
		} else {
			if l.Address == "" {
				ec.add(key("address"), errors.New(`required: "host:port" or "unix:/path/to/socket"`))
			} else if err := checkTCPAddress(l.Address); err != nil {
				ec.add(key("address"), err)
			}
			if l.SocketOwner != "" {
				ec.add(key("socket_owner"), errors.New("applies only to unix: addresses"))
			}
			if l.SocketGroup != "" {
				ec.add(key("socket_group"), errors.New("applies only to unix: addresses"))
			}
		}
		if other, dup := addrs[l.Address]; dup && l.Address != "" {
			ec.addf(key("address"), "listener %q has the same address", other)
		}
		addrs[l.Address] = l.Name

		if oneOf(ec, key("tls"), l.TLS, tlsModes) && l.TLS != "none" {
			needTLS = true
		}
		if l.RequireTLS && l.TLS != "starttls" {
			ec.add(key("require_tls"), errors.New(`needs tls = "starttls" (an implicit-TLS listener always has TLS)`))
		}
		oneOf(ec, key("auth"), l.Auth, authModes)
		oneOf(ec, key("bare_line_endings"), l.BareLineEndings, bareEndPolys)
		for j, s := range l.TrustedNetworks {
			p, err := parsePrefix(s)
			if err != nil {
				ec.add(indexKey(key("trusted_networks"), j), err)
				continue
			}
			c.trusted[i] = append(c.trusted[i], p)
		}
		positive := func(k string, v int) {
			if v <= 0 {
				ec.addf(key(k), "must be a positive number, not %d", v)
			}
		}
		positive("max_recipients", l.MaxRecipients)
		positive("max_line_length", l.MaxLineLength)
		positive("max_received_headers", l.MaxReceivedHeaders)
		positive("max_errors", l.MaxErrors)
		positive("max_connections", l.MaxConnections)
		positive("max_auth_failures", l.MaxAuthFailures)
		if l.MaxLineLength > 0 && l.MaxLineLength < protocol.DefaultMaxLineLength {
			ec.addf(key("max_line_length"), "%d is below the 512 octets RFC 5321 section 4.5.3.1.4 requires", l.MaxLineLength)
		}
		if l.MaxTextLineLength < 0 {
			ec.addf(key("max_text_line_length"), "must not be negative (0 means no limit)")
		}
		if l.MaxConnectionsPerIP == nil {
			// The default depends on the protocol: an SMTP listener faces
			// clients, an LMTP one the MTAs in front (protocol.Server).
			n := 0
			if l.Protocol == "smtp" {
				n = protocol.DefaultMaxConnectionsPerIP
			}
			l.MaxConnectionsPerIP = &n
		}
		for k, v := range map[string]int{"max_connections_per_ip": *l.MaxConnectionsPerIP,
			"max_refused_recipients": l.MaxRefusedRcpts, "min_data_rate": l.MinDataRate} {
			if v < 0 {
				ec.addf(key(k), "must not be negative (0 means no limit)")
			}
		}
		if l.MaxAuthFailuresIP < 0 {
			ec.addf(key("max_auth_failures_per_ip"), "must not be negative (0 means no limit)")
		}
		if l.MaxHeaderSize <= 0 {
			ec.addf(key("max_header_size"), "must be positive")
		}
		for k, d := range map[string]duration{
			"command_timeout": l.CommandTimeout, "data_timeout": l.DataTimeout,
			"final_reply_timeout": l.FinalReplyTimeout, "tls_handshake_timeout": l.TLSHandshakeTimeout,
			"auth_failure_window": l.AuthFailureWindow,
		} {
			if d <= 0 {
				ec.addf(key(k), "must be positive")
			}
		}
	}
	if needTLS {
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			ec.add("tls", errors.New("a listener uses TLS: [tls] cert_file and key_file are required"))
		} else if _, err := loadCertificate(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
			ec.add("tls.cert_file", err)
		}
	}
}

// validateAuth checks the users and the listeners that need them. It
// runs after loadUsers.
func (c *config) validateAuth(ec *errorCollector) {
	if c.Server.MaxAuthVerifications < 0 {
		ec.addf("server.max_auth_verifications", "must not be negative (0 means the number of cores)")
	}
	hasScram := false
	for _, u := range c.users {
		hasScram = hasScram || u.Scram != nil
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		key := joinKey(indexKey("listener", i), "auth")
		switch {
		case l.Auth == "off":
		case l.RequireTLSForAuth && l.InsecureAuth:
			ec.addf(joinKey(indexKey("listener", i), "require_tls_for_auth"), "contradicts insecure_auth = true: choose one")
		case len(c.users) == 0:
			ec.addf(key, "auth = %q needs users: add [[auth.user]] or auth.users_file", l.Auth)
		case l.TLS == "none" && l.RequireTLSForAuth:
			ec.addf(key, `auth = %q offers no mechanism: require_tls_for_auth = true needs tls = "starttls" or "implicit"`, l.Auth)
		case l.TLS == "none" && !l.InsecureAuth && !hasScram:
			// PLAIN and LOGIN are offered only under TLS (RFC 4954
			// section 4): no mechanism would ever be offered.
			ec.addf(key, `auth = %q offers no mechanism: PLAIN and LOGIN need TLS (tls = "starttls") or insecure_auth = true, SCRAM-SHA-256 needs users with scram keys`, l.Auth)
		}
	}
}

// parsePrefix parses a trusted network: a CIDR prefix or one address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network such as 192.0.2.0/24 or 2001:db8::/32", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or network", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// checkTCPAddress checks host:port syntax and that the port is a number
// or a known service.
func checkTCPAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port or unix:/path (%v)", addr, strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q: unknown port %q", addr, port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: invalid host %q", addr, host)
	}
	return nil
}

func lookupUID(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("no such user %q", s)
	}
	return strconv.Atoi(u.Uid)
}

func lookupGID(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("no such group %q", s)
	}
	return strconv.Atoi(g.Gid)
}

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
	route := func(key string, r routeConfig) delivery.Route {
		out := delivery.Route{Maildir: r.Maildir}
		if r.Pipe == nil {
			return out
		}
		p := r.Pipe
		cmd := pipe.Command{
			Argv: p.Argv, Timeout: time.Duration(p.Timeout), User: p.User, Group: p.Group,
			MaxOutput: int(p.MaxOutput), Dir: p.Dir, AllowLeadingDash: p.AllowLeadingDash,
		}
		// The file gives the defaults explicitly, so 0 here is written in
		// the file; the delivery package would take it for the default.
		if p.MaxProcesses == 0 {
			ec.add(joinKey(key, "pipe.max_processes"), fmt.Errorf("%d: want at least 1", p.MaxProcesses))
		}
		if p.MaxWait == 0 {
			ec.add(joinKey(key, "pipe.max_wait"), fmt.Errorf("%v: want a positive duration", time.Duration(p.MaxWait)))
		}
		out.Pipe = &delivery.Pipe{Command: cmd, PerMessage: p.PerMessage,
			MaxProcesses: p.MaxProcesses, MaxWait: time.Duration(p.MaxWait)}
		return out
	}
	for i := range c.Domains {
		dm := &c.Domains[i]
		key := indexKey("domain", i)
		out := delivery.Domain{Name: dm.Name, AnyUser: dm.AnyUser, UTF8LocalParts: dm.UTF8LocalParts, Aliases: dm.Aliases, CatchAll: dm.CatchAll}
		out.Route = route(joinKey(key, "route"), dm.Route)
		for _, u := range dm.Users {
			out.Users = append(out.Users, delivery.User{Name: u})
		}
		for j, u := range dm.User {
			r := route(joinKey(indexKey(joinKey(key, "user"), j), "route"), u.Route)
			out.Users = append(out.Users, delivery.User{Name: u.Name, Route: r, CreateFolders: u.CreateFolders})
		}
		d.Domains = append(d.Domains, out)
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
	// The delivery package checks its own settings, once, and says which
	// one is wrong by a key path (delivery.ConfigError).
	plan, err := delivery.Compile(d, delivery.PlanOptions{})
	if err != nil {
		for _, e := range splitJoined(err) {
			var ce *delivery.ConfigError
			if errors.As(e, &ce) {
				err := ce.Err
				if errors.Is(err, delivery.ErrNoDomains) {
					err = errors.New("at least one [[domain]] is required") // in the file's terms
				}
				ec.add(c.deliveryKey(ce.Key), err)
			} else {
				ec.add("delivery", e)
			}
		}
		return
	}
	if root := plan.MaildirRoot(); root != "" {
		if err := checkWritableDir(root); err != nil {
			ec.add("delivery.maildir.root", &systemError{err})
		}
	}
	c.plan = plan
}

// splitJoined returns the errors joined in err (the delivery package
// returns an errors.Join of one error per problem), or err alone.
func splitJoined(err error) []error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			return j.Unwrap()
		}
	}
	return []error{err}
}

// deliveryKey maps the key of a delivery.ConfigError, a path through
// delivery.Config, to the key of this file: [delivery] settings, and
// [[domain]] with its users (both the users list and [[domain.user]]
// become delivery.Domain.Users, in that order).
func (c *config) deliveryKey(k []string) string {
	if len(k) == 0 {
		return "delivery"
	}
	rename := map[string]string{"max_message_bytes": "max_message_size"}
	name := func(s string) string {
		if r, ok := rename[s]; ok {
			return r
		}
		return s
	}
	key, rest := "delivery", k
	if k[0] == "domains" {
		key, rest = "domain", k[1:]
		if len(rest) > 0 {
			i, _ := strconv.Atoi(rest[0])
			key, rest = indexKey(key, i), rest[1:]
			if len(rest) > 1 && rest[0] == "users" && i < len(c.Domains) {
				j, _ := strconv.Atoi(rest[1])
				if n := len(c.Domains[i].Users); j < n {
					key, rest = indexKey(joinKey(key, "users"), j), nil // a bare name
				} else {
					key, rest = indexKey(joinKey(key, "user"), j-n), rest[2:]
				}
			}
		}
	}
	for n := 0; n < len(rest); n++ {
		p := rest[n]
		switch {
		case p == "aliases" && n+1 < len(rest):
			key = joinKey(joinKey(key, "aliases"), rest[n+1])
			n++
		case p != "" && strings.Trim(p, "0123456789") == "":
			i, _ := strconv.Atoi(p)
			key = indexKey(key, i)
		default:
			key = joinKey(key, name(p))
		}
	}
	return key
}

// systemError marks a check that failed on the state of the system (a
// directory missing, not writable, a file in the way), not on the text of
// the configuration: the same file works once the system is fixed. deliver
// reports these as temporary (see systemCondition).
type systemError struct{ err error }

func (e *systemError) Error() string { return e.err.Error() }
func (e *systemError) Unwrap() error { return e.err }

// checkWritableDir reports whether dir is a directory lmtpd can write
// into, or, if it does not exist yet, one lmtpd can create.
func checkWritableDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		parent := filepath.Dir(dir)
		for {
			pfi, perr := os.Stat(parent)
			if perr == nil {
				if !pfi.IsDir() {
					return fmt.Errorf("%s: %s is not a directory", dir, parent)
				}
				if err := syscall.Access(parent, 2|1); err != nil {
					return fmt.Errorf("%s does not exist and cannot be created: %s is not writable", dir, parent)
				}
				return nil
			}
			if next := filepath.Dir(parent); next != parent {
				parent = next
				continue
			}
			return fmt.Errorf("%s: %v", dir, perr)
		}
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := syscall.Access(dir, 2|1); err != nil {
		return fmt.Errorf("%s is not writable by this process (uid %d)", dir, os.Geteuid())
	}
	return nil
}

// loadUsers merges [[auth.user]] and the users file into c.users and
// c.addresses, checking every secret.
func (c *config) loadUsers() error {
	type src struct {
		file, key string
		u         authUserConfig
	}
	var all []src
	for i, u := range c.Auth.Users {
		all = append(all, src{c.file, indexKey("auth.user", i), u})
	}
	if f := c.Auth.UsersFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			ec := &errorCollector{file: c.file, loc: c.locs[c.file]}
			ec.add("auth.users_file", err)
			return ec.err()
		}
		var uf usersFile
		if err := decodeStrict(f, string(b), &uf); err != nil {
			return err
		}
		c.locs[f] = newLocator(string(b))
		for i, u := range uf.Users {
			all = append(all, src{f, indexKey("user", i), u})
		}
	}
	var errs configErrors
	add := func(s src, k string, err error) {
		key := s.key
		if k != "" {
			key = joinKey(key, k)
		}
		errs = append(errs, &configError{File: s.file, Line: c.locs[s.file].line(key), Key: key, Err: err})
	}
	c.users = make(map[string]sasl.User)
	c.addresses = make(map[string][]string)
	byName := make(map[string]src)
	for _, s := range all {
		u := s.u
		prepared, err := sasl.PrepareUsername(u.Name)
		if err != nil {
			add(s, "name", fmt.Errorf("user name %q: %v", u.Name, err))
			continue
		}
		if prev, dup := byName[prepared]; dup {
			add(s, "name", fmt.Errorf("user %q is also defined at %s:%d", u.Name, prev.file, c.locs[prev.file].line(prev.key)))
			continue
		}
		byName[prepared] = s
		var su sasl.User
		if u.PasswordHash != "" {
			su.PasswordHash = u.PasswordHash
		}
		if u.Scram != "" {
			sc, err := sasl.ParseScramCredentials(u.Scram)
			if err != nil {
				add(s, "scram", fmt.Errorf("%v (make one with lmtpd hash-password)", err))
				continue
			}
			su.Scram = &sc
		}
		if u.PasswordHash == "" && u.Scram == "" {
			add(s, "", fmt.Errorf("user %q has neither password_hash nor scram (make both with lmtpd hash-password)", u.Name))
			continue
		}
		for j, a := range u.Addresses {
			if at := strings.LastIndexByte(a, '@'); at < 0 || at == len(a)-1 {
				add(s, indexKey("addresses", j), fmt.Errorf("%q is not an address (local@domain, or @domain for the whole domain)", a))
			}
		}
		c.users[u.Name] = su
		addrs := slices.Clone(u.Addresses)
		if len(addrs) == 0 && strings.Contains(u.Name, "@") {
			addrs = []string{u.Name}
		}
		c.addresses[prepared] = addrs
	}
	if len(errs) > 0 {
		return errs
	}
	if len(c.users) == 0 {
		return nil
	}
	// The store checks every hash; its errors name the user. It is kept:
	// serve and reload use it as it is.
	st, err := sasl.NewStore(c.users)
	if err != nil {
		for _, s := range byName {
			if strings.Contains(err.Error(), fmt.Sprintf("user %q", s.u.Name)) {
				add(s, "password_hash", fmt.Errorf("%s (make one with lmtpd hash-password)", strings.TrimPrefix(err.Error(), fmt.Sprintf("sasl: user %q: ", s.u.Name))))
				return errs
			}
		}
		return configErrors{{File: c.file, Line: c.locs[c.file].line("auth"), Key: "auth", Err: err}}
	}
	c.store = st
	return nil
}
