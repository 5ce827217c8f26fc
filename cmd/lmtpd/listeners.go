package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// listenConfigured opens the listener's address: a TCP address, or a unix
// socket with the configured mode, owner and group.
func listenConfigured(l *listenerConfig) (net.Listener, error) {
	path, ok := l.isUnix()
	if !ok {
		return net.Listen("tcp", l.Address)
	}
	uid, gid := -1, -1
	var err error
	if l.SocketOwner != "" {
		if uid, err = lookupUID(l.SocketOwner); err != nil {
			return nil, err
		}
	}
	if l.SocketGroup != "" {
		if gid, err = lookupGID(l.SocketGroup); err != nil {
			return nil, err
		}
	}
	return listenUnix(path, os.FileMode(l.SocketMode), uid, gid)
}

// listenUnix listens on a unix socket at path. A socket file left by a
// process that is gone (connecting is refused) is removed first; a socket
// another process still listens on, and any other kind of file, is an
// error. The directory is created if missing (mode 0755). The socket gets
// mode and, when not -1, owner uid and group gid: Postfix's lmtp client
// runs as user postfix and needs write permission on the socket.
func listenUnix(path string, mode os.FileMode, uid, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(path, uid, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("setting the socket's owner or group: %w", err)
		}
	}
	return ln, nil
}

// errSocketInUse is returned for a unix socket another process listens on.
var errSocketInUse = errors.New("another process is listening on this socket (is lmtpd already running?)")

// removeStaleSocket removes path if it is a socket nobody listens on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: %w", path, errSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("checking whether %s is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	return nil
}
