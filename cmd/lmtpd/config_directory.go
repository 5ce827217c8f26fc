package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/directory/ldap"
	"github.com/lmtpd/lmtpd/directory/passwd"
	"github.com/lmtpd/lmtpd/directory/passwdfile"
	dirsql "github.com/lmtpd/lmtpd/directory/sql"
)

// Directory drivers, as [[directory]] driver names them.
const (
	driverSQL        = "sql"
	driverLDAP       = "ldap"
	driverPasswdFile = "passwd-file"
	driverPasswd     = "passwd"
)

var directoryDrivers = []string{driverSQL, driverLDAP, driverPasswdFile, driverPasswd}

// Defaults of [[directory]]'s cache keys.
const (
	defaultDirCacheTTL    = 60 * time.Second
	defaultDirNegativeTTL = 10 * time.Second
)

// directoryConfig is one [[directory]]: a user database (package
// directory and its drivers). The drivers tag lists the drivers a key
// belongs to ("" for every driver); a key set for another driver is an
// error, so a mistyped driver or a key copied from another example is
// reported, not ignored; check-config leaves out the keys a driver does
// not use (omitempty). config.example.toml explains each key.
type directoryConfig struct {
	Name   string `toml:"name"`
	Driver string `toml:"driver"`

	// The cache around every driver (directory.CacheOptions).
	CacheTTL         duration `toml:"cache_ttl"`
	NegativeCacheTTL duration `toml:"negative_cache_ttl"`
	CacheSize        int      `toml:"cache_size"`
	Timeout          duration `toml:"timeout"`

	// sql (directory/sql.Options).
	SQLDriver     string `toml:"sql_driver,omitempty,omitzero" drivers:"sql"`
	DSN           string `toml:"dsn,omitempty,omitzero" drivers:"sql"`
	UserQuery     string `toml:"user_query,omitempty,omitzero" drivers:"sql"`
	AliasQuery    string `toml:"alias_query,omitempty,omitzero" drivers:"sql"`
	PasswordQuery string `toml:"password_query,omitempty,omitzero" drivers:"sql"`
	// PoolSize bounds the connections open at once (sql and ldap); 0
	// means the driver's default (8 for sql, 4 for ldap).
	PoolSize int `toml:"pool_size,omitempty,omitzero" drivers:"sql,ldap"`

	// ldap (directory/ldap.Config).
	URL              string            `toml:"url,omitempty,omitzero" drivers:"ldap"`
	StartTLS         bool              `toml:"start_tls,omitempty,omitzero" drivers:"ldap"`
	BindDN           string            `toml:"bind_dn,omitempty,omitzero" drivers:"ldap"`
	BindPassword     string            `toml:"bind_password,omitempty,omitzero" drivers:"ldap"`
	BindPasswordFile string            `toml:"bind_password_file,omitempty,omitzero" drivers:"ldap"`
	BaseDN           string            `toml:"base_dn,omitempty,omitzero" drivers:"ldap"`
	UserFilter       string            `toml:"user_filter,omitempty,omitzero" drivers:"ldap"`
	AliasFilter      string            `toml:"alias_filter,omitempty,omitzero" drivers:"ldap"`
	AliasAttribute   string            `toml:"alias_attribute,omitempty,omitzero" drivers:"ldap"`
	Attributes       map[string]string `toml:"attributes,omitempty,omitzero" drivers:"ldap"`
	Auth             string            `toml:"auth,omitempty,omitzero" drivers:"ldap"`
	TLSCAFile        string            `toml:"tls_ca_file,omitempty,omitzero" drivers:"ldap"`
	TLSServerName    string            `toml:"tls_server_name,omitempty,omitzero" drivers:"ldap"`

	// passwd-file and passwd (directory/passwdfile.Options,
	// directory/passwd.Options).
	Path    string   `toml:"path,omitempty,omitzero" drivers:"passwd-file,passwd"`
	MinUID  int      `toml:"min_uid,omitempty,omitzero" drivers:"passwd"`
	MaxUID  int      `toml:"max_uid,omitempty,omitzero" drivers:"passwd"`
	Exclude []string `toml:"exclude,omitempty,omitzero" drivers:"passwd"`
	Mailbox string   `toml:"mailbox,omitempty,omitzero" drivers:"passwd"`

	// TrustedPaths lets the directory's mailbox and home fields name
	// paths outside [delivery.maildir] root (passwd records always are).
	TrustedPaths bool `toml:"trusted_paths,omitempty,omitzero" drivers:"sql,ldap,passwd-file"`
}

