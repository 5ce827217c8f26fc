package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// listenSyslog listens on a unix datagram socket as a syslog daemon does
// and returns it with its path.
func listenSyslog(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

// readDatagrams reads n datagrams, each within a generous deadline.
func readDatagrams(t *testing.T, c *net.UnixConn, n int) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 64<<10)
	for range n {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(out), err)
		}
		out = append(out, string(buf[:k]))
	}
	return out
}

// syslogLine is a datagram as Go's log/syslog writes it to a local
// socket: <PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE (RFC 3164's layout,
// without the host name).
var syslogLine = regexp.MustCompile(`^<(\d+)>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d lmtpd\[(\d+)\]: (.*)\n$`)

// TestSyslogOutput: with output = "syslog", each line goes to the socket
// with the facility and its level as severity; the level filter and its
// change on SIGHUP apply as on stderr.
func TestSyslogOutput(t *testing.T) {
	defer zerolog.SetGlobalLevel(zerolog.TraceLevel)
	srv, path := listenSyslog(t)
	log, out, err := openLog(logConfig{Format: "auto", Output: "syslog", Facility: "local3", SyslogSocket: path}, zerolog.DebugLevel, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer out.close()
	log.Trace().Msg("below the level") // not sent
	log.Debug().Msg("d")
	log.Info().Str("k", "v").Msg("i")
	log.Warn().Msg("w")
	log.Error().Dur("duration_ms", 1500*time.Millisecond).Msg("e")
	out.setLevel(zerolog.TraceLevel)
	log.Trace().Msg("t")

	const local3 = 19 << 3 // RFC 5424 section 6.2.1: facility × 8 + severity
	want := []struct {
		severity int
		message  string
	}{{7, "d"}, {6, "i"}, {4, "w"}, {3, "e"}, {7, "t"}}
	got := readDatagrams(t, srv, len(want))
	for i, w := range want {
		m := syslogLine.FindStringSubmatch(got[i])
		if m == nil {
			t.Fatalf("datagram %q is not <PRI>TIMESTAMP lmtpd[PID]: MESSAGE", got[i])
		}
		if pri, _ := strconv.Atoi(m[1]); pri != local3+w.severity {
			t.Errorf("%q: priority %d, want %d (local3, severity %d)", got[i], pri, local3+w.severity, w.severity)
		}
		if m[2] != strconv.Itoa(os.Getpid()) {
			t.Errorf("%q: pid %s, want %d", got[i], m[2], os.Getpid())
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(m[3]), &fields); err != nil {
			t.Fatalf("message %q is not JSON: %v", m[3], err)
		}
		if fields["message"] != w.message {
			t.Errorf("message %v, want %q", fields["message"], w.message)
		}
		if w.message == "i" && fields["k"] != "v" {
			t.Errorf("field k lost: %v", fields)
		}
		if w.message == "e" && fields["duration_ms"] != 1500.0 {
			t.Errorf("duration_ms = %v, want 1500 (milliseconds)", fields["duration_ms"])
		}
	}
}

// TestSyslogConsoleFormat: format = "console" sends the console format,
// without colours or the timestamp syslog adds itself.
func TestSyslogConsoleFormat(t *testing.T) {
	defer zerolog.SetGlobalLevel(zerolog.TraceLevel)
	srv, path := listenSyslog(t)
	log, out, err := openLog(logConfig{Format: "console", Output: "syslog", Facility: "mail", SyslogSocket: path}, zerolog.InfoLevel, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer out.close()
	log.Warn().Str("fix", "chmod it").Msg("deferred")
	m := syslogLine.FindStringSubmatch(readDatagrams(t, srv, 1)[0])
	if m == nil {
		t.Fatal("not a syslog datagram")
	}
	if m[1] != strconv.Itoa(2<<3+4) {
		t.Errorf("priority %s, want mail.warning (20)", m[1])
	}
	if msg := m[3]; msg != "WRN deferred fix=\"chmod it\"" {
		t.Errorf("message %q", msg)
	}
}

// TestSyslogUnreachable: a syslog socket nobody listens on stops serve
// (exit 78, at the key) and fails check-config.
func TestSyslogUnreachable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lmtpd.toml")
	text := "[log]\noutput = \"syslog\"\nsyslog_socket = \"" + filepath.Join(dir, "none.sock") + "\"\n" +
		"[[listener]]\naddress = \"127.0.0.1:0\"\n[delivery.maildir]\nroot = \"mail\"\n[[domain]]\nname = \"example.test\"\nany_user = true\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	if st := cmdCheckConfig([]string{"-config", file, "-q"}, &stdout, &stderr); st != exConfig ||
		!strings.HasPrefix(stderr.String(), "lmtpd: "+file+":3: log.syslog_socket: cannot connect to the syslog daemon: ") {
		t.Errorf("check-config: exit %d, stderr %q", st, stderr.String())
	}
	errFile, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	t.Chdir(dir)
	if st := cmdServe([]string{"-config", file}, errFile); st != exConfig {
		t.Errorf("serve: exit %d, want %d", st, exConfig)
	}
	if b, _ := os.ReadFile(errFile.Name()); !strings.HasPrefix(string(b), "lmtpd: "+file+":3: log.syslog_socket: cannot connect to the syslog daemon: ") {
		t.Errorf("serve: stderr %q", b)
	}
}
