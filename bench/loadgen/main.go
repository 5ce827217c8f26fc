// Command loadgen is the end-to-end benchmark's load generator: it sends
// mail over LMTP or SMTP to a server on a TCP or unix socket the way
// Postfix's lmtp/smtp client does, checks every reply, and measures
// messages per second together with the server's CPU time and memory.
//
//	loadgen -addr 127.0.0.1:24 -c 8 -duration 5s -size 1024 -pid 1234
//
// Each of -c connections is opened and greeted (LHLO or EHLO) before the
// clock starts, then reused for one transaction after another: MAIL, the
// RCPTs and DATA in one write (pipelining), the replies, the message, the
// final replies (one per recipient in LMTP). The run ends after -n
// messages or -duration, whichever comes first. With -pid, the CPU time of
// that process and its descendants over the run and their peak resident
// set (see bench/internal/procstat) go into the result.
//
// With -idle N it instead opens N connections, greets each, holds them for
// -hold and reports the server's memory with N sessions open.
//
// The result is one JSON line (bench/internal/result) on stdout or
// appended to -o; a summary goes to stderr. The exit status is 0 when
// every reply was as expected, 1 when some were not (the result still
// counts them), 2 when the run could not be made.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lmtpd/lmtpd/bench/internal/procstat"
	"github.com/lmtpd/lmtpd/bench/internal/result"
)

// config is the command line.
type config struct {
	addr        string
	proto       string
	concurrency int
	messages    int
	duration    time.Duration
	rcpts       int
	size        int64
	from        string
	rcptFormat  string
	timeout     time.Duration
	wait        time.Duration
	pid         int
	idle        int
	hold        time.Duration
	dialers     int
	out         string
	scenario    string
	server      string
	run         int
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.addr, "addr", "127.0.0.1:24", "server address: host:port, or unix:/path for a unix socket")
	fs.StringVar(&c.proto, "proto", "lmtp", "dialect: lmtp or smtp")
	fs.IntVar(&c.concurrency, "c", 1, "connections sending at once")
	fs.IntVar(&c.messages, "n", 0, "messages to send (0: no limit, -duration ends the run)")
	fs.DurationVar(&c.duration, "duration", 0, "length of the run (0: no limit, -n ends the run)")
	fs.IntVar(&c.rcpts, "rcpts", 1, "recipients per message")
	fs.Int64Var(&c.size, "size", 1024, "message size in octets, header included")
	fs.StringVar(&c.from, "from", "loadgen@example.org", "envelope sender")
	fs.StringVar(&c.rcptFormat, "to", "bench%d@example.test", "recipient address; %d is replaced by the recipient's index from 0")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "limit for each step of a transaction (read or write)")
	fs.DurationVar(&c.wait, "wait", 0, "wait up to this long for the server to greet before starting")
	fs.IntVar(&c.pid, "pid", 0, "process id of the server, to measure its process tree's CPU and memory")
	fs.IntVar(&c.idle, "idle", 0, "open this many idle connections instead of sending mail")
	fs.DurationVar(&c.hold, "hold", 2*time.Second, "with -idle: how long to hold the connections before measuring")
	fs.IntVar(&c.dialers, "dialers", 64, "with -idle: connections being opened at once")
	fs.StringVar(&c.out, "o", "", "append the JSON result to this file (default stdout)")
	fs.StringVar(&c.scenario, "scenario", "", "scenario label for the result (default derived from the load)")
	fs.StringVar(&c.server, "server", "server", "server label for the result")
	fs.IntVar(&c.run, "run", 1, "run number for the result")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case c.proto != "lmtp" && c.proto != "smtp":
		return nil, fmt.Errorf("-proto %q: want lmtp or smtp", c.proto)
	case c.idle < 0:
		return nil, errors.New("-idle must not be negative")
	case c.idle > 0 && c.dialers < 1:
		return nil, errors.New("-dialers must be at least 1")
	case c.idle == 0 && c.concurrency < 1:
		return nil, errors.New("-c must be at least 1")
	case c.idle == 0 && c.messages <= 0 && c.duration <= 0:
		return nil, errors.New("give -n or -duration (or both) to end the run")
	case c.messages < 0 || c.duration < 0:
		return nil, errors.New("-n and -duration must not be negative")
	case c.rcpts < 1:
		return nil, errors.New("-rcpts must be at least 1")
	case c.timeout <= 0:
		return nil, errors.New("-timeout must be positive")
	case !strings.Contains(c.rcptFormat, "%d") && c.rcpts > 1:
		return nil, errors.New("-to needs %d when -rcpts > 1, or all recipients would be the same")
	}
	if c.scenario == "" {
		if c.idle > 0 {
			c.scenario = fmt.Sprintf("idle-%d", c.idle)
		} else {
			c.scenario = fmt.Sprintf("%s-%dB-c%d-r%d", c.proto, c.size, c.concurrency, c.rcpts)
		}
	}
	return c, nil
}

