package ldap

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/lmtpd/lmtpd/directory"
)

// Config is one [[directory]] with driver = "ldap". Field tags are the
// configuration file's keys; the zero value of an optional field means the
// default written in its doc.
type Config struct {
	// Name is the directory's name, for logs and errors.
	Name string `toml:"name"`
	// URL is ldap://host[:port], ldaps://host[:port] or
	// ldapi://%2Fpath%2Fto%2Fsocket. Required.
	URL string `toml:"url"`
	// StartTLS upgrades an ldap:// connection with StartTLS before
	// binding (RFC 4513 section 3); a failure is an error, never a
	// fallback to plaintext.
	StartTLS bool `toml:"start_tls"`
	// BindDN and BindPassword are the service account's credentials;
	// BindPasswordFile, if set, holds the password instead (its first
	// line). An empty BindDN binds anonymously.
	BindDN           string `toml:"bind_dn"`
	BindPassword     string `toml:"bind_password"`
	BindPasswordFile string `toml:"bind_password_file"`
	// BaseDN is where searches start (subtree scope). It may use the
	// placeholders, escaped per RFC 4514 ("ou={domain},dc=example,dc=org").
	// Required.
	BaseDN string `toml:"base_dn"`
	// UserFilter finds a user, for lookups and AUTH, e.g.
	// "(&(objectClass=inetOrgPerson)(mail={address}))". Required. More
	// than one entry matching is an error, not a pick.
	UserFilter string `toml:"user_filter"`
	// AliasFilter finds alias entries, e.g.
	// "(&(objectClass=nisMailAlias)(cn={address}))"; "" means the directory
	// has no aliases.
	AliasFilter string `toml:"alias_filter"`
	// AliasAttribute holds an alias's targets, one per value or
	// comma-separated. Default "rfc822MailMember".
	AliasAttribute string `toml:"alias_attribute"`
	// Attributes maps result fields (mailbox, home, quota_bytes,
	// quota_messages, sieve, forward, uid, gid, password, or any other
	// name, kept in Record.Extra) to LDAP attributes.
	Attributes map[string]string `toml:"attributes"`
	// Auth is how AUTH passwords are checked: "bind" (default) binds as
	// the user's DN; "attribute" verifies the attribute mapped to
	// "password" (default "userPassword").
	Auth string `toml:"auth"`
	// Timeout bounds each lookup, connecting and binding included.
	// Default 3s.
	Timeout time.Duration `toml:"timeout"`
	// PoolSize is the most service connections open at once. Default 4.
	PoolSize int `toml:"pool_size"`
	// TLSCAFile is a PEM file of CAs to trust instead of the system's,
	// for ldaps:// and StartTLS.
	TLSCAFile string `toml:"tls_ca_file"`
	// TLSServerName overrides the name checked in the server's
	// certificate; default the URL's host.
	TLSServerName string `toml:"tls_server_name"`
	// TrustedPaths marks the records as allowed to name paths outside
	// the maildir root (directory.Record.Trusted).
	TrustedPaths bool `toml:"trusted_paths"`
}

// Defaults.
const (
	defaultTimeout        = 3 * time.Second
	defaultPoolSize       = 4
	defaultAliasAttribute = "rfc822MailMember"
	defaultPasswordAttr   = "userPassword"
	// maxAliasEntries bounds the entries one alias search may return.
	maxAliasEntries = 1000
)

// settings is a validated Config.
type settings struct {
	name                    string
	network, addr           string // for net.Dialer
	ldaps, startTLS         bool
	tls                     *tls.Config
	bindDN, bindPassword    string
	base                    template
	userFilter, aliasFilter template
	hasAliases              bool
	aliasAttr               string
	fields                  map[string]string // result field -> attribute
	attrs                   []string          // attributes to request for a user
	passwordAttr            string            // "" when none is mapped
	authBind                bool
	timeout                 time.Duration
	poolSize                int
	trusted                 bool
}

