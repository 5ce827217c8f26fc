package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenFDsStart is the first file descriptor systemd passes
// (SD_LISTEN_FDS_START in sd-daemon.h).
const listenFDsStart = 3

// activatedListeners returns the listening sockets systemd passed by
// socket activation, by name (sd_listen_fds_with_names(3)): LISTEN_PID
// must be this process, LISTEN_FDS counts the descriptors from fd 3 on,
// LISTEN_FDNAMES names them, colon-separated (FileDescriptorName= in the
// socket unit; systemd's default is the unit's name). The variables are
// removed from the environment so that no child sees them. Without
// LISTEN_PID or with another process's pid, it returns nil.
func activatedListeners() (map[string]net.Listener, error) {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if pid == "" || fds == "" {
		return nil, nil
	}
	if p, err := strconv.Atoi(pid); err != nil || p != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("systemd socket activation: LISTEN_FDS=%q is not a count", fds)
	}
	var nameList []string
	if names != "" {
		nameList = strings.Split(names, ":")
	}
	out := make(map[string]net.Listener, n)
	for i := range n {
		fd := listenFDsStart + i
		name := "unknown"
		if i < len(nameList) && nameList[i] != "" {
			name = nameList[i]
		}
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), name)
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("systemd socket activation: fd %d (%s) is not a listening socket: %w", fd, name, err)
		}
		if _, dup := out[name]; dup {
			l.Close()
			return nil, fmt.Errorf("systemd socket activation: two sockets named %q (set FileDescriptorName= to the listener names)", name)
		}
		out[name] = l
	}
	return out, nil
}

// notifier sends sd_notify(3) state changes to the socket in
// NOTIFY_SOCKET, a datagram socket path or, with a leading '@', an
// abstract one. The zero notifier (no NOTIFY_SOCKET) does nothing.
type notifier struct {
	addr string
}

// newNotifier reads NOTIFY_SOCKET.
func newNotifier() *notifier {
	a := os.Getenv("NOTIFY_SOCKET")
	if strings.HasPrefix(a, "@") {
		a = "\x00" + a[1:]
	}
	return &notifier{addr: a}
}

// notify sends state, such as "READY=1", in one datagram.
func (n *notifier) notify(state string) error {
	if n == nil || n.addr == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// reloading is the RELOADING=1 message; Type=notify-reload services must
// send it with the CLOCK_MONOTONIC time (systemd.service(5)).
func reloadingMessage() string {
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicMicros(), 10)
}

// monotonicMicros returns CLOCK_MONOTONIC in microseconds, or 0 if the
// clock cannot be read. The clock's number differs between systems
// (clockMonotonic, in clock_*.go); only Linux's matters to systemd, the
// others keep the daemon building.
func monotonicMicros() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(clockMonotonic, &ts) != nil {
		return 0
	}
	return ts.Sec*1e6 + ts.Nsec/1e3
}