func (c *config) session() *session {
	s := &session{addr: c.addr, lmtp: c.proto == "lmtp", from: c.from, timeout: c.timeout}
	for i := range c.rcpts {
		r := c.rcptFormat
		if strings.Contains(r, "%d") {
			r = fmt.Sprintf(r, i)
		}
		s.rcpts = append(s.rcpts, r)
	}
	return s
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its exit status, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	s := cfg.session()
	if cfg.wait > 0 {
		if err := waitReady(s, cfg.wait, cfg.pid); err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 2
		}
	}
	var res *result.Result
	if cfg.idle > 0 {
		res, err = runIdle(cfg, s)
	} else {
		res, err = runLoad(cfg, s)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	out := stdout
	if cfg.out != "" {
		f, err := os.OpenFile(cfg.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 2
		}
		defer f.Close()
		out = f
	}
	if err := result.Write(out, res); err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	fmt.Fprintln(stderr, summary(res))
	if res.Errors > 0 {
		return 1
	}
	return 0
}

// summary is the human-readable line for stderr.
func summary(r *result.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s run %d: ", r.Server, r.Scenario, r.Run)
	if r.Idle > 0 {
		fmt.Fprintf(&b, "%d idle connections in %.2fs, server RSS %.1f MiB (peak %.1f MiB)",
			r.Idle, r.Elapsed, mib(r.RSS), mib(r.PeakRSS))
	} else {
		fmt.Fprintf(&b, "%d msgs in %.2fs = %.0f msgs/s, server CPU %.3fs (%.3fs/1000 msgs), peak RSS %.1f MiB, client CPU %.2fs, other CPU %.2fs",
			r.Messages, r.Elapsed, r.MsgsPerSec, r.ServerCPU, r.CPUPer1000, mib(r.PeakRSS), r.ClientCPU, r.OtherCPU)
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, "; %d ERRORS, first: %s", r.Errors, r.FirstError)
	}
	return b.String()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// waitReady dials until the server greets, for at most d. With pid > 0 it
