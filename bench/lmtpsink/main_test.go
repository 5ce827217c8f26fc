package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// start runs lmtpsink with args in the background and returns its
// address; it is stopped when the test ends.
func start(t *testing.T, args ...string) net.Addr {
	t.Helper()
	ready := make(chan net.Addr, 1)
	stop := make(chan os.Signal)
	code := make(chan int, 1)
	var logs bytes.Buffer
	go func() { code <- run(args, &logs, ready, stop) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case c := <-code:
		t.Fatalf("lmtpsink exited with %d: %s", c, logs.String())
	}
	t.Cleanup(func() {
		close(stop)
		if c := <-code; c != 0 {
			t.Errorf("lmtpsink exited with %d: %s", c, logs.String())
		}
	})
	return addr
}

type dialogue struct {
	t  *testing.T
	c  net.Conn
	tp *textproto.Reader
}

func connect(t *testing.T, addr net.Addr) *dialogue {
	t.Helper()
	c, err := net.Dial(addr.Network(), addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &dialogue{t: t, c: c, tp: textproto.NewReader(bufio.NewReader(c))}
}

func (d *dialogue) send(s string) {
	d.t.Helper()
	if _, err := io.WriteString(d.c, s+"\r\n"); err != nil {
		d.t.Fatal(err)
	}
}

func (d *dialogue) expect(code int) string {
	d.t.Helper()
	got, msg, err := d.tp.ReadResponse(0)
	if err != nil && got == 0 {
		d.t.Fatalf("reading reply: %v", err)
	}
	if got != code {
		d.t.Fatalf("reply %d %q, want %d", got, msg, code)
	}
	return msg
}

func TestSink(t *testing.T) {
	tests := []struct {
		name   string
		proto  string
		hello  string
		finals int
	}{
		{"lmtp", "lmtp", "LHLO", 3},
		{"smtp", "smtp", "EHLO", 1},
	}
	body := "Subject: x\r\n\r\n" + strings.Repeat("line of text\r\n", 1000) + "."
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := connect(t, start(t, "-listen", "127.0.0.1:0", "-proto", tc.proto))
			d.expect(220)
			d.send(tc.hello + " client.test")
			d.expect(250)
			for range 3 {
				d.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA")
				for range 4 {
					d.expect(250)
				}
				d.expect(354)
				d.send(body)
				for range tc.finals {
					d.expect(250)
				}
			}
			d.send("QUIT")
			d.expect(221)
		})
	}
}

// TestBrokenMessage: a bare LF in DATA is answered by the server after the
// backend has read the body: the sink passes the read error through.
func TestBrokenMessage(t *testing.T) {
	d := connect(t, start(t, "-listen", "127.0.0.1:0"))
	d.expect(220)
	d.send("LHLO client.test")
	d.expect(250)
	d.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA")
	d.expect(250)
	d.expect(250)
	d.expect(354)
	d.send("Subject: x\r\n\r\nbare\nLF\r\n.")
	d.expect(550)
}

func TestMaxConnections(t *testing.T) {
	addr := start(t, "-listen", "127.0.0.1:0", "-max-connections", "1")
	first := connect(t, addr)
	first.expect(220)
	second := connect(t, addr)
	second.expect(421)
}

func TestUnixSocketAndProfile(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "sink.sock")
	prof := filepath.Join(dir, "cpu.prof")
	ready := make(chan net.Addr, 1)
	stop := make(chan os.Signal)
	code := make(chan int, 1)
	go func() { code <- run([]string{"-listen", "unix:" + sock, "-cpuprofile", prof}, io.Discard, ready, stop) }()
	d := connect(t, <-ready)
	d.expect(220)
	d.c.Close()
	close(stop)
	if c := <-code; c != 0 {
		t.Fatalf("exit %d", c)
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Errorf("profile: %v", err)
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad proto", []string{"-proto", "esmtp"}, 2, `-proto "esmtp"`},
		{"no connections", []string{"-max-connections", "0"}, 2, "-max-connections"},
		{"extra argument", []string{"x"}, 2, "unexpected arguments"},
		{"unknown flag", []string{"-bogus"}, 2, "flag provided but not defined"},
		{"help", []string{"-h"}, 0, "Usage of lmtpsink"},
		{"bad address", []string{"-listen", "256.0.0.1:1"}, 1, "listen"},
		{"bad profile path", []string{"-listen", "127.0.0.1:0", "-cpuprofile", "/nonexistent/cpu.prof"}, 1, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tc.args, &stderr, nil, nil); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
		})
	}
}
