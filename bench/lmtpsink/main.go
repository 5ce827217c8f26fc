// Command lmtpsink is lmtpd's protocol core (github.com/lmtpd/lmtpd/protocol)
// with a backend that accepts every recipient and discards every message:
// the null sink of the end-to-end benchmark. The daemon has no discarding
// backend (a pipe to /bin/true forks a process per message and measures
// fork, not the server), so this program stands in for "lmtpd to a
// discarding sink": the same wire code, DATA reader and header parsing as
// lmtpd, without routing or delivery. It is test-only code.
//
//	lmtpsink -listen 127.0.0.1:2425
//	lmtpsink -listen unix:/tmp/sink.sock -proto smtp -cpuprofile cpu.prof
//
// It runs until SIGTERM or SIGINT; -cpuprofile writes a pprof CPU profile
// of the whole run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/lmtpd/lmtpd/protocol"
)

// discard is the backend: every sender and recipient is accepted, every
// message read to its end and dropped.
type discard struct{}

func (discard) Mail(context.Context, *protocol.ConnState, protocol.Address, *protocol.MailParams) (protocol.Transaction, error) {
	return discardTx{}, nil
}

type discardTx struct{}

func (discardTx) Rcpt(context.Context, *protocol.Recipient) error { return nil }

// Data reads the body to its end: the server answers for a read error
// (size, bare line ending, lost connection) itself.
func (discardTx) Data(_ context.Context, m *protocol.Message, _ protocol.StatusSetter) error {
	_, err := io.Copy(io.Discard, m.Body)
	return err
}

func (discardTx) Close() error { return nil }

// config is the command line.
type config struct {
	listen         string
	proto          string
	hostname       string
	maxConnections int
	cpuprofile     string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("lmtpsink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:2425", "address: host:port, or unix:/path for a unix socket")
	fs.StringVar(&c.proto, "proto", "lmtp", "dialect: lmtp or smtp")
	fs.StringVar(&c.hostname, "hostname", "lmtpsink.example.test", "name in the greeting and the Received field")
	fs.IntVar(&c.maxConnections, "max-connections", 20000, "concurrent connections accepted")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case c.proto != "lmtp" && c.proto != "smtp":
		return nil, fmt.Errorf("-proto %q: want lmtp or smtp", c.proto)
	case c.maxConnections < 1:
		return nil, errors.New("-max-connections must be at least 1")
	}
	return c, nil
}

// newServer returns the protocol server for c. Limits that would stop the
// benchmark's 200 MiB message are lifted, as for the other servers.
func newServer(c *config) *protocol.Server {
	s := &protocol.Server{
		Hostname:        c.hostname,
		Backend:         discard{},
		MaxMessageBytes: -1,
		MaxConnections:  c.maxConnections,
	}
	if c.proto == "lmtp" {
		s.Protocol = protocol.LMTP
	}
	return s
}

func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		os.Remove(path)
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(os.Args[1:], os.Stderr, nil, sig))
}

// run is main with its exit status. It serves until something arrives on
// stop; ready, if not nil, receives the listener's address once it listens.
func run(args []string, stderr io.Writer, ready chan<- net.Addr, stop <-chan os.Signal) int {
	c, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "lmtpsink:", err)
		return 2
	}
	l, err := listen(c.listen)
	if err != nil {
		fmt.Fprintln(stderr, "lmtpsink:", err)
		return 1
	}
	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile)
		if err != nil {
			l.Close()
			fmt.Fprintln(stderr, "lmtpsink:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			l.Close()
			fmt.Fprintln(stderr, "lmtpsink:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	s := newServer(c)
	fmt.Fprintf(stderr, "lmtpsink: %s on %s, discarding\n", strings.ToUpper(c.proto), l.Addr())
	if ready != nil {
		ready <- l.Addr()
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	select {
	case <-stop:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
		return 0
	case err := <-done:
		fmt.Fprintln(stderr, "lmtpsink:", err)
		return 1
	}
}