// check validates c and applies the defaults. Errors name the key.
func (c Config) check() (*settings, error) {
	s := &settings{
		name:      c.Name,
		startTLS:  c.StartTLS,
		bindDN:    c.BindDN,
		aliasAttr: c.AliasAttribute,
		timeout:   c.Timeout,
		poolSize:  c.PoolSize,
		trusted:   c.TrustedPaths,
		fields:    map[string]string{},
	}
	if s.name == "" {
		s.name = "ldap"
	}
	if s.timeout == 0 {
		s.timeout = defaultTimeout
	}
	if s.timeout < 0 {
		return nil, errors.New("timeout must be positive")
	}
	if s.poolSize == 0 {
		s.poolSize = defaultPoolSize
	}
	if s.poolSize < 0 || s.poolSize > 1024 {
		return nil, errors.New("pool_size must be 1 to 1024")
	}
	if s.aliasAttr == "" {
		s.aliasAttr = defaultAliasAttribute
	}
	host, err := s.parseURL(c.URL)
	if err != nil {
		return nil, err
	}
	if s.startTLS && s.ldaps {
		return nil, errors.New("start_tls: ldaps:// is already TLS")
	}
	if s.startTLS || s.ldaps {
		s.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if c.TLSServerName != "" {
			s.tls.ServerName = c.TLSServerName
		}
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("tls_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls_ca_file %s: no PEM certificate", c.TLSCAFile)
			}
			s.tls.RootCAs = pool
		}
	}
	switch {
	case c.BindPassword != "" && c.BindPasswordFile != "":
		return nil, errors.New("bind_password and bind_password_file: set one")
	case c.BindPasswordFile != "":
		b, err := os.ReadFile(c.BindPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("bind_password_file: %w", err)
		}
		s.bindPassword, _, _ = strings.Cut(string(b), "\n")
		s.bindPassword = strings.TrimSuffix(s.bindPassword, "\r")
	default:
		s.bindPassword = c.BindPassword
	}
	if s.bindDN != "" && s.bindPassword == "" {
		// An empty password would make an unauthenticated bind, which
		// "succeeds" (RFC 4513 section 5.1.2) and then reads nothing.
		return nil, errors.New("bind_dn is set but the bind password is empty")
	}
	if c.BaseDN == "" {
		return nil, errors.New("base_dn is required")
	}
	if s.base, err = parseTemplate(c.BaseDN); err != nil {
		return nil, fmt.Errorf("base_dn: %w", err)
	}
	sample := directory.Key{Address: "x@y", LocalPart: "x", Domain: "y", Detail: "z"}
	if _, err := ldap.ParseDN(s.base.expand(sample, escapeDNValue)); err != nil {
		return nil, fmt.Errorf("base_dn: %w", err)
	}
	if c.UserFilter == "" {
		return nil, errors.New("user_filter is required")
	}
	for _, f := range []struct {
		key, text string
		dst       *template
	}{{"user_filter", c.UserFilter, &s.userFilter}, {"alias_filter", c.AliasFilter, &s.aliasFilter}} {
		if f.text == "" {
			continue
		}
		t, err := parseTemplate(f.text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.key, err)
		}
		if _, err := ldap.CompileFilter(t.expand(sample, escapeFilterValue)); err != nil {
			return nil, fmt.Errorf("%s: %w", f.key, err)
		}
		*f.dst = t
	}
	s.hasAliases = c.AliasFilter != ""
	for field, attr := range c.Attributes {
		if field == "" || attr == "" {
			return nil, fmt.Errorf("attributes: empty name in %q = %q", field, attr)
		}
		s.fields[strings.ToLower(field)] = attr
	}
	switch c.Auth {
	case "", "bind":
		s.authBind = true
		s.passwordAttr = s.fields["password"]
	case "attribute":
		s.passwordAttr = s.fields["password"]
		if s.passwordAttr == "" {
			s.passwordAttr = defaultPasswordAttr
		}
	default:
		return nil, fmt.Errorf("auth: %q is not \"bind\" or \"attribute\"", c.Auth)
	}
	for field, attr := range s.fields {
		if field != "password" {
			s.attrs = append(s.attrs, attr)
		}
	}
	slices.Sort(s.attrs)
	s.attrs = slices.Compact(s.attrs)
	if len(s.attrs) == 0 {
		s.attrs = []string{"1.1"} // RFC 4511 section 4.5.1.8: no attributes
	}
	return s, nil
}

// parseURL reads the url key into network and addr, and returns the host
// name TLS checks ("" for ldapi).
func (s *settings) parseURL(raw string) (string, error) {
	if rest, ok := strings.CutPrefix(raw, "ldapi://"); ok {
		// RFC 4516 style: the socket path, percent-encoded, is the host
		// (which net/url refuses).
		hostPart, _, _ := strings.Cut(rest, "/")
		path, err := url.PathUnescape(hostPart)
		if err != nil {
			return "", errors.New("url: ldapi:// wants a percent-encoded socket path")
		}
		if path == "" {
			path = "/var/run/slapd/ldapi"
		}
		s.network, s.addr = "unix", path
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return "", errors.New("url: want ldap://host[:port], ldaps://host[:port] or ldapi://%2Fpath")
	}
	host := u.Hostname()
	switch u.Scheme {
	case "ldap", "ldaps":
		port := u.Port()
		if port == "" {
			port = "389"
			if u.Scheme == "ldaps" {
				port = "636"
			}
		}
		if host == "" {
			return "", errors.New("url: no host")
		}
		s.network, s.addr, s.ldaps = "tcp", net.JoinHostPort(host, port), u.Scheme == "ldaps"
		return host, nil
	}
	return "", fmt.Errorf("url: scheme %q is not ldap, ldaps or ldapi", u.Scheme)
}
