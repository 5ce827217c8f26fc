package delivery

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
)

func testConfig(root string) Config {
	cfg := DefaultConfig()
	cfg.Maildir.Root = root
	cfg.Maildir.DetailFolders = true
	cfg.Domains = []Domain{
		{
			Name:  "Example.ORG",
			Users: []User{{Name: "bob"}, {Name: "Alice"}, {Name: "bob+special"}, {Name: "carol", Route: Route{Maildir: "other/{user}"}}},
			Aliases: map[string][]string{
				"sales":      {"bob", "Alice"},
				"team":       {"dave@example.net"},
				"postmaster": {"alice"},
				"fixed":      {"bob+fixed"},
			},
		},
		{Name: "example.net", AnyUser: true},
		{Name: "example.com", CatchAll: []string{"bob@example.org"}},
		{Name: "[192.0.2.1]", Users: []User{{Name: "root"}}},
		{Name: "pipe.example", Route: Route{Pipe: &Pipe{Command: pipe.Command{Argv: []string{"true"}}}}, Users: []User{{Name: "p"}}},
	}
	return cfg
}

type fakeLookup struct {
	users map[string]bool
	err   error
	calls []string
}

func (f *fakeLookup) LookupUser(_ context.Context, k directory.Key) (directory.Record, error) {
	f.calls = append(f.calls, k.LocalPart+"@"+k.Domain)
	if f.err != nil {
		return directory.Record{}, f.err
	}
	if !f.users[k.LocalPart+"@"+k.Domain] {
		return directory.Record{}, directory.ErrNotFound
	}
	return directory.Record{}, nil
}