func (d *directoryConfig) setDefaults() {
	*d = directoryConfig{
		CacheTTL:         duration(defaultDirCacheTTL),
		NegativeCacheTTL: duration(defaultDirNegativeTTL),
		CacheSize:        directory.DefaultMaxEntries,
		Timeout:          duration(directory.DefaultTimeout),
		Attributes:       map[string]string{},
		Exclude:          []string{},
	}
}

// dirSpec is a validated [[directory]]: what it takes to open it. The
// configuration holds specs, not open directories, so that loading a
// file (check-config, a reload that fails) leaves no pool behind; the
// daemon opens them (openDirectories).
type dirSpec struct {
	name  string
	key   string // directory[i], for messages
	cache directory.CacheOptions
	// open builds the driver, logging through log.
	open func(log zerolog.Logger) (directory.Directory, error)
}

// validateDirectories checks the [[directory]] tables and the keys that
// name a directory ([[domain]] directory, [auth] directory), and fills
// c.dirSpecs. Each directory is built once, with its logs discarded, so
// that everything its driver checks at construction (queries, filters,
// the passwd-file's lines, the LDAP URL) is reported at load; the
// driver is closed again at once, and nothing is connected.
func (c *config) validateDirectories(ec *errorCollector) {
	c.dirSpecs = nil
	seen := map[string]int{}
	for i := range c.Directories {
		dc := &c.Directories[i]
		key := indexKey("directory", i)
		if dc.Name == "" {
			ec.add(joinKey(key, "name"), errors.New("required: domains and [auth] refer to a directory by its name"))
		} else if j, dup := seen[dc.Name]; dup {
			ec.addf(joinKey(key, "name"), "%q is also the name of directory[%d]", dc.Name, j)
		} else if strings.ContainsAny(dc.Name, " \t\r\n\"\\") {
			ec.addf(joinKey(key, "name"), "%q: use letters, digits, '-', '_' or '.'", dc.Name)
		} else {
			seen[dc.Name] = i
		}
		if !oneOf(ec, joinKey(key, "driver"), dc.Driver, directoryDrivers) {
			continue
		}
		if !c.checkDirectoryKeys(ec, key, dc) {
			continue
		}
		// attributes maps result fields to LDAP attributes: a field lmtpd
		// does not know is carried in the record's extra fields but used
		// for nothing, which is most likely a typing mistake.
		for _, field := range slices.Sorted(maps.Keys(dc.Attributes)) {
			if !directory.KnownField(field) {
				k := joinKey(joinKey(key, "attributes"), field)
				c.warnings = append(c.warnings, &configError{File: c.file, Line: ec.loc.line(k), Key: k,
					Err: fmt.Errorf("%q is not a result field lmtpd uses (mailbox, home, quota_bytes, quota_messages, sieve, forward, password, uid, gid, or Dovecot's mail and quota_rule): the attribute is read and ignored", field)})
			}
		}
		spec, err := c.directorySpec(key, dc)
		if err != nil {
			ec.add(dirError(key, dc.Name, err))
			continue
		}
		d, err := spec.open(zerolog.Nop())
		if err != nil {
			ec.add(dirError(key, dc.Name, err))
			continue
		}
		d.Close()
		c.dirSpecs = append(c.dirSpecs, spec)
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	known := func(k, name string) {
		if _, ok := seen[name]; !ok {
			if len(names) == 0 {
				ec.addf(k, "no [[directory]] is named %q: there is none", name)
			} else {
				ec.addf(k, "no [[directory]] is named %q (there are %s)", name, strings.Join(quoteAll(names), ", "))
			}
		}
	}
	for i, dm := range c.Domains {
		if dm.Directory == "" {
			continue
		}
		k := joinKey(indexKey("domain", i), "directory")
		known(k, dm.Directory)
		if j, ok := seen[dm.Directory]; ok && c.Directories[j].Driver == driverSQL && c.Directories[j].UserQuery == "" {
			ec.addf(k, "directory %q has no user_query: it would know no user of the domain", dm.Directory)
		}
	}
	if c.Auth.DirectoryCRAMMD5 && c.Auth.Directory == "" {
		ec.addf("auth.directory_cram_md5", "needs auth.directory")
	}
	if c.Auth.Directory != "" {
		known("auth.directory", c.Auth.Directory)
		if i, ok := seen[c.Auth.Directory]; ok && c.Directories[i].Driver == driverPasswd {
			ec.addf("auth.directory", "directory %q is a passwd directory: system passwords live in shadow(5), which lmtpd does not read; use passwd-file, sql or ldap", c.Auth.Directory)
		} else if ok && c.Auth.DirectoryCRAMMD5 && c.Directories[i].Driver == driverLDAP && c.Directories[i].Auth != "attribute" {
			ec.addf("auth.directory_cram_md5", "directory %q checks passwords by LDAP bind, which cannot answer CRAM-MD5: set its auth = \"attribute\" (a {CRAM-MD5} or {PLAIN} userPassword) or leave CRAM-MD5 off", c.Auth.Directory)
		} else if ok && c.Directories[i].Driver == driverSQL && c.Directories[i].PasswordQuery == "" {
			ec.addf("auth.directory", "directory %q has no password_query: no login could succeed", c.Auth.Directory)
		}
	}
}

// checkDirectoryKeys reports keys set for a driver they do not belong to
// and the required ones that are missing.
func (c *config) checkDirectoryKeys(ec *errorCollector, key string, dc *directoryConfig) bool {
	ok := true
	rv, rt := reflect.ValueOf(dc).Elem(), reflect.TypeOf(dc).Elem()
	var def directoryConfig
	def.setDefaults()
	dv := reflect.ValueOf(def)
	for i := range rt.NumField() {
		f := rt.Field(i)
		drivers := f.Tag.Get("drivers")
		if drivers == "" || slices.Contains(strings.Split(drivers, ","), dc.Driver) {
			continue
		}
		if !reflect.DeepEqual(rv.Field(i).Interface(), dv.Field(i).Interface()) {
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			ec.addf(joinKey(key, name), "not a key of driver %q (it belongs to %s)", dc.Driver, strings.Join(quoteAll(strings.Split(drivers, ",")), ", "))
			ok = false
		}
	}
	required := func(k, v string) {
		if v == "" {
			ec.addf(joinKey(key, k), "required for driver %q", dc.Driver)
			ok = false
		}
	}
	switch dc.Driver {
	case driverSQL:
		required("sql_driver", dc.SQLDriver)
		required("dsn", dc.DSN)
		if dc.UserQuery == "" && dc.AliasQuery == "" && dc.PasswordQuery == "" {
			ec.addf(key, "a sql directory needs at least one of user_query, alias_query, password_query")
			ok = false
		}
	case driverLDAP:
		required("url", dc.URL)
		required("base_dn", dc.BaseDN)
		required("user_filter", dc.UserFilter)
	case driverPasswdFile:
		required("path", dc.Path)
	}
	if dc.CacheSize < 1 {
		ec.addf(joinKey(key, "cache_size"), "%d: want at least 1", dc.CacheSize)
		ok = false
	}
	if dc.Timeout <= 0 {
		ec.addf(joinKey(key, "timeout"), "want a positive duration (a lookup must end)")
		ok = false
	}
	if dc.PoolSize < 0 {
		ec.addf(joinKey(key, "pool_size"), "%d: want 0 (the default) or more", dc.PoolSize)
		ok = false
	}
	return ok
}

// directorySpec maps dc onto its driver's options.
func (c *config) directorySpec(key string, dc *directoryConfig) (dirSpec, error) {
	spec := dirSpec{
		name: dc.Name,
		key:  key,
		cache: directory.CacheOptions{
			TTL:         time.Duration(dc.CacheTTL),
			NegativeTTL: time.Duration(dc.NegativeCacheTTL),
			MaxEntries:  dc.CacheSize,
			Timeout:     time.Duration(dc.Timeout),
		},
	}
	trusted := dc.TrustedPaths
	switch dc.Driver {
	case driverSQL:
		o := dirsql.Options{
			Name: dc.Name, Driver: dc.SQLDriver, DSN: dc.DSN,
			UserQuery: dc.UserQuery, AliasQuery: dc.AliasQuery, PasswordQuery: dc.PasswordQuery,
			Timeout: time.Duration(dc.Timeout), MaxOpenConns: dc.PoolSize,
		}
		spec.open = func(log zerolog.Logger) (directory.Directory, error) {
			o.Log = log
			d, err := dirsql.New(o)
			if err != nil {
				return nil, err
			}
			return trust(d, trusted), nil
		}
	case driverLDAP:
		lc := ldap.Config{
			Name: dc.Name, URL: dc.URL, StartTLS: dc.StartTLS, BindDN: dc.BindDN,
			BindPassword: dc.BindPassword, BindPasswordFile: dc.BindPasswordFile, BaseDN: dc.BaseDN,
			UserFilter: dc.UserFilter, AliasFilter: dc.AliasFilter, AliasAttribute: dc.AliasAttribute,
			Attributes: dc.Attributes, Auth: dc.Auth, Timeout: time.Duration(dc.Timeout), PoolSize: dc.PoolSize,
			TLSCAFile: dc.TLSCAFile, TLSServerName: dc.TLSServerName, TrustedPaths: trusted,
		}
		spec.open = func(zerolog.Logger) (directory.Directory, error) {
			d, err := ldap.New(lc)
			if err != nil {
				return nil, err
			}
			return d, nil
		}
	case driverPasswdFile:
		o := passwdfile.Options{Name: dc.Name, Path: dc.Path, CaseSensitive: c.Delivery.CaseSensitive}
		spec.open = func(log zerolog.Logger) (directory.Directory, error) {
			o.Log = log
			d, err := passwdfile.New(o)
			if err != nil {
				return nil, err
			}
			return trust(d, trusted), nil
		}
	case driverPasswd:
		o := passwd.Options{Name: dc.Name, Path: dc.Path, MinUID: dc.MinUID, MaxUID: dc.MaxUID,
			Exclude: slices.Clone(dc.Exclude), Mailbox: dc.Mailbox}
		spec.open = func(zerolog.Logger) (directory.Directory, error) {
			d, err := passwd.New(o)
			if err != nil {
				return nil, err
			}
			return d, nil
		}
	default:
		return dirSpec{}, fmt.Errorf("driver %q is not one of %s", dc.Driver, strings.Join(quoteAll(directoryDrivers), ", "))
	}
	return spec, nil
}

// dirKeyPrefix matches the key a driver's error starts with ("user_query:
// ...", "passwd: min_uid 5 is above max_uid 1").
var dirKeyPrefix = regexp.MustCompile(`^(?:(?:directory \S+|passwd|passwd-file): )?([a-z_]+)\b`)

// dirError returns the key a driver's construction error is about (the
// directory's key followed by the first [[directory]] key the message
// names, or the directory's key alone) and the error without the
// directory's name or that key in front, which the key already says.
func dirError(key, name string, err error) (string, error) {
	err = stripDirName(name, err)
	k := dirErrorKey(key, err)
	if k != key {
		if rest, ok := strings.CutPrefix(err.Error(), k[len(key)+1:]+": "); ok {
			return k, &relabeled{rest, err}
		}
	}
	return k, err
}

// dirErrorKey returns the key of err for dirError.
func dirErrorKey(key string, err error) string {
	msg := err.Error()
	var keys []string
	rt := reflect.TypeOf(directoryConfig{})
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("toml"), ",")
		keys = append(keys, name)
	}
	if m := dirKeyPrefix.FindStringSubmatch(msg); m != nil && slices.Contains(keys, m[1]) {
		return joinKey(key, m[1])
	}
	// A message naming a key later on ("passwd: mailbox ...", "none of
	// user_query, ..."): the first key it names.
	best, at := "", len(msg)
	for _, k := range keys {
		if i := indexWord(msg, k); i >= 0 && i < at {
			best, at = k, i
		}
	}
	if best != "" && best != "name" && best != "driver" && best != "path" {
		return joinKey(key, best)
	}
	if strings.Contains(msg, "passwd-file") || strings.Contains(msg, "no such file") {
		return joinKey(key, "path")
	}
	return key
}

