package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	t.Run("creates the directory and sets the mode", func(t *testing.T) {
		p := filepath.Join(dir, "sub", "a.sock")
		ln, err := listenUnix(p, 0o600, -1, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
			t.Errorf("mode %v", fi.Mode())
		}
	})
	t.Run("owner and group", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("chown needs root")
		}
		p := filepath.Join(dir, "owned.sock")
		ln, err := listenUnix(p, 0o660, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		l := listenerConfig{Address: "unix:" + p, SocketOwner: "1", SocketGroup: "1", SocketMode: 0o660}
		if _, err := listenConfigured(&l); err == nil {
			t.Error("a live socket was replaced")
		}
	})
	t.Run("stale socket is replaced", func(t *testing.T) {
		p := filepath.Join(dir, "stale.sock")
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		old.SetUnlinkOnClose(false)
		old.Close()
		ln, err := listenUnix(p, 0o660, -1, -1)
		if err != nil {
			t.Fatalf("stale socket: %v", err)
		}
		ln.Close()
	})
	t.Run("live socket is kept", func(t *testing.T) {
		p := filepath.Join(dir, "live.sock")
		live, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		_, err = listenUnix(p, 0o660, -1, -1)
		if !errors.Is(err, errSocketInUse) {
			t.Fatalf("error %v, want errSocketInUse", err)
		}
		if c, err := net.Dial("unix", p); err != nil {
			t.Errorf("the live socket was removed: %v", err)
		} else {
			c.Close()
		}
	})
	t.Run("regular file is kept", func(t *testing.T) {
		p := filepath.Join(dir, "file")
		os.WriteFile(p, []byte("data"), 0o644)
		_, err := listenUnix(p, 0o660, -1, -1)
		if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
			t.Fatalf("error %v", err)
		}
		if b, _ := os.ReadFile(p); string(b) != "data" {
			t.Error("the file was touched")
		}
	})
	t.Run("tcp", func(t *testing.T) {
		ln, err := listenConfigured(&listenerConfig{Address: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
	})
}
