// Command gosmtpd is the end-to-end benchmark's reference server: a
// minimal LMTP (or SMTP) server built on github.com/emersion/go-smtp, the
// library a Go programmer would reach for instead of lmtpd. It is test-only
// code; lmtpd never uses it.
//
//	gosmtpd -listen 127.0.0.1:2424 -maildir /tmp/mail         # maildir, hard links
//	gosmtpd -listen 127.0.0.1:2424 -maildir /tmp/mail -copy   # maildir, a copy each
//	gosmtpd -listen unix:/tmp/lmtp.sock -discard              # null sink
//
// With -maildir it delivers with the same fsyncs lmtpd makes (see
// maildirStore) but one recipient after the other, as a competent LDA
// does: the message written and fsynced once, hard links for further
// recipients. -copy writes and fsyncs a separate copy for every recipient
// instead, as a straightforward LDA does. With -discard it reads and drops
// the message.
// Every recipient local@domain with plain parts is accepted. It runs until
// SIGTERM or SIGINT. -cpuprofile writes a pprof CPU profile of the whole
// run.
package main

import (
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

	gosmtp "github.com/emersion/go-smtp"
)

// config is the command line.
type config struct {
	listen     string
	proto      string
	maildir    string
	discard    bool
	copy       bool
	hostname   string
	cpuprofile string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("gosmtpd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:2424", "address: host:port, or unix:/path for a unix socket")
	fs.StringVar(&c.proto, "proto", "lmtp", "dialect: lmtp or smtp")
	fs.StringVar(&c.maildir, "maildir", "", "deliver into maildirs under this directory")
	fs.BoolVar(&c.discard, "discard", false, "read and discard every message")
	fs.BoolVar(&c.copy, "copy", false, "with -maildir: write a separate copy for every recipient instead of hard links")
	fs.StringVar(&c.hostname, "hostname", "gosmtpd.example.test", "name in the greeting")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case c.proto != "lmtp" && c.proto != "smtp":
		return nil, fmt.Errorf("-proto %q: want lmtp or smtp", c.proto)
	case (c.maildir == "") == !c.discard:
		return nil, errors.New("give exactly one of -maildir and -discard")
	case c.copy && c.maildir == "":
		return nil, errors.New("-copy needs -maildir")
	}
	return c, nil
}

// backend creates sessions; store nil means discard.
type backend struct {
	store *maildirStore
}

func (b *backend) NewSession(*gosmtp.Conn) (gosmtp.Session, error) {
	return &session{store: b.store}, nil
}

// session is one connection's transaction state.
type session struct {
	store *maildirStore
	from  string
	rcpts []string
}

func (s *session) Reset()        { s.from, s.rcpts = "", s.rcpts[:0] }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	s.from = from
	return nil
}

// Rcpt accepts any address that can name a mailbox.
func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.store != nil {
		if _, err := s.store.mailbox(to); err != nil {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// deliver returns one result per recipient.
func (s *session) deliver(r io.Reader) []error {
	if s.store == nil {
		errs := make([]error, len(s.rcpts))
		if _, err := io.Copy(io.Discard, r); err != nil {
			for i := range errs {
				errs[i] = err
			}
		}
		return errs
	}
	return s.store.deliver(s.from, s.rcpts, r)
}

// tempFail is the reply for a failed delivery: go-smtp would otherwise send
// the error's text to the client.
var tempFail = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Delivery failed"}

// Data delivers an SMTP message: one reply, so any failure fails it all.
func (s *session) Data(r io.Reader) error {
	for _, err := range s.deliver(r) {
		if err != nil {
			return tempFail
		}
	}
	return nil
}

// LMTPData delivers an LMTP message with one status per recipient.
func (s *session) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	for i, err := range s.deliver(r) {
		if err != nil {
			err = tempFail
		}
		status.SetStatus(s.rcpts[i], err)
	}
	return nil
}

// newServer returns the go-smtp server for c, not yet listening.
func newServer(c *config) (*gosmtp.Server, error) {
	be := &backend{}
	if c.maildir != "" {
		st, err := newMaildirStore(c.maildir)
		if err != nil {
			return nil, err
		}
		st.copy = c.copy
		be.store = st
	}
	s := gosmtp.NewServer(be)
	s.LMTP = c.proto == "lmtp"
	s.Domain = c.hostname
	// No size or recipient limit and no timeouts: the benchmark sends a
	// 200 MiB message, and the other servers are configured the same way.
	s.MaxMessageBytes = 0
	s.MaxRecipients = 0
	return s, nil
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
		fmt.Fprintln(stderr, "gosmtpd:", err)
		return 2
	}
	s, err := newServer(c)
	if err != nil {
		fmt.Fprintln(stderr, "gosmtpd:", err)
		return 1
	}
	l, err := listen(c.listen)
	if err != nil {
		fmt.Fprintln(stderr, "gosmtpd:", err)
		return 1
	}
	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "gosmtpd:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "gosmtpd:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	mode := "discarding"
	if !c.discard {
		mode = "maildir " + c.maildir + ", hard links for further recipients"
		if c.copy {
			mode = "maildir " + c.maildir + ", a copy for every recipient"
		}
	}
	fmt.Fprintf(stderr, "gosmtpd: %s on %s, %s\n", strings.ToUpper(c.proto), l.Addr(), mode)
	if ready != nil {
		ready <- l.Addr()
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	select {
	case <-stop:
		s.Close()
		<-done
		return 0
	case err := <-done:
		fmt.Fprintln(stderr, "gosmtpd:", err)
		return 1
	}
}
