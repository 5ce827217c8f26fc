package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files: testdata/badconfig/*.err, and contrib/ (make man)")

// invalidMark ends each line of a broken configuration (or its users file)
// that must be reported ("# invalid" or "# invalid: why"): exactly one
// error names that line.
var invalidMark = regexp.MustCompile(`#\s*invalid(:.*)?$`)

// TestBrokenConfigs loads every testdata/badconfig/*.toml and checks that
// each mistake is reported once, with its file, line and key: the errors
// are configErrors; each names a file, a line and a key; no key is
// reported twice; the lines reported are exactly those marked "# invalid"
// (in the configuration and in any users file it names), one error each;
// and the whole text matches NAME.err (go test -run TestBrokenConfigs
// -update rewrites it; read the diff).
func TestBrokenConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/badconfig/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no broken configurations: %v", err)
	}
	dir, err := filepath.Abs("testdata/badconfig")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".toml"), func(t *testing.T) {
			_, err := loadConfig(file)
			var ce configErrors
			if !errors.As(err, &ce) {
				t.Fatalf("loadConfig: %v, want configErrors", err)
			}
			marked := markedLines(t, file)
			seenKey := map[string]bool{}
			perLine := map[string]int{}
			var lines []string
			for _, e := range ce {
				text := strings.ReplaceAll(e.Error(), dir, "$DIR")
				lines = append(lines, text)
				if e.File == "" || e.Line <= 0 || e.Key == "" {
					t.Errorf("error without file, line or key: %q", text)
				}
				if seenKey[e.File+"|"+e.Key] {
					t.Errorf("key %s of %s reported twice", e.Key, e.File)
				}
				seenKey[e.File+"|"+e.Key] = true
				at := fmt.Sprintf("%s:%d", e.File, e.Line)
				perLine[at]++
				if !marked[at] {
					t.Errorf("reported at an unmarked line: %q", text)
				}
			}
			for at := range marked {
				if n := perLine[at]; n != 1 {
					t.Errorf("%s is marked invalid and got %d errors, want 1", at, n)
				}
			}
			got := strings.Join(lines, "\n") + "\n"
			golden := strings.TrimSuffix(file, ".toml") + ".err"
			if *updateGolden {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors:\n%s\nwant (%s):\n%s", got, golden, want)
			}
		})
	}
}

// markedLines returns the "file:line" of every line marked invalid in
// file and in the users file it names, if any.
func markedLines(t *testing.T, file string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	scan := func(f string) string {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			if invalidMark.MatchString(l) {
				out[fmt.Sprintf("%s:%d", f, i+1)] = true
			}
		}
		return string(b)
	}
	text := scan(file)
	if m := regexp.MustCompile(`(?m)^users_file = "([^"]+)"`).FindStringSubmatch(text); m != nil {
		abs, err := filepath.Abs(filepath.Join(filepath.Dir(file), m[1]))
		if err != nil {
			t.Fatal(err)
		}
		scan(abs)
	}
	return out
}

// keyedError is an error of package delivery's validation that names its
// key, as deliveryKeyed describes.
type keyedError struct {
	key []string
	err error
}

func (e *keyedError) Error() string       { return strings.Join(e.key, ".") + ": " + e.err.Error() }
func (e *keyedError) Unwrap() error       { return e.err }
func (e *keyedError) ConfigKey() []string { return e.key }

// TestDeliveryKey maps paths into delivery.Config onto the file's keys,
// including the users of a domain given both as users = [...] and as
// [[domain.user]] tables.
func TestDeliveryKey(t *testing.T) {
	c := &config{Domains: []domainConfig{
		{Name: "a.test", Users: []string{"u0", "u1"}, User: []userConfig{{Name: "t0"}, {Name: "t1"}}},
		{Name: "b.test"},
	}}
	tests := []struct {
		path []string
		want string
	}{
		{[]string{"Postmaster"}, "delivery.postmaster"},
		{[]string{"DetailDelimiter"}, "delivery.detail_delimiter"},
		{[]string{"Maildir", "Root"}, "delivery.maildir.root"},
		{[]string{"Maildir", "MaxMessageBytes"}, "delivery.maildir.max_message_size"},
		{[]string{"Maildir", "SpecialFolders", "2"}, "delivery.maildir.special_folders[2]"},
		{[]string{"Dedup", "Window"}, "delivery.dedup.window"},
		{[]string{"spool", "dir"}, "delivery.spool.dir"},
		{[]string{"Domains"}, "domain"},
		{[]string{"Domains", "1"}, "domain[1]"},
		{[]string{"Domains", "1", "Name"}, "domain[1].name"},
		{[]string{"Domains", "0", "UTF8LocalParts"}, "domain[0].utf8_local_parts"},
		{[]string{"Domains", "0", "Aliases", "Info"}, "domain[0].aliases.Info"},
		{[]string{"Domains", "0", "CatchAll", "1"}, "domain[0].catch_all[1]"},
		{[]string{"Domains", "0", "Users", "1"}, "domain[0].users[1]"},
		{[]string{"Domains", "0", "Users", "2", "Name"}, "domain[0].user[0].name"},
		{[]string{"Domains", "0", "Users", "3", "Route", "Pipe", "Command", "Argv"}, "domain[0].user[1].route.pipe.argv"},
		{[]string{"Domains", "1", "Route", "Pipe", "MaxWait"}, "domain[1].route.pipe.max_wait"},
		{[]string{"domains", "1", "route", "maildir"}, "domain[1].route.maildir"},
	}
	for _, tc := range tests {
		if got := c.deliveryKey(tc.path); got != tc.want {
			t.Errorf("deliveryKey(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// TestDeliveryKeyedErrors: errors of delivery's validation that name their
// key are reported at that key's line with their cause, each once.
func TestDeliveryKeyedErrors(t *testing.T) {
	text := "[delivery]\npostmaster = \"x\"\n[[domain]]\nname = \"a.test\"\nusers = [\"u0\"]\n[[domain.user]]\nname = \"t0\"\nroute = { pipe = { argv = [\"cat\"] } }\n"
	c := &config{file: "f.toml", Domains: []domainConfig{{Name: "a.test", Users: []string{"u0"}, User: []userConfig{{Name: "t0"}}}}}
	c.locs = map[string]*locator{c.file: newLocator(text)}
	ec := &errorCollector{file: c.file, loc: c.locs[c.file]}
	joined := fmt.Errorf("delivery config: %w", errors.Join(
		&keyedError{[]string{"Domains", "0", "Users", "1", "Route", "Pipe", "Argv"}, errors.New("argv[0] must be an absolute path")},
		&keyedError{[]string{"Postmaster"}, errors.New(`"x" is not an address local@domain`)},
		&keyedError{[]string{"domains", "0", "catch_all"}, errors.New("domain a.test: catch-all has no effect with any-user")},
	))
	c.addDeliveryErrors(ec, joined)
	var got []string
	for _, e := range ec.err().(configErrors) {
		got = append(got, e.Error())
	}
	want := []string{
		`f.toml:2: delivery.postmaster: "x" is not an address local@domain`,
		"f.toml:3: domain[0].catch_all: domain a.test: catch-all has no effect with any-user",
		"f.toml:8: domain[0].user[0].route.pipe.argv: argv[0] must be an absolute path",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if slices.Contains(got, "") {
		t.Error("empty error text")
	}
}

// TestSnakeCase checks the Go-name-to-key mapping deliveryKey uses.
func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"Root": "root", "MaxWait": "max_wait", "UTF8LocalParts": "utf8_local_parts", "DeliveredTo": "delivered_to",
		"max_wait": "max_wait", "info": "info", "": "", "TLSHandshakeTimeout": "tls_handshake_timeout",
	} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}
