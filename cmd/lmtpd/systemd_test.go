package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := newNotifier()
	for _, msg := range []string{"READY=1", reloadingMessage(), "STOPPING=1"} {
		if err := n.notify(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		ln.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := ln.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:k]) != msg {
			t.Errorf("received %q, want %q", buf[:k], msg)
		}
	}
	if !strings.HasPrefix(reloadingMessage(), "RELOADING=1\nMONOTONIC_USEC=") || monotonicMicros() <= 0 {
		t.Errorf("reloading message %q", reloadingMessage())
	}

	t.Setenv("NOTIFY_SOCKET", "@lmtpd-test-abstract-"+strconv.Itoa(os.Getpid()))
	abs, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00lmtpd-test-abstract-" + strconv.Itoa(os.Getpid()), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer abs.Close()
	if err := newNotifier().notify("READY=1"); err != nil {
		t.Errorf("abstract socket: %v", err)
	}

	t.Setenv("NOTIFY_SOCKET", "")
	if err := newNotifier().notify("READY=1"); err != nil {
		t.Errorf("no NOTIFY_SOCKET: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing"))
	if err := newNotifier().notify("READY=1"); err == nil {
		t.Error("a missing socket is not reported")
	}
}

func TestActivatedListenersEnvironment(t *testing.T) {
	tests := []struct {
		name, pid, fds string
		err            string
	}{
		{"not activated", "", "", ""},
		{"another process", "1", "1", ""},
		{"not a number", strconv.Itoa(os.Getpid()), "x", `systemd socket activation: LISTEN_FDS="x" is not a count`},
		{"zero", strconv.Itoa(os.Getpid()), "0", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LISTEN_PID", tc.pid)
			t.Setenv("LISTEN_FDS", tc.fds)
			t.Setenv("LISTEN_FDNAMES", "lmtp")
			ls, err := activatedListeners()
			if got := errString(err); got != tc.err || len(ls) != 0 {
				t.Errorf("got %v, %q; want no listeners, %q", ls, got, tc.err)
			}
			for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
				if _, set := os.LookupEnv(k); set {
					t.Errorf("%s is still set", k)
				}
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
