package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmtpd/lmtpd/delivery"
	"github.com/lmtpd/lmtpd/delivery/pipe"
	"github.com/lmtpd/lmtpd/protocol"
	"github.com/lmtpd/lmtpd/sasl"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false},
		{"1234", 1234, false},
		{"512KiB", 512 << 10, false},
		{"50MiB", 50 << 20, false},
		{"1G", 1 << 30, false},
		{"1g", 1 << 30, false},
		{"2 GiB", 2 << 30, false},
		{"50MB", 50e6, false},
		{"10K", 10 << 10, false},
		{"7B", 7, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"50XB", 0, true},
		{"-1", 0, true},
		{"1.5M", 0, true},
		{"99999999999TiB", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSize(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestValueDecoders(t *testing.T) {
	tests := []struct {
		name    string
		v       tomlValue
		in      any
		want    string // MarshalText of the result
		wantErr string
	}{
		{"duration", new(duration), "90s", "1m30s", ""},
		{"duration hours", new(duration), "2h", "2h", ""},
		{"duration zero", new(duration), "0s", "0s", ""},
		{"duration no unit", new(duration), "5", "", `invalid duration "5": use a number with a unit (ms, s, m, h), such as "30s" or "5m"`},
		{"duration negative", new(duration), "-1s", "", `invalid duration "-1s": must not be negative`},
		{"duration integer", new(duration), int64(5), "", `expected a duration string such as "30s" or "5m", found an integer`},
		{"size string", new(size), "50MiB", "50MiB", ""},
		{"size integer", new(size), int64(1000), "1000", ""},
		{"size odd", new(size), int64(1025), "1025", ""},
		{"size negative", new(size), int64(-1), "", "invalid size -1: must not be negative"},
		{"size bool", new(size), true, "", `expected a size such as "50MiB" or a number of bytes, found a boolean`},
		{"mode string", new(fileMode), "0660", "0660", ""},
		{"mode 0o", new(fileMode), "0o600", "0600", ""},
		{"mode integer", new(fileMode), int64(0o640), "0640", ""},
		{"mode bad digit", new(fileMode), "0980", "", `invalid mode "0980": use octal digits such as "0660"`},
		{"mode too big", new(fileMode), int64(0o4755), "", "invalid mode 04755: only permission bits (0000 to 0777) are allowed"},
		{"mode float", new(fileMode), 1.5, "", `expected an octal mode string such as "0660", found a float`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.decodeTOML(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := tc.v.(interface{ MarshalText() ([]byte, error) }).MarshalText()
			if string(got) != tc.want {
				t.Errorf("MarshalText = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLocator(t *testing.T) {
	text := `# comment
[log]
level = "info" # trailing

[[listener]]
name = "a"
description = """
[[listener]]
not = "a key"
"""
address = "x"

[[listener]]
"quoted.key" = 1
trusted_networks = [
  "10.0.0.0/8", # ]
  "192.0.2.1",
]
address = 'y'

[[domain]]
name = "a.test"
[[domain.user]]
name = "u1"
[[domain.user]]
name = "u2"
route.pipe.argv = ["/bin/true"]
[domain.route]
maildir = "m"

[[domain]]
name = "b.test"
[[domain.user]]
name = "v1"
`
	l := newLocator(text)
	tests := map[string]int{
		"log":                             2,
		"log.level":                       3,
		"listener":                        5,
		"listener[0]":                     5,
		"listener[0].name":                6,
		"listener[0].address":             11,
		"listener[1]":                     13,
		"listener[1].quoted.key":          14,
		"listener[1].trusted_networks":    15,
		"listener[1].trusted_networks[1]": 15,
		"listener[1].address":             19,
		"listener[2].address":             5, // the nearest recorded ancestor: listener
		"domain[0].name":                  22,
		"domain[0].user[0].name":          24,
		"domain[0].user[1].name":          26,
		"domain[0].user[1].route.pipe":    27,
		"domain[0].user[1].route.pipe.x":  27,
		"domain[0].route.maildir":         29,
		"domain[1].name":                  32,
		"domain[1].user[0]":               33,
		"domain[1].user[0].name":          34,
		"metrics.address":                 0,
		"":                                0,
	}
	for path, want := range tests {
		if got := l.line(path); got != want {
			t.Errorf("line(%q) = %d, want %d", path, got, want)
		}
	}
	if got := (*locator)(nil).line("x"); got != 0 {
		t.Errorf("nil locator: %d", got)
	}
}

func TestDecodeStrict(t *testing.T) {
	type inner struct {
		N int64 `toml:"n"`
	}
	type target struct {
		S   string              `toml:"s"`
		B   bool                `toml:"b"`
		I   int                 `toml:"i"`
		L   []string            `toml:"l"`
		M   map[string][]string `toml:"m"`
		P   *pipeConfig         `toml:"p"`
		T   []inner             `toml:"t"`
		Skp string              `toml:"-"`
	}
	tests := []struct {
		name string
		text string
		want string // the error, "" for none
		chk  func(t *testing.T, v *target)
	}{
		{"all types", "s = \"x\"\nb = true\ni = 3\nl = [\"a\", \"b\"]\nm = { k = [\"v\"] }\n[p]\nargv = [\"/bin/true\"]\n[[t]]\nn = 1\n[[t]]\nn = 2\n", "",
			func(t *testing.T, v *target) {
				want := target{S: "x", B: true, I: 3, L: []string{"a", "b"}, M: map[string][]string{"k": {"v"}},
					P: &pipeConfig{Argv: []string{"/bin/true"}, Timeout: duration(10 * time.Minute), MaxOutput: 4096, Dir: "/",
						MaxProcesses: pipe.DefaultMaxProcesses, MaxWait: duration(pipe.DefaultMaxWait)},
					T: []inner{{1}, {2}}}
				if !reflect.DeepEqual(*v, want) {
					t.Errorf("got %+v\nwant %+v", *v, want)
				}
			}},
		{"unknown keys everywhere", "x = 1\n[[t]]\nn = 1\nz = 2\n[p]\nargv = []\nq = 1\n",
			"f:1: x: unknown key\nf:4: t[0].z: unknown key\nf:7: p.q: unknown key", nil},
		{"wrong types", "s = 1\nb = \"yes\"\ni = 1.5\nl = \"a\"\nm = 3\nt = 4\n",
			"f:1: s: expected a string, found an integer\nf:2: b: expected a boolean (true or false), found a string\nf:3: i: expected an integer, found a float\nf:4: l: expected an array of strings: l = [\"...\", \"...\"], found a string\nf:5: m: expected a table: [m] or m = { ... }, found an integer\nf:6: t: expected [[t]] tables (or t = [{ ... }]), found an integer", nil},
		{"element types", "l = [\"a\", 2]\nm = { k = [1] }\n", "f:1: l[1]: expected a string, found an integer\nf:2: m.k[0]: expected a string, found an integer", nil},
		{"table expected", "p = \"x\"\n", "f:1: p: expected a table: [p] or p = { ... }, found a string", nil},
		{"out of range", "i = 99999999999\n", "f:1: i: 99999999999 is out of range", nil},
		{"date", "s = 2026-01-01\n", "f:1: s: expected a string, found a date or time", nil},
		{"hyphen key not a field", "- = 1\n", "f:1: -: unknown key", nil},
		{"syntax", "s = \n", "f:1: s: expected value but found '\\n' instead", nil},
		{"syntax at the end of a line", "[t\nn = 1\n", "f:1: expected '.' or ']' to end table name, but got '\\n' instead", nil},
		{"syntax on the next line", "s = \"a\"\n= 1\n", "f:2: unexpected '=': key name appears blank", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v target
			err := decodeStrict("f", tc.text, &v)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("error:\n%s\nwant:\n%s", got, tc.want)
			}
			if tc.chk != nil {
				tc.chk(t, &v)
			}
		})
	}
}

// testConfig parses text with base as the directory of relative paths.
func testConfig(t *testing.T, text string) (*config, error) {
	t.Helper()
	return parseConfig("test.toml", text, t.TempDir(), false)
}

func TestParseConfigMapping(t *testing.T) {
	dir := t.TempDir()
	hash, scram, err := sasl.MakeSecrets("pw")
	if err != nil {
		t.Fatal(err)
	}
	usersFile := filepath.Join(dir, "users.toml")
	if err := os.WriteFile(usersFile, []byte("[[user]]\nname = \"bob\"\npassword_hash = \""+hash+"\"\naddresses = [\"bob@example.test\", \"@example.org\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := `
[log]
level = "debug"
format = "json"

[[listener]]
address = "unix:run/lmtp.sock"

[[listener]]
protocol = "smtp"
address = "127.0.0.1:2525"
auth = "optional"
trusted_networks = ["192.0.2.1", "2001:db8::/32"]
max_message_size = 0

[[listener]]
address = "unix:/abs/other.sock"

[auth]
users_file = "users.toml"

[[auth.user]]
name = "alice@example.test"
scram = "` + scram + `"

[delivery]
detail_delimiter = "-"
delivered_to = "never"

[delivery.maildir]
root = "mail"
max_message_size = "10MiB"
group = "0"
file_mode = "0640"
dir_mode = 0o750

[delivery.spool]
threshold = 0

[[domain]]
name = "example.test"
utf8_local_parts = true
users = ["alice"]
aliases = { info = ["alice"] }
[[domain.user]]
name = "robot"
create_folders = true
route = { pipe = { argv = ["/bin/cat"], timeout = "1m", per_message = true } }

[[domain]]
name = "example.org"
catch_all = ["alice@example.test"]
route = { maildir = "{domain}/shared" }
`
	cfg, err := parseConfig("test.toml", text, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{cfg.Listeners[0].Name, cfg.Listeners[1].Name, cfg.Listeners[2].Name}; !reflect.DeepEqual(got, []string{"lmtp", "smtp", "lmtp-3"}) {
		t.Errorf("listener names %q", got)
	}
	if got := cfg.Listeners[0].Address; got != "unix:"+filepath.Join(dir, "run/lmtp.sock") {
		t.Errorf("relative socket path resolved to %q", got)
	}
	if got := cfg.Listeners[2].Address; got != "unix:/abs/other.sock" {
		t.Errorf("absolute socket path changed to %q", got)
	}
	if got := cfg.trusted[1]; len(got) != 2 || got[0].String() != "192.0.2.1/32" || got[1].String() != "2001:db8::/32" {
		t.Errorf("trusted networks %v", got)
	}
	if l := cfg.Listeners[0]; l.MaxRecipients != protocol.DefaultMaxRecipients || l.CommandTimeout != duration(protocol.DefaultCommandTimeout) || l.SocketMode != 0o660 {
		t.Errorf("listener defaults not filled in: %+v", l)
	}
	d := cfg.dcfg
	if d.Maildir.Root != filepath.Join(dir, "mail") || d.Maildir.MaxMessageBytes != 10<<20 || d.Spool.Threshold != -1 || d.DetailDelimiter != "-" || d.DeliveredTo != delivery.DeliveredToNever || !d.LoopCheck {
		t.Errorf("delivery config %+v", d)
	}
	if len(d.Domains) != 2 || len(d.Domains[0].Users) != 2 {
		t.Fatalf("domains %+v", d.Domains)
	}
	if !d.Domains[0].UTF8LocalParts || d.Domains[1].UTF8LocalParts {
		t.Errorf("utf8_local_parts not mapped: %v %v", d.Domains[0].UTF8LocalParts, d.Domains[1].UTF8LocalParts)
	}
	if d.Maildir.Owner != "" || d.Maildir.Group != "0" || d.Maildir.FileMode != 0o640 || d.Maildir.DirMode != 0o750 {
		t.Errorf("maildir owner, group and modes %q %q %#o %#o", d.Maildir.Owner, d.Maildir.Group, d.Maildir.FileMode, d.Maildir.DirMode)
	}
	if !reflect.DeepEqual(d.Maildir.SpecialFolders, delivery.DefaultSpecialFolders) {
		t.Errorf("special folders %q, want the default", d.Maildir.SpecialFolders)
	}
	robot := d.Domains[0].Users[1]
	if robot.Name != "robot" || robot.Route.Pipe == nil || !robot.Route.Pipe.PerMessage || robot.Route.Pipe.Timeout != time.Minute || robot.Route.Pipe.Argv[0] != "/bin/cat" ||
		robot.Route.Pipe.MaxProcesses != pipe.DefaultMaxProcesses || robot.Route.Pipe.MaxWait != pipe.DefaultMaxWait ||
		robot.CreateFolders == nil || !*robot.CreateFolders || d.Domains[0].Users[0].CreateFolders != nil {
		t.Errorf("robot %+v", robot)
	}
	if d.Domains[1].Route.Maildir != "{domain}/shared" || d.Domains[1].CatchAll[0] != "alice@example.test" {
		t.Errorf("example.org %+v", d.Domains[1])
	}
	if err := d.Validate(); err != nil {
		t.Errorf("the delivery config does not validate: %v", err)
	}
	if len(cfg.users) != 2 || cfg.users["bob"].PasswordHash != hash || cfg.users["alice@example.test"].Scram == nil {
		t.Errorf("users %v", cfg.users)
	}
	if got := cfg.addresses["alice@example.test"]; !reflect.DeepEqual(got, []string{"alice@example.test"}) {
		t.Errorf("alice's addresses default to her name: %q", got)
	}
	if got := cfg.addresses["bob"]; !reflect.DeepEqual(got, []string{"bob@example.test", "@example.org"}) {
		t.Errorf("bob's addresses %q", got)
	}
	if cfg.logLevel.String() != "debug" {
		t.Errorf("log level %v", cfg.logLevel)
	}

	// The effective configuration reads back to the same thing.
	out, err := cfg.effective()
	if err != nil {
		t.Fatal(err)
	}
	cfg2, err := parseConfig("effective.toml", string(out), dir, false)
	if err != nil {
		t.Fatalf("effective configuration does not parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(cfg.Listeners, cfg2.Listeners) || !reflect.DeepEqual(cfg.dcfg, cfg2.dcfg) || !reflect.DeepEqual(cfg.Delivery, cfg2.Delivery) {
		t.Errorf("effective configuration differs when read back:\n%s", out)
	}
}

func TestConfigErrors(t *testing.T) {
	const ok = "[[listener]]\naddress = \"127.0.0.1:2424\"\n[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"example.test\"\nany_user = true\n"
	hash, _, err := sasl.MakeSecrets("pw")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, text string
		want       []string
	}{
		{"no domain", "[[listener]]\naddress = \"127.0.0.1:2424\"\n", []string{"test.toml: domain: at least one [[domain]] is required"}},
		{"duplicate names", ok + "[[listener]]\nname = \"lmtp\"\naddress = \"127.0.0.1:2425\"\n",
			[]string{`test.toml:9: listener[1].name: listener name "lmtp" is used twice`}},
		{"duplicate address", ok + "[[listener]]\naddress = \"127.0.0.1:2424\"\n",
			[]string{`test.toml:9: listener[1].address: listener "lmtp" has the same address`}},
		{"bad name", strings.Replace(ok, "[[listener]]\n", "[[listener]]\nname = \"a b\"\n", 1),
			[]string{`test.toml:2: listener[0].name: "a b": a listener name must be printable ASCII without spaces or colons (systemd FileDescriptorName)`}},
		{"missing address", "[[listener]]\nprotocol = \"smtp\"\n" + ok[strings.Index(ok, "[delivery"):],
			[]string{`test.toml:1: listener[0].address: required: "host:port" or "unix:/path/to/socket"`}},
		{"empty unix", strings.Replace(ok, `"127.0.0.1:2424"`, `"unix:"`, 1), []string{"test.toml:2: listener[0].address: unix: needs a socket path"}},
		{"owner on tcp", strings.Replace(ok, "[[listener]]\n", "[[listener]]\nsocket_owner = \"root\"\nsocket_group = \"root\"\n", 1),
			[]string{"test.toml:2: listener[0].socket_owner: applies only to unix: addresses", "test.toml:3: listener[0].socket_group: applies only to unix: addresses"}},
		{"unknown owner", strings.Replace(ok, "[[listener]]\naddress = \"127.0.0.1:2424\"\n", "[[listener]]\naddress = \"unix:/x.sock\"\nsocket_owner = \"no-such-user-x\"\nsocket_group = \"no-such-group-x\"\n", 1),
			[]string{`test.toml:3: listener[0].socket_owner: no such user "no-such-user-x"`, `test.toml:4: listener[0].socket_group: no such group "no-such-group-x"`}},
		{"unknown port", strings.Replace(ok, "127.0.0.1:2424", "127.0.0.1:nosuchport", 1), []string{`test.toml:2: listener[0].address: "127.0.0.1:nosuchport": unknown port "nosuchport"`}},
		{"require_tls without starttls", strings.Replace(ok, "[[listener]]\n", "[[listener]]\nrequire_tls = true\n", 1),
			[]string{`test.toml:2: listener[0].require_tls: needs tls = "starttls" (an implicit-TLS listener always has TLS)`}},
		{"tls without files", strings.Replace(ok, "[[listener]]\n", "[[listener]]\ntls = \"implicit\"\n", 1),
			[]string{`test.toml: tls: a listener uses TLS: [tls] cert_file and key_file are required`}},
		{"limits", strings.Replace(ok, "[[listener]]\n", "[[listener]]\nmax_recipients = 0\nmax_errors = -1\nmax_text_line_length = -1\nmax_connections_per_ip = -2\nmax_header_size = 0\ndata_timeout = \"0s\"\n", 1),
			[]string{"test.toml:2: listener[0].max_recipients: must be a positive number, not 0", "test.toml:3: listener[0].max_errors: must be a positive number, not -1",
				"test.toml:4: listener[0].max_text_line_length: must not be negative (0 means no limit)", "test.toml:5: listener[0].max_connections_per_ip: must not be negative (0 means no limit)",
				"test.toml:6: listener[0].max_header_size: must be positive", "test.toml:7: listener[0].data_timeout: must be positive"}},
		{"refusal and rate limits", strings.Replace(ok, "[[listener]]\n", "[[listener]]\nmax_refused_recipients = -1\nmin_data_rate = -5\n", 1),
			[]string{"test.toml:2: listener[0].max_refused_recipients: must not be negative (0 means no limit)", "test.toml:3: listener[0].min_data_rate: must not be negative (0 means no limit)"}},
		{"metrics address", ok + "[metrics]\naddress = \"nope\"\n", []string{`test.toml:9: metrics.address: "nope" is not host:port or unix:/path (missing port in address)`}},
		{"hostname", ok + "[server]\nhostname = \"a b\"\n", []string{`test.toml:9: server.hostname: "a b" is not a host name`}},
		{"maildir root required", strings.Replace(ok, "root = \"mail\"\n", "", 1), []string{"test.toml:3: delivery.maildir.root: required: a domain or user delivers to maildir"}},
		{"dedup path", ok + "[delivery.dedup]\nenabled = true\n", []string{"test.toml:8: delivery.dedup.path: required when dedup is enabled"}},
		{"both routes", ok + "route = { maildir = \"x\", pipe = { argv = [\"/bin/true\"] } }\n", []string{"test.toml:8: domain[0].route: a route has either maildir or pipe, not both"}},
		{"pipe limits", ok + "route = { pipe = { argv = [\"/bin/true\"], max_processes = 0, max_wait = \"0s\" } }\n",
			[]string{"test.toml:8: domain[0].route.pipe.max_processes: 0: want at least 1", "test.toml:8: domain[0].route.pipe.max_wait: 0s: want a positive duration"}},
		{"domain name", ok + "[[domain]]\nany_user = true\n", []string{"test.toml:8: domain[1].name: required"}},
		{"user name", ok + "[[domain.user]]\nroute = {}\n", []string{"test.toml:8: domain[0].user[0].name: required"}},
		{"delivery cross-checks", ok + "aliases = { info = [\"nobody@elsewhere.test\"] }\ncatch_all = [\"x\"]\n[delivery]\npostmaster = \"nobody@elsewhere.test\"\n",
			[]string{
				"test.toml:8: domain[0].aliases.info: domain example.test: alias info: target nobody@elsewhere.test: domain elsewhere.test is not served",
				"test.toml:9: domain[0].catch_all: domain example.test: catch-all has no effect with any-user",
			}},
		{"sieve", ok + "[sieve]\nenabled = true\nscript = \"{home}/{nope}\"\nbefore = [\"/etc/a\", \"rel\"]\nsendmail = [\"sendmail\"]\nstate_dir = \"\"\nmax_actions = -1\n",
			[]string{
				`test.toml:10: sieve.script: sieve script template "{home}/{nope}": unknown placeholder {nope} (want one of {home} {mailbox} {localpart} {domain} {address})`,
				`test.toml:12: sieve.sendmail: the command "sendmail" is not an absolute path (no shell and no PATH search)`,
				`test.toml:13: sieve.state_dir: required: vacation and duplicate remember senders there`,
				`test.toml:14: sieve.max_actions: -1 is negative`,
			}},
		{"delivery postmaster", ok + "[delivery]\npostmaster = \"nobody\"\n",
			[]string{`test.toml:9: delivery.postmaster: postmaster "nobody" is not an address local@domain`}},
		{"delivery domain twice", ok + "[[domain]]\nname = \"Example.test\"\n",
			[]string{"test.toml:8: domain[1]: domain Example.test listed twice"}},
		{"delivery template", strings.Replace(ok, "root = \"mail\"", "root = \"mail\"\ntemplate = \"{nope}\"", 1),
			[]string{"test.toml:5: delivery.maildir.template: maildir template: maildir: path template \"{nope}\": unknown placeholder {nope}"}},
		{"user without secret", ok + "[[auth.user]]\nname = \"carol\"\n", []string{`test.toml:8: auth.user[0]: user "carol" has neither password_hash nor scram (make both with lmtpd hash-password)`}},
		{"user twice", ok + "[[auth.user]]\nname = \"carol\"\npassword_hash = \"" + hash + "\"\n[[auth.user]]\nname = \"carol\"\npassword_hash = \"" + hash + "\"\n",
			[]string{`test.toml:12: auth.user[1].name: user "carol" is also defined at test.toml:8`}},
		{"bad hash", ok + "[[auth.user]]\nname = \"carol\"\npassword_hash = \"$argon2id$v=19$m=1,t=1,p=1$x$y\"\n",
			[]string{`test.toml:10: auth.user[0].password_hash: password hash: sasl: invalid stored secret: argon2id: salt and hash must be unpadded base64 (make one with lmtpd hash-password)`}},
		{"bad address", ok + "[[auth.user]]\nname = \"carol\"\npassword_hash = \"" + hash + "\"\naddresses = [\"carol\"]\n",
			[]string{`test.toml:11: auth.user[0].addresses[0]: "carol" is not an address (local@domain, or @domain for the whole domain)`}},
		{"auth without a mechanism", strings.Replace(ok, "[[listener]]\n", "[[listener]]\nauth = \"optional\"\n", 1) + "[[auth.user]]\nname = \"carol\"\npassword_hash = \"" + hash + "\"\n",
			[]string{`test.toml:2: listener[0].auth: auth = "optional" offers no mechanism: PLAIN and LOGIN need TLS (tls = "starttls") or insecure_auth = true, SCRAM-SHA-256 needs users with scram keys`}},
		{"require_tls_for_auth without TLS", strings.Replace(ok, "[[listener]]\n", "[[listener]]\nauth = \"optional\"\nrequire_tls_for_auth = true\n", 1) + "[[auth.user]]\nname = \"carol\"\npassword_hash = \"" + hash + "\"\n",
			[]string{`test.toml:2: listener[0].auth: auth = "optional" offers no mechanism: require_tls_for_auth = true needs tls = "starttls" or "implicit"`}},
		{"require_tls_for_auth and insecure_auth", strings.Replace(ok, "[[listener]]\n", "[[listener]]\nauth = \"optional\"\nrequire_tls_for_auth = true\ninsecure_auth = true\n", 1) + "[[auth.user]]\nname = \"carol\"\npassword_hash = \"" + hash + "\"\n",
			[]string{`test.toml:3: listener[0].require_tls_for_auth: contradicts insecure_auth = true: choose one`}},
		{"auth limiter", ok + "[server]\nmax_auth_verifications = -1\n",
			[]string{"test.toml:9: server.max_auth_verifications: must not be negative (0 means the number of cores)"}},
		{"auth queue timeout", ok + "[server]\nauth_queue_timeout = \"-1s\"\n",
			[]string{`test.toml:9: server.auth_queue_timeout: invalid duration "-1s": must not be negative`}},
		{"users file missing", ok + "[auth]\nusers_file = \"/nonexistent/users.toml\"\n", []string{"test.toml:9: auth.users_file: open /nonexistent/users.toml: no such file or directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testConfig(t, tc.text)
			var ce configErrors
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want configErrors", err)
			}
			var got []string
			for _, e := range ce {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestCheckWritableDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"existing", dir, ""},
		{"to be created", filepath.Join(dir, "a", "b"), ""},
		{"a file", file, file + " is not a directory"},
		{"under a file", filepath.Join(file, "x"), filepath.Join(file, "x") + ": " + file + " is not a directory"},
	}
	if os.Geteuid() == 0 {
		tests = append(tests, struct{ name, path, want string }{"read-only", "/proc/1/x", "/proc/1/x does not exist and cannot be created: /proc/1 is not writable"})
	} else {
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o555)
		tests = append(tests, struct{ name, path, want string }{"read-only", ro, ro + " is not writable by this process (uid " + strconv.Itoa(os.Geteuid()) + ")"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkWritableDir(tc.path)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("checkWritableDir(%s) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestEmbeddedDefault(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.embedded || cfg.file != embeddedName {
		t.Errorf("embedded %v, file %q", cfg.embedded, cfg.file)
	}
	want := []struct{ name, proto, addr string }{{"lmtp", "lmtp", "unix:" + filepath.Join(wd, "run", "lmtp.sock")}, {"smtp", "smtp", "127.0.0.1:2525"}}
	for i, w := range want {
		l := cfg.Listeners[i]
		if l.Name != w.name || l.Protocol != w.proto || l.Address != w.addr {
			t.Errorf("listener %d = %s %s %s, want %v", i, l.Name, l.Protocol, l.Address, w)
		}
	}
	if cfg.dcfg.Maildir.Root != filepath.Join(wd, "mail") || cfg.dcfg.Maildir.Template != "{domain}/{user}" {
		t.Errorf("maildir %+v", cfg.dcfg.Maildir)
	}
	var names []string
	for _, d := range cfg.dcfg.Domains {
		if !d.AnyUser {
			t.Errorf("domain %s: any_user off", d.Name)
		}
		names = append(names, d.Name)
	}
	if !reflect.DeepEqual(names, []string{"localhost", "example.test"}) {
		t.Errorf("domains %q", names)
	}
	if _, err := delivery.New(cfg.plan, delivery.Options{}); err != nil {
		t.Errorf("delivery.New: %v", err)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := loadConfig("/nonexistent/lmtpd.toml")
	if err == nil || err.Error() != "/nonexistent/lmtpd.toml: open /nonexistent/lmtpd.toml: no such file or directory" {
		t.Errorf("error %v", err)
	}
}

// TestExampleDocumentsEveryKey checks that config.example.toml mentions
// every key of the configuration, as a key or a table.
func TestExampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	example := string(b)
	seen := map[reflect.Type]bool{}
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := joinKey(path, name)
			if !strings.Contains(example, name+" = ") && !strings.Contains(example, "["+key+"]") && !strings.Contains(example, "[["+key+"]]") && !strings.Contains(example, "."+name+"]") {
				t.Errorf("config.example.toml does not document %s", key)
			}
			walk(key, f.Type)
		}
	}
	walk("", reflect.TypeOf(config{}))
	if len(seen) < 10 {
		t.Errorf("walked only %d types", len(seen))
	}
}

// TestListenerCoversServer keeps the [[listener]] keys in step with
// protocol.Server: every setting of the server has a key, or is set by
// lmtpd itself for a reason written here.
func TestListenerCoversServer(t *testing.T) {
	notConfigurable := map[string]string{
		"Addr": "address", "Protocol": "protocol", "Hostname": "server.hostname", "Backend": "the router",
		"Logger": "the process logger", "TLSConfig": "tls and [tls]", "Auth": "auth and [auth]", "RequireAuth": "auth = required",
		"DisableReceived": "always on", "OnOutcome": "the router logs outcomes", "Software": "lmtpd",
		"MaxAuthVerifications": "server.max_auth_verifications (one limiter for all listeners)",
		"AuthQueueTimeout":     "server.auth_queue_timeout", "AuthLimiter": "made from [server], shared by the listeners",
	}
	renamed := map[string]string{
		"MaxMessageBytes": "max_message_size", "MaxHeaderBytes": "max_header_size",
		"MaxAuthFailuresPerIP": "max_auth_failures_per_ip", "MaxConnectionsPerIP": "max_connections_per_ip",
		"RequireTLS": "require_tls", "TLSHandshakeTimeout": "tls_handshake_timeout",
	}
	keys := map[string]bool{}
	lt := reflect.TypeOf(listenerConfig{})
	for i := range lt.NumField() {
		keys[lt.Field(i).Tag.Get("toml")] = true
	}
	st := reflect.TypeOf(protocol.Server{})
	for i := range st.NumField() {
		f := st.Field(i)
		if !f.IsExported() || notConfigurable[f.Name] != "" {
			continue
		}
		key := renamed[f.Name]
		if key == "" {
			var b strings.Builder
			for j, r := range f.Name {
				if r >= 'A' && r <= 'Z' {
					if j > 0 {
						b.WriteByte('_')
					}
					r += 'a' - 'A'
				}
				b.WriteRune(r)
			}
			key = b.String()
		}
		if !keys[key] {
			t.Errorf("protocol.Server.%s has no [[listener]] key %q", f.Name, key)
		}
	}
}

// max_connections_per_ip defaults by protocol (issue 19): 20 on an SMTP
// listener, none on an LMTP one; an explicit value, 0 included, is kept.
// In protocol.Server terms 0 becomes "no limit" (negative).
func TestMaxConnectionsPerIPDefault(t *testing.T) {
	const rest = "[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"example.test\"\nany_user = true\n"
	text := "[[listener]]\nprotocol = \"smtp\"\naddress = \"127.0.0.1:2425\"\n" +
		"[[listener]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:2424\"\n" +
		"[[listener]]\nprotocol = \"smtp\"\naddress = \"127.0.0.1:2426\"\nmax_connections_per_ip = 0\n" +
		"[[listener]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:2427\"\nmax_connections_per_ip = 7\n" + rest
	cfg, err := parseConfig("test.toml", text, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{protocol.DefaultMaxConnectionsPerIP, 0, 0, 7} {
		if got := *cfg.Listeners[i].MaxConnectionsPerIP; got != want {
			t.Errorf("listener %d: max_connections_per_ip = %d, want %d", i, got, want)
		}
	}
	l := cfg.Listeners[0]
	if l.MaxRefusedRcpts != protocol.DefaultMaxRefusedRecipients || l.MinDataRate != protocol.DefaultMinDataRate {
		t.Errorf("defaults: max_refused_recipients %d, min_data_rate %d", l.MaxRefusedRcpts, l.MinDataRate)
	}
}
