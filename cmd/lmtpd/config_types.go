package main

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/delivery/maildir"
	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/delivery/spool"
	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/sasl"
)

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
	Quota     quotaConfig      `toml:"quota"`
	Delivery  deliveryConfig   `toml:"delivery"`
	Domains   []domainConfig   `toml:"domain"`
	Metrics   metricsConfig    `toml:"metrics"`
	// Directories are the [[directory]] tables (config_directory.go).
	Directories []directoryConfig `toml:"directory"`
	Sieve       sieveConfig       `toml:"sieve"`

	// Derived by load.
	file      string                 // the file's path, or embeddedName
	embedded  bool                   // the embedded default
	dcfg      delivery.Config        // routing and delivery
	plan      *delivery.Plan         // dcfg compiled, once per load
	quota     delivery.QuotaConfig   // [quota] and the quota keys, checked (config_quota.go)
	store     *sasl.Store            // users, checked; nil without users
	users     map[string]sasl.User   // credentials by configured name
	addresses map[string][]string    // sender addresses by prepared user name
	locs      map[string]*locator    // per file, for errors found after decoding
	logLevel  zerolog.Level          // parsed Log.Level
	trusted   map[int][]netip.Prefix // parsed TrustedNetworks by listener index
	warnings  configErrors           // problems of a valid configuration (checkMTAReach)
	dirSpecs  []dirSpec              // validated [[directory]] tables, in order
	// deliverOnly: loaded for lmtpd deliver, which needs no listener
	// (deliver_config.go).
	deliverOnly bool
	// deliverLogAuto: lmtpd deliver chose Log.Output itself, the file
	// and the command line saying nothing (deliverLog).
	deliverLogAuto bool
}

// logConfig is [log].
type logConfig struct {
	// Level is trace, debug, info, warn or error. Default info.
	Level string `toml:"level"`
	// Format is auto (console on a terminal, else JSON), json or console.
	Format string `toml:"format"`
	// Output is stderr (the default; systemd's journal takes it) or
	// syslog.
	Output string `toml:"output"`
	// Facility is the syslog facility with output = "syslog". Default
	// mail.
	Facility string `toml:"facility"`
	// SyslogSocket is the syslog daemon's socket with output = "syslog".
	// Default "": the system's (/dev/log, as Go's log/syslog finds it).
	SyslogSocket string `toml:"syslog_socket"`
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
	// User is the account lmtpd runs as (systemd's User=), for the checks
	// of check-config run by another account (root); lmtpd does not
	// change its user. "" (the default): the account running it.
	User string `toml:"user"`
	// MTAUser is the account of the MTA that connects to the unix
	// sockets; lmtpd warns when it could not. Default "": postfix, if
	// such a user exists.
	MTAUser string `toml:"mta_user"`
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
	RestrictSender bool `toml:"restrict_sender"`
	// Directory names a [[directory]] whose passwords PLAIN and LOGIN
	// check, after the users configured here; "" means none.
	Directory string `toml:"directory"`
	// DirectoryCRAMMD5 offers CRAM-MD5 to the directory's users too
	// (those whose stored password is {CRAM-MD5} or {PLAIN}).
	DirectoryCRAMMD5 bool             `toml:"directory_cram_md5"`
	Users            []authUserConfig `toml:"user"`
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
	Forward         lmtpConfig    `toml:"forward"` // config_remote.go
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
	// Owner and Group own what maildir delivery creates (a name or an
	// id); "" leaves lmtpd's own. FileMode and DirMode: default 0600 and
	// 0700.
	Owner    string   `toml:"owner"`
	Group    string   `toml:"group"`
	FileMode fileMode `toml:"file_mode"`
	DirMode  fileMode `toml:"dir_mode"`
	// Flush: "auto" (default), "fsync", "syncfs" or "ordered"
	// (delivery.MaildirConfig.Flush).
	Flush string `toml:"flush"`
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
	// Directory names a [[directory]] holding more users of the domain;
	// "" means none.
	Directory string `toml:"directory"`
	// QuotaStorage and QuotaMessages are the quota of the domain's users,
	// over [quota]'s (config_quota.go).
	QuotaStorage  *size  `toml:"quota_storage"`
	QuotaMessages *int64 `toml:"quota_messages"`
}

func (d *domainConfig) setDefaults() {
	d.Users, d.User, d.CatchAll, d.Aliases = []string{}, []userConfig{}, []string{}, map[string][]string{}
}

// userConfig is one [[domain.user]] (delivery.User).
type userConfig struct {
	Name          string      `toml:"name"`
	Route         routeConfig `toml:"route"`
	CreateFolders *bool       `toml:"create_folders"`
	// QuotaBytes and QuotaMessages are the user's quota, over the
	// domain's; named as a directory's fields (config_quota.go).
	QuotaBytes    *size  `toml:"quota_bytes"`
	QuotaMessages *int64 `toml:"quota_messages"`
}

// routeConfig is a route table (delivery.Route): a maildir template or a
// pipe command; empty inherits.
type routeConfig struct {
	Maildir string      `toml:"maildir,omitempty"`
	Pipe    *pipeConfig `toml:"pipe,omitempty"`
	LMTP    *lmtpConfig `toml:"lmtp,omitempty"` // config_remote.go
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
		Log:       logConfig{Level: "info", Format: "auto", Output: "stderr", Facility: "mail"},
		Server:    serverConfig{ShutdownGrace: duration(30 * time.Second), AuthQueueTimeout: duration(protocol.DefaultAuthQueueTimeout)},
		Listeners: []listenerConfig{},
		Auth:      authConfig{Users: []authUserConfig{}},
		Quota:     defaultQuotaConfig(),
		Delivery: deliveryConfig{
			DetailDelimiter: d.DetailDelimiter,
			CaseSensitive:   d.CaseSensitive,
			DeliveredTo:     string(d.DeliveredTo),
			LoopCheck:       d.LoopCheck,
			Maildir:         maildirConfig{Template: delivery.DefaultTemplate, SpecialFolders: slices.Clone(delivery.DefaultSpecialFolders), FileMode: fileMode(maildir.FileMode), DirMode: fileMode(maildir.DirMode)},
			Spool:           spoolConfig{Threshold: spool.DefaultThreshold},
			Dedup:           dedupConfig{Window: duration(delivery.DefaultDedupWindow)},
			Forward:         defaultLMTPConfig(),
		},
		Domains:     []domainConfig{},
		Directories: []directoryConfig{},
		Sieve:       defaultSieveConfig(),
	}
}