// indexWord returns the index of w in s as a whole word, or -1.
func indexWord(s, w string) int {
	for off := 0; ; {
		i := strings.Index(s[off:], w)
		if i < 0 {
			return -1
		}
		i += off
		end := i + len(w)
		before := i == 0 || !isKeyByte(s[i-1])
		after := end == len(s) || !isKeyByte(s[end])
		if before && after {
			return i
		}
		off = end
	}
}

func isKeyByte(b byte) bool { return b == '_' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }

// stripDirName drops the "directory NAME: " prefix the LDAP driver puts
// on its errors: the configuration error already names the key.
func stripDirName(name string, err error) error {
	if rest, ok := strings.CutPrefix(err.Error(), "directory "+name+": "); ok {
		return &relabeled{rest, err}
	}
	return err
}

// relabeled is an error with a shorter text that still wraps the
// original (a *fs.PathError stays one: deliver tells a missing file, a
// state of the system, from a mistake in the configuration).
type relabeled struct {
	msg string
	err error
}

func (e *relabeled) Error() string { return e.msg }
func (e *relabeled) Unwrap() error { return e.err }

// trusted marks every record of a directory Trusted (trusted_paths =
// true) for the drivers that do not do it themselves.
type trusted struct{ directory.Directory }

func trust(d directory.Directory, on bool) directory.Directory {
	if !on {
		return d
	}
	return trusted{d}
}

func (t trusted) LookupUser(ctx context.Context, k directory.Key) (directory.Record, error) {
	r, err := t.Directory.LookupUser(ctx, k)
	if err == nil {
		r.Trusted = true
	}
	return r, err
}

// DSN passwords: libpq's password=... keyword; a URL's
// scheme://user:password@; go-sql-driver's user:password@net(addr)/db
// (its password may hold '@': the last one before the network counts).
var (
	dsnKeyword = regexp.MustCompile(`(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	dsnURL     = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s]*):[^@\s]*@`)
	dsnMySQL   = regexp.MustCompile(`^([^:@/\s(]*):.*@([a-z0-9]*\(|/)`)
)

// redactDSN hides the password in a DSN for check-config's output.
func redactDSN(dsn string) string {
	if strings.Contains(dsn, "://") {
		dsn = dsnURL.ReplaceAllString(dsn, "${1}:"+hiddenSecret+"@")
	} else {
		dsn = dsnMySQL.ReplaceAllString(dsn, "${1}:"+hiddenSecret+"@${2}")
	}
	return dsnKeyword.ReplaceAllString(dsn, "${1}"+hiddenSecret)
}
