package ldap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		Name: "dir", URL: "ldap://127.0.0.1:389", BindDN: "cn=x,dc=org", BindPassword: "pw",
		BaseDN: "dc=org", UserFilter: "(mail={address})",
	}
}

func TestConfigErrors(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" means valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"ldaps", func(c *Config) { c.URL = "ldaps://ldap.example.org" }, ""},
		{"ldapi", func(c *Config) { c.URL = "ldapi://%2Frun%2Fslapd%2Fldapi" }, ""},
		{"password file", func(c *Config) { c.BindPassword, c.BindPasswordFile = "", pwFile }, ""},
		{"anonymous", func(c *Config) { c.BindDN, c.BindPassword = "", "" }, ""},
		{"attribute auth", func(c *Config) { c.Auth = "attribute" }, ""},
		{"placeholder in base", func(c *Config) { c.BaseDN = "ou={domain},dc=org" }, ""},
		{"no url", func(c *Config) { c.URL = "" }, "url"},
		{"http url", func(c *Config) { c.URL = "http://x" }, `scheme "http"`},
		{"no host", func(c *Config) { c.URL = "ldap://" }, "no host"},
		{"start_tls on ldaps", func(c *Config) { c.URL, c.StartTLS = "ldaps://x", true }, "start_tls"},
		{"both passwords", func(c *Config) { c.BindPasswordFile = pwFile }, "set one"},
		{"missing password file", func(c *Config) { c.BindPassword, c.BindPasswordFile = "", "/nonexistent/secret" }, "bind_password_file"},
		{"bind dn without password", func(c *Config) { c.BindPassword = "" }, "bind password is empty"},
		{"no base", func(c *Config) { c.BaseDN = "" }, "base_dn is required"},
		{"bad base", func(c *Config) { c.BaseDN = "not a dn" }, "base_dn"},
		{"unknown placeholder in base", func(c *Config) { c.BaseDN = "ou={user},dc=org" }, "base_dn: unknown placeholder {user}"},
		{"no user filter", func(c *Config) { c.UserFilter = "" }, "user_filter is required"},
		{"bad user filter", func(c *Config) { c.UserFilter = "(mail={address}" }, "user_filter"},
		{"unknown placeholder", func(c *Config) { c.UserFilter = "(mail={mail})" }, "user_filter: unknown placeholder {mail}"},
		{"bad alias filter", func(c *Config) { c.AliasFilter = "cn={address})(" }, "alias_filter"},
		{"bad auth", func(c *Config) { c.Auth = "sasl" }, `auth: "sasl"`},
		{"empty attribute", func(c *Config) { c.Attributes = map[string]string{"mailbox": ""} }, "attributes"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout"},
		{"pool too big", func(c *Config) { c.PoolSize = 5000 }, "pool_size"},
		{"missing CA file", func(c *Config) { c.URL, c.TLSCAFile = "ldaps://x", "/nonexistent/ca.pem" }, "tls_ca_file"},
		{"CA file without PEM", func(c *Config) { c.URL, c.TLSCAFile = "ldaps://x", pwFile }, "no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mod(&c)
			d, err := New(c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				d.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "directory dir: ") {
				t.Fatalf("New: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(pwFile, []byte("from-file\r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := validConfig()
	c.BindPassword, c.BindPasswordFile = "", pwFile
	c.Attributes = map[string]string{"mailbox": "mailMessageStore", "Quota_Bytes": "mailQuota", "password": "userPassword"}
	s, err := c.check()
	if err != nil {
		t.Fatal(err)
	}
	if s.bindPassword != "from-file" || s.timeout != 3*time.Second || s.poolSize != 4 || s.aliasAttr != "rfc822MailMember" ||
		!s.authBind || s.passwordAttr != "userPassword" || s.addr != "127.0.0.1:389" || s.hasAliases {
		t.Errorf("defaults: %+v", s)
	}
	if strings.Join(s.attrs, ",") != "mailMessageStore,mailQuota" || s.fields["quota_bytes"] != "mailQuota" {
		t.Errorf("attributes requested %q, fields %v", s.attrs, s.fields)
	}
	c.Auth, c.Attributes = "attribute", nil
	if s, err = c.check(); err != nil || s.passwordAttr != "userPassword" || s.authBind || strings.Join(s.attrs, ",") != "1.1" {
		t.Errorf("attribute auth defaults: %+v, %v", s, err)
	}
	c.URL = "ldaps://ldap.example.org"
	if s, err = c.check(); err != nil || s.addr != "ldap.example.org:636" || s.tls.ServerName != "ldap.example.org" {
		t.Errorf("ldaps defaults: %+v, %v", s, err)
	}
}
