package delivery

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/directory"
	"github.com/lmtpd/lmtpd/protocol"
)

// TestConfigErrorKeys: every problem comes back as one *ConfigError whose
// Key is the path to the setting at fault, so that a caller finds the
// place in its own configuration file without reading the text.
func TestConfigErrorKeys(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		keys   [][]string
	}{
		{"no domains", func(c *Config) { c.Domains = nil }, [][]string{{"domains"}}},
		{"domain name required", func(c *Config) { c.Domains[3].Name = "" }, [][]string{{"domains", "3", "name"}}},
		{"domain twice", func(c *Config) { c.Domains[3].Name = "EXAMPLE.com" }, [][]string{{"domains", "3"}}},
		{"user name required", func(c *Config) { c.Domains[0].Users[2].Name = "" }, [][]string{{"domains", "0", "users", "2", "name"}}},
		{"user twice", func(c *Config) { c.Domains[0].Users = append(c.Domains[0].Users, User{Name: "BOB"}) }, [][]string{{"domains", "0", "users", "4", "name"}}},
		{"both routes", func(c *Config) {
			c.Domains[0].Users[3].Route = Route{Maildir: "x/{user}", Pipe: &Pipe{Command: pipe.Command{Argv: []string{"true"}}}}
		}, [][]string{{"domains", "0", "users", "3", "route"}}},
		{"bad pipe", func(c *Config) { c.Domains[4].Route.Pipe.Argv = nil }, [][]string{{"domains", "4", "route", "pipe"}}},
		{"negative pipe limits", func(c *Config) { c.Domains[4].Route.Pipe.MaxProcesses, c.Domains[4].Route.Pipe.MaxWait = -1, -1 },
			[][]string{{"domains", "4", "route", "pipe", "max_processes"}, {"domains", "4", "route", "pipe", "max_wait"}}},
		{"user template", func(c *Config) { c.Domains[0].Users[3].Route.Maildir = "{nope}" }, [][]string{{"domains", "0", "users", "3", "route", "maildir"}}},
		{"alias", func(c *Config) { c.Domains[0].Aliases["x"] = []string{"nobody"} }, [][]string{{"domains", "0", "aliases", "x"}}},
		{"catch-all", func(c *Config) { c.Domains[2].CatchAll = []string{"nobody@example.org"} }, [][]string{{"domains", "2", "catch_all"}}},
		{"root required", func(c *Config) { c.Maildir.Root = "" }, [][]string{{"maildir", "root"}}},
		{"max size", func(c *Config) { c.Maildir.MaxMessageBytes = -1 }, [][]string{{"maildir", "max_message_bytes"}}},
		{"special folder", func(c *Config) { c.Maildir.SpecialFolders = []string{"Trash", "a.b"} }, [][]string{{"maildir", "special_folders", "1"}}},
		{"dedup path", func(c *Config) { c.Dedup.Enabled = true }, [][]string{{"dedup", "path"}}},
		{"several", func(c *Config) { c.DeliveredTo = "sometimes"; c.Spool.Dir = "rel"; c.Postmaster = "x" },
			[][]string{{"delivered_to"}, {"spool", "dir"}, {"postmaster"}}},
		// The alias "fixed" targets bob+fixed, a user only with "+".
		{"delimiter", func(c *Config) { c.DetailDelimiter = "\"" }, [][]string{{"detail_delimiter"}, {"domains", "0", "aliases", "fixed"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("/srv/mail")
			tt.mutate(&cfg)
			p, err := Compile(cfg, PlanOptions{})
			if p != nil || err == nil {
				t.Fatalf("Compile = %v, %v; want an error", p, err)
			}
			var keys [][]string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var ce *ConfigError
				if !errors.As(e, &ce) {
					t.Fatalf("%T %v is not a *ConfigError", e, e)
				}
				if !strings.HasPrefix(ce.Error(), strings.Join(ce.Key, ".")+": ") || !errors.Is(ce, ce.Err) {
					t.Errorf("Error() = %q for key %q", ce.Error(), ce.Key)
				}
				keys = append(keys, ce.Key)
			}
			if !reflect.DeepEqual(keys, tt.keys) {
				t.Errorf("keys %q, want %q\n%v", keys, tt.keys, err)
			}
		})
	}
}

// TestPlanWarnings: the plan carries its warnings, and MaildirRoot names
// the root only when a route delivers to maildir.
func TestPlanWarnings(t *testing.T) {
	cfg := testConfig("/srv/mail")
	delete(cfg.Domains[0].Aliases, "postmaster")
	p, err := Compile(cfg, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w := p.Warnings(); len(w) != 1 || !strings.Contains(w[0], "does not route") {
		t.Errorf("warnings %q", w)
	}
	if p.MaildirRoot() != "/srv/mail" {
		t.Errorf("MaildirRoot = %q", p.MaildirRoot())
	}
	pipeOnly := DefaultConfig()
	pipeOnly.Maildir.Root = "/srv/mail"
	pipeOnly.Domains = []Domain{{Name: "x", AnyUser: true, Route: Route{Pipe: &Pipe{Command: pipe.Command{Argv: []string{"true"}}}}}}
	if p, err = Compile(pipeOnly, PlanOptions{}); err != nil || p.MaildirRoot() != "" {
		t.Errorf("pipe only: MaildirRoot %q, %v", p.MaildirRoot(), err)
	}
}

// recordLookup answers every user with a fixed record.
type recordLookup struct {
	rec  directory.Record
	keys []directory.Key
}

func (l *recordLookup) LookupUser(_ context.Context, k directory.Key) (directory.Record, error) {
	l.keys = append(l.keys, k)
	return l.rec, nil
}

// TestLookupRecord: a Lookup's record becomes the recipient's resolution;
// its mailbox replaces the template, but never names a path outside the
// maildir root (a temporary failure an administrator can fix, not a
// bounce).
func TestLookupRecord(t *testing.T) {
	tab, err := compile(ptr(testConfig("/srv/mail")))
	if err != nil {
		t.Fatal(err)
	}
	l := &recordLookup{rec: directory.Record{Mailbox: "vmail/x/../ext", Sieve: "/s/ext.sieve", QuotaBytes: directory.Limit{Value: 10, Set: true}}}
	ds, err := tab.lookup(context.Background(), addr("Ext+Lists@Example.org"), protocol.LMTP, l)
	if err != nil {
		t.Fatal(err)
	}
	if want := (directory.Key{Address: "ext@example.org", LocalPart: "ext", Domain: "example.org", Detail: "Lists"}); len(l.keys) != 1 || l.keys[0] != want {
		t.Errorf("lookup keys %+v, want %+v", l.keys, want)
	}
	d := ds[0]
	if d.Mailbox != "vmail/ext" || d.Folder != ".Lists" || d.Sieve != "/s/ext.sieve" || d.QuotaBytes.Value != 10 || d.User != "ext" || d.Target.Kind() != "maildir" {
		t.Errorf("destination %+v", d)
	}
	for _, bad := range []string{"../elsewhere", "/etc", "a/../../b"} {
		l.rec.Mailbox = bad
		_, err := tab.lookup(context.Background(), addr("ext@example.org"), protocol.LMTP, l)
		checkCode(t, err, 451, protocol.EnhancedCode{4, 3, 5})
	}
}

func ptr[T any](v T) *T { return &v }