// gives up as soon as that process has exited (a server that could not
// start).
func waitReady(s *session, d time.Duration, pid int) error {
	deadline := time.Now().Add(d)
	for {
		c, err := s.connect()
		if err == nil {
			c.quit()
			return nil
		}
		if pid > 0 && !procstat.Alive(pid) {
			return fmt.Errorf("server process %d exited: %w", pid, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server at %s not ready after %v: %w", s.addr, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// meter samples the server's process tree and this process's CPU time.
type meter struct {
	pid int
}

type reading struct {
	server procstat.Sample
	self   time.Duration
	busy   time.Duration // the whole machine
}

func (m meter) read() (reading, error) {
	var r reading
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return r, err
	}
	r.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	busy, err := procstat.Busy()
	if err != nil {
		return r, err
	}
	r.busy = busy
	if m.pid > 0 {
		s, err := procstat.Tree(m.pid)
		if err != nil {
			return r, fmt.Errorf("server process: %w", err)
		}
		r.server = s
	}
	return r, nil
}

// errorLog counts errors and keeps the first.
type errorLog struct {
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func (e *errorLog) add(err error) {
	if e.n.Add(1) == 1 {
		e.mu.Lock()
		e.first = err.Error()
		e.mu.Unlock()
	}
}

func (e *errorLog) firstError() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.first
}

// runLoad runs the message benchmark.
func runLoad(cfg *config, s *session) (*result.Result, error) {
	// Every worker prepares its own copy of the message (it is renumbered
	// in place) and its connection before the clock starts.
	clients := make([]*client, cfg.concurrency)
	msgs := make([]*message, cfg.concurrency)
	for i := range clients {
		m, err := newMessage(cfg.size)
		if err != nil {
			return nil, err
		}
		msgs[i] = m
		c, err := s.connect()
		if err != nil {
			for _, c := range clients[:i] {
				c.quit()
			}
			return nil, fmt.Errorf("connection %d: %w", i+1, err)
		}
		clients[i] = c
	}
	m := meter{pid: cfg.pid}
	before, err := m.read()
	if err != nil {
		return nil, err
	}
	var (
		started, done atomic.Int64
		seq           atomic.Uint64
		errs          errorLog
		wg            sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(cfg.duration)
	for i := range clients {
		wg.Go(func() {
			c := clients[i]
			for {
				if cfg.messages > 0 && started.Add(1) > int64(cfg.messages) {
					break
				}
				if cfg.duration > 0 && !time.Now().Before(deadline) {
					break
				}
				if c == nil {
					// The last transaction failed: a new connection, as
					// Postfix would open.
					var err error
					if c, err = s.connect(); err != nil {
						errs.add(err)
						time.Sleep(100 * time.Millisecond)
						continue
					}
				}
				if err := c.transaction(msgs[i], seq.Add(1)); err != nil {
					errs.add(err)
					c.conn.Close()
					c = nil
					continue
				}
				done.Add(1)
			}
			clients[i] = c
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	after, err := m.read()
	for _, c := range clients {
		if c != nil {
			c.quit()
		}
	}
	if err != nil {
		return nil, err
	}
	res := cfg.result()
	res.Messages = done.Load()
	res.Errors = errs.n.Load()
	res.FirstError = errs.firstError()
	res.Elapsed = elapsed.Seconds()
	res.MsgsPerSec = float64(res.Messages) / res.Elapsed
	fillServer(res, before, after)
	if res.Messages > 0 {
		res.CPUPer1000 = res.ServerCPU / float64(res.Messages) * 1000
	}
	return res, nil
}

// runIdle opens cfg.idle connections and measures the server holding them.
func runIdle(cfg *config, s *session) (*result.Result, error) {
	m := meter{pid: cfg.pid}
	before, err := m.read()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var (
		mu      sync.Mutex
		clients []*client
		next    atomic.Int64
		errs    errorLog
		wg      sync.WaitGroup
	)
	for range min(cfg.dialers, cfg.idle) {
		wg.Go(func() {
			for next.Add(1) <= int64(cfg.idle) {
				c, err := s.connect()
				if err != nil {
					errs.add(err)
					continue
				}
				mu.Lock()
				clients = append(clients, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	time.Sleep(cfg.hold)
	after, err := m.read()
	// Closing without QUIT: ten thousand QUITs would only measure the
	// server's teardown.
	for _, c := range clients {
		c.conn.Close()
	}
	if err != nil {
		return nil, err
	}
	res := cfg.result()
	res.Idle = len(clients)
	res.Errors = errs.n.Load()
	res.FirstError = errs.firstError()
	res.Elapsed = elapsed.Seconds()
	fillServer(res, before, after)
	return res, nil
}

func (c *config) result() *result.Result {
	return &result.Result{Scenario: c.scenario, Server: c.server, Run: c.run, Proto: c.proto,
		Concurrency: c.concurrency, Rcpts: c.rcpts, Size: c.size}
}

// fillServer records the measurements of the window between two readings.
func fillServer(res *result.Result, before, after reading) {
	res.ClientCPU = (after.self - before.self).Seconds()
	res.ServerCPU = (after.server.CPU - before.server.CPU).Seconds()
	res.OtherCPU = max(0, (after.busy-before.busy).Seconds()-res.ServerCPU-res.ClientCPU)
	res.ServerProcs = after.server.Procs
	res.PeakRSS = after.server.HWM
	res.RSS = after.server.RSS
}