func TestLookup(t *testing.T) {
	type want struct {
		path, folder, user, detail, addr, backend string
	}
	tests := []struct {
		name    string
		rcpt    protocol.Address
		proto   protocol.Protocol
		mutate  func(*Config)
		lookup  *fakeLookup
		want    []want
		code    int
		ec      protocol.EnhancedCode
		wantErr *protocol.Error
	}{
		{name: "user", rcpt: addr("bob@example.org"), want: []want{{path: "example.org/bob", user: "bob", addr: "bob@example.org", backend: "maildir"}}},
		{name: "domain case", rcpt: addr("bob@EXAMPLE.Org"), want: []want{{path: "example.org/bob", user: "bob", addr: "bob@EXAMPLE.Org"}}},
		{name: "local part case kept in addr", rcpt: addr("BoB@example.org"), want: []want{{path: "example.org/bob", user: "bob", addr: "BoB@example.org"}}},
		{name: "configured spelling in path", rcpt: addr("alice@example.org"), want: []want{{path: "example.org/Alice", user: "Alice", addr: "alice@example.org"}}},
		{name: "quoted local part", rcpt: protocol.Address{LocalPart: `"bob"`, Domain: "example.org"}, want: []want{{path: "example.org/bob", user: "bob", addr: `"bob"@example.org`}}},
		{name: "detail to folder", rcpt: addr("bob+lists@example.org"), want: []want{{path: "example.org/bob", folder: ".lists", user: "bob", detail: "lists", addr: "bob+lists@example.org"}}},
		{name: "detail case kept for folder", rcpt: addr("bob+Lists@example.org"), want: []want{{path: "example.org/bob", folder: ".Lists", user: "bob", detail: "Lists"}}},
		{name: "hostile detail sanitised", rcpt: protocol.Address{LocalPart: `"bob+../../x"`, Domain: "example.org"}, want: []want{{path: "example.org/bob", folder: "._._x", user: "bob", detail: "../../x"}}},
		{name: "dots-only detail is INBOX", rcpt: addr("bob+..@example.org"), want: []want{{path: "example.org/bob", user: "bob", detail: ".."}}},
		{name: "user+detail user first", rcpt: addr("bob+special@example.org"), want: []want{{path: "example.org/bob+special", user: "bob+special"}}},
		{name: "leading delimiter is no detail", rcpt: addr("+bob@example.org"), code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "user route template", rcpt: addr("carol@example.org"), want: []want{{path: "other/carol", user: "carol"}}},
		{name: "alias to two users", rcpt: addr("sales@example.org"), want: []want{{path: "example.org/bob", user: "bob", addr: "bob@example.org"}, {path: "example.org/Alice", user: "Alice", addr: "Alice@example.org"}}},
		{name: "alias detail propagated", rcpt: addr("sales+q1@example.org"), want: []want{{path: "example.org/bob", folder: ".q1", detail: "q1", addr: "bob+q1@example.org"}, {path: "example.org/Alice", folder: ".q1", detail: "q1", addr: "Alice+q1@example.org"}}},
		{name: "alias target detail wins", rcpt: addr("fixed+x@example.org"), want: []want{{path: "example.org/bob", folder: ".fixed", detail: "fixed", addr: "bob+fixed@example.org"}}},
		{name: "alias to other domain", rcpt: addr("team@example.org"), want: []want{{path: "example.net/dave", user: "dave", addr: "dave@example.net"}}},
		{name: "any user folded", rcpt: addr("Zed+x@Example.NET"), want: []want{{path: "example.net/zed", folder: ".x", user: "zed", detail: "x", addr: "Zed+x@Example.NET"}}},
		{name: "catch-all", rcpt: addr("nobody+x@example.com"), want: []want{{path: "example.org/bob", user: "bob", addr: "bob@example.org"}}},
		{name: "address literal domain", rcpt: addr("root@[192.0.2.1]"), want: []want{{path: "%5B192.0.2.1%5D/root", user: "root"}}},
		{name: "pipe route", rcpt: addr("p@pipe.example"), want: []want{{user: "p", addr: "p@pipe.example", backend: "pipe"}}},
		{name: "unknown user", rcpt: addr("nobody@example.org"), code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "unknown domain LMTP", rcpt: addr("bob@example.invalid"), proto: protocol.LMTP, code: 550, ec: protocol.EnhancedCode{5, 1, 2}},
		{name: "unknown domain SMTP", rcpt: addr("bob@example.invalid"), proto: protocol.SMTP, code: 554, ec: protocol.EnhancedCode{5, 7, 1}},
		{name: "bare postmaster", rcpt: protocol.Address{LocalPart: "PostMaster"}, want: []want{{path: "example.org/Alice", user: "Alice"}}},
		{name: "bare postmaster without route", rcpt: protocol.Address{LocalPart: "Postmaster"}, mutate: func(c *Config) { delete(c.Domains[0].Aliases, "postmaster") }, code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "explicit postmaster", rcpt: protocol.Address{LocalPart: "postmaster"}, mutate: func(c *Config) { c.Postmaster = "carol@example.org" }, want: []want{{path: "other/carol"}}},
		// RFC 5321 4.5.1: postmaster@ every domain served.
		{name: "postmaster at a domain without one", rcpt: addr("PostMaster@[192.0.2.1]"), want: []want{{path: "example.org/Alice", user: "Alice"}}},
		{name: "postmaster at a domain with users only", rcpt: addr("postmaster@pipe.example"), mutate: func(c *Config) { c.Postmaster = "carol@example.org" }, want: []want{{path: "other/carol"}}},
		{name: "postmaster at a catch-all domain", rcpt: addr("postmaster@example.com"), want: []want{{path: "example.org/bob", user: "bob"}}},
		{name: "postmaster at a domain not served", rcpt: addr("postmaster@elsewhere.test"), code: 554, ec: protocol.EnhancedCode{5, 7, 1}},
		{name: "postmaster at a domain, no postmaster anywhere", rcpt: addr("postmaster@[192.0.2.1]"), mutate: func(c *Config) { delete(c.Domains[0].Aliases, "postmaster") }, code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "bare non-postmaster", rcpt: protocol.Address{LocalPart: "bob"}, code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "case-sensitive", rcpt: addr("BOB@example.org"), mutate: func(c *Config) { c.CaseSensitive = true; c.Domains[0].Aliases["postmaster"] = []string{"Alice"} }, code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "case-sensitive match", rcpt: addr("Alice@example.org"), mutate: func(c *Config) { c.CaseSensitive = true; c.Domains[0].Aliases["postmaster"] = []string{"Alice"} }, want: []want{{path: "example.org/Alice"}}},
		{name: "details off", rcpt: addr("bob+lists@example.org"), mutate: func(c *Config) { c.DetailDelimiter = ""; delete(c.Domains[0].Aliases, "fixed") }, code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "two delimiters", rcpt: addr("bob-lists@example.org"), mutate: func(c *Config) { c.DetailDelimiter = "+-" }, want: []want{{path: "example.org/bob", folder: ".lists", detail: "lists"}}},
		{name: "detail folders off", rcpt: addr("bob+lists@example.org"), mutate: func(c *Config) { c.Maildir.DetailFolders = false }, want: []want{{path: "example.org/bob", detail: "lists"}}},
		{name: "detail in template, no folder", rcpt: addr("bob+lists@example.org"), mutate: func(c *Config) { c.Maildir.Template = "{domain}/{user}/{detail}x" }, want: []want{{path: "example.org/bob/listsx", detail: "lists"}}},
		{name: "local part too long for a path", rcpt: addr(strings.Repeat("a", 300) + "@example.net"), code: 553, ec: protocol.EnhancedCode{5, 1, 3}},
		{name: "hostile any-user local part", rcpt: protocol.Address{LocalPart: `"../../etc/x"`, Domain: "example.net"}, want: []want{{path: "example.net/%2E.%2F..%2Fetc%2Fx"}}},
		{name: "external lookup hit", rcpt: addr("Ext+d@example.org"), lookup: &fakeLookup{users: map[string]bool{"ext@example.org": true}}, want: []want{{path: "example.org/ext", user: "ext", detail: "d", folder: ".d"}}},
		{name: "external lookup miss", rcpt: addr("ext@example.org"), lookup: &fakeLookup{}, code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "external lookup temporary failure", rcpt: addr("ext@example.org"), lookup: &fakeLookup{err: errors.New("db down")}, code: 451, ec: protocol.EnhancedCode{4, 3, 0}},
		{name: "configured user skips lookup", rcpt: addr("bob@example.org"), lookup: &fakeLookup{err: errors.New("db down")}, want: []want{{path: "example.org/bob"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("/srv/mail")
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			tab, err := compile(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			var ext Lookup
			if tt.lookup != nil {
				ext = tt.lookup
			}
			got, err := tab.lookup(context.Background(), tt.rcpt, tt.proto, ext)
			if tt.code != 0 {
				checkCode(t, err, tt.code, tt.ec)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d targets, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				g := got[i]
				check := func(what, got, want string) {
					if want != "" && got != want {
						t.Errorf("target %d %s = %q, want %q", i, what, got, want)
					}
				}
				check("path", g.Mailbox, w.path)
				check("folder", g.Folder, w.folder)
				if w.folder == "" && w.path != "" && g.Folder != "" {
					t.Errorf("target %d folder = %q, want INBOX", i, g.Folder)
				}
				check("user", g.User, w.user)
				check("detail", g.Detail, w.detail)
				check("addr", g.Address, w.addr)
				check("backend", g.Target.Kind(), w.backend)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no domains", func(c *Config) { c.Domains = nil }, "no domains"},
		{"empty domain", func(c *Config) { c.Domains[0].Name = "" }, "domains.0.name: required"},
		{"domain with @", func(c *Config) { c.Domains[0].Name = "a@b" }, "contains '@'"},
		{"duplicate domain", func(c *Config) { c.Domains[1].Name = "EXAMPLE.org" }, "listed twice"},
		{"duplicate user", func(c *Config) { c.Domains[0].Users = append(c.Domains[0].Users, User{Name: "BOB"}) }, "user BOB listed twice"},
		{"user with space", func(c *Config) { c.Domains[0].Users[0].Name = "b ob" }, "white space"},
		{"alias shadowed by user", func(c *Config) { c.Domains[0].Aliases["bob"] = []string{"alice"} }, "is also a user"},
		{"alias without targets", func(c *Config) { c.Domains[0].Aliases["x"] = nil }, "has no targets"},
		{"alias to non-user", func(c *Config) { c.Domains[0].Aliases["x"] = []string{"nobody"} }, "not a user"},
		{"alias chain", func(c *Config) { c.Domains[0].Aliases["x"] = []string{"sales"} }, "not a user"},
		{"alias to foreign domain", func(c *Config) { c.Domains[0].Aliases["x"] = []string{"a@elsewhere.example"} }, "not served"},
		{"catch-all to non-user", func(c *Config) { c.Domains[2].CatchAll = []string{"nobody@example.org"} }, "catch-all"},
		{"catch-all with any-user", func(c *Config) { c.Domains[1].CatchAll = []string{"bob@example.org"} }, "no effect with any-user"},
		{"bad delimiter", func(c *Config) { c.DetailDelimiter = "@" }, "detail delimiter"},
		{"non-ASCII delimiter", func(c *Config) { c.DetailDelimiter = "ü" }, "detail delimiter"},
		{"no maildir root", func(c *Config) { c.Maildir.Root = "" }, "maildir.root: required"},
		{"relative maildir root", func(c *Config) { c.Maildir.Root = "mail" }, "absolute"},
		{"bad template", func(c *Config) { c.Maildir.Template = "../{user}" }, "template"},
		{"bad user template", func(c *Config) { c.Domains[0].Users[3].Route.Maildir = "{nope}" }, "unknown placeholder"},
		{"maildir and pipe", func(c *Config) {
			c.Domains[0].Users[0].Route = Route{Maildir: "x/{user}", Pipe: &Pipe{Command: pipe.Command{Argv: []string{"true"}}}}
		}, "either maildir or pipe, not both"},
		{"bad pipe", func(c *Config) { c.Domains[4].Route.Pipe.Argv = nil }, "pipe"},
		{"missing program", func(c *Config) { c.Domains[4].Route.Pipe.Argv = []string{"/nonexistent/prog"} }, "pipe"},
		{"relative spool dir", func(c *Config) { c.Spool.Dir = "spool" }, "spool dir"},
		{"negative max size", func(c *Config) { c.Maildir.MaxMessageBytes = -1 }, "negative"},
		{"postmaster not an address", func(c *Config) { c.Postmaster = "root" }, "postmaster"},
		{"postmaster does not route", func(c *Config) { c.Postmaster = "nobody@example.org" }, "does not route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("/srv/mail")
			tt.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		cfg := testConfig("/srv/mail")
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pipe only needs no root", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Domains = []Domain{{Name: "x", AnyUser: true, Route: Route{Pipe: &Pipe{Command: pipe.Command{Argv: []string{"true"}}}}}}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("all problems reported", func(t *testing.T) {
		cfg := testConfig("")
		cfg.DetailDelimiter = "@"
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "root") || !strings.Contains(err.Error(), "delimiter") {
			t.Errorf("Validate = %v, want both problems", err)
		}
	})
}

// TestWarnings: a postmaster that routes nowhere is a warning, not an
// error, so that check-config and serve can say so.
func TestWarnings(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" for no warning
	}{
		{"postmaster alias", func(*Config) {}, ""},
		{"no postmaster", func(c *Config) { delete(c.Domains[0].Aliases, "postmaster") }, "postmaster@Example.ORG does not route"},
		{"explicit postmaster", func(c *Config) { delete(c.Domains[0].Aliases, "postmaster"); c.Postmaster = "bob@example.org" }, ""},
		{"any user", func(c *Config) { delete(c.Domains[0].Aliases, "postmaster"); c.Domains[0].AnyUser = true }, ""},
		{"invalid configuration", func(c *Config) { c.Postmaster = "root" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			tt.mutate(&cfg)
			var w []string
			if p, err := Compile(cfg, PlanOptions{}); err == nil {
				w = p.Warnings()
			}
			switch {
			case tt.want == "" && len(w) != 0:
				t.Errorf("warnings %q, want none", w)
			case tt.want != "" && (len(w) != 1 || !strings.Contains(w[0], tt.want) || !strings.Contains(w[0], "RFC 5321")):
				t.Errorf("warnings %q, want one about %q", w, tt.want)
			}
		})
	}
}

// TestUnicodeLocalParts: local parts fold ASCII letters only, so a
// non-ASCII spelling never reaches an ASCII mailbox ("admİn", the Kelvin
// sign in "Kate"); an any-user domain refuses non-ASCII user names unless
// utf8_local_parts is on, and then accepts only PRECIS-canonical ones.
func TestUnicodeLocalParts(t *testing.T) {
	const (
		dotI   = "adm\u0130n"         // admİn, capital I with dot above
		kelvin = "\u212Aate"          // Kate with the Kelvin sign
		cyr    = "\u0430lice"         // аlice with a Cyrillic а
		nfd    = "jos\u0065\u0301"    // josé, decomposed
		nfc    = "jos\u00e9"          // josé, composed
		upper  = "JOS\u00c9"          // JOSÉ
		wide   = "\uff41lice"         // ａlice, fullwidth a
		longS  = "\u017Fam"           // ſam, long s (compatibility form of s)
		greek  = "\u03b1\u03b2\u03b3" // αβγ
	)
	tests := []struct {
		name     string
		rcpt     string
		utf8     bool
		caseSens bool
		wantUser string // "" when refused
		code     int
		ec       protocol.EnhancedCode
	}{
		{name: "ASCII folds", rcpt: "Admin@listed.test", wantUser: "admin"},
		{name: "dotted capital I is not i", rcpt: dotI + "@listed.test", code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "Kelvin sign is not K", rcpt: kelvin + "@listed.test", code: 550, ec: protocol.EnhancedCode{5, 1, 1}},
		{name: "ASCII in any-user", rcpt: "Kate@any.test", wantUser: "kate"},
		{name: "Cyrillic look-alike refused in any-user", rcpt: cyr + "@any.test", code: 553, ec: protocol.EnhancedCode{5, 6, 7}},
		{name: "dotted capital I refused in any-user", rcpt: dotI + "@any.test", code: 553, ec: protocol.EnhancedCode{5, 6, 7}},
		{name: "Kelvin sign refused in any-user", rcpt: kelvin + "@any.test", code: 553, ec: protocol.EnhancedCode{5, 6, 7}},
		{name: "non-ASCII detail is fine", rcpt: "kate+\u65e5\u672c@any.test", wantUser: "kate"},
		{name: "UTF-8: composed accepted", rcpt: nfc + "@any.test", utf8: true, wantUser: nfc},
		{name: "UTF-8: upper case folds to the same", rcpt: upper + "@any.test", utf8: true, wantUser: nfc},
		{name: "UTF-8: case kept when case-sensitive", rcpt: upper + "@any.test", utf8: true, caseSens: true, wantUser: upper},
		{name: "UTF-8: Greek", rcpt: greek + "@any.test", utf8: true, wantUser: greek},
		{name: "UTF-8: decomposed refused", rcpt: nfd + "@any.test", utf8: true, code: 553, ec: protocol.EnhancedCode{5, 1, 3}},
		{name: "UTF-8: Kelvin sign refused", rcpt: kelvin + "@any.test", utf8: true, code: 553, ec: protocol.EnhancedCode{5, 1, 3}},
		{name: "UTF-8: fullwidth refused", rcpt: wide + "@any.test", utf8: true, code: 553, ec: protocol.EnhancedCode{5, 1, 3}},
		{name: "UTF-8: long s refused", rcpt: longS + "@any.test", utf8: true, code: 553, ec: protocol.EnhancedCode{5, 1, 3}},
		{name: "UTF-8: dotted capital I does not fold to admin", rcpt: dotI + "@any.test", utf8: true, wantUser: "admi\u0307n"},
		{name: "UTF-8: symbols refused", rcpt: "\u2603@any.test", utf8: true, code: 553, ec: protocol.EnhancedCode{5, 1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Maildir.Root = "/nonexistent"
			cfg.CaseSensitive = tt.caseSens
			cfg.Domains = []Domain{
				{Name: "listed.test", Users: []User{{Name: "admin"}, {Name: "kate"}, {Name: "alice"}}},
				{Name: "any.test", AnyUser: true, UTF8LocalParts: tt.utf8},
			}
			tab, err := compile(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			tgs, err := tab.lookup(context.Background(), addr(tt.rcpt), protocol.LMTP, nil)
			if tt.wantUser == "" {
				checkCode(t, err, tt.code, tt.ec)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tgs) != 1 || tgs[0].User != tt.wantUser {
				t.Fatalf("targets %+v, want user %q", tgs, tt.wantUser)
			}
			if want := strings.SplitN(tgs[0].Domain, ".", 2)[0]; !strings.HasSuffix(tgs[0].Mailbox, "/"+tt.wantUser) || !strings.HasPrefix(tgs[0].Mailbox, want) {
				t.Errorf("maildir %q for user %q", tgs[0].Mailbox, tt.wantUser)
			}
		})
	}
}

func TestLowerASCII(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "abc": "abc", "ABC": "abc", "MiXeD-1.X": "mixed-1.x",
		"\u0130": "\u0130", "\u212A": "\u212A", "\u00c9X": "\u00c9x",
	} {
		if got := lowerASCII(in); got != want {
			t.Errorf("lowerASCII(%q) = %q, want %q", in, got, want)
		}
	}
}
