package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestLogStartEmbedded checks the start-up lines of the embedded default
// without listening on its fixed port (tests must not need 127.0.0.1:2525
// free; tests/ runs the same configuration on a free port): the serving
// line comes first, then how to try each listener.
func TestLogStartEmbedded(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log, _ := newLogger("json", zerolog.InfoLevel, &buf, false)
	d := &daemon{cfg: cfg, log: log}
	addrs := []string{"unix:/x/run/lmtp.sock", "127.0.0.1:2525"}
	for i, lc := range cfg.Listeners {
		d.servers = append(d.servers, &listenerServer{cfg: lc, addr: addrs[i]})
	}
	d.logStart()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		"serving LMTP on unix:/x/run/lmtp.sock and SMTP on 127.0.0.1:2525, delivering for localhost (any user), example.test (any user)",
		"embedded default configuration: mail for any user at localhost or example.test goes to the maildir ",
		"try LMTP: printf ",
		"try SMTP: swaks --server 127.0.0.1:2525 ",
		`"listener":"lmtp"`,
		`"listener":"smtp"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s\nwant it to contain %q", i+1, lines[i], w)
		}
	}
	if !strings.Contains(lines[2], "nc -U /x/run/lmtp.sock") {
		t.Errorf("the LMTP hint does not name the socket: %s", lines[2])
	}
}
